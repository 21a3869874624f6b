import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Either, Redacted } from "effect"
import {
  ConfigFileInvalid,
  ConfigFileSyntaxError,
  ConfigFileUnreadable,
  loadConfigFile,
  parseConfigToml
} from "../../src/extensions/configFile.js"
import { decodeEthDepositsConfig } from "../../src/extensions/ethDepositsConfig.js"

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kwil-config-"))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

const file = async (name: string, text: string): Promise<string> => {
  const path = join(dir, name)
  await writeFile(path, text)
  return path
}

/** A Kwil-shaped config.toml: other sections around the extensions, which are ignored. */
const kwilToml = `
[chain]
moniker = "node-1"

[app]
admin_listen = "/tmp/kwild.socket"

[app.extensions.eth_deposits]
rpc_provider = ["https://a.example/v3/key", "wss://b.example"]
contract_address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
starting_height = 18446744073709551616
required_confirmations = 6
reconnection_interval = 30
max_retries = 3
block_sync_chunk_size = 500
finality = "safe"

[app.extensions.other]
enabled = true
ratio = 0.5
since = 2024-01-02
empty = []
`

describe("loadConfigFile: happy path", () => {
  it.effect("reads every [app.extensions.<name>] section as string to string", () =>
    Effect.gen(function*() {
      const path = yield* Effect.promise(() => file("kwil.toml", kwilToml))
      const sections = yield* loadConfigFile(path)
      expect(sections).toEqual({
        eth_deposits: {
          rpc_provider: "https://a.example/v3/key,wss://b.example",
          contract_address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
          starting_height: "18446744073709551616",
          required_confirmations: "6",
          reconnection_interval: "30",
          max_retries: "3",
          block_sync_chunk_size: "500",
          finality: "safe"
        },
        other: { enabled: "true", ratio: "0.5", since: "2024-01-02", empty: "" }
      })
    }))

  it.effect("its eth_deposits section decodes, the TOML array becoming the provider list", () =>
    Effect.gen(function*() {
      const path = yield* Effect.promise(() => file("kwil2.toml", kwilToml))
      const sections = yield* loadConfigFile(path)
      const cfg = yield* decodeEthDepositsConfig(sections["eth_deposits"] ?? {})
      expect(cfg.rpcProviders.map(Redacted.value)).toEqual(["https://a.example/v3/key", "wss://b.example"])
      expect(cfg.startingHeight).toBe(18446744073709551616n)
      expect(cfg.blockSyncChunkSize).toBe(500)
    }))

  it.effect("an unquoted hex contract address (a TOML integer) is refused with the quoted address to write", () =>
    Effect.gen(function*() {
      const path = yield* Effect.promise(() =>
        file("unquoted.toml", `[app.extensions.eth_deposits]\nrpc_provider = "http://localhost:8545"\ncontract_address = 0x5FbDB2315678afecb367f032d93F642f64180aa3\n`)
      )
      const sections = yield* loadConfigFile(path)
      const error = yield* Effect.flip(decodeEthDepositsConfig(sections["eth_deposits"] ?? {}))
      expect(error.message).toContain("is a number, not a hex address")
      expect(error.message).toContain(`quote it (contract_address = "0x5fbdb2315678afecb367f032d93f642f64180aa3")`)
    }))

  it("a file without app.extensions configures nothing", () => {
    expect(parseConfigToml("[chain]\nmoniker = \"x\"\n")).toEqual(Either.right({}))
    expect(parseConfigToml("[app]\nadmin = 1\n")).toEqual(Either.right({}))
    expect(parseConfigToml("")).toEqual(Either.right({}))
  })

  it("dotted keys and inline section tables are the same layout", () => {
    expect(parseConfigToml("app.extensions.eth_deposits.max_retries = 2\napp.extensions.x = { a = \"b\" }\n"))
      .toEqual(Either.right({ eth_deposits: { max_retries: "2" }, x: { a: "b" } }))
  })
})

describe("loadConfigFile: each error is one line naming where", () => {
  it.effect("a missing file", () =>
    Effect.gen(function*() {
      const path = join(dir, "nope.toml")
      const error = yield* Effect.flip(loadConfigFile(path))
      expect(error).toBeInstanceOf(ConfigFileUnreadable)
      expect(error.message).toBe(`config file ${path}: cannot be read: no such file (ENOENT)`)
    }))

  it.effect("a directory", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(loadConfigFile(dir))
      expect(error._tag).toBe("ConfigFileUnreadable")
      expect(error.message).toBe(`config file ${dir}: cannot be read: it is a directory (EISDIR)`)
    }))

  it.effect("a TOML syntax error carries line and column", () =>
    Effect.gen(function*() {
      const path = yield* Effect.promise(() => file("bad.toml", "[app.extensions.eth_deposits]\nmax_retries = \n"))
      const error = yield* Effect.flip(loadConfigFile(path))
      expect(error).toBeInstanceOf(ConfigFileSyntaxError)
      if (!(error instanceof ConfigFileSyntaxError)) return
      expect([error.line, error.column]).toEqual([2, 15])
      expect(error.message).toMatch(new RegExp(`^config file ${path}:2:15: invalid TOML: \\S.*$`))
      expect(error.message).not.toContain("\n")
    }))

  it("a duplicate key is a syntax error at its line", () => {
    const result = parseConfigToml("[app.extensions.a]\nx = 1\nx = 2\n", "dup.toml")
    expect(Either.isLeft(result) && result.left._tag === "ConfigFileSyntaxError" && result.left.line).toBe(3)
  })

  it("an unsafe key cannot reach a prototype", () => {
    const result = parseConfigToml("[app.extensions.__proto__]\npolluted = \"yes\"\n", "proto.toml")
    expect(Either.isLeft(result) && result.left._tag).toBe("ConfigFileSyntaxError")
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
  })

  const invalid: ReadonlyArray<readonly [string, string, string, string]> = [
    ["app is not a table", "app = 1\n", "app", "is not a table (expected [app.extensions.<name>] sections)"],
    ["extensions is not a table", "[app]\nextensions = \"eth_deposits\"\n", "app.extensions", "is not a table (expected [app.extensions.<name>] sections)"],
    ["a section that is not a table", "[app.extensions]\neth_deposits = \"wss://x\"\n", "app.extensions.eth_deposits", "is not a table (write it as a [app.extensions.eth_deposits] section)"],
    ["a nested table value", "[app.extensions.eth_deposits.retry]\nmax = 3\n", "app.extensions.eth_deposits.retry", "is a table; a listener's values must be strings, numbers, booleans or arrays of them"],
    ["an inline table value", "[app.extensions.eth_deposits]\nretry = { max = 3 }\n", "app.extensions.eth_deposits.retry", "is a table; a listener's values must be strings, numbers, booleans or arrays of them"],
    ["an array of arrays", "[app.extensions.eth_deposits]\nrpc_provider = [[\"https://a\"]]\n", "app.extensions.eth_deposits.rpc_provider", "is an array holding arrays or tables; only arrays of strings, numbers or booleans are accepted"],
    ["an array of tables", "[[app.extensions.eth_deposits.peers]]\nurl = \"x\"\n", "app.extensions.eth_deposits.peers", "is an array holding arrays or tables; only arrays of strings, numbers or booleans are accepted"],
    ["an element with a comma", "[app.extensions.eth_deposits]\nrpc_provider = [\"https://a,b\"]\n", "app.extensions.eth_deposits.rpc_provider", "is an array with an element containing a comma (\"https://a,b\"), which cannot be joined unambiguously"]
  ]

  it.effect.each(invalid)("%s", ([, text, key, reason]) =>
    Effect.gen(function*() {
      const path = yield* Effect.promise(() => file("layout.toml", text))
      const error = yield* Effect.flip(loadConfigFile(path))
      expect(error).toBeInstanceOf(ConfigFileInvalid)
      if (!(error instanceof ConfigFileInvalid)) return
      expect(error.key).toBe(key)
      expect(error.message).toBe(`config file ${path}: ${key} ${reason}`)
    }))
})
