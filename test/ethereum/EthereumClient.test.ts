/**
 * The real viem-backed client against scripted JSON-RPC servers on loopback: what it sends, how
 * it decodes, how it maps provider failures, and that a lagging URL never moves the head back.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Config, ConfigProvider, Duration, Effect, Either, Exit, Fiber, Layer, Logger, Metric, Option, Schema, Stream } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { parseAbiItem, toEventSelector } from "viem"
import { BlockJson, EthereumClient, EthLogs, fastBlock, fastLogs, rpcCalls } from "../../src/ethereum/EthereumClient.js"
import { isHealable } from "../../src/ethereum/errors.js"
import * as LogFollower from "../../src/ethereum/LogFollower.js"
import * as Retry from "../../src/ethereum/Retry.js"

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

/** `script` on a node of chain 1: answers `eth_chainId`, which a client of several URLs asks each first. */
const onChain = (script: (req: Request) => Reply) => (req: Request): Reply =>
  req.method === "eth_chainId" ? { result: "0x1" } : script(req)

/** The methods `s` was asked, but for the chain id check. */
const asked = (s: { readonly requests: ReadonlyArray<Request> }) =>
  s.requests.map((r) => r.method).filter((m) => m !== "eth_chainId")

/** A logger layer keeping the messages logged at error level. */
const errorLogs = () => {
  const logged: Array<string> = []
  const capture = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Error") logged.push(String(message))
    })
  )
  return { capture, logged }
}

const clientFor = (...urls: Array<string>) =>
  Effect.provide(EthereumClient, EthereumClient.layer({ urls, timeout: Duration.seconds(2) }))

const block = (n: number) => ({
  number: `0x${n.toString(16)}`,
  hash: `0x${n.toString(16).padStart(64, "a")}`,
  parentHash: `0x${(n - 1).toString(16).padStart(64, "a")}`,
  timestamp: "0x10",
  transactions: []
})

/** The address of the logs below. */
const address = "0x00000000000000000000000000000000000000c0"

/** The one log of block `n`, as `eth_getLogs` answers it. */
const log = (n: number) => ({
  address,
  topics: [`0x${"e".repeat(64)}`],
  data: "0x01",
  blockNumber: `0x${n.toString(16)}`,
  blockHash: block(n).hash,
  transactionHash: `0x${n.toString(16).padStart(64, "c")}`,
  transactionIndex: "0x0",
  logIndex: "0x0",
  removed: false
})

describe("EthereumClient (viem, scripted servers)", () => {
  it.scoped("a lagging URL behind the fallback never moves the head back", () =>
    Effect.gen(function*() {
      let aUp = true
      const a = yield* server(onChain(() => (aUp ? { result: "0x14" } : { status: 503, raw: "down" })))
      const b = yield* server(onChain(() => ({ result: "0x5" })))
      const client = yield* clientFor(a.url, b.url)
      expect(yield* client.headNumber).toBe(20n)
      aUp = false
      expect(yield* client.headNumber).toBe(20n)
      expect(asked(b)).toEqual(["eth_blockNumber"]) // b did answer 5
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

  it("the hand-written log decoder returns what the schema does, and refuses (undefined) what it refuses", () => {
    const good = {
      address: `0x${"A".repeat(40)}`,
      topics: [`0x${"1".repeat(64)}`, `0x${"f".repeat(64)}`],
      data: "0x",
      blockNumber: "0x1f",
      blockHash: `0x${"b".repeat(64)}`,
      transactionHash: `0x${"c".repeat(64)}`,
      transactionIndex: "0x20000000000000", // 2^53: the largest index allowed
      logIndex: "0x0"
    }
    const variants: ReadonlyArray<unknown> = [
      [],
      [good],
      [good, { ...good, removed: true, extra: "ignored" }, { ...good, topics: [], data: "0xdeadBEEF" }],
      [{ ...good, removed: false }],
      null,
      {},
      [null],
      [[good]],
      [{ ...good, address: "0x1234" }],
      [{ ...good, address: 42 }],
      [{ ...good, topics: "0x" }],
      [{ ...good, topics: [`0x${"1".repeat(63)}`] }],
      [{ ...good, data: "0xzz" }],
      [{ ...good, data: "ab" }],
      [{ ...good, blockNumber: "0x" }],
      [{ ...good, blockNumber: 31 }],
      [{ ...good, blockHash: undefined }],
      [{ ...good, transactionHash: `0x${"c".repeat(66)}` }],
      [{ ...good, transactionIndex: "0x20000000000001" }], // 2^53 + 1
      [{ ...good, logIndex: "-0x1" }],
      [{ ...good, removed: "no" }],
      [good, { ...good, logIndex: null }],
      // Empty strings: nothing checked before the first log may match them.
      [{ ...good, address: "" }],
      [{ ...good, topics: [""] }],
      [{ ...good, topics: [undefined] }],
      [{ ...good, topics: new Array(1) }],
      [{ ...good, blockNumber: "" }],
      [{ ...good, blockHash: "" }],
      [{ ...good, transactionHash: "" }],
      // A log after a good one: a string it repeats is checked once, one that differs is checked again.
      [good, { ...good, logIndex: "0x1" }, { ...good, blockNumber: "0x20", blockHash: `0x${"d".repeat(64)}` }],
      [good, { ...good, address: "0x12" }],
      [good, { ...good, topics: [`0x${"2".repeat(63)}`] }],
      [good, { ...good, topics: [good.topics[0], "0x1"] }],
      [good, { ...good, blockNumber: "0xzz" }],
      [good, { ...good, blockHash: `0x${"b".repeat(63)}` }],
      [good, { ...good, transactionHash: `0x${"c".repeat(65)}` }],
      [good, { ...good, transactionIndex: "0x20000000000001" }]
    ]
    for (const json of variants) {
      const bySchema = Schema.decodeUnknownEither(EthLogs)(json)
      const fast = fastLogs(json)
      if (Either.isRight(bySchema)) expect(fast, JSON.stringify(json)).toEqual(bySchema.right)
      else expect(fast, JSON.stringify(json)).toBeUndefined()
    }
  })

  it("the hand-written block decoder returns what the schema does, and refuses (undefined) what it refuses", () => {
    const good = {
      number: "0x1f",
      hash: `0x${"b".repeat(64)}`,
      parentHash: `0x${"A".repeat(64)}`,
      timestamp: "0x6553f100",
      transactions: [],
      extra: "ignored"
    }
    const variants: ReadonlyArray<unknown> = [
      good,
      null,
      undefined,
      {},
      [],
      [good],
      "0x1f",
      { ...good, number: "0x" },
      { ...good, number: 31 },
      { ...good, number: "-0x1" },
      { ...good, number: "" },
      { ...good, hash: `0x${"b".repeat(63)}` },
      { ...good, hash: undefined },
      { ...good, hash: "" },
      { ...good, parentHash: `0x${"g".repeat(64)}` },
      { ...good, parentHash: null },
      { ...good, timestamp: "0xzz" },
      { ...good, timestamp: 1700000000 }
    ]
    for (const json of variants) {
      const bySchema = Schema.decodeUnknownEither(BlockJson)(json)
      const fast = fastBlock(json)
      if (Either.isRight(bySchema)) expect(fast, JSON.stringify(json)).toEqual(bySchema.right)
      else expect(fast, JSON.stringify(json)).toBeUndefined()
    }
    expect(fastBlock(good)).toEqual({ number: 31n, hash: good.hash, parentHash: good.parentHash, timestamp: 0x6553f100n })
  })

  it.scoped("a log the decoder refuses is an RpcBadResponse that names the field", () =>
    Effect.gen(function*() {
      const s = yield* server(() => ({
        result: [{
          address: "0x00000000000000000000000000000000000000c0",
          topics: [],
          data: "0x",
          blockNumber: "0x9",
          blockHash: `0x${"b".repeat(64)}`,
          transactionHash: "0x1234", // too short
          transactionIndex: "0x0",
          logIndex: "0x0"
        }]
      }))
      const client = yield* clientFor(s.url)
      const error = yield* Effect.flip(client.getLogs({ fromBlock: 9n, toBlock: 9n }))
      expect(error._tag).toBe("RpcBadResponse")
      expect(error.message).toContain("transactionHash")
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

  it.scoped("a cut-off or non-JSON 200 body is a healable RpcGarbled; well-formed JSON we cannot decode stays RpcBadResponse", () =>
    Effect.gen(function*() {
      const json = { "content-type": "application/json" }
      const s = yield* server((req) =>
        req.method === "eth_blockNumber"
          ? { headers: json, raw: `{"jsonrpc":"2.0","id":1,"res` } // cut off mid-way
          : req.method === "eth_chainId"
          ? { headers: json, raw: "<html><body><h1>502 Bad Gateway</h1></body></html>" }
          : { result: { number: "0x1" } } // well-formed, but a block without its hashes
      )
      const client = yield* clientFor(s.url)
      const cut = yield* Effect.flip(client.headNumber)
      expect([cut._tag, isHealable(cut)]).toEqual(["RpcGarbled", true])
      expect(cut.message).not.toContain("SECRET")
      const html = yield* Effect.flip(client.chainId)
      expect([html._tag, isHealable(html)]).toEqual(["RpcGarbled", true])
      const bad = yield* Effect.flip(client.block(1n))
      expect([bad._tag, isHealable(bad)]).toEqual(["RpcBadResponse", false])
    }))

  it.scoped("sameNode runs a unit on one URL and moves the whole unit to the next when a step fails", () =>
    Effect.gen(function*() {
      const a = yield* server(onChain((req) => req.method === "eth_getLogs" ? { status: 503, raw: "down" } : { result: block(20) }))
      const b = yield* server(onChain((req) => req.method === "eth_getLogs" ? { result: [] } : { result: block(20) }))
      const client = yield* clientFor(a.url, b.url)
      const unit = Effect.all([client.block(20n), client.getLogs({ fromBlock: 10n, toBlock: 20n }), client.block(20n)])
      yield* client.sameNode(unit)
      expect(asked(a)).toEqual(["eth_getBlockByNumber", "eth_getLogs"])
      expect(asked(b)).toEqual(["eth_getBlockByNumber", "eth_getLogs", "eth_getBlockByNumber"])
      // Nested: stays on the pinned node.
      b.requests.length = 0
      yield* client.sameNode(client.sameNode(unit))
      expect(asked(b)).toEqual(["eth_getBlockByNumber", "eth_getLogs", "eth_getBlockByNumber"])
      // Calls run at once inside the unit (forked fibers) inherit its pin.
      a.requests.length = 0
      b.requests.length = 0
      yield* client.sameNode(Effect.zipRight(
        client.getLogs({ fromBlock: 10n, toBlock: 20n }),
        Effect.all([client.block(20n), client.block(19n)], { concurrency: 2 })
      ))
      expect(asked(a)).toEqual(["eth_getLogs"])
      expect(asked(b).sort()).toEqual(["eth_getBlockByNumber", "eth_getBlockByNumber", "eth_getLogs"])
    }))

  it.scoped("sameNode: when every URL fails, a range refusal wins over a later URL's outage", () =>
    Effect.gen(function*() {
      const a = yield* server(onChain(() => ({ error: { code: -32005, message: "query returned more than 10000 results" } })))
      const b = yield* server(() => ({ status: 503, raw: "down" }))
      const client = yield* clientFor(a.url, b.url)
      const e = yield* Effect.flip(client.sameNode(client.getLogs({ fromBlock: 0n, toBlock: 99n })))
      expect(e).toMatchObject({ _tag: "RangeTooLarge", requested: 100 })
      // b's outage showed at its chain id check: it was never asked for the logs.
      expect(b.requests.map((r) => r.method)).toContain("eth_chainId")
      expect(asked(b)).toEqual([])
      const down = yield* Effect.flip(client.sameNode(client.headNumber))
      expect(down._tag).toBe("RpcUnavailable") // the last URL's error
    }))

  it.scoped("a URL serving another chain is never used: each URL's chain id is checked first, and a mismatch is a typed error, logged", () => {
    const { capture, logged } = errorLogs()
    return Effect.gen(function*() {
      // a (chain 1) cannot serve logs; b serves chain 5 (a misconfigured URL); c serves chain 1.
      const a = yield* server(onChain((req) => req.method === "eth_getLogs" ? { status: 503, raw: "down" } : { result: block(20) }))
      const b = yield* server((req) => req.method === "eth_chainId" ? { result: "0x5" } : { result: [log(12)] })
      const c = yield* server(onChain((req) => req.method === "eth_getLogs" ? { result: [log(10)] } : { result: block(20) }))
      const layerOf = (...urls: Array<string>) => EthereumClient.layer({ urls, timeout: Duration.seconds(2) })
      const range = { fromBlock: 10n, toBlock: 20n }

      const three = yield* Effect.provide(EthereumClient, layerOf(a.url, b.url, c.url))
      expect((yield* three.getLogs(range)).map((l) => l.blockNumber)).toEqual([10n])
      expect((yield* three.sameNode(three.getLogs(range))).map((l) => l.blockNumber)).toEqual([10n])
      expect(asked(b)).toEqual([]) // asked its chain id only, never for logs
      expect(logged.some((m) => m.includes("serves chain 5") && m.includes("serves chain 1"))).toBe(true)
      expect(logged.join("\n")).not.toContain("SECRET")

      expect(logged.find((m) => m.includes("serves chain 5"))).toMatch(
        /^http:\/\/127\.0\.0\.1:\d+\S* serves chain 5, but http:\/\/127\.0\.0\.1:\d+\S* serves chain 1: every RPC URL must serve the same chain/
      )

      // With no other URL to serve it, the call fails with the good URL's own error, which heals
      // (retried), not with the misconfigured URL's mismatch, which would not.
      const two = yield* Effect.provide(EthereumClient, layerOf(a.url, b.url))
      const e = yield* Effect.flip(two.getLogs(range))
      expect([e._tag, isHealable(e)]).toEqual(["RpcUnavailable", true])
      expect(asked(b)).toEqual([])
      // The verdict is kept: b is not asked again.
      const before = b.requests.length
      yield* Effect.flip(two.sameNode(two.getLogs(range)))
      expect(b.requests.length).toBe(before)
    }).pipe(Effect.provide(capture))
  })

  it.scopedLive("a blip of the good URL is retried, though the only other URL serves another chain", () =>
    Effect.gen(function*() {
      let blips = 1
      const a = yield* server(onChain(() => (blips-- > 0 ? { status: 503, raw: "down" } : { result: "0x14" })))
      const b = yield* server((req) => req.method === "eth_chainId" ? { result: "0x5" } : { result: "0x99" })
      const client = yield* clientFor(a.url, b.url)
      const head = yield* Retry.healable({ base: Duration.millis(10), cap: Duration.millis(20) })(client.headNumber)
      expect(head).toBe(20n)
      expect(asked(a)).toEqual(["eth_blockNumber", "eth_blockNumber"])
      expect(asked(b)).toEqual([])
    }))

  it.scopedLive("each URL's chain id is checked at the start, so a misconfigured URL is reported before any call needs it", () => {
    const { capture, logged } = errorLogs()
    return Effect.gen(function*() {
      const a = yield* server(onChain(() => ({ result: "0x14" })))
      const b = yield* server((req) => req.method === "eth_chainId" ? { result: "0x5" } : { result: "0x14" })
      yield* Layer.build(EthereumClient.layer({ urls: [a.url, b.url], timeout: Duration.seconds(2) }))
      for (let i = 0; i < 400 && logged.length === 0; i++) yield* Effect.sleep("5 millis")
      expect(logged).toHaveLength(1)
      expect(logged[0]).toMatch(/serves chain 5, but .* serves chain 1/)
      expect([a.requests.map((r) => r.method), b.requests.map((r) => r.method)]).toEqual([["eth_chainId"], ["eth_chainId"]])
    }).pipe(Effect.provide(capture))
  })

  it.live("a stale fallback node never answers the logs of blocks it does not have: the batch is complete", () =>
    Effect.scoped(Effect.gen(function*() {
      const logsOf = (req: Request) => {
        const { fromBlock, toBlock } = req.params[0] as { fromBlock: string; toBlock: string }
        const out = []
        for (let n = Number(fromBlock); n <= Math.min(Number(toBlock), 20); n++) out.push(log(n))
        return out
      }
      // The first URL is at block 20 and fails its first eth_getLogs; the second one is stale at 5.
      let failed = false
      const fresh = yield* server(onChain((req) => {
        if (req.method === "eth_blockNumber") return { result: "0x14" }
        if (req.method === "eth_getBlockByNumber") {
          const n = Number(req.params[0] as string)
          return { result: n <= 20 ? block(n) : null }
        }
        if (req.method === "eth_getLogs") {
          if (!failed) {
            failed = true
            return { status: 503, raw: "down" }
          }
          return { result: logsOf(req) }
        }
        return { error: { code: -32601, message: "method not found" } }
      }))
      const stale = yield* server(onChain((req) => {
        if (req.method === "eth_blockNumber") return { result: "0x5" }
        if (req.method === "eth_getBlockByNumber") {
          const n = Number(req.params[0] as string)
          return { result: n <= 5 ? block(n) : null }
        }
        if (req.method === "eth_getLogs") return { result: [] } // what a node behind answers
        return { error: { code: -32601, message: "method not found" } }
      }))
      const layer = EthereumClient.layer({ urls: [fresh.url, stale.url], timeout: Duration.seconds(2) })
      const events = yield* LogFollower.follow({
        filter: { address },
        from: LogFollower.startAt(10n),
        confirmations: 0,
        retry: { base: Duration.millis(10), cap: Duration.millis(50) }
      }).pipe(Stream.take(1), Stream.runCollect, Effect.provide(layer))
      const batch = Chunk.unsafeHead(events)
      expect(batch._tag).toBe("Batch")
      if (batch._tag !== "Batch") return
      expect([batch.from, batch.to, batch.toHash]).toEqual([10n, 20n, block(20).hash])
      expect(batch.logs.map((l) => l.blockNumber)).toEqual(Array.from({ length: 11 }, (_, i) => BigInt(10 + i)))
      expect(failed).toBe(true)
      // The stale node was asked for block 20 (and had none), never for its logs.
      expect(asked(stale)).toContain("eth_getBlockByNumber")
      expect(asked(stale)).not.toContain("eth_getLogs")
    })))

  it.live("a range started ahead is a unit of its own: it moves to the next URL when its node fails, whatever node the range before it is on", () =>
    Effect.scoped(Effect.gen(function*() {
      // Both nodes are at block 20; the first one fails every eth_getLogs from block 15 on.
      const node = (refuseFrom: number) =>
        server(onChain((req) => {
          if (req.method === "eth_blockNumber") return { result: "0x14" }
          if (req.method === "eth_getBlockByNumber") {
            const n = Number(req.params[0] as string)
            return { result: n <= 20 ? block(n) : null }
          }
          if (req.method === "eth_getLogs") {
            const { fromBlock, toBlock } = req.params[0] as { fromBlock: string; toBlock: string }
            if (Number(fromBlock) >= refuseFrom) return { status: 503, raw: "down" }
            const out = []
            for (let n = Number(fromBlock); n <= Math.min(Number(toBlock), 20); n++) out.push(log(n))
            return { result: out }
          }
          return { error: { code: -32601, message: "method not found" } }
        }))
      const first = yield* node(15)
      const second = yield* node(Infinity)
      const layer = EthereumClient.layer({ urls: [first.url, second.url], timeout: Duration.seconds(2) })
      // Ranges 10..14 (on the first node) and 15..20, started ahead while 10..14 is checked there.
      const events = yield* LogFollower.follow({
        filter: { address },
        from: LogFollower.startAt(10n),
        confirmations: 0,
        range: { initial: 5 },
        retry: { base: Duration.millis(10), cap: Duration.millis(50) }
      }).pipe(Stream.take(2), Stream.runCollect, Effect.provide(layer), Effect.timeout("10 seconds"))
      const batches = Chunk.toReadonlyArray(events).filter((e): e is LogFollower.Batch => e._tag === "Batch")
      expect(batches.map((b) => [b.from, b.to, b.toHash])).toEqual([[10n, 14n, block(14).hash], [15n, 20n, block(20).hash]])
      expect(batches.flatMap((b) => b.logs.map((l) => l.blockNumber))).toEqual(Array.from({ length: 11 }, (_, i) => BigInt(10 + i)))
      const logsAskedOf = (s: typeof first) =>
        s.requests.filter((r) => r.method === "eth_getLogs").map((r) => Number((r.params[0] as { fromBlock: string }).fromBlock))
      expect(logsAskedOf(first)).toEqual([10, 15])
      expect(logsAskedOf(second)).toEqual([15])
    })))

  it.scopedLive("interrupting a call aborts its HTTP request (with one URL and through the fallback)", () =>
    Effect.gen(function*() {
      // A node that never answers eth_getLogs, and notes when the client gives up the connection.
      const seen: Array<string> = []
      const closed: Array<string> = []
      const port = yield* Effect.acquireRelease(
        Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
          const s = createServer((req, res) => {
            let body = ""
            req.on("data", (c) => (body += c))
            req.on("end", () => {
              const id = String(seen.length)
              seen.push(id)
              res.on("close", () => closed.push(id))
            })
          })
          s.listen(0, "127.0.0.1", () =>
            resume(Effect.succeed({ url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, close: () => s.close() })))
        }),
        (s) => Effect.sync(() => s.close())
      )
      for (const urls of [[port.url], [port.url, port.url]]) {
        const before = seen.length
        const fiber = yield* Effect.fork(clientFor(...urls).pipe(
          Effect.flatMap((c) => c.getLogs({ address, fromBlock: 1n, toBlock: 2n }))
        ))
        while (seen.length === before) yield* Effect.sleep("5 millis")
        expect(closed).not.toContain(seen.at(-1))
        yield* Fiber.interrupt(fiber)
        for (let i = 0; i < 200 && !closed.includes(seen.at(-1)!); i++) yield* Effect.sleep("5 millis")
        expect(closed).toContain(seen.at(-1))
      }
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

  it.scoped("a call counts in the series of its method and outcome plus the fiber's metric labels, as Metric.tagged would", () =>
    Effect.gen(function*() {
      const s = yield* server(() => ({ result: "0x7" }))
      const ok = Metric.tagged(Metric.tagged(rpcCalls, "method", "eth_blockNumber"), "outcome", "ok")
      const onNode = Metric.tagged(ok, "node", "n1")
      const [before, beforeOnNode] = [(yield* Metric.value(ok)).count, (yield* Metric.value(onNode)).count]
      const client = yield* clientFor(s.url)
      expect(yield* client.headNumber).toBe(7n)
      expect(yield* client.headNumber.pipe(Effect.tagMetrics("node", "n1"))).toBe(7n)
      expect(yield* client.headNumber.pipe(Effect.tagMetrics("node", "n1"))).toBe(7n)
      // A fiber label the call's own labels already hold is not added twice.
      expect(yield* client.headNumber.pipe(Effect.tagMetrics("outcome", "ok"))).toBe(7n)
      expect((yield* Metric.value(ok)).count).toBe(before + 2)
      expect((yield* Metric.value(onNode)).count).toBe(beforeOnNode + 2)
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
