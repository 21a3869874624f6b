/**
 * The real viem-backed client against scripted JSON-RPC servers on loopback: what it sends, how
 * it decodes, how it maps provider failures, and that a lagging URL never moves the head back.
 */
import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Duration, Effect, Exit, Layer, Metric, Option } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { parseAbiItem, toEventSelector } from "viem"
import { EthereumClient, rpcCalls } from "../../src/ethereum/EthereumClient.js"

interface Reply {
  readonly status?: number
  readonly headers?: Record<string, string>
  readonly result?: unknown
  readonly error?: { readonly code: number; readonly message: string }
  readonly raw?: string
}
interface Request {
  readonly method: string
  readonly params: ReadonlyArray<unknown>
}

/** A JSON-RPC server answering each request with `script(request)`; records what it got. */
const server = (script: (req: Request) => Reply) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; requests: Array<Request>; close: () => void }>((resume) => {
      const requests: Array<Request> = []
      const s = createServer((req, res) => {
        let body = ""
        req.on("data", (c) => (body += c))
        req.on("end", () => {
          const json = JSON.parse(body) as { id: number } & Request
          requests.push({ method: json.method, params: json.params })
          const reply = script(json)
          const type = reply.raw === undefined ? "application/json" : "text/plain"
          res.writeHead(reply.status ?? 200, { "content-type": type, ...reply.headers })
          res.end(
            reply.raw ??
              JSON.stringify(
                reply.error !== undefined
                  ? { jsonrpc: "2.0", id: json.id, error: reply.error }
                  : { jsonrpc: "2.0", id: json.id, result: reply.result ?? null }
              )
          )
        })
      })
      s.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/v3/SECRET`,
          requests,
          close: () => s.close()
        })))
    }),
    (s) => Effect.sync(() => s.close())
  )

const clientFor = (...urls: Array<string>) =>
  Effect.provide(EthereumClient, EthereumClient.layer({ urls, timeout: Duration.seconds(2) }))

const block = (n: number) => ({
  number: `0x${n.toString(16)}`,
  hash: `0x${n.toString(16).padStart(64, "a")}`,
  parentHash: `0x${(n - 1).toString(16).padStart(64, "a")}`,
  timestamp: "0x10",
  transactions: []
})

describe("EthereumClient (viem, scripted servers)", () => {
  it.scoped("a lagging URL behind the fallback never moves the head back", () =>
    Effect.gen(function*() {
      let aUp = true
      const a = yield* server(() => (aUp ? { result: "0x14" } : { status: 503, raw: "down" }))
      const b = yield* server(() => ({ result: "0x5" }))
      const client = yield* clientFor(a.url, b.url)
      expect(yield* client.headNumber).toBe(20n)
      aUp = false
      expect(yield* client.headNumber).toBe(20n)
      expect(b.requests.map((r) => r.method)).toEqual(["eth_blockNumber"]) // b did answer 5
    }))

  it.scoped("blocks by number and tag; none when missing or nothing finalized yet; unsupported tag fails", () =>
    Effect.gen(function*() {
      const s = yield* server((req) => {
        const [ref] = req.params
        if (ref === "0x7") return { result: block(7) }
        if (ref === "finalized") return { error: { code: -32000, message: "finalized block not found" } }
        if (ref === "safe") return { error: { code: -32602, message: "invalid block tag safe" } }
        return { result: null }
      })
      const client = yield* clientFor(s.url)
      expect(yield* client.block(7n)).toEqual(Option.some({
        number: 7n,
        hash: block(7).hash,
        parentHash: block(7).parentHash,
        timestamp: 16n
      }))
      expect(yield* client.block(8n)).toEqual(Option.none())
      expect(yield* client.block("finalized")).toEqual(Option.none())
      const unsupported = yield* Effect.flip(client.block("safe"))
      expect(unsupported._tag).toBe("BlockTagUnsupported")
      expect(s.requests.map((r) => r.params)).toContainEqual(["0x7", false])
    }))

  it.scoped("getLogs sends an inclusive hex range, the event's topic0 without trailing nulls, and decodes", () =>
    Effect.gen(function*() {
      const event = parseAbiItem("event Credit(address _from, uint256 _amount)")
      const log = {
        address: "0x00000000000000000000000000000000000000c0",
        topics: [toEventSelector(event)],
        data: "0x01",
        blockNumber: "0x9",
        blockHash: `0x${"b".repeat(64)}`,
        transactionHash: `0x${"c".repeat(64)}`,
        transactionIndex: "0x0",
        logIndex: "0x2",
        removed: false
      }
      const s = yield* server(() => ({ result: [log] }))
      const client = yield* clientFor(s.url)
      const logs = yield* client.getLogs({
        address: log.address as `0x${string}`,
        event,
        topics: [null, null, null],
        fromBlock: 5n,
        toBlock: 9n
      })
      expect(s.requests[0]).toEqual({
        method: "eth_getLogs",
        params: [{ address: log.address, fromBlock: "0x5", toBlock: "0x9", topics: [toEventSelector(event)] }]
      })
      expect(logs).toEqual([{ ...log, blockNumber: 9n, transactionIndex: 0, logIndex: 2 }])
    }))

  it.scoped("maps refusals: range (with the span), rate limit (with Retry-After), malformed answers", () =>
    Effect.gen(function*() {
      const s = yield* server((req) =>
        req.method === "eth_getLogs"
          ? { error: { code: -32005, message: "query returned more than 10000 results" } }
          : req.method === "eth_blockNumber"
          ? { status: 429, headers: { "retry-after": "3" }, raw: "Too Many Requests" }
          : { result: { number: "0x1" } } // a block without its hashes
      )
      const client = yield* clientFor(s.url)
      const range = yield* Effect.flip(client.getLogs({ fromBlock: 0n, toBlock: 999n }))
      expect(range).toMatchObject({ _tag: "RangeTooLarge", requested: 1000, hint: { _tag: "Shrink" } })
      const limited = yield* Effect.flip(client.headNumber)
      expect(limited._tag).toBe("RpcRateLimited")
      expect(limited._tag === "RpcRateLimited" && limited.retryAfter).toEqual(Option.some(Duration.seconds(3)))
      expect(limited.message).not.toContain("SECRET")
      expect((yield* Effect.flip(client.block(1n)))._tag).toBe("RpcBadResponse")
    }))

  it.scoped("an unreachable URL is RpcUnavailable, and calls are counted by method and outcome", () =>
    Effect.gen(function*() {
      const s = yield* server(() => ({ result: "0x1" }))
      const dead = s.url.replace(/:\d+\//, ":1/")
      const counted = Metric.tagged(Metric.tagged(rpcCalls, "method", "eth_chainId"), "outcome", "RpcUnavailable")
      const before = (yield* Metric.value(counted)).count
      const client = yield* clientFor(dead)
      expect((yield* Effect.flip(client.chainId))._tag).toBe("RpcUnavailable")
      expect((yield* Metric.value(counted)).count).toBe(before + 1)
    }))

  it.effect("refuses a configuration without a usable URL, and reads one from Config", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.exit(Layer.build(EthereumClient.layer({ urls: ["ftp://x"] })).pipe(Effect.scoped))
      expect(Exit.isFailure(bad) && bad.cause.toString()).toContain("not an http(s) or ws(s) URL")
      const none = yield* Effect.exit(Layer.build(EthereumClient.layer({ urls: [] })).pipe(Effect.scoped))
      expect(Exit.isFailure(none)).toBe(true)
      const fromConfig = EthereumClient.layerConfig({
        urls: Config.array(Config.redacted("URLS")),
        timeout: Config.succeed(Duration.seconds(1))
      })
      const ok = yield* Effect.exit(Layer.build(fromConfig).pipe(
        Effect.scoped,
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["URLS", "http://127.0.0.1:1,ws://127.0.0.1:2"]])))
      ))
      expect(Exit.isSuccess(ok)).toBe(true)
    }))
})
