/**
 * Reading what RPC providers mean. Providers refuse a wide `eth_getLogs` with their own wording,
 * often naming the range they would accept; rate limits and outages come as HTTP statuses,
 * JSON-RPC codes or plain text. This module turns viem's errors into the tagged errors of
 * `errors.ts`, and parses the range hints (formats collected from Ponder's catalogue and
 * providers' docs; see `test/ethereum/ProviderErrors.test.ts` for the messages).
 */
import { Duration, Option } from "effect"
import {
  RangeTooLarge,
  type RangeHint,
  RpcBadRequest,
  type RpcError,
  RpcGarbled,
  RpcRateLimited,
  RpcTimeout,
  RpcUnavailable
} from "./errors.js"

/** "10,000", "10.000", "10_000", "2K", "5k" → a number of blocks. */
const amount = (text: string): number => {
  const kilo = /k$/i.test(text)
  const digits = Number(text.replace(/k$/i, "").replace(/[,._\s]/g, ""))
  return kilo ? digits * 1000 : digits
}

const NUMBER = String.raw`(\d[\d,._]*k?)`

/** A pattern whose captured number is the provider's hard cap on blocks a request. */
const limits: ReadonlyArray<RegExp> = [
  /requested too many blocks from \d+ to \d+, maximum is set to (\d+)/i, // avalanche
  new RegExp(String.raw`max(?:imum)? range:\s*${NUMBER}`, "i"), // cloudflare
  /maximum allowed number of requested blocks is (\d+)/i, // thirdweb
  /block range is too wide \(maximum (\d+)\)/i, // moonbeam
  new RegExp(String.raw`up to an? ${NUMBER} block range`, "i"), // alchemy "2K", aurora
  new RegExp(String.raw`limited to an? ${NUMBER}`, "i"), // quicknode, 1rpc, blast
  new RegExp(String.raw`limited to ${NUMBER} blocks?`, "i"), // blockpi
  /exceeds the range allowed for your plan \(\d+ > (\d+)\)/i, // blast (paid)
  new RegExp(String.raw`limit the query to at most ${NUMBER} blocks`, "i"), // coinbase
  new RegExp(String.raw`maximum block range(?: is|:)?\s*${NUMBER}`, "i"), // publicnode, geth-likes
  new RegExp(String.raw`max(?:imum)? block range (?:of |is )?${NUMBER}`, "i"),
  new RegExp(String.raw`query exceeds max block range ${NUMBER}`, "i"), // hyperliquid
  new RegExp(String.raw`block range greater than ${NUMBER} max`, "i"), // swell
  new RegExp(String.raw`block range exceeds ${NUMBER}`, "i"), // somnia
  new RegExp(String.raw`max is ${NUMBER} blocks`, "i"), // merkle "max is 10k blocks"
  new RegExp(String.raw`query must be smaller than size ${NUMBER}`, "i"), // harmony
  /maximum \[from, to\] blocks distance: (\d+)/i // ankr (tac)
]

/** A pattern giving an inclusive `[0x.., 0x..]` range that the provider expects to succeed. */
const suggestions: ReadonlyArray<RegExp> = [
  /try with this block range \[0x([0-9a-f]+),\s*0x([0-9a-f]+)\]/i, // infura, zksync
  /this block range should work: \[0x([0-9a-f]+),\s*0x([0-9a-f]+)\]/i // alchemy
]

/** Refusals without a usable number: the range has to shrink. */
const shrinks: ReadonlyArray<RegExp> = [
  /query returned more than \d+ results/i, // geth, infura, zkevm
  /query exceeds max results/i, // llamarpc, ankr
  /logs matched by query exceeds limit of \d+/i, // arbitrum
  /backend response too large/i, // optimism
  /response size (?:should not greater|exceed)/i, // 1rpc
  /log response size exceeded/i, // alchemy
  /block range (?:is )?too (?:large|wide|big)/i, // base, optimism, ankr
  /block range limit exceeded/i, // chainstack
  /range limit exceeded/i,
  /range exceeds (?:the )?max(?:imum)? (?:rpc )?range limit/i, // besu (-32005, --rpc-max-logs-range)
  /(?:eth_getLogs|log) range is too large/i,
  /too many (?:results|logs|blocks)/i,
  /exceed(?:s|ed)? (?:the )?max(?:imum)? (?:number of )?(?:results|logs)/i,
  /reduce (?:your |the )?(?:block )?range/i
]

/**
 * What a provider's refusal message says about the next `eth_getLogs` range, or `none` when the
 * message is not a range refusal at all.
 */
export const parseRangeHint = (message: string): Option.Option<RangeHint> => {
  for (const pattern of suggestions) {
    const m = pattern.exec(message)
    if (m !== null) {
      const blocks = Number(BigInt(`0x${m[2]}`) - BigInt(`0x${m[1]}`) + 1n)
      if (blocks >= 1) return Option.some({ _tag: "Suggested", blocks })
    }
  }
  for (const pattern of limits) {
    const m = pattern.exec(message)
    if (m !== null) {
      const blocks = amount(m[1]!)
      if (Number.isFinite(blocks) && blocks >= 1) return Option.some({ _tag: "Limit", blocks })
    }
  }
  return shrinks.some((p) => p.test(message)) ? Option.some({ _tag: "Shrink" }) : Option.none()
}

/** Messages that mean "slow down", whatever code they came with. */
const rateLimited = /rate.?limit|too many requests|request limit (?:reached|exceeded)|exceeded .*(?:quota|credits|capacity|compute units)|throughput|daily limit|per second/i

/**
 * A range past the node's own head, whatever the code (geth answers -32602): the node is behind
 * the head seen elsewhere, and another try (or URL) may work.
 */
const pastHead = /beyond (?:the )?current head|after last accepted block/i

/** `-32000` messages from a node that is behind or busy: another try (or URL) may work. */
const transient = /header not found|unknown block|missing trie node|syncing|try again|timed? ?out|busy|overloaded|unavailable|no backend|not healthy|internal error/i

/** The parts of a (viem) error chain that may carry the provider's words and status. */
interface Facts {
  readonly texts: ReadonlyArray<string>
  readonly names: ReadonlyArray<string>
  readonly codes: ReadonlyArray<number>
  readonly status: number | undefined
  readonly url: string | undefined
  readonly retryAfter: Option.Option<Duration.Duration>
}

const field = (value: unknown, key: string): unknown =>
  typeof value === "object" && value !== null && key in value ? (value as Record<string, unknown>)[key] : undefined

const facts = (error: unknown): Facts => {
  const texts: Array<string> = []
  const names: Array<string> = []
  const codes: Array<number> = []
  let status: number | undefined
  let url: string | undefined
  let retryAfter: Option.Option<Duration.Duration> = Option.none()
  let current: unknown = error
  for (let depth = 0; depth < 10 && current !== undefined && current !== null; depth++) {
    // viem's `message` repeats `shortMessage` plus the request body and URL: prefer the short one.
    const keys = typeof field(current, "shortMessage") === "string" ? ["details", "shortMessage"] : ["details", "message"]
    for (const key of keys) {
      const v = field(current, key)
      if (typeof v === "string" && v.length > 0) texts.push(scrub(v))
    }
    const data = field(current, "data")
    if (data !== undefined) {
      try {
        texts.push(scrub(typeof data === "string" ? data : JSON.stringify(data, (_, v) => typeof v === "bigint" ? String(v) : v)))
      } catch {
        // unserialisable data carries no hint
      }
    }
    const name = field(current, "name")
    if (typeof name === "string") names.push(name)
    const code = field(current, "code")
    if (typeof code === "number") codes.push(code)
    const s = field(current, "status")
    if (status === undefined && typeof s === "number") status = s
    const u = field(current, "url")
    if (url === undefined && typeof u === "string") url = redactUrl(u)
    const headers = field(current, "headers")
    if (Option.isNone(retryAfter) && headers instanceof Headers) retryAfter = parseRetryAfter(headers.get("retry-after"))
    current = field(current, "cause")
  }
  if (texts.length === 0) texts.push(scrub(String(error)))
  return { texts, names, codes, status, url, retryAfter }
}

/** A `Retry-After` header: seconds or an HTTP date. */
export const parseRetryAfter = (value: string | null, now: number = Date.now()): Option.Option<Duration.Duration> => {
  if (value === null) return Option.none()
  const seconds = Number(value)
  if (value.trim() !== "" && Number.isFinite(seconds) && seconds >= 0) return Option.some(Duration.seconds(seconds))
  const date = Date.parse(value)
  return Number.isNaN(date) ? Option.none() : Option.some(Duration.millis(Math.max(0, date - now)))
}

/** Replaces every URL in a text by its redacted form. */
const scrub = (text: string): string => text.replace(/\b(?:https?|wss?):\/\/[^\s"'<>]+/gi, redactUrl)

/** Keeps an RPC URL's host but drops its path and query, where API keys live. */
export const redactUrl = (url: string): string => {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}`
  } catch {
    return "<rpc>"
  }
}

/** What the request was, for the range parsing. */
export interface RequestInfo {
  readonly method: string
  /** For `eth_getLogs`: the blocks the request spanned. */
  readonly blocks?: number
}

/**
 * Maps whatever a viem call threw to one of our tagged errors. Order matters: range refusals come
 * first because some providers send them with the rate-limit code -32005 or as HTTP 413.
 */
export const fromViemError = (request: RequestInfo, error: unknown): RpcError => {
  const f = facts(error)
  const { method } = request
  const detail = f.texts.find((t) => !/^(?:RPC Request failed|HTTP request failed|An error occurred)\.?$/.test(t)) ??
    f.texts[0]!
  const text = f.texts.join("\n")
  const base = f.url === undefined ? { method } : { method, url: f.url }
  const has = (name: string) => f.names.includes(name)
  const code = (c: number) => f.codes.includes(c)

  if (method === "eth_getLogs") {
    const hint = parseRangeHint(text)
    const tooLarge = Option.isSome(hint) ? hint : f.status === 413 || has("ResponseBodyTooLargeError")
      ? Option.some<RangeHint>({ _tag: "Shrink" })
      : Option.none()
    if (Option.isSome(tooLarge)) {
      return new RangeTooLarge({ ...base, requested: request.blocks ?? 0, hint: tooLarge.value, detail, cause: error })
    }
  }
  if (has("TimeoutError") || f.status === 408 || has("AbortError")) {
    return new RpcTimeout({ ...base, cause: error })
  }
  if (f.status === 429 || code(429) || code(-32005) || code(-32007) || rateLimited.test(text)) {
    return new RpcRateLimited({ ...base, retryAfter: f.retryAfter, detail, cause: error })
  }
  if (f.status === 401) {
    return new RpcBadRequest({ ...base, detail: `unauthorized (HTTP 401): ${detail}`, cause: error })
  }
  if (f.status !== undefined && (f.status >= 500 || f.status === 403)) {
    return new RpcUnavailable({ ...base, detail: `HTTP ${f.status}: ${detail}`, cause: error })
  }
  // A body that is not JSON at all, cut off or a gateway's HTML page (viem wraps the SyntaxError):
  // a transport glitch, healable. A well-formed answer our Schema refuses is `RpcBadResponse`,
  // made by the client's decoding, not here.
  if (
    has("SyntaxError") ||
    /unexpected token|unexpected end of (?:json|input|data)|unterminated string|invalid json|not valid json|json\.parse/i.test(text)
  ) {
    return new RpcGarbled({ ...base, detail, cause: error })
  }
  if (pastHead.test(text)) {
    return new RpcUnavailable({ ...base, detail, cause: error })
  }
  // JSON-RPC codes: the request itself is wrong (these never heal)...
  if (code(-32700) || code(-32600) || code(-32601) || code(-32602) || code(-32004) || code(-32006)) {
    return new RpcBadRequest({ ...base, detail, cause: error })
  }
  // ...the node failed or is behind (heals)
  if (code(-32603) || code(-32002) || code(-32001) || code(4900) || code(4901) || code(-1)) {
    return new RpcUnavailable({ ...base, detail, cause: error })
  }
  if (code(-32000)) {
    return transient.test(text)
      ? new RpcUnavailable({ ...base, detail, cause: error })
      : new RpcBadRequest({ ...base, detail, cause: error })
  }
  if (has("HttpRequestError") && f.status !== undefined && f.status >= 400) {
    return new RpcBadRequest({ ...base, detail: `HTTP ${f.status}: ${detail}`, cause: error })
  }
  // Connection refused or reset, socket closed, DNS: the provider is unreachable for now.
  return new RpcUnavailable({ ...base, detail, cause: error })
}
