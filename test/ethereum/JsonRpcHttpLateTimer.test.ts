/**
 * The transport's timeout against an answer that had fully arrived: when the timer fires while
 * the answer is decompressed (zlib works on libuv's thread pool, which other work may hold), the
 * answer's own error stands (a 429 keeps its status and `Retry-After`), as with viem's transport.
 * zlib's `gunzip` is slowed here, in a file of its own, to make that window certain.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { RpcRequestError } from "viem"
import { vi } from "vitest"
import * as JsonRpcHttp from "../../src/ethereum/JsonRpcHttp.js"
import { fromViemError } from "../../src/ethereum/ProviderErrors.js"

/** How long each `gunzip` takes after its input was decoded. */
const slow = vi.hoisted(() => ({ ms: 0 }))

vi.mock("node:zlib", async (importOriginal) => {
  const original = await importOriginal<typeof import("node:zlib")>()
  const gunzip = (input: Buffer, options: zlib.ZlibOptions, done: (error: Error | null, result: Buffer) => void) =>
    original.gunzip(input, options, (error, result) => setTimeout(() => done(error, result), slow.ms))
  return { ...original, default: { ...original, gunzip }, gunzip }
})

const limited = JSON.stringify({ jsonrpc: "2.0", id: 1, error: { code: -32005, message: "rate limited" } })

describe("JsonRpcHttp's timeout", () => {
  it.scopedLive("fires during a 429's decompression: the 429 stands, not a timeout", () =>
    Effect.gen(function*() {
      const url = yield* Effect.acquireRelease(
        Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
          const s = createServer((req, res) => {
            req.resume()
            req.on("end", () => {
              res.writeHead(429, { "content-type": "application/json", "content-encoding": "gzip", "retry-after": "7" })
              res.end(zlib.gzipSync(limited))
            })
          })
          s.listen(0, "127.0.0.1", () =>
            resume(Effect.succeed({
              url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
              close: () => {
                s.closeAllConnections()
                s.close()
              }
            })))
        }),
        (s) => Effect.sync(() => s.close())
      ).pipe(Effect.map((s) => s.url))
      slow.ms = 300
      const request = JsonRpcHttp.transport(url, { timeout: 100 })({}).config.request
      const error = yield* Effect.promise(() =>
        (request({ method: "eth_chainId", params: [] } as never) as Promise<unknown>).then(() => undefined, (e: unknown) => e)
      )
      expect(error).toBeInstanceOf(RpcRequestError)
      expect(error).toMatchObject({ status: 429 })
      const mapped = fromViemError({ method: "eth_chainId" }, error)
      expect(mapped._tag).toBe("RpcRateLimited")
      expect(mapped).toMatchObject({ retryAfter: Option.some(Duration.seconds(7)) })
    }))
})
