/**
 * The `eth_deposits` listener's configuration: Kwil's `[app.extensions.eth_deposits]` keys,
 * decoded from the string-to-string section a listener is given, with Kwil's defaults except
 * where Kwil's are unsafe (`block_sync_chunk_size`) and one new key (`finality`).
 *
 * Every bad value fails with one `InvalidConfig` naming the key and the reason, so a node refuses
 * to start on bad config instead of misbehaving later. Unknown keys are logged as warnings and
 * ignored, as Kwil ignores them (a warning, not a refusal, so a config shared with a newer or older
 * version still starts; the warning suggests the closest known key to catch typos).
 */
import { Config, ConfigError, Data, Duration, Effect, Either, Option, Redacted } from "effect"
import { type Address, getAddress, isAddress } from "viem"
import { ListenerContext } from "../listener/Listener.js"

/** The config section name, as in `[app.extensions.eth_deposits]`. */
export const section = "eth_deposits"

/** How a block counts as final enough to read its logs. */
export type Finality = "confirmations" | "safe" | "finalized"

export const finalities: ReadonlyArray<Finality> = ["confirmations", "safe", "finalized"]

/** The decoded `eth_deposits` configuration. */
export interface EthDepositsConfig {
  /**
   * `rpc_provider`: one or more http(s)/ws(s) URLs, in the order given. Redacted because provider
   * URLs usually carry an API key; read them with `Redacted.value`.
   */
  readonly rpcProviders: ReadonlyArray<Redacted.Redacted<string>>
  /** `contract_address`: the escrow contract, EIP-55 checksummed. */
  readonly contractAddress: Address
  /** `starting_height`: the first block to scan when there is no checkpoint yet. */
  readonly startingHeight: bigint
  /** `required_confirmations`: blocks behind the head before a block is read (with `finality: confirmations`). */
  readonly requiredConfirmations: number
  /** `reconnection_interval`: a subscription silent this long is re-made. */
  readonly reconnectionInterval: Duration.Duration
  /** `max_retries`: how many times in a row a healable RPC failure is retried before the listener fails. */
  readonly maxRetries: number
  /** `block_sync_chunk_size`: the starting `eth_getLogs` range in blocks (it adapts from there). */
  readonly blockSyncChunkSize: number
  /** `finality`: `confirmations` (the head minus `required_confirmations`), or the node's `safe` / `finalized` tag. */
  readonly finality: Finality
}

/** Defaults for every optional key (Kwil's, except `block_sync_chunk_size`: Kwil's 1,000,000 is refused by real providers). */
export const defaults = {
  startingHeight: 0n,
  requiredConfirmations: 12,
  reconnectionInterval: Duration.seconds(60),
  maxRetries: 10,
  blockSyncChunkSize: 1_000,
  finality: "confirmations" as Finality
} as const

/** `reconnection_interval` below this would re-make healthy subscriptions on quiet chains (Kwil's minimum). */
export const minReconnectionSeconds = 5

/** The keys this section understands. */
export const keys = [
  "rpc_provider",
  "contract_address",
  "starting_height",
  "required_confirmations",
  "reconnection_interval",
  "max_retries",
  "block_sync_chunk_size",
  "finality"
] as const

export type Key = typeof keys[number]

/**
 * A config value that cannot be used. `value` is what was given, with URL credentials, paths and
 * queries elided (they usually hold API keys); it is absent when the key is missing.
 */
export class InvalidConfig extends Data.TaggedError("InvalidConfig")<{
  readonly section: string
  readonly key: string
  readonly value?: string
  readonly reason: string
}> {
  override get message(): string {
    const where = `${this.section}.${this.key}`
    return this.value === undefined
      ? `${where} ${this.reason}`
      : `${where}: ${JSON.stringify(this.value)} ${this.reason}`
  }
}

/** A key's outcome: the value, or why not (and what to show of the input). */
type Check<A> = Either.Either<A, { readonly reason: string; readonly value?: string }>

const bad = (value: string | undefined, reason: string): Check<never> =>
  Either.left(value === undefined ? { reason } : { value, reason })

/**
 * Shows a URL-like string without what usually carries secrets: `https://user:pass@host/v3/KEY`
 * becomes `https://***@host/…`. Works on strings that are not URLs too.
 */
export const redactUrl = (s: string): string => {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)?([^/?#]*)(.*)$/s.exec(s)
  if (m === null) return "…"
  const [, scheme = "", authority = "", rest = ""] = m
  const host = authority.includes("@") ? `***@${authority.slice(authority.lastIndexOf("@") + 1)}` : authority
  return `${scheme}${host}${rest === "" || rest === "/" ? rest : rest.startsWith("/") ? "/…" : "…"}`
}

const urlSchemes = new Set(["http:", "https:", "ws:", "wss:"])

const rpcProviders = (raw: string | undefined): Check<ReadonlyArray<Redacted.Redacted<string>>> => {
  const what = "one or more http(s) or ws(s) URLs, separated by commas or spaces"
  if (raw === undefined) return bad(undefined, `is required: ${what}`)
  const urls = raw.split(/[\s,]+/).filter((s) => s !== "")
  if (urls.length === 0) return bad(raw, `is empty; it needs ${what}`)
  const seen = new Set<string>()
  for (const url of urls) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      return bad(redactUrl(url), "is not a URL (expected e.g. https://host or wss://host)")
    }
    if (!urlSchemes.has(parsed.protocol)) {
      return bad(redactUrl(url), `is not an http(s) or ws(s) URL (expected e.g. https://host or wss://host)`)
    }
    if (seen.has(url)) return bad(redactUrl(url), "is listed twice")
    seen.add(url)
  }
  return Either.right(urls.map((u) => Redacted.make(u)))
}

const contractAddress = (raw: string | undefined): Check<Address> => {
  if (raw === undefined) return bad(undefined, "is required: the deposit contract's 20-byte hex address")
  const s = raw.trim()
  // What a TOML file's unquoted `0x…` becomes: a hex integer, read back as its decimal digits.
  const number = /^\d+$/.test(s) ? BigInt(s) : undefined
  if (number !== undefined && number < 2n ** 160n) {
    const hex = number.toString(16).padStart(40, "0")
    return bad(s, `is a number, not a hex address: in a TOML file, quote it (contract_address = "0x${hex}")`)
  }
  if (!isAddress(s, { strict: false })) {
    return bad(s, "is not a 20-byte hex address (0x followed by 40 hex digits)")
  }
  if (/^0x0{40}$/.test(s)) return bad(s, "is the zero address, which no contract can have")
  // Only a mixed-case address carries an EIP-55 checksum; all-lower or all-upper hex skips the check.
  const hex = s.slice(2)
  const mixedCase = hex !== hex.toLowerCase() && hex !== hex.toUpperCase()
  if (mixedCase && !isAddress(s, { strict: true })) {
    return bad(s, "has a wrong EIP-55 checksum: check it for typos (an all-lower-case address skips the check)")
  }
  return Either.right(getAddress(s.toLowerCase()))
}

/** A decimal integer, no sign, no exponent: Kwil's `strconv.ParseInt` shape, minus negatives. */
const digits = /^\d+$/

const optional = <A>(
  raw: string | undefined,
  fallback: A,
  parse: (s: string) => Check<A>
): Check<A> => {
  if (raw === undefined) return Either.right(fallback)
  const s = raw.trim()
  if (s === "") return bad(raw, `is empty (remove the key to use the default, ${showDefault(fallback)})`)
  return parse(s)
}

const showDefault = (a: unknown): string =>
  Duration.isDuration(a) ? `${Duration.toSeconds(a)} seconds` : String(a)

const integer = (what: string, min: 0 | 1) => (s: string): Check<number> => {
  if (!digits.test(s) || (min === 1 && /^0+$/.test(s))) return bad(s, `is not a ${what}`)
  const n = Number(s)
  return Number.isSafeInteger(n) ? Either.right(n) : bad(s, `is too large (at most ${Number.MAX_SAFE_INTEGER})`)
}

const startingHeight = (raw: string | undefined): Check<bigint> =>
  optional(raw, defaults.startingHeight, (s) =>
    digits.test(s) ? Either.right(BigInt(s)) : bad(s, "is not a non-negative integer (a block height)"))

/** Seconds, as Kwil takes them (`60`), or with an `s` suffix (`60s`, `60 s`); whole seconds only. */
const reconnectionInterval = (raw: string | undefined): Check<Duration.Duration> =>
  optional(raw, defaults.reconnectionInterval, (s) => {
    const m = /^(\d+)\s*s?$/.exec(s)
    if (m === null) return bad(s, "is not a whole number of seconds (e.g. 60 or \"60s\")")
    const seconds = Number(m[1])
    if (!Number.isSafeInteger(seconds)) return bad(s, "is too large")
    if (seconds < minReconnectionSeconds) return bad(s, `is less than the minimum of ${minReconnectionSeconds} seconds`)
    return Either.right(Duration.seconds(seconds))
  })

const finality = (raw: string | undefined): Check<Finality> =>
  optional(raw, defaults.finality, (s) => {
    const f = s.toLowerCase()
    return (finalities as ReadonlyArray<string>).includes(f)
      ? Either.right(f as Finality)
      : bad(s, `is not one of ${finalities.join(", ")}`)
  })

/** Decodes the known keys (a missing key is `undefined`), first failure in key order. */
const decodeKeys = (get: (key: Key) => string | undefined): Either.Either<EthDepositsConfig, InvalidConfig> => {
  const fail = (key: Key) => (e: { readonly reason: string; readonly value?: string }) =>
    new InvalidConfig({ section, key, reason: e.reason, ...(e.value === undefined ? {} : { value: e.value }) })
  return Either.all({
    rpcProviders: Either.mapLeft(rpcProviders(get("rpc_provider")), fail("rpc_provider")),
    contractAddress: Either.mapLeft(contractAddress(get("contract_address")), fail("contract_address")),
    startingHeight: Either.mapLeft(startingHeight(get("starting_height")), fail("starting_height")),
    requiredConfirmations: Either.mapLeft(
      optional(get("required_confirmations"), defaults.requiredConfirmations, integer("non-negative integer", 0)),
      fail("required_confirmations")
    ),
    reconnectionInterval: Either.mapLeft(reconnectionInterval(get("reconnection_interval")), fail("reconnection_interval")),
    maxRetries: Either.mapLeft(
      optional(get("max_retries"), defaults.maxRetries, integer("non-negative integer", 0)),
      fail("max_retries")
    ),
    blockSyncChunkSize: Either.mapLeft(
      optional(get("block_sync_chunk_size"), defaults.blockSyncChunkSize, integer("positive integer (blocks per eth_getLogs request)", 1)),
      fail("block_sync_chunk_size")
    ),
    finality: Either.mapLeft(finality(get("finality")), fail("finality"))
  })
}

/** Levenshtein distance, to suggest the key a typo meant. */
const distance = (a: string, b: string): number => {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length]!
}

const closestKey = (key: string): Option.Option<Key> => {
  const best = keys
    .map((k) => [k, distance(key.toLowerCase(), k)] as const)
    .reduce((a, b) => (b[1] < a[1] ? b : a))
  return best[1] <= 3 ? Option.some(best[0]) : Option.none()
}

const knownKeys: ReadonlySet<string> = new Set(keys)

/** One warning per key Kwil would ignore, and for `required_confirmations` when `finality` overrides it. */
const warnings = (sectionValues: Readonly<Record<string, string>>, config: EthDepositsConfig) =>
  Effect.gen(function*() {
    for (const key of Object.keys(sectionValues)) {
      if (knownKeys.has(key)) continue
      const suggestion = closestKey(key)
      yield* Effect.logWarning(
        `${section}.${key}: unknown key, ignored${Option.match(suggestion, { onNone: () => "", onSome: (k) => ` (did you mean ${k}?)` })}`
      ).pipe(Effect.annotateLogs({ section, key }))
    }
    if (config.finality !== "confirmations" && sectionValues["required_confirmations"] !== undefined) {
      yield* Effect.logWarning(
        `${section}.required_confirmations: ignored, because finality is ${config.finality}`
      ).pipe(Effect.annotateLogs({ section, key: "required_confirmations" }))
    }
  })

/**
 * Decodes a `[app.extensions.eth_deposits]` section (string to string, as Kwil gives it), logging
 * a warning for each unknown key. Fails with the first bad key, in the order of `keys`.
 */
export const decodeEthDepositsConfig = (
  sectionValues: Readonly<Record<string, string>>
): Effect.Effect<EthDepositsConfig, InvalidConfig> =>
  Effect.gen(function*() {
    const config = yield* decodeKeys((key) => sectionValues[key])
    yield* warnings(sectionValues, config)
    return config
  })

/** Decodes the running listener's own config section (`ListenerContext.config`). */
export const load: Effect.Effect<EthDepositsConfig, InvalidConfig, ListenerContext> = Effect.flatMap(
  ListenerContext,
  (ctx) => decodeEthDepositsConfig(ctx.config)
)

/**
 * The same decoding as an Effect `Config`, reading the current `ConfigProvider` (the manager
 * installs the listener's section as one). A bad value is a `ConfigError.InvalidData` at that key,
 * whose message is `InvalidConfig`'s line. Unknown keys cannot be seen through a `ConfigProvider`,
 * so prefer `load`/`decodeEthDepositsConfig` where the section itself is at hand.
 */
export const config: Config.Config<EthDepositsConfig> = Config.all(
  Object.fromEntries(keys.map((k) => [k, Config.option(Config.string(k))])) as Record<Key, Config.Config<Option.Option<string>>>
).pipe(
  Config.mapOrFail((values) =>
    Either.mapLeft(
      decodeKeys((k) => Option.getOrUndefined(values[k])),
      (e) => ConfigError.InvalidData([e.key], e.message)
    )
  )
)

/** The namespace-style handle: `EthDepositsConfig.decode(section)`, `EthDepositsConfig.load`, `EthDepositsConfig.config`. */
export const EthDepositsConfig = {
  section,
  keys,
  defaults,
  decode: decodeEthDepositsConfig,
  load,
  config
} as const
