import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, HashMap, Layer, Logger, Redacted } from "effect"
import {
  config,
  decodeEthDepositsConfig,
  defaults,
  EthDepositsConfig,
  InvalidConfig,
  load,
  redactUrl
} from "../../src/extensions/ethDepositsConfig.js"
import { ListenerContext } from "../../src/listener/Listener.js"

/** EIP-55's own example address. */
const checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
const minimal = { rpc_provider: "wss://eth.example", contract_address: checksummed }

const fails = (section: Record<string, string>) =>
  Effect.flip(decodeEthDepositsConfig(section))

/** The config with its redacted URLs and duration made comparable. */
const plain = ({ reconnectionInterval, rpcProviders, ...rest }: EthDepositsConfig) => ({
  ...rest,
  rpcProviders: rpcProviders.map(Redacted.value),
  reconnectionSeconds: Duration.toSeconds(reconnectionInterval)
})

/** Runs `eff` and returns what it logged as `[level, message, annotations]`. */
const captureLogs = <A, E>(eff: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<{ level: string; message: string; annotations: Record<string, unknown> }> = []
    const logger = Logger.make(({ annotations, logLevel, message }) => {
      lines.push({
        level: logLevel.label,
        message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
        annotations: Object.fromEntries(HashMap.toEntries(annotations))
      })
    })
    const result = yield* Effect.either(eff.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger))))
    return { result, lines }
  })

describe("decodeEthDepositsConfig: defaults and good values", () => {
  it.effect("applies Kwil's defaults (and ours for the chunk size) when optional keys are absent", () =>
    Effect.gen(function*() {
      expect(plain(yield* decodeEthDepositsConfig(minimal))).toEqual({
        rpcProviders: ["wss://eth.example"],
        contractAddress: checksummed,
        startingHeight: 0n,
        requiredConfirmations: 12,
        reconnectionSeconds: 60,
        maxRetries: 10,
        blockSyncChunkSize: 1_000,
        finality: "confirmations"
      })
      expect(defaults.blockSyncChunkSize).toBe(1_000)
    }))

  it.effect("reads every key when present", () =>
    Effect.gen(function*() {
      const cfg = yield* decodeEthDepositsConfig({
        ...minimal,
        starting_height: "18446744073709551616",
        required_confirmations: "0",
        reconnection_interval: "5",
        max_retries: "0",
        block_sync_chunk_size: "1000000",
        finality: "Finalized"
      })
      expect(plain(cfg)).toEqual({
        rpcProviders: ["wss://eth.example"],
        contractAddress: checksummed,
        startingHeight: 18446744073709551616n,
        requiredConfirmations: 0,
        reconnectionSeconds: 5,
        maxRetries: 0,
        blockSyncChunkSize: 1_000_000,
        finality: "finalized"
      })
    }))

  it.effect.each([
    ["30", 30],
    ["30s", 30],
    ["30 s", 30],
    [" 45 ", 45]
  ] as const)("reconnection_interval %j is %d seconds", ([raw, seconds]) =>
    Effect.gen(function*() {
      const cfg = yield* decodeEthDepositsConfig({ ...minimal, reconnection_interval: raw })
      expect(Duration.toSeconds(cfg.reconnectionInterval)).toBe(seconds)
    }))

  it.effect.each([
    ["one URL", "https://a.example", ["https://a.example"]],
    ["comma-separated", "https://a.example,wss://b.example", ["https://a.example", "wss://b.example"]],
    ["space-separated", "https://a.example  wss://b.example", ["https://a.example", "wss://b.example"]],
    ["mixed, with newlines", " http://a.example, \n ws://b.example ,https://c.example/v3/key ", [
      "http://a.example",
      "ws://b.example",
      "https://c.example/v3/key"
    ]]
  ] as const)("rpc_provider: %s", ([, raw, expected]) =>
    Effect.gen(function*() {
      const cfg = yield* decodeEthDepositsConfig({ ...minimal, rpc_provider: raw })
      expect(cfg.rpcProviders.map(Redacted.value)).toEqual(expected)
    }))

  it.effect("rpc_provider URLs are redacted when shown", () =>
    Effect.gen(function*() {
      const cfg = yield* decodeEthDepositsConfig({ ...minimal, rpc_provider: "https://x.example/v3/SECRET" })
      expect(String(cfg.rpcProviders[0])).not.toContain("SECRET")
    }))

  it.effect.each([
    ["all lower-case", checksummed.toLowerCase()],
    ["all upper-case hex", "0x" + checksummed.slice(2).toUpperCase()],
    ["checksummed", checksummed],
    ["surrounded by spaces", ` ${checksummed} `]
  ] as const)("contract_address %s is accepted and checksummed", ([, raw]) =>
    Effect.gen(function*() {
      const cfg = yield* decodeEthDepositsConfig({ ...minimal, contract_address: raw })
      expect(cfg.contractAddress).toBe(checksummed)
    }))
})

describe("decodeEthDepositsConfig: each bad value names its key and reason in one line", () => {
  const wrongChecksum = checksummed.slice(0, -1) + "D"
  const cases: ReadonlyArray<readonly [string, Record<string, string>, string, string]> = [
    ["missing rpc_provider", { contract_address: checksummed }, "rpc_provider", "eth_deposits.rpc_provider is required: one or more http(s) or ws(s) URLs, separated by commas or spaces"],
    ["empty rpc_provider", { ...minimal, rpc_provider: " , " }, "rpc_provider", "eth_deposits.rpc_provider: \" , \" is empty; it needs one or more http(s) or ws(s) URLs, separated by commas or spaces"],
    ["ftp rpc_provider", { ...minimal, rpc_provider: "ftp://files.example" }, "rpc_provider", "eth_deposits.rpc_provider: \"ftp://files.example\" is not an http(s) or ws(s) URL (expected e.g. https://host or wss://host)"],
    ["a bad URL in a list", { ...minimal, rpc_provider: "https://a.example, localhost:8545" }, "rpc_provider", "eth_deposits.rpc_provider: \"localhost:8545\" is not an http(s) or ws(s) URL (expected e.g. https://host or wss://host)"],
    ["not a URL", { ...minimal, rpc_provider: "not a url" }, "rpc_provider", "eth_deposits.rpc_provider: \"not\" is not a URL (expected e.g. https://host or wss://host)"],
    ["a URL listed twice", { ...minimal, rpc_provider: "https://a.example https://a.example" }, "rpc_provider", "eth_deposits.rpc_provider: \"https://a.example\" is listed twice"],
    ["missing contract_address", { rpc_provider: "https://a.example" }, "contract_address", "eth_deposits.contract_address is required: the deposit contract's 20-byte hex address"],
    ["short contract_address", { ...minimal, contract_address: "0x1234" }, "contract_address", "eth_deposits.contract_address: \"0x1234\" is not a 20-byte hex address (0x followed by 40 hex digits)"],
    ["non-hex contract_address", { ...minimal, contract_address: "0x" + "g".repeat(40) }, "contract_address", `eth_deposits.contract_address: "0x${"g".repeat(40)}" is not a 20-byte hex address (0x followed by 40 hex digits)`],
    ["wrong checksum", { ...minimal, contract_address: wrongChecksum }, "contract_address", `eth_deposits.contract_address: "${wrongChecksum}" has a wrong EIP-55 checksum: check it for typos (an all-lower-case address skips the check)`],
    ["zero address", { ...minimal, contract_address: "0x" + "0".repeat(40) }, "contract_address", `eth_deposits.contract_address: "0x${"0".repeat(40)}" is the zero address, which no contract can have`],
    ["negative starting_height", { ...minimal, starting_height: "-1" }, "starting_height", "eth_deposits.starting_height: \"-1\" is not a non-negative integer (a block height)"],
    ["fractional starting_height", { ...minimal, starting_height: "1.5" }, "starting_height", "eth_deposits.starting_height: \"1.5\" is not a non-negative integer (a block height)"],
    ["empty starting_height", { ...minimal, starting_height: "" }, "starting_height", "eth_deposits.starting_height: \"\" is empty (remove the key to use the default, 0)"],
    ["non-integer required_confirmations", { ...minimal, required_confirmations: "abc" }, "required_confirmations", "eth_deposits.required_confirmations: \"abc\" is not a non-negative integer"],
    ["negative required_confirmations", { ...minimal, required_confirmations: "-3" }, "required_confirmations", "eth_deposits.required_confirmations: \"-3\" is not a non-negative integer"],
    ["huge required_confirmations", { ...minimal, required_confirmations: "99999999999999999999" }, "required_confirmations", "eth_deposits.required_confirmations: \"99999999999999999999\" is too large (at most 9007199254740991)"],
    ["reconnection_interval below 5 s", { ...minimal, reconnection_interval: "4" }, "reconnection_interval", "eth_deposits.reconnection_interval: \"4\" is less than the minimum of 5 seconds"],
    ["reconnection_interval in minutes", { ...minimal, reconnection_interval: "1m" }, "reconnection_interval", "eth_deposits.reconnection_interval: \"1m\" is not a whole number of seconds (e.g. 60 or \"60s\")"],
    ["empty reconnection_interval", { ...minimal, reconnection_interval: " " }, "reconnection_interval", "eth_deposits.reconnection_interval: \" \" is empty (remove the key to use the default, 60 seconds)"],
    ["negative max_retries", { ...minimal, max_retries: "-1" }, "max_retries", "eth_deposits.max_retries: \"-1\" is not a non-negative integer"],
    ["zero block_sync_chunk_size", { ...minimal, block_sync_chunk_size: "0" }, "block_sync_chunk_size", "eth_deposits.block_sync_chunk_size: \"0\" is not a positive integer (blocks per eth_getLogs request)"],
    ["padded zero block_sync_chunk_size", { ...minimal, block_sync_chunk_size: "000" }, "block_sync_chunk_size", "eth_deposits.block_sync_chunk_size: \"000\" is not a positive integer (blocks per eth_getLogs request)"],
    ["finality latest", { ...minimal, finality: "latest" }, "finality", "eth_deposits.finality: \"latest\" is not one of confirmations, safe, finalized"]
  ]

  it.effect.each(cases)("%s", ([, section, key, message]) =>
    Effect.gen(function*() {
      const error = yield* fails(section)
      expect(error).toBeInstanceOf(InvalidConfig)
      expect(error._tag).toBe("InvalidConfig")
      expect(error.key).toBe(key)
      expect(error.message).toBe(message)
      expect(error.message).not.toContain("\n")
    }))

  it.effect("URL credentials, paths and queries never appear in the error", () =>
    Effect.gen(function*() {
      const error = yield* fails({ ...minimal, rpc_provider: "ftp://user:hunter2@files.example/v3/SECRETKEY?apikey=SECRET2" })
      expect(error.message).toBe(
        "eth_deposits.rpc_provider: \"ftp://***@files.example/…\" is not an http(s) or ws(s) URL (expected e.g. https://host or wss://host)"
      )
      expect(error.value).toBe("ftp://***@files.example/…")
    }))

  it("redactUrl keeps scheme and host only", () => {
    expect(redactUrl("https://mainnet.example/v3/KEY")).toBe("https://mainnet.example/…")
    expect(redactUrl("wss://u:p@h.example")).toBe("wss://***@h.example")
    expect(redactUrl("https://h.example?key=K")).toBe("https://h.example…")
    expect(redactUrl("mainnet.example/v3/KEY")).toBe("mainnet.example/…")
    expect(redactUrl("https://h.example/")).toBe("https://h.example/")
  })
})

describe("decodeEthDepositsConfig: warnings", () => {
  it.effect("an unknown key is a warning naming it (with the closest known key), not an error", () =>
    Effect.gen(function*() {
      const { lines, result } = yield* captureLogs(decodeEthDepositsConfig({ ...minimal, rpc_providers: "x", colour: "blue" }))
      expect(Either.isRight(result)).toBe(true)
      const warnings = lines.filter((l) => l.level === "WARN")
      expect(warnings.map((l) => l.message)).toEqual([
        "eth_deposits.rpc_providers: unknown key, ignored (did you mean rpc_provider?)",
        "eth_deposits.colour: unknown key, ignored"
      ])
      expect(warnings[0]?.annotations).toEqual({ section: "eth_deposits", key: "rpc_providers" })
    }))

  it.effect("required_confirmations with a tag finality is a warning", () =>
    Effect.gen(function*() {
      const { lines } = yield* captureLogs(
        decodeEthDepositsConfig({ ...minimal, finality: "safe", required_confirmations: "3" })
      )
      expect(lines.map((l) => l.message)).toEqual([
        "eth_deposits.required_confirmations: ignored, because finality is safe"
      ])
    }))

  it.effect("a clean section logs nothing", () =>
    Effect.gen(function*() {
      const { lines } = yield* captureLogs(decodeEthDepositsConfig({ ...minimal, required_confirmations: "3" }))
      expect(lines).toEqual([])
    }))
})

describe("other entry points", () => {
  it.effect("load reads ListenerContext.config", () =>
    Effect.gen(function*() {
      const ctx = Layer.succeed(ListenerContext, ListenerContext.of({
        name: "eth_deposits",
        identity: "node-1",
        config: { ...minimal, max_retries: "3" },
        configured: true
      }))
      const cfg = yield* load.pipe(Effect.provide(ctx))
      expect(cfg.maxRetries).toBe(3)
      expect(EthDepositsConfig.load).toBe(load)
    }))

  it.effect("config reads the current ConfigProvider", () =>
    Effect.gen(function*() {
      const cfg = yield* Effect.withConfigProvider(
        config,
        ConfigProvider.fromMap(new Map(Object.entries({ ...minimal, block_sync_chunk_size: "250" })))
      )
      expect(cfg.blockSyncChunkSize).toBe(250)
      expect(cfg.contractAddress).toBe(checksummed)
    }))

  it.effect("config fails with InvalidData at the key, carrying the one-line message", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.withConfigProvider(
        config,
        ConfigProvider.fromMap(new Map(Object.entries({ ...minimal, max_retries: "-1" })))
      ))
      expect(error._op).toBe("InvalidData")
      if (error._op !== "InvalidData") return
      expect(error.path).toEqual(["max_retries"])
      expect(error.message).toBe("eth_deposits.max_retries: \"-1\" is not a non-negative integer")
    }))
})
