import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { BaseError, createPublicClient, http, HttpRequestError, type PublicClient, RpcRequestError, TimeoutError } from "viem"
import * as Anvil from "../../src/devnet/Anvil.js"
import * as Contracts from "../../src/extensions/contracts/index.js"
import * as EscrowChain from "./EscrowChain.js"
import * as RpcProxy from "./RpcProxy.js"

/** An anvil (no mining) with `blocks` blocks, a proxy in front, and a viem client through it. */
const setup = (options: { readonly blocks?: number; readonly retryCount?: number; readonly timeout?: number; readonly batch?: boolean } = {}) =>
  Effect.gen(function*() {
    const anvil = yield* Anvil.make({ noMining: true })
    if (options.blocks !== undefined) yield* anvil.mine(options.blocks)
    const proxy = yield* RpcProxy.make(anvil.httpUrl)
    const client: PublicClient = createPublicClient({
      transport: http(proxy.url, {
        retryCount: options.retryCount ?? 0,
        retryDelay: 10,
        timeout: options.timeout ?? 10_000,
        batch: options.batch ?? false
      }),
      cacheTime: 0
    })
    return { anvil, proxy, client }
  })

/** The error `f` fails with (the test fails if it succeeds). */
const failure = <A>(f: () => Promise<A>) => Effect.flip(Effect.tryPromise({ try: f, catch: (e) => e as BaseError }))

const find = <T>(error: BaseError, cls: abstract new (...args: never) => T): T | undefined =>
  (error.walk((e) => e instanceof cls) ?? undefined) as T | undefined

describe("RpcProxy", () => {
  it.scopedLive("passes calls through and counts them", () =>
    Effect.gen(function*() {
      const { client, proxy } = yield* setup({ blocks: 4 })
      expect(yield* Effect.promise(() => client.getBlockNumber())).toBe(4n)
      const stats = yield* proxy.stats
      expect(stats).toMatchObject({ requests: 1, calls: 1, byMethod: { eth_blockNumber: 1 }, faults: { Pass: 1 } })
      yield* proxy.resetStats
      expect((yield* proxy.stats).calls).toBe(0)
    }))

  it.scopedLive("range caps reach the client with each provider's own error text", () =>
    Effect.gen(function*() {
      // Refused ranges never reach anvil, so they may run past its head (mining thousands of blocks is slow).
      const { client, proxy } = yield* setup({ blocks: 20 })
      const getLogs = (fromBlock: bigint, toBlock: bigint) => () => client.getLogs({ fromBlock, toBlock })

      yield* proxy.setRules(RpcProxy.rangeCap("alchemy", { maxRange: 2000 }))
      const alchemy = yield* failure(getLogs(1n, 2001n))
      expect(find(alchemy, RpcRequestError)?.code).toBe(-32600)
      expect(alchemy.message).toContain(
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, " +
          "or you can request any block range with a cap of 10K logs in the response. Based on your parameters, this block range should work: [0x1, 0x7d0]"
      )
      // The limit is inclusive: exactly maxRange blocks pass, one more does not.
      yield* proxy.setRules(RpcProxy.rangeCap("alchemy", { maxRange: 10 }))
      expect(yield* Effect.promise(getLogs(1n, 10n))).toEqual([])
      expect((yield* failure(getLogs(1n, 11n))).message).toContain("this block range should work: [0x1, 0xa]")

      yield* proxy.setRules(RpcProxy.rangeCap("quicknode", { maxRange: 1000 }))
      const quicknode = yield* failure(getLogs(0n, 1000n))
      expect(quicknode.message).toContain("eth_getLogs is limited to a 1000 range")

      yield* proxy.setRules(RpcProxy.rangeCap("infura", { maxRange: 500 }))
      const infura = yield* failure(getLogs(16n, 1000n))
      expect(infura.message).toContain("query returned more than 10000 results. Try with this block range [0x10, 0x203].")

      yield* proxy.setRules(RpcProxy.rangeCap("generic", { maxRange: 10 }))
      expect((yield* failure(getLogs(0n, 10n))).message).toContain("block range too large")
      expect((yield* proxy.stats).faults.RangeCap).toBe(5)
    }))

  it.scopedLive("a log-count cap (Infura) refuses a result over the cap and suggests the blocks before it", () =>
    Effect.gen(function*() {
      const { anvil, clients, deployment } = yield* EscrowChain.make()
      const first = yield* Contracts.depositMany(clients, deployment, 1n, 2n)
      const second = yield* Contracts.depositMany(clients, deployment, 1n, 2n)
      const proxy = yield* RpcProxy.make(anvil.httpUrl, RpcProxy.rangeCap("infura", { maxLogs: 3 }))
      const client = createPublicClient({ transport: http(proxy.url, { retryCount: 0 }) })
      const getLogs = (toBlock: bigint) => () =>
        client.getLogs({ address: deployment.escrow, event: Contracts.creditEvent, fromBlock: 0n, toBlock })

      const error = yield* failure(getLogs(second.blockNumber))
      expect(error.message).toContain(
        `query returned more than 3 results. Try with this block range [0x0, 0x${(second.blockNumber - 1n).toString(16)}].`
      )
      expect(yield* Effect.promise(getLogs(first.blockNumber))).toHaveLength(2)
    }))

  it.scopedLive("429 without Retry-After fails the call; with Retry-After viem waits that long and retries", () =>
    Effect.gen(function*() {
      const { client, proxy } = yield* setup()
      yield* proxy.setRules(RpcProxy.times(1, RpcProxy.Fault.RateLimit({})))
      // The body is JSON (as Alchemy's is), so viem reports an RpcRequestError carrying the status.
      const error = yield* failure(() => client.getBlockNumber())
      expect(error.message).toContain("Status: 429")
      expect(error.message).toContain("exceeded its compute units")

      const retrying = (yield* setup({ retryCount: 1 }))
      yield* retrying.proxy.setRules(RpcProxy.times(1, RpcProxy.Fault.RateLimit({ retryAfter: 1 })))
      const started = Date.now()
      expect(yield* Effect.promise(() => retrying.client.getBlockNumber())).toBe(0n)
      expect(Date.now() - started).toBeGreaterThanOrEqual(900)
      expect((yield* retrying.proxy.stats).faults).toMatchObject({ RateLimit: 1, Pass: 1 })
    }))

  it.scopedLive("5xx, dropped, reset, truncated and invalid answers each fail the call", () =>
    Effect.gen(function*() {
      const { client, proxy } = yield* setup()
      const faults = [
        RpcProxy.Fault.ServerError({ status: 503 }),
        RpcProxy.Fault.Drop(),
        RpcProxy.Fault.Reset(),
        RpcProxy.Fault.Truncated(),
        RpcProxy.Fault.InvalidJson()
      ]
      for (const fault of faults) {
        yield* proxy.setRules(RpcProxy.always(fault))
        const error = yield* failure(() => client.getChainId())
        expect(error).toBeInstanceOf(BaseError)
        if (fault._tag === "ServerError") expect(find(error, HttpRequestError)?.status).toBe(503)
      }
      yield* proxy.setRules()
      expect(yield* Effect.promise(() => client.getChainId())).toBe(31337)
      expect((yield* proxy.stats).faults).toMatchObject({ ServerError: 1, Drop: 1, Reset: 1, Truncated: 1, InvalidJson: 1 })
    }))

  it.scopedLive("a delay past the client's timeout is a TimeoutError; a shorter one only slows the call", () =>
    Effect.gen(function*() {
      const { client, proxy } = yield* setup({ timeout: 200 })
      yield* proxy.setRules(RpcProxy.times(1, RpcProxy.Fault.Delay({ millis: 600 })))
      const error = yield* failure(() => client.getChainId())
      expect(find(error, TimeoutError)).toBeDefined()
      yield* proxy.setRules(RpcProxy.times(1, RpcProxy.Fault.Delay({ millis: 50 })))
      expect(yield* Effect.promise(() => client.getChainId())).toBe(31337)
      expect((yield* proxy.stats).faults.Delay).toBe(2)
    }))

  it.scopedLive("lag answers the head (number and latest block) as of N blocks ago; numbered blocks are untouched", () =>
    Effect.gen(function*() {
      const { client, proxy } = yield* setup({ blocks: 10 })
      yield* proxy.setRules(RpcProxy.lag(3))
      expect(yield* Effect.promise(() => client.getBlockNumber())).toBe(7n)
      expect((yield* Effect.promise(() => client.getBlock({ blockTag: "latest" }))).number).toBe(7n)
      expect((yield* Effect.promise(() => client.getBlock({ blockNumber: 9n }))).number).toBe(9n)
      expect((yield* proxy.stats).faults.Lag).toBe(2)
    }))

  it.scopedLive("batches: transport faults hit the whole batch, JSON-RPC faults their own element", () =>
    Effect.gen(function*() {
      const { client, proxy } = yield* setup({ blocks: 100, batch: true })
      yield* proxy.setRules(RpcProxy.rangeCap("alchemy", { maxRange: 10 }))
      const [ok, capped, head] = yield* Effect.promise(() =>
        Promise.allSettled([
          client.getLogs({ fromBlock: 1n, toBlock: 10n }),
          client.getLogs({ fromBlock: 1n, toBlock: 50n }),
          client.getBlockNumber()
        ])
      )
      expect(ok.status).toBe("fulfilled")
      expect(capped.status).toBe("rejected")
      expect(head).toEqual({ status: "fulfilled", value: 100n })
      expect((yield* proxy.stats).batches).toBe(1)

      yield* proxy.setRules(RpcProxy.times(1, RpcProxy.Fault.RateLimit({}), ["eth_chainId"]))
      const both = yield* Effect.promise(() => Promise.allSettled([client.getChainId(), client.getBlockNumber()]))
      expect(both.map((r) => r.status)).toEqual(["rejected", "rejected"])
    }))

  it.scopedLive("random faults replay from their seed", () =>
    Effect.gen(function*() {
      const run = (seed: number) =>
        Effect.gen(function*() {
          const { client, proxy } = yield* setup()
          const rule = RpcProxy.random({
            seed,
            rate: 0.5,
            faults: [[1, RpcProxy.Fault.ServerError({ status: 502 })], [1, RpcProxy.Fault.RpcError({ code: -32000, message: "header not found" })]]
          })
          expect(rule.seed).toBe(seed)
          yield* proxy.setRules(rule)
          for (let i = 0; i < 20; i++) yield* Effect.promise(() => client.getChainId().catch(() => undefined))
          return (yield* proxy.history).map((d) => d.fault)
        })
      const a = yield* run(42)
      expect(a).toHaveLength(20)
      expect(new Set(a).size).toBe(3)
      expect(yield* run(42)).toEqual(a)
      expect(yield* run(7)).not.toEqual(a)
    }))
})
