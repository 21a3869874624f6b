/**
 * The `fetch` that viem's `http` transport calls, made over undici's `request` instead of Node's
 * `fetch`. Node's `fetch` reads an answer through web streams and a `Response`; `request` hands
 * back Node buffers. On the catch-up chain (21 `eth_getLogs` answers, 10,000 logs), the same
 * requests cost 91 ms of CPU this way against 216 ms through `fetch`; a catch-up's main thread is
 * its bottleneck on a local node, so this is time saved (see the README's benchmarks).
 *
 * What `fetch` did and this keeps: keep-alive connections in one pool for the process (as `fetch`
 * has its global dispatcher; idle sockets close by themselves and never hold the process), gzip,
 * deflate and brotli answers decompressed, up to 3 redirects followed, the abort `signal` (an
 * interrupted call closes its connection). The answer is read whole, at most `maxBodyBytes`
 * (viem's own default, 10 MiB): a larger one fails with viem's `ResponseBodyTooLargeError`, which
 * the client takes as a range too large, as it did when viem read the body.
 */
import { STATUS_CODES } from "node:http"
import { promisify } from "node:util"
import * as zlib from "node:zlib"
import { Agent, interceptors, request } from "undici"
import { ResponseBodyTooLargeError } from "viem"

/** viem's default cap on an answer's size. */
export const maxBodyBytes = 10 * 1024 * 1024

/** The `fetchFn` of viem's `http` transport. */
export type FetchFn = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

const dispatcher = new Agent().compose(interceptors.redirect({ maxRedirections: 3 }))

/** Decoders of the encodings we accept, run on libuv's thread pool (off the event loop). */
const decoders: Record<string, (buffer: Buffer, options: zlib.ZlibOptions) => Promise<Buffer>> = {
  gzip: promisify(zlib.gunzip),
  deflate: promisify(zlib.inflate),
  br: promisify(zlib.brotliDecompress)
}
const acceptEncoding = Object.keys(decoders).join(", ")

/** A `fetchFn` whose answers may be at most `cap` bytes (decompressed). */
export const make = (cap: number = maxBodyBytes): FetchFn => async (input, init = {}) => {
  const url = input instanceof Request ? input.url : input
  const headers = new Headers(init.headers)
  if (!headers.has("accept-encoding")) headers.set("accept-encoding", acceptEncoding)
  const answer = await request(url, {
    dispatcher,
    method: (init.method ?? "GET") as "POST",
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
    statusText: STATUS_CODES[answer.statusCode] ?? "",
    headers: responseHeaders,
    body: null,
    text: () => Promise.resolve(text)
  } as unknown as Response
}

/** `body` decoded as its `Content-Encoding` says (as is when it names none we know), at most `cap` bytes. */
const decoded = async (body: Buffer, encoding: string | Array<string> | undefined, cap: number): Promise<Buffer> => {
  const decode = typeof encoding === "string" ? decoders[encoding.trim().toLowerCase()] : undefined
  if (decode === undefined) return body
  try {
    return await decode(body, { maxOutputLength: cap })
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new ResponseBodyTooLargeError({ maxSize: cap, size: cap + 1 })
    }
    throw error
  }
}

/** The `fetchFn` of the client's `http` transports, with viem's size cap. */
export const fetchFn: FetchFn = make()
