/**
 * The `fetchFn` of the client's http transports (undici's `request`) against real servers on
 * loopback: what `fetch` did for viem, it still does (compressed answers, redirects, the size cap,
 * aborts), and through the client a too large answer is still a range to shrink.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { ResponseBodyTooLargeError } from "viem"
import { EthereumClient } from "../../src/ethereum/EthereumClient.js"
import * as HttpFetch from "../../src/ethereum/HttpFetch.js"

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

const post = (url: string, body: string, fetchFn: HttpFetch.FetchFn = HttpFetch.fetchFn, signal?: AbortSignal) =>
  Effect.promise(async () => {
    const res = await fetchFn(url, { method: "POST", headers: { "content-type": "application/json" }, body, ...(signal ? { signal } : {}) })
    return { status: res.status, ok: res.ok, statusText: res.statusText, type: res.headers.get("content-type"), text: await res.text() }
  })

const answer = JSON.stringify({ jsonrpc: "2.0", id: 1, result: "0x" + "ab".repeat(4_000) })

describe("HttpFetch (undici's request as viem's fetchFn)", () => {
  it.scopedLive("posts the body and returns status, headers and text; asks for compressed answers", () =>
    Effect.gen(function*() {
      const s = yield* serve((_, res) => {
        res.writeHead(503, { "content-type": "application/json", "retry-after": "7" })
        res.end(answer)
      })
      const got = yield* post(`${s.url}/v3/key`, `{"method":"eth_chainId"}`)
      expect(got).toEqual({ status: 503, ok: false, statusText: "Service Unavailable", type: "application/json", text: answer })
      expect(s.seen[0]).toMatchObject({ method: "POST", url: "/v3/key", body: `{"method":"eth_chainId"}` })
      expect(s.seen[0]!.headers).toMatchObject({
        "content-type": "application/json",
        "accept-encoding": "gzip, deflate, br",
        // As fetch sent them: some CDNs refuse a request without a user agent.
        accept: "*/*",
        "user-agent": "node"
      })
    }))

  it.scopedLive("gives the server's status text and drops a leading byte order mark, as a Response does", () =>
    Effect.gen(function*() {
      const s = yield* serve((_, res) => {
        res.writeHead(400, "Rate limited", { "content-type": "application/json" })
        res.end(`\uFEFF${answer}`)
      })
      const got = yield* post(s.url, "{}")
      expect(got).toMatchObject({ status: 400, statusText: "Rate limited", text: answer })
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
        const got = yield* post(s.url, "{}")
        expect(got.text, label).toBe(answer)
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
      const got = yield* post(s.url, `{"method":"eth_blockNumber"}`)
      expect(got.text).toBe(answer)
      expect(target.seen).toMatchObject([{ method: "POST", url: "/moved", body: `{"method":"eth_blockNumber"}` }])
    }))

  it.scopedLive("an answer over the cap, plain or once decompressed, fails with viem's ResponseBodyTooLargeError", () =>
    Effect.gen(function*() {
      const big = "x".repeat(5_000)
      const plain = yield* serve((_, res) => res.end(big))
      const gzipped = yield* serve((_, res) => {
        res.writeHead(200, { "content-encoding": "gzip" })
        res.end(zlib.gzipSync(big))
      })
      const capped = HttpFetch.make(4_096)
      for (const s of [plain, gzipped]) {
        const error = yield* Effect.flip(Effect.tryPromise(() => capped(s.url, { method: "POST", body: "{}" })))
        expect(error.cause).toBeInstanceOf(ResponseBodyTooLargeError)
      }
      // At the cap, it passes.
      expect((yield* post(plain.url, "{}", HttpFetch.make(5_000))).text).toBe(big)
    }))

  it.scopedLive("an aborted request closes its connection", () =>
    Effect.gen(function*() {
      const closed: Array<boolean> = []
      const s = yield* serve((_, res) => res.on("close", () => closed.push(true)))
      const controller = new AbortController()
      const pending = HttpFetch.fetchFn(s.url, { method: "POST", body: "{}", signal: controller.signal })
      while (s.seen.length === 0) yield* Effect.sleep("5 millis")
      controller.abort()
      const outcome = yield* Effect.promise(() => pending.then(() => "answered", (e: Error) => e.name))
      expect(outcome).toBe("AbortError")
      for (let i = 0; i < 200 && closed.length === 0; i++) yield* Effect.sleep("5 millis")
      expect(closed).toEqual([true])
    }))

  it.scopedLive("through the client, an eth_getLogs answer over viem's 10 MiB cap is a range to shrink", () =>
    Effect.gen(function*() {
      const s = yield* serve((seen, res) => {
        const { id } = JSON.parse(seen.body) as { id: number }
        res.writeHead(200, { "content-type": "application/json" })
        res.end(`{"jsonrpc":"2.0","id":${id},"result":["${"0".repeat(HttpFetch.maxBodyBytes)}"]}`)
      })
      const client = yield* Effect.provide(EthereumClient, EthereumClient.layer({ urls: [s.url], timeout: Duration.seconds(10) }))
      const error = yield* Effect.flip(client.getLogs({ address: "0x00000000000000000000000000000000000000c0", fromBlock: 1n, toBlock: 100n }))
      expect(error).toMatchObject({ _tag: "RangeTooLarge", requested: 100, hint: { _tag: "Shrink" } })
    }))
})
