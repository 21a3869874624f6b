/**
 * JSON-RPC over http(s) as a viem transport, made over undici's `request`: what viem's `http`
 * transport does for one call, without its layers (a `Headers` built three times, a timeout race,
 * a batch scheduler and a `Response` for every call). On the catch-up chain's 68 calls (17
 * `eth_getLogs`, 51 `eth_getBlockByNumber`, six ranges at a time; 40 runs each in rotating
 * order, medians of the main thread's busy time): 166 ms through viem's `http` over undici, 145
 * through this, 102 for bare undici calls with no client at all. The whole catch-up: 459 against
 * 435 ms (20 runs each, alternating).
 *
 * It fails as viem's `http` transport does, with viem's own error classes, so the client's error
 * mapping (`ProviderErrors.fromViemError`) and viem's `fallback` read them as before:
 * - a JSON-RPC `error` in a 2xx answer: `RpcRequestError` (viem's client then names it by code);
 * - a non-2xx answer: `RpcRequestError` when its body is a JSON-RPC error, else
 *   `HttpRequestError` with the body's `error` (or the status text) as details; both carry the
 *   status and the headers (`Retry-After`);
 * - no answer within `timeout` (headers and body): `TimeoutError` (an answer that had fully come
 *   keeps its own outcome); aborted by the caller: the abort's reason (an `AbortError`);
 * - an answer over `maxBodyBytes`, plain or decompressed: `ResponseBodyTooLargeError`;
 * - anything else (a refused connection, a body that is not JSON where JSON was promised):
 *   `HttpRequestError` with it as the cause.
 *
 * What `fetch` did for viem and this keeps: keep-alive connections in one pool for the process
 * (idle sockets close by themselves and never hold the process); the `accept`, `user-agent` and
 * `accept-encoding` headers it sent; gzip, deflate (zlib or raw) and brotli answers decoded
 * leniently (a cut-off trailer or an empty body is no error), several codings undone in turn; a
 * leading BOM dropped; up to 3 redirects followed; credentials in the URL sent as basic
 * authentication, as viem does (and never in an error's URL), in UTF-8 where viem's `btoa` would
 * throw. Parameters are sent with `JSON.stringify`: the client's are hex strings, booleans and
 * objects of them.
 */
import { promisify } from "node:util"
import * as zlib from "node:zlib"
import { Agent, type Dispatcher, interceptors, request } from "undici"
import {
  createTransport,
  type EIP1193RequestFn,
  HttpRequestError,
  ResponseBodyTooLargeError,
  RpcRequestError,
  stringify,
  TimeoutError,
  type Transport
} from "viem"

/** viem's default cap on an answer's size. */
export const maxBodyBytes = 10 * 1024 * 1024

/** One connection pool for the process, as `fetch` has its global one; redirects: 3 (`fetch`: 20). */
const dispatcher = new Agent().compose(interceptors.redirect({ maxRedirections: 3 }))

const gunzip = promisify(zlib.gunzip)
const inflate = promisify(zlib.inflate)
const inflateRaw = promisify(zlib.inflateRaw)
const brotli = promisify(zlib.brotliDecompress)
/** As `fetch` decodes: what arrived, even when the stream's end is missing. */
const lenient = { finishFlush: zlib.constants.Z_SYNC_FLUSH }

/** A zlib header (RFC 1950): deflate as the RFC says; servers also send raw deflate. */
const zlibWrapped = (b: Buffer) => b.length >= 2 && (b[0]! & 0x0f) === 8 && ((b[0]! << 8) | b[1]!) % 31 === 0

type Decoder = (body: Buffer, maxOutputLength: number) => Promise<Buffer>
const gzip: Decoder = (b, maxOutputLength) => gunzip(b, { ...lenient, maxOutputLength })

/** Decoders of the codings `fetch` undid, run on libuv's thread pool (off the event loop). */
const decoders: Record<string, Decoder> = {
  gzip,
  "x-gzip": gzip,
  deflate: (b, maxOutputLength) => (zlibWrapped(b) ? inflate : inflateRaw)(b, { ...lenient, maxOutputLength }),
  br: (b, maxOutputLength) => brotli(b, { finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH, maxOutputLength })
}

/**
 * `body` with its codings undone, last applied first (`gzip, br` is brotli, then gzip), at most
 * `cap` bytes; as is from the first coding we do not know, and when empty.
 */
const decoded = async (body: Buffer, encoding: string | Array<string> | undefined, cap: number): Promise<Buffer> => {
  if (body.length === 0 || encoding === undefined) return body
  const codings = (Array.isArray(encoding) ? encoding.join(",") : encoding).split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity")
  try {
    for (const coding of codings.reverse()) {
      const decode = decoders[coding]
      if (decode === undefined) return body
      body = await decode(body, cap)
    }
    return body
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new ResponseBodyTooLargeError({ maxSize: cap, size: cap + 1 })
    }
    throw error
  }
}

type Answer = Dispatcher.ResponseData

/**
 * The answer's body as text, decoded, at most `cap` bytes; a leading BOM dropped (as `Response.text()`).
 * An answer with no coding and a length within the cap (a node's usual answer) is read by undici's
 * own `text()`: on the catch-up chain's calls, 145 ms of the main thread against 155 with the loop.
 */
const text = async (answer: Answer, cap: number): Promise<string> => {
  const length = Number(answer.headers["content-length"] ?? Number.NaN)
  if (length > cap) {
    // Destroyed unread, undici's body emits an abort 'error'; with no listener it would reach the process.
    answer.body.once("error", () => {})
    answer.body.destroy()
    throw new ResponseBodyTooLargeError({ maxSize: cap, size: length })
  }
  if (answer.headers["content-encoding"] === undefined && length >= 0) return answer.body.text()
  const chunks: Array<Buffer> = []
  let size = 0
  for await (const chunk of answer.body as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > cap) {
      answer.body.destroy()
      throw new ResponseBodyTooLargeError({ maxSize: cap, size })
    }
    chunks.push(chunk)
  }
  const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)
  const body = (await decoded(raw, answer.headers["content-encoding"], cap)).toString("utf8")
  return body.charCodeAt(0) === 0xfeff ? body.slice(1) : body
}

/** The answer's headers as a `Headers`, for an error (its `Retry-After`). */
const headersOf = (answer: Answer): Headers => {
  const headers = new Headers()
  for (const [name, value] of Object.entries(answer.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v)
    else if (value !== undefined) headers.set(name, value)
  }
  return headers
}

const isRpcError = (data: unknown): data is { readonly error: { readonly code: number; readonly message: string } } => {
  const error = (data as { error?: { code?: unknown; message?: unknown } } | null | undefined)?.error
  return typeof error?.code === "number" && typeof error.message === "string"
}

const isAbortError = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "name" in error && error.name === "AbortError"

/** What a caller's aborted signal rejects with (viem's `getAbortError`). */
const abortError = (signal: AbortSignal): unknown =>
  signal.reason ?? new DOMException("This operation was aborted", "AbortError")

/** The abort reason of a call that ran out of time. */
const timedOut = new Error("timed out")

/** How to reach one endpoint. */
export interface Options {
  /** A call (its answer read whole) not done within this many milliseconds fails with `TimeoutError`; 0: never. */
  readonly timeout: number
  /** The largest answer accepted, in bytes, once decompressed (default `maxBodyBytes`). */
  readonly maxBodyBytes?: number
}

/** One endpoint: where requests go, with what headers. Made once per URL. */
interface Endpoint {
  /** The URL requests go to, and errors name: credentials removed. */
  readonly url: string
  readonly headers: Record<string, string>
  readonly timeout: number
  readonly cap: number
}

/** A URL's user or password as typed: its escapes decoded, or the text itself if one is malformed. */
const percentDecoded = (part: string): string => {
  try {
    return decodeURIComponent(part)
  } catch {
    return part
  }
}

const endpoint = (given: string, options: Options): Endpoint => {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    // What `fetch` sent when the caller did not say (some CDNs refuse a request without a user agent).
    accept: "*/*",
    "user-agent": "node",
    "accept-encoding": "gzip, deflate, br"
  }
  let url = given
  try {
    const parsed = new URL(given)
    // As viem's `parseUrl`: basic authentication from the URL's credentials, which leave the URL.
    // Encoded as UTF-8 (RFC 7617), and a `%` that starts no escape taken as it is: viem's `btoa`
    // of the decoded text throws on both, and the request would go out without them.
    if (parsed.username) {
      const credentials = `${percentDecoded(parsed.username)}:${percentDecoded(parsed.password)}`
      headers.authorization = `Basic ${Buffer.from(credentials, "utf8").toString("base64")}`
      parsed.username = ""
      parsed.password = ""
    }
    url = parsed.toString()
  } catch {
    // Left as given: undici refuses it, and the call fails with an `HttpRequestError`.
  }
  return { url, headers, timeout: options.timeout, cap: options.maxBodyBytes ?? maxBodyBytes }
}

let nextId = 0

/** The answer's JSON (viem's `getHttpRpcClient` request): the parsed body, or the error viem's would throw. */
const post = async (to: Endpoint, body: { readonly method: string; readonly params: unknown }, signal?: AbortSignal) => {
  if (signal?.aborted) throw abortError(signal)
  const controller = new AbortController()
  const forward = () => controller.abort(signal!.reason)
  signal?.addEventListener("abort", forward, { once: true })
  const timer = to.timeout > 0 ? setTimeout(() => controller.abort(timedOut), to.timeout) : undefined
  try {
    const answer = await request(to.url, {
      dispatcher,
      method: "POST",
      headers: to.headers,
      body: JSON.stringify({ jsonrpc: "2.0", id: ++nextId, ...body }),
      signal: controller.signal
    })
    const ok = answer.statusCode >= 200 && answer.statusCode < 300
    const answered = await text(answer, to.cap)
    let data: unknown
    if (String(answer.headers["content-type"] ?? "").startsWith("application/json")) {
      data = JSON.parse(answered)
    } else {
      try {
        data = JSON.parse(answered || "{}")
      } catch (error) {
        if (ok) throw error
        data = { error: answered }
      }
    }
    if (!ok) {
      const headers = headersOf(answer)
      if (isRpcError(data)) {
        throw new RpcRequestError({ body, error: data.error, headers, status: answer.statusCode, url: to.url })
      }
      throw new HttpRequestError({
        body,
        details: stringify((data as { error?: unknown }).error) || answer.statusText,
        headers,
        status: answer.statusCode,
        url: to.url
      })
    }
    return data
  } catch (error) {
    if (signal?.aborted) throw abortError(signal)
    // The timer's own abort only, as viem checks: a timer that fires after the whole answer came
    // (while it was decompressed) must not turn its error (a 429, say) into a timeout.
    if (error === timedOut) throw new TimeoutError({ body, url: to.url })
    if (
      isAbortError(error) || error instanceof HttpRequestError || error instanceof ResponseBodyTooLargeError ||
      error instanceof RpcRequestError || error instanceof TimeoutError
    ) throw error
    throw new HttpRequestError({ body, cause: error as Error, url: to.url })
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener("abort", forward)
  }
}

/**
 * One JSON-RPC call to `to`: its `result`, or the error viem's http transport would throw (see
 * the module comment). `signal` aborts it and closes its connection.
 */
const call = async (to: Endpoint, method: string, params: unknown, signal?: AbortSignal): Promise<unknown> => {
  const body = { method, params }
  const answer = (await post(to, body, signal)) as { error?: unknown; result?: unknown }
  // Read as viem's transport reads it: a 2xx answer of `null` fails here with the same `TypeError`,
  // past `post`'s mapping.
  const error = answer.error
  const result = answer.result
  if (error) throw new RpcRequestError({ body, error: error as { code: number; message: string }, url: to.url })
  return result
}

/** The transport of one http(s) `url`, for viem's `createPublicClient` and `fallback`; viem never retries it. */
export const transport = (url: string, options: Options): Transport => {
  const to = endpoint(url, options)
  return () =>
    createTransport({
      key: "http",
      name: "HTTP JSON-RPC",
      type: "http",
      retryCount: 0,
      timeout: options.timeout,
      // viem types `request` by the method; the client decodes every answer with its own `Schema`.
      request: (({ method, params }, requestOptions) =>
        call(to, method, params, requestOptions?.signal)) as EIP1193RequestFn
    }, { url: to.url })
}
