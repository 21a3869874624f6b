/**
 * The `fetch` that viem's `http` transport calls, made over undici's `request` instead of Node's
 * `fetch`. Node's `fetch` reads an answer through web streams and a `Response`; `request` hands
 * back Node buffers. On the catch-up chain (21 `eth_getLogs` answers, 10,000 logs), the same
 * requests cost 91 ms of CPU this way against 216 ms through `fetch`; a catch-up's main thread is
 * its bottleneck on a local node, so this is time saved (see the README's benchmarks).
 *
 * What `fetch` did and this keeps: keep-alive connections in one pool for the process (as `fetch`
 * has its global dispatcher; idle sockets close by themselves and never hold the process); the
 * `accept`, `user-agent` and `accept-encoding` headers it sent; gzip, deflate (zlib or raw) and
 * brotli answers decoded leniently (a cut-off trailer or an empty body is no error), several
 * codings undone in turn; the server's status text; a leading BOM dropped; up to 3 redirects
 * followed; the abort `signal` (an interrupted call closes its connection). The answer is read
 * whole, at most `maxBodyBytes` (viem's own default, 10 MiB): a larger one fails with viem's
 * `ResponseBodyTooLargeError`, which the client takes as a range too large, as it did when viem
 * read the body.
 */
import { promisify } from "node:util"
import * as zlib from "node:zlib"
import { Agent, type Dispatcher, interceptors, request } from "undici"
import { ResponseBodyTooLargeError } from "viem"

/** viem's default cap on an answer's size. */
export const maxBodyBytes = 10 * 1024 * 1024

/** The `fetchFn` of viem's `http` transport. */
export type FetchFn = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

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

/** A `fetchFn` whose answers may be at most `cap` bytes (decompressed). */
export const make = (cap: number = maxBodyBytes): FetchFn => async (input, init = {}) => {
  const url = input instanceof Request ? input.url : input
  const headers = new Headers(init.headers)
  // What `fetch` sent when the caller did not say (some CDNs refuse a request without a user agent).
  if (!headers.has("accept")) headers.set("accept", "*/*")
  if (!headers.has("user-agent")) headers.set("user-agent", "node")
  if (!headers.has("accept-encoding")) headers.set("accept-encoding", "gzip, deflate, br")
  const answer = await request(url, {
    dispatcher,
    method: (init.method ?? "GET") as Dispatcher.HttpMethod,
    headers: Object.fromEntries(headers),
    body: (init.body ?? null) as string | null,
    ...(init.signal ? { signal: init.signal } : {})
  })
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
  const text = (await decoded(Buffer.concat(chunks, size), answer.headers["content-encoding"], cap)).toString("utf8")
  const responseHeaders = new Headers()
  for (const [name, value] of Object.entries(answer.headers)) {
    if (Array.isArray(value)) for (const v of value) responseHeaders.append(name, v)
    else if (value !== undefined) responseHeaders.set(name, value)
  }
  // What viem reads of a `Response` when its size cap is off: a `null` body makes it call `text`.
  return {
    ok: answer.statusCode >= 200 && answer.statusCode < 300,
    status: answer.statusCode,
    // viem makes it the error's detail when the body is empty: the server's words, as `fetch` gave.
    statusText: answer.statusText,
    headers: responseHeaders,
    body: null,
    // `Response.text()` drops a byte order mark; `JSON.parse` would refuse it.
    text: () => Promise.resolve(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text)
  } as unknown as Response
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

/** The `fetchFn` of the client's `http` transports, with viem's size cap. */
export const fetchFn: FetchFn = make()
