/**
 * The errors of the Ethereum side. Every one says whether it can heal (`healable`): a healable
 * error is retried with a capped, jittered backoff (see `Retry.ts`); any other one fails the
 * caller at once, because repeating the same request would get the same refusal.
 */
import { Data, Duration, Option } from "effect"

/** Says which request failed, for messages. */
const where = (method: string, url: string | undefined) => url === undefined ? method : `${method} (${url})`

/** The provider did not answer in time. Heals: the next attempt may be faster. */
export class RpcTimeout extends Data.TaggedError("RpcTimeout")<{
  readonly method: string
  readonly url?: string
  readonly cause?: unknown
}> {
  get healable(): true {
    return true
  }
  override get message() {
    return `${where(this.method, this.url)} timed out (retried with backoff, up to max_retries times); raise the timeout if it keeps happening`
  }
}

/** The provider refused because of a request rate or quota (HTTP 429, -32005 "limit exceeded"...). */
export class RpcRateLimited extends Data.TaggedError("RpcRateLimited")<{
  readonly method: string
  readonly url?: string
  /** How long the provider asked us to wait (its `Retry-After`), when it said. */
  readonly retryAfter: Option.Option<Duration.Duration>
  readonly detail: string
  readonly cause?: unknown
}> {
  get healable(): true {
    return true
  }
  override get message() {
    const after = Option.match(this.retryAfter, {
      onNone: () => "",
      onSome: (d) => ` (retry after ${Duration.format(d)})`
    })
    return `${where(this.method, this.url)} was rate-limited${after}: ${this.detail}; ` +
      `retried with backoff (up to max_retries times); add RPC URLs or a better plan if it persists`
  }
}

/**
 * `eth_getLogs` refused the range: too many blocks or too many results. Heals by asking for a
 * smaller range (the adaptive fetcher does that at once, without backoff).
 */
export class RangeTooLarge extends Data.TaggedError("RangeTooLarge")<{
  readonly method: string
  readonly url?: string
  /** The blocks the refused request spanned (inclusive count). */
  readonly requested: number
  /** The provider's hint, parsed from its message (see `ProviderErrors.ts`). */
  readonly hint: RangeHint
  readonly detail: string
  readonly cause?: unknown
}> {
  get healable(): true {
    return true
  }
  override get message() {
    const hint = this.hint._tag === "Shrink" ? "no size suggested" : `${this.hint._tag} ${this.hint.blocks} blocks`
    return `${where(this.method, this.url)} refused a ${this.requested}-block range (${hint}): ${this.detail}`
  }
}

/** What a failed request says: the method, the (redacted) URL and the provider's words. */
interface Failure {
  readonly method: string
  readonly url?: string
  readonly detail: string
  readonly cause?: unknown
}

/** The provider could not be reached or failed on its side (refused, reset, 5xx, socket closed). */
export class RpcUnavailable extends Data.TaggedError("RpcUnavailable")<Failure> {
  get healable(): true {
    return true
  }
  override get message() {
    return `${where(this.method, this.url)} failed: ${this.detail} (retried with backoff, up to max_retries times); check the RPC URL if it persists`
  }
}

/** The provider rejected the request itself (bad params, method unsupported, unauthorized): it never heals. */
export class RpcBadRequest extends Data.TaggedError("RpcBadRequest")<Failure> {
  get healable(): false {
    return false
  }
  override get message() {
    return `${where(this.method, this.url)} was rejected: ${this.detail}; ` +
      `check the RPC URL, its API key and that the provider supports this method`
  }
}

/**
 * The answer could not be read as JSON at all: a body cut off mid-way, or a gateway's HTML page
 * sent with status 200. A transport glitch like a reset, not the provider's considered answer:
 * it heals (the next attempt, or the next URL, gets a whole body).
 */
export class RpcGarbled extends Data.TaggedError("RpcGarbled")<Failure> {
  get healable(): true {
    return true
  }
  override get message() {
    return `${where(this.method, this.url)} returned an unreadable (cut-off or non-JSON) body: ${this.detail}; ` +
      `retried with backoff (up to max_retries times); check the RPC URL (or a proxy in front of it) if it persists`
  }
}

/**
 * The provider answered well-formed JSON that is not what the JSON-RPC spec says (our decoding of
 * the result failed): repeating the request would get the same answer.
 */
export class RpcBadResponse extends Data.TaggedError("RpcBadResponse")<Failure> {
  get healable(): false {
    return false
  }
  override get message() {
    return `${where(this.method, this.url)} returned a malformed response: ${this.detail}; use another provider`
  }
}

/** The provider does not know the `safe` / `finalized` block tag (pre-merge chain, old client). */
export class BlockTagUnsupported extends Data.TaggedError("BlockTagUnsupported")<{
  readonly tag: "safe" | "finalized"
  readonly detail: string
  readonly cause?: unknown
}> {
  get healable(): false {
    return false
  }
  override get message() {
    return `the provider does not support the "${this.tag}" block tag (${this.detail}); ` +
      `use a number of confirmations instead`
  }
}

/**
 * Two of the client's URLs serve different chains: one of them is misconfigured. The URL was
 * asked for its chain id before its first use and is never used: a call moves on to the next URL
 * (and, failing everywhere, reports another URL's error), and a new-heads subscription on it
 * fails with this. It is logged as an error when found.
 */
export class ChainMismatch extends Data.TaggedError("ChainMismatch")<{
  /** The URL refused (redacted). */
  readonly url: string
  readonly chainId: number
  /** The URL whose chain the client serves (redacted), and that chain. */
  readonly expectedUrl: string
  readonly expected: number
}> {
  get healable(): false {
    return false
  }
  override get message() {
    return `${this.url} serves chain ${this.chainId}, but ${this.expectedUrl} serves chain ${this.expected}: ` +
      `every RPC URL must serve the same chain; fix or remove the wrong one (until then it is not used)`
  }
}

/** Every error an `EthereumClient` operation may fail with. */
export type RpcError =
  | RpcTimeout
  | RpcRateLimited
  | RangeTooLarge
  | RpcUnavailable
  | RpcBadRequest
  | RpcBadResponse
  | RpcGarbled
  | BlockTagUnsupported
  | ChainMismatch

/**
 * What a provider's refusal of an `eth_getLogs` range suggests for the next request:
 * - `Limit`: the provider's hard cap on the blocks in one request: never ask for more again;
 * - `Suggested`: a range the provider expects to work now (result-count based): use it, grow back later;
 * - `Shrink`: too many blocks or results, no number given: halve.
 */
export type RangeHint =
  | { readonly _tag: "Limit"; readonly blocks: number }
  | { readonly _tag: "Suggested"; readonly blocks: number }
  | { readonly _tag: "Shrink" }

/**
 * The chain the provider serves is not consistent with itself: a block it just reported is gone,
 * or logs carry a block hash that is not the canonical one. Heals: usually a lagging or
 * load-balanced node; the request is made again.
 */
export class InconsistentChain extends Data.TaggedError("InconsistentChain")<{
  readonly detail: string
}> {
  get healable(): true {
    return true
  }
  override get message() {
    return `the RPC returned inconsistent chain data: ${this.detail}; retrying (a lagging or load-balanced node?)`
  }
}

/**
 * A single block holds more logs than the provider will return in one response: the range
 * cannot shrink below one block, so the follower cannot make progress with this provider.
 */
export class LogRangeIrreducible extends Data.TaggedError("LogRangeIrreducible")<{
  readonly block: bigint
  readonly cause: RangeTooLarge
}> {
  get healable(): false {
    return false
  }
  override get message() {
    return `eth_getLogs refused even the single block ${this.block} (${this.cause.detail}); ` +
      `use a provider with a larger response limit or a narrower filter`
  }
}

/** Whether an error of this module can heal by waiting and trying again. */
export const isHealable = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "healable" in error && error.healable === true

/** The client was configured with no URL or a URL that is not http(s)/ws(s). */
export class InvalidRpcConfig extends Data.TaggedError("InvalidRpcConfig")<{
  readonly reason: string
}> {
  override get message() {
    return `invalid RPC configuration: ${this.reason}; give one or more http(s):// or ws(s):// URLs`
  }
}
