/**
 * The client's http transport (undici's `request`, `JsonRpcHttp.ts`) against real servers on
 * loopback: it asks and answers as viem's `http` transport over `fetch` did (compressed answers,
 * redirects, credentials, the size cap, the timeout, aborts), and it fails with the same errors,
 * so the client maps every failure as before (checked against viem's own transport).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { HttpRequestError, http, ResponseBodyTooLargeError, RpcRequestError, TimeoutError } from "viem"
import { EthereumClient } from "../../src/ethereum/EthereumClient.js"
import * as JsonRpcHttp from "../../src/ethereum/JsonRpcHttp.js"
import { fromViemError } from "../../src/ethereum/ProviderErrors.js"

interface Seen {
  readonly method: string | undefined
  readonly url: string | undefined
  readonly headers: IncomingMessage["headers"]
  readonly body: string
}

/** A server on a free loopback port answering with `handle`, closed by the scope. */
const serve = (handle: (seen: Seen, res: ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly seen: Array<Seen>; readonly close: () => void }>((resume) => {
      const seen: Array<Seen> = []
      const s = createServer((req, res) => {
        let body = ""
        req.on("data", (c) => (body += c))
        req.on("end", () => {
          const one = { method: req.method, url: req.url, headers: req.headers, body }
          seen.push(one)
          handle(one, res)
        })
      })
      s.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
          seen,
          close: () => s.closeAllConnections()
        })))
      // `closeAllConnections` first: keep-alive sockets of the shared pool would hold `close`.
    }),
    (s) => Effect.sync(() => s.close())
  )

/** One call through the transport's own `request` (before viem's client names errors by code). */
const call = (
  url: string,
  method: string,
  options: Partial<JsonRpcHttp.Options> & { readonly signal?: AbortSignal } = {}
) => {
  const { signal, ...rest } = options
  const request = JsonRpcHttp.transport(url, { timeout: 10_000, ...rest })({}).config.request
  return request({ method, params: [] } as never, signal ? { signal } : undefined) as Promise<unknown>
}

const outcome = (promise: Promise<unknown>) =>
  Effect.promise(() => promise.then((result) => ({ result }), (error: unknown) => ({ error })))

const answer = JSON.stringify({ jsonrpc: "2.0", id: 1, result: "0x" + "ab".repeat(4_000) })
const result = "0x" + "ab".repeat(4_000)

describe("JsonRpcHttp (the client's http transport over undici)", () => {
  it.scopedLive("posts a JSON-RPC body to the URL's path and returns `result`; asks for compressed answers", () =>
    Effect.gen(function*() {
      const s = yield* serve((_, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(answer)
      })
      expect(yield* outcome(call(`${s.url}/v3/key`, "eth_chainId"))).toEqual({ result })
      expect(s.seen[0]).toMatchObject({ method: "POST", url: "/v3/key" })
      expect(JSON.parse(s.seen[0]!.body)).toMatchObject({ jsonrpc: "2.0", method: "eth_chainId", params: [] })
      expect(s.seen[0]!.headers).toMatchObject({
        "content-type": "application/json",
        "accept-encoding": "gzip, deflate, br",
        // As fetch sent them: some CDNs refuse a request without a user agent.
        accept: "*/*",
        "user-agent": "node"
      })
    }))

  it.scopedLive("sends the URL's credentials as basic authentication, and names the URL without them", () =>
    Effect.gen(function*() {
      const s = yield* serve((seen, res) => {
        if (seen.url === "/rpc") {
          res.writeHead(500, "Broken")
          res.end()
        } else {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ jsonrpc: "2.0", id: 1, error: { code: -32000, message: "no" } }))
        }
      })
      const withKey = s.url.replace("http://", "http://us%40er:s3cret@")
      const { error } = (yield* outcome(call(`${withKey}/rpc`, "eth_chainId"))) as { error: HttpRequestError }
      expect(s.seen[0]!.url).toBe("/rpc")
      expect(s.seen[0]!.headers.authorization).toBe(`Basic ${btoa("us@er:s3cret")}`)
      expect(error).toBeInstanceOf(HttpRequestError)
      expect(error).toMatchObject({ status: 500, details: "Broken", url: `${s.url}/rpc` })
      expect(error.message).not.toContain("s3cret")
      const refused = (yield* outcome(call(`${withKey}/ok`, "eth_chainId"))) as { error: RpcRequestError }
      expect(refused.error).toBeInstanceOf(RpcRequestError)
      expect(refused.error.url).toBe(`${s.url}/ok`)
      // A password beyond Latin-1 goes as UTF-8; a `%` that starts no escape, as typed. Neither
      // leaves the request without its credentials, nor stays in the URL.
      const euro = (yield* outcome(call(`${s.url.replace("http://", "http://user:%E2%82%AC@")}/ok`, "eth_chainId"))) as {
        error: RpcRequestError
      }
      expect(s.seen[2]!.headers.authorization).toBe(`Basic ${Buffer.from("user:€", "utf8").toString("base64")}`)
      expect(euro.error.url).toBe(`${s.url}/ok`)
      const percent = (yield* outcome(call(`${s.url.replace("http://", "http://user:p%ss@")}/ok`, "eth_chainId"))) as {
        error: RpcRequestError
      }
      expect(s.seen[3]!.headers.authorization).toBe(`Basic ${btoa("user:p%ss")}`)
      expect(percent.error.url).toBe(`${s.url}/ok`)
    }))

  it.scopedLive("a non-2xx answer: its JSON-RPC error, or its text or status text, with the status and headers", () =>
    Effect.gen(function*() {
      const s = yield* serve((seen, res) => {
        const kind = seen.url!.slice(1)
        if (kind === "rpc") {
          res.writeHead(429, { "content-type": "application/json", "retry-after": "7" })
          res.end(JSON.stringify({ jsonrpc: "2.0", id: 1, error: { code: -32005, message: "slow down" } }))
        } else if (kind === "text") {
          res.writeHead(503, { "content-type": "text/plain" })
          res.end("no backend is healthy")
        } else {
          res.writeHead(400, "Rate limited", { "content-type": "text/plain" })
          res.end()
        }
      })
      const rpc = (yield* outcome(call(`${s.url}/rpc`, "eth_chainId"))) as { error: RpcRequestError }
      expect(rpc.error).toBeInstanceOf(RpcRequestError)
      expect(rpc.error).toMatchObject({ code: -32005, details: "slow down", status: 429 })
      expect(rpc.error.headers?.get("retry-after")).toBe("7")
      const text = (yield* outcome(call(`${s.url}/text`, "eth_chainId"))) as { error: HttpRequestError }
      expect(text.error).toBeInstanceOf(HttpRequestError)
      expect(text.error).toMatchObject({ status: 503, details: `"no backend is healthy"` })
      const empty = (yield* outcome(call(`${s.url}/empty`, "eth_chainId"))) as { error: HttpRequestError }
      expect(empty.error).toMatchObject({ status: 400, details: "Rate limited" })
    }))

  it.scopedLive("a JSON-RPC error in a 2xx answer is an RpcRequestError; a leading byte order mark is dropped", () =>
    Effect.gen(function*() {
      const s = yield* serve((_, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(`\uFEFF${JSON.stringify({ jsonrpc: "2.0", id: 1, error: { code: -32000, message: "header not found" } })}`)
      })
      const { error } = (yield* outcome(call(s.url, "eth_getBlockByNumber"))) as { error: RpcRequestError }
      expect(error).toBeInstanceOf(RpcRequestError)
      expect(error).toMatchObject({ code: -32000, details: "header not found" })
    }))

  it.scopedLive("decodes gzip, deflate (zlib or raw) and brotli answers, several codings in turn, a cut-off trailer", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [label: string, encoding: string, encode: (b: Buffer) => Buffer]> = [
        ["gzip", "gzip", zlib.gzipSync],
        ["x-gzip", "x-gzip", zlib.gzipSync],
        ["deflate (zlib)", "deflate", zlib.deflateSync],
        ["deflate (raw)", "deflate", zlib.deflateRawSync],
        ["brotli", "br", zlib.brotliCompressSync],
        ["gzip then brotli", "gzip, br", (b) => zlib.brotliCompressSync(zlib.gzipSync(b))],
        ["gzip without its trailer", "GZIP", (b) => zlib.gzipSync(b).subarray(0, -8)]
      ]
      for (const [label, encoding, encode] of cases) {
        const s = yield* serve((_, res) => {
          res.writeHead(200, { "content-type": "application/json", "content-encoding": encoding })
          res.end(encode(Buffer.from(answer)))
        })
        expect(yield* outcome(call(s.url, "eth_chainId")), label).toEqual({ result })
      }
    }))

  it.scopedLive("through the client, an empty compressed error answer keeps its status and headers", () =>
    Effect.gen(function*() {
      const s = yield* serve((_, res) => {
        res.writeHead(429, { "content-encoding": "gzip", "content-length": "0", "retry-after": "7" })
        res.end()
      })
      const client = yield* Effect.provide(EthereumClient, EthereumClient.layer({ urls: [s.url] }))
      const error = yield* Effect.flip(client.chainId)
      expect(error._tag).toBe("RpcRateLimited")
      expect(error).toMatchObject({ retryAfter: Option.some(Duration.seconds(7)) })
    }))

  it.scopedLive("follows a 307 redirect with the same POST", () =>
    Effect.gen(function*() {
      const target = yield* serve((_, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(answer)
      })
      const s = yield* serve((_, res) => {
        res.writeHead(307, { location: `${target.url}/moved` })
        res.end()
      })
      expect(yield* outcome(call(s.url, "eth_blockNumber"))).toEqual({ result })
      expect(target.seen).toMatchObject([{ method: "POST", url: "/moved" }])
      expect(JSON.parse(target.seen[0]!.body)).toMatchObject({ method: "eth_blockNumber" })
    }))

  it.scopedLive("an answer over the cap (by its length, decompressed, or chunked) fails with viem's ResponseBodyTooLargeError", () =>
    Effect.gen(function*() {
      const big = JSON.stringify({ jsonrpc: "2.0", id: 1, result: "x".repeat(5_000) })
      const plain = yield* serve((_, res) => res.end(big))
      const gzipped = yield* serve((_, res) => {
        res.writeHead(200, { "content-encoding": "gzip" })
        res.end(zlib.gzipSync(big))
      })
      const chunked = yield* serve((_, res) => {
        res.write(big.slice(0, 100))
        res.end(big.slice(100))
      })
      for (const s of [plain, gzipped, chunked]) {
        const { error } = (yield* outcome(call(s.url, "eth_getLogs", { maxBodyBytes: 4_096 }))) as { error: unknown }
        expect(error).toBeInstanceOf(ResponseBodyTooLargeError)
      }
      // A body left unread is discarded without an unhandled 'error' event (it would reach the process).
      yield* Effect.sleep("50 millis")
      // At the cap, it passes.
      expect(yield* outcome(call(plain.url, "eth_getLogs", { maxBodyBytes: big.length }))).toEqual({
        result: "x".repeat(5_000)
      })
    }))

  it.scopedLive("an aborted request rejects with the abort and closes its connection", () =>
    Effect.gen(function*() {
      const closed: Array<boolean> = []
      const s = yield* serve((_, res) => res.on("close", () => closed.push(true)))
      const controller = new AbortController()
      const pending = outcome(call(s.url, "eth_chainId", { signal: controller.signal }))
      const fiber = yield* Effect.fork(pending)
      while (s.seen.length === 0) yield* Effect.sleep("5 millis")
      controller.abort()
      const { error } = (yield* fiber.await.pipe(Effect.flatten)) as { error: Error }
      expect(error.name).toBe("AbortError")
      for (let i = 0; i < 200 && closed.length === 0; i++) yield* Effect.sleep("5 millis")
      expect(closed).toEqual([true])
    }))

  it.scopedLive("no answer within the timeout is viem's TimeoutError, and the connection is closed", () =>
    Effect.gen(function*() {
      const closed: Array<boolean> = []
      const s = yield* serve((_, res) => res.on("close", () => closed.push(true)))
      const { error } = (yield* outcome(call(s.url, "eth_chainId", { timeout: 50 }))) as { error: unknown }
      expect(error).toBeInstanceOf(TimeoutError)
      for (let i = 0; i < 200 && closed.length === 0; i++) yield* Effect.sleep("5 millis")
      expect(closed).toEqual([true])
    }))

  it.scopedLive("an answer stalled half-way past the timeout is viem's TimeoutError, by length or chunked", () =>
    Effect.gen(function*() {
      const s = yield* serve((seen, res) => {
        const half = answer.slice(0, answer.length / 2)
        if (seen.url === "/length") {
          res.writeHead(200, { "content-type": "application/json", "content-length": String(answer.length) })
        } else {
          res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" })
        }
        res.write(seen.url === "/length" ? half : zlib.gzipSync(answer).subarray(0, 40))
      })
      for (const path of ["/length", "/chunked"]) {
        const { error } = (yield* outcome(call(`${s.url}${path}`, "eth_chainId", { timeout: 100 }))) as { error: unknown }
        expect(error).toBeInstanceOf(TimeoutError)
      }
      s.close()
    }))

  it.scopedLive("every failure maps to the same error as through viem's own http transport", () =>
    Effect.gen(function*() {
      /** Each path answers one way (the request id is echoed for JSON-RPC answers). */
      const answers: Record<string, (id: number, res: ServerResponse) => void> = {
        "rpc-limit": (id, res) => {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32005, message: "limit exceeded" } }))
        },
        "rpc-range": (id, res) => {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32602, message: "query returned more than 10000 results" } }))
        },
        "rpc-internal": (id, res) => {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32603, message: "boom", data: "0x01" } }))
        },
        "rpc-invalid": (id, res) => {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32000, message: "invalid argument 0" } }))
        },
        "status-429": (_, res) => {
          res.writeHead(429, { "retry-after": "3" })
          res.end("Too Many Requests")
        },
        "status-503-rpc": (id, res) => {
          res.writeHead(503, { "content-type": "application/json" })
          res.end(JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32603, message: "upstream down" } }))
        },
        "status-413": (_, res) => {
          res.writeHead(413)
          res.end()
        },
        "status-401": (_, res) => {
          res.writeHead(401, { "content-type": "application/json" })
          res.end(JSON.stringify({ message: "invalid key" }))
        },
        "html-502": (_, res) => {
          res.writeHead(502, { "content-type": "text/html" })
          res.end("<html>Bad Gateway</html>")
        },
        "garbled-200": (_, res) => {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(`{"jsonrpc":"2.0","id":1,"result":`)
        },
        "null-200": (_, res) => {
          res.writeHead(200, { "content-type": "application/json" })
          res.end("null")
        },
        "text-200": (_, res) => {
          res.writeHead(200, { "content-type": "text/plain" })
          res.end("not json")
        }
      }
      const s = yield* serve((seen, res) => {
        const { id } = JSON.parse(seen.body) as { id: number }
        answers[seen.url!.slice(1)]!(id, res)
      })
      for (const path of Object.keys(answers)) {
        for (const method of ["eth_chainId", "eth_getLogs"]) {
          const through = (t: typeof http) =>
            Effect.promise(() =>
              t(`${s.url}/${path}`, { retryCount: 0, timeout: 5_000 })({}).request({ method, params: [] } as never).then(
                () => "answered",
                (error: unknown) => fromViemError({ method, blocks: 100 }, error)
              )
            )
          const ours = yield* through(((url: string, o: { timeout: number }) => JsonRpcHttp.transport(url, o)) as never)
          const viems = yield* through(http)
          expect(ours, `${path} ${method}`).not.toBe("answered")
          const shape = (e: unknown) => {
            const { _tag, detail, hint, retryAfter } = e as Record<string, unknown>
            return { _tag, detail, hint, retryAfter }
          }
          expect(shape(ours), `${path} ${method}`).toEqual(shape(viems))
        }
      }
    }))

  it.scopedLive("through the client, an eth_getLogs answer over viem's 10 MiB cap is a range to shrink", () =>
    Effect.gen(function*() {
      const s = yield* serve((seen, res) => {
        const { id } = JSON.parse(seen.body) as { id: number }
        res.writeHead(200, { "content-type": "application/json" })
        res.end(`{"jsonrpc":"2.0","id":${id},"result":["${"0".repeat(JsonRpcHttp.maxBodyBytes)}"]}`)
      })
      const client = yield* Effect.provide(EthereumClient, EthereumClient.layer({ urls: [s.url], timeout: Duration.seconds(10) }))
      const error = yield* Effect.flip(client.getLogs({ address: "0x00000000000000000000000000000000000000c0", fromBlock: 1n, toBlock: 100n }))
      expect(error).toMatchObject({ _tag: "RangeTooLarge", requested: 100, hint: { _tag: "Shrink" } })
    }))
})
