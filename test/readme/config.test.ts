// The README's TOML example must stay a valid eth_deposits config.
import { expect, it } from "@effect/vitest"
import { Effect, Either, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { parseConfigToml } from "../../src/extensions/configFile.js"
import { decodeEthDepositsConfig } from "../../src/extensions/ethDepositsConfig.js"

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8")
const toml = /```toml\n([\s\S]*?)```/.exec(readme)?.[1] ?? ""

it.effect("the README's [app.extensions.eth_deposits] example decodes", () =>
  Effect.gen(function*() {
    expect(toml).toContain("[app.extensions.eth_deposits]")
    const sections = Either.getOrThrow(parseConfigToml(toml, "README.md"))
    const config = yield* decodeEthDepositsConfig(sections["eth_deposits"] ?? {})
    expect(config.rpcProviders.map(Redacted.value)).toEqual(["wss://mainnet.example/ws", "https://mainnet.example/rpc"])
    expect(config.startingHeight).toBe(19_000_000n)
    expect(config.requiredConfirmations).toBe(12)
    expect(config.blockSyncChunkSize).toBe(1000)
  }))
