/**
 * Benchmark 1, catch-up: an anvil holding 100,000 blocks with 10,000 deposits spread over them
 * (100 `depositMany(1, 100)` transactions, one every ~1,000 blocks; `catchupChain.ts`), and the
 * time until every deposit is stored in SQLite (a file database, WAL):
 *
 * - ours: the real `eth_deposits` listener (`makeEthDeposits`, run over `ListenerContext` and
 *   `EventStore.layerSql` as the node runs it): the follower's adaptive ranges and block-hash
 *   checks, decoding, one `EventStore.transaction` per batch with its checkpoint. Timed from the
 *   listener's start to its stored checkpoint reaching the confirmed head (12 confirmations).
 * - (a) the bare floor: the same `eth_getLogs` requests ours made (recorded by wrapping its
 *   client), replayed as plain JSON-RPC POSTs through undici's `request` (the HTTP client ours
 *   uses, `JsonRpcHttp.ts`; cheaper than `fetch`) with as many in flight as ours fetches
 *   (`LogFollower.defaultInFlight`), each answer parsed, nothing else: the least those calls cost.
 *   Bar: ours within 1.2x of it.
 * - (b) the original's way: fixed 1,000-block ranges (Kwil's chunk, as our default starting
 *   range), `eth_getLogs` through the same client, each event decoded and broadcast in its own
 *   `EventStore.transaction`, then the range's checkpoint in one more. Informative.
 * - (c) a raw pipeline: the least code that stores the same events, with nothing of ours but the
 *   pure helpers (`creditBody`, `EventId.make`): the same ranges as (a), as the same POSTs with as
 *   many ranges in flight, and per range one raw better-sqlite3 transaction (the connection set
 *   up as the node's: `rawDb`) of prepared `INSERT`s and the checkpoint. Informative: how far
 *   ours is from plain code; its own ratio to (a) shows how near the bare floor plain code gets
 *   here. The notes also give it with one range in flight at a time, and with the block-hash
 *   checks ours makes for reorg safety (four block reads a range): how near the floor plain code
 *   with the same checks gets.
 *
 * Each round runs them all side by side, in a rotating order; figures are medians. The note also
 * gives the CPU time ours, (a) and (c) spent in their timed windows, in this process (every
 * thread) and in anvil: on a machine of n cores, their sum / n is the least wall time a run can
 * take, so it tells a run bound by the CPU from one bound by waiting. It also gives how long this
 * process's main thread was busy: a run whose main thread is busy nearly all along is bound by
 * that one thread, whatever the cores.
 *
 * Then ours and (a) again, side by side, through a proxy that adds a round trip of 20 ms, then
 * 50 ms, to every call (`rpcDelay.mjs`, a process of its own): a hosted RPC rather than an anvil
 * on the same machine, where each call costs a round trip rather than our CPU. Informative, with
 * the same 1.2x check.
 */
import Database from "better-sqlite3"
import { Effect, Exit, Fiber, Layer, Logger, LogLevel, Option, Scope } from "effect"
import { spawn } from "node:child_process"
import { availableParallelism } from "node:os"
import { fileURLToPath } from "node:url"
import { request } from "undici"
import { type Hex, numberToHex } from "viem"
import * as EventId from "../src/events/EventId.js"
import { EventStore } from "../src/events/EventStore.js"
import { EthereumClient, type EthLog } from "../src/ethereum/EthereumClient.js"
import * as LogFollower from "../src/ethereum/LogFollower.js"
import * as Contracts from "../src/extensions/contracts/index.js"
import { CreditAccount, creditAccount } from "../src/extensions/creditAccount.js"
import * as EthDeposits from "../src/extensions/ethDeposits.js"
import * as Checkpoints from "../src/extensions/ethDepositsCheckpoint.js"
import { ListenerContext } from "../src/listener/Listener.js"
import { ResolutionRegistry } from "../src/voting/ResolutionRegistry.js"
import * as CatchupChain from "./catchupChain.js"
import {
  cpuReading,
  type CpuReading,
  cpuSpent,
  median,
  migrateFile,
  nodeDb,
  type Options,
  rawDb,
  type Result,
  sideBySide,
  tempDir
} from "./harness.js"

const confirmations = 12

/** A catch-up that has not reached the confirmed head by then fails the benchmark rather than hang it (the 1,000,000-log one takes about a minute). */
const limitMs = 10 * 60_000

/** The node database at `file`, with the event store and the credit_account resolution. */
export const database = (file: string) =>
  EventStore.layerSql.pipe(
    Layer.provideMerge(ResolutionRegistry.layer(creditAccount)),
    Layer.provideMerge(nodeDb(file)),
    Layer.orDie
  )

/** Events stored in `file`. */
export const storedEvents = (file: string): number => {
  const db = new Database(file, { readonly: true })
  try {
    return (db.prepare("SELECT count(*) AS n FROM events").all()[0] as { n: number }).n
  } finally {
    db.close()
  }
}

export interface Target {
  readonly url: string
  readonly escrow: Hex
  readonly startingHeight: bigint
  /** The confirmed head: done when the stored checkpoint reaches it. */
  readonly confirmed: bigint
  /** The node's process, whose CPU time each run reports (see `CpuReading`). */
  readonly nodePid?: number
}

/** The target of a built chain: its escrow, from the escrow's block to the chain's head. */
export const targetOf = (built: CatchupChain.BuiltChain): Target => ({
  url: built.chain.anvil.httpUrl,
  escrow: built.chain.deployment.escrow,
  startingHeight: built.chain.deployment.escrowBlock,
  confirmed: built.head,
  nodePid: built.chain.anvil.pid
})

/**
 * Ours: the listener over a fresh database `file` until its stored checkpoint reaches
 * `target.confirmed`. Returns the wall time (ms), the CPU time spent meanwhile by this process
 * and by the node, and the `eth_getLogs` ranges it asked for.
 * The end is seen by the store itself: after each committed transaction, the checkpoint it
 * stored is read back (no polling loop competing with the listener for the CPU). `onProgress`
 * runs there too, with the checkpoint, for the memory run.
 */
export const ours = async (
  file: string,
  target: Target,
  onProgress?: (checkpoint: bigint) => void
): Promise<{ ms: number; cpu: CpuReading; ranges: Array<readonly [bigint, bigint]> }> => {
  const ranges: Array<readonly [bigint, bigint]> = []
  const recording = () =>
    Layer.effect(
      EthereumClient,
      Effect.map(EthereumClient, (client) =>
        EthereumClient.of({
          ...client,
          getLogs: (params) => {
            ranges.push([params.fromBlock, params.toBlock])
            return client.getLogs(params)
          }
        }))
    ).pipe(Layer.provide(EthereumClient.layer({ urls: [target.url], timeout: "30 seconds", pollingInterval: "1 second" })))
  const config = {
    rpc_provider: target.url,
    contract_address: target.escrow,
    starting_height: String(target.startingHeight),
    required_confirmations: String(confirmations)
  }
  let reached: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    reached = resolve
  })
  /** The listener's store, reporting each committed checkpoint. */
  const watched = Layer.effect(
    EventStore,
    Effect.map(EventStore, (store) =>
      EventStore.of({
        ...store,
        transaction: (effect) =>
          Effect.tap(store.transaction(effect), () =>
            Checkpoints.readCheckpoint(store.kv).pipe(
              Effect.map(Option.map((cp) => {
                onProgress?.(cp.height)
                if (cp.height >= target.confirmed) reached()
              })),
              Effect.orDie
            ))
      }))
  )
  const scope = Effect.runSync(Scope.make())
  let fiber: Fiber.RuntimeFiber<void, unknown> | undefined
  try {
    const context = await Effect.runPromise(Layer.buildWithScope(
      Layer.mergeAll(
        watched.pipe(Layer.provide(EventStore.layerFor(EthDeposits.name))),
        Layer.succeed(ListenerContext, { name: EthDeposits.name, identity: "node-0", config, configured: true })
      ).pipe(Layer.provide(database(file))),
      scope
    ))
    const listener = EthDeposits.makeEthDeposits({ client: recording, pollInterval: "1 second", timeout: "30 seconds" })
    const cpu0 = cpuReading(target.nodePid)
    const start = process.hrtime.bigint()
    fiber = Effect.runFork(
      listener.run.pipe(Effect.scoped, Effect.provide(context), Logger.withMinimumLogLevel(LogLevel.Warning))
    )
    const ended = Effect.runPromise(Fiber.await(fiber)).then((exit) => {
      throw new Error(`the listener ended: ${String(exit)}`)
    })
    let timer: NodeJS.Timeout | undefined
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the listener did not store up to block ${target.confirmed} in ${limitMs / 60_000} minutes`)), limitMs)
    })
    await Promise.race([done, ended, stuck]).finally(() => clearTimeout(timer))
    const ms = Number(process.hrtime.bigint() - start) / 1e6
    const cpu = cpuSpent(cpu0, cpuReading(target.nodePid))
    ended.catch(() => {})
    return { ms, cpu, ranges }
  } finally {
    // However it ended (a timeout too), the listener stops before its database closes.
    if (fiber !== undefined) await Effect.runPromise(Fiber.interrupt(fiber))
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** A bare JSON-RPC POST of `body` to `url` through undici's `request` (the HTTP client ours uses), returning the parsed answer. */
const post = async (url: string, body: string): Promise<unknown> => {
  const res = await request(url, { method: "POST", headers: { "content-type": "application/json" }, body })
  return res.body.json()
}

/** One bare JSON-RPC call, returning `result`. */
const rpc = async <A>(url: string, method: string, params: ReadonlyArray<unknown>): Promise<A> =>
  ((await post(url, JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }))) as { result: A }).result

/** A log as `eth_getLogs` returns it in JSON: its numbers as hex quantities. */
type JsonLog = Omit<EthLog, "blockNumber" | "transactionIndex" | "logIndex"> & {
  readonly blockNumber: Hex
  readonly transactionIndex: Hex
  readonly logIndex: Hex
}

/** The escrow's `Credit` logs of `[from, to]`, as a bare `eth_getLogs` POST. */
const getLogs = (target: Target, from: bigint, to: bigint): Promise<ReadonlyArray<JsonLog>> =>
  rpc(target.url, "eth_getLogs", [
    { address: target.escrow, topics: [Contracts.creditTopic], fromBlock: numberToHex(from), toBlock: numberToHex(to) }
  ])

/** The hash of block `height`, by a bare `eth_getBlockByNumber`. */
const blockHash = async (target: Target, height: bigint): Promise<Hex> =>
  (await rpc<{ readonly hash: Hex }>(target.url, "eth_getBlockByNumber", [numberToHex(height), false])).hash

/** The chain id of `target`'s node, by a bare `eth_chainId`. */
const chainIdOf = async (target: Target): Promise<bigint> => BigInt(await rpc<Hex>(target.url, "eth_chainId", []))

/**
 * (a) The same `eth_getLogs` requests, as bare JSON-RPC POSTs, `inFlight` at a time (as many as
 * ours fetches at once). Returns ms, the CPU spent meanwhile (this process, the node) and the
 * logs seen.
 */
export const bare = async (
  target: Target,
  ranges: ReadonlyArray<readonly [bigint, bigint]>,
  inFlight = LogFollower.defaultInFlight
): Promise<{ ms: number; cpu: CpuReading; logs: number }> => {
  let logs = 0
  let next = 0
  const cpu0 = cpuReading(target.nodePid)
  const start = process.hrtime.bigint()
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < ranges.length) {
      const [from, to] = ranges[next++]!
      // Awaited before the sum: `logs += await ...` would read `logs` before the wait.
      const found = await getLogs(target, from, to)
      logs += found.length
    }
  }))
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  return { ms, cpu: cpuSpent(cpu0, cpuReading(target.nodePid)), logs }
}

/**
 * `target` behind `rpcDelay.mjs`, which adds `roundTrip` ms to every call (in a process of its
 * own). `stop` ends the proxy.
 */
export const delayed = async (
  target: Target,
  roundTrip: number
): Promise<{ readonly target: Target; readonly stop: () => void }> => {
  const script = fileURLToPath(new URL("./rpcDelay.mjs", import.meta.url))
  const proxy = spawn(process.execPath, [script, target.url, String(roundTrip)], { stdio: ["pipe", "pipe", "inherit"] })
  const port = await new Promise<string>((resolve, reject) => {
    proxy.once("error", reject)
    proxy.once("exit", (code) => reject(new Error(`rpcDelay.mjs exited (${code}) before listening`)))
    proxy.stdout.once("data", (chunk: Buffer) => resolve(chunk.toString().trim()))
  })
  return { target: { ...target, url: `http://127.0.0.1:${port}` }, stop: () => proxy.kill() }
}

/**
 * (c) The raw pipeline over a fresh database `file` (migrated, then opened with raw better-sqlite3
 * as the node's connection is: `rawDb`): the same ranges as bare POSTs, `inFlight` of them asked at a time (as many as ours
 * fetches, `LogFollower.defaultInFlight`; or 1: the next is asked once this one's answer is in,
 * and is on the wire while this range is stored); per range one transaction of
 * prepared `INSERT`s (body by `creditBody`, id by `EventId.make`) and the range's checkpoint (a
 * plain JSON height). Returns ms (the first request to the last commit) and the CPU spent
 * meanwhile (this process, the node).
 *
 * With `checked`, each range also makes the block-hash checks ours makes (`LogFollower`'s unit):
 * block `to` before its logs, then block `to` again, block `from - 1` and block
 * `to + confirmations` (the depth check) together after them; it throws unless the two reads of
 * `to` agree, block `to + confirmations` is served, and block `from - 1`, when an earlier range
 * ended there, has that range's hash (ours' ranges come in the order its calls went out,
 * not always that of their blocks, and may repeat one it fetched again).
 * The least a pipeline that stores the same events with the same reorg checks pays.
 */
export const raw = async (
  file: string,
  target: Target,
  ranges: ReadonlyArray<readonly [bigint, bigint]>,
  chainId: bigint,
  inFlight: number,
  checked = false
): Promise<{ ms: number; cpu: CpuReading }> => {
  await migrateFile(file)
  const db = rawDb(file)
  try {
    const insert = db.prepare("INSERT INTO events (id, type, body, listener) VALUES (?, ?, ?, ?)")
    const checkpoint = db.prepare("INSERT OR REPLACE INTO kv (listener, key, value) VALUES (?, ?, ?)")
    const word = EthDeposits.chainIdWord(chainId)
    const cpu0 = cpuReading(target.nodePid)
    const start = process.hrtime.bigint()
    const asked: Array<Promise<{ readonly logs: ReadonlyArray<JsonLog>; readonly to: Hex; readonly anchor: Hex }>> = []
    /** A range's logs, with the hashes of its `to` and `from - 1` blocks when `checked`. */
    const fetchRange = async (from: bigint, to: bigint) => {
      if (!checked) return { logs: await getLogs(target, from, to), to: "0x" as Hex, anchor: "0x" as Hex }
      const pre = await blockHash(target, to)
      const logs = await getLogs(target, from, to)
      // Block 0 has no block before it to anchor to (as in ours' unit).
      const [post, anchor] = await Promise.all([
        blockHash(target, to),
        from > 0n ? blockHash(target, from - 1n) : Promise.resolve("0x" as Hex),
        // Throws (a null block has no hash) when the node does not have it.
        blockHash(target, to + BigInt(confirmations))
      ])
      if (post !== pre) throw new Error(`block ${to} changed from ${pre} to ${post}`)
      return { logs, to: pre, anchor }
    }
    const ask = (i: number) => {
      if (i < ranges.length) asked.push(fetchRange(ranges[i]![0], ranges[i]![1]))
    }
    /** The hash of each range's `to` block, by height. */
    const ends = new Map<bigint, Hex>()
    for (let i = 0; i < inFlight; i++) ask(i)
    for (let i = 0; i < ranges.length; i++) {
      const { anchor, logs, to } = await asked.shift()!
      ask(i + inFlight)
      if (checked) {
        const before = ends.get(ranges[i]![0] - 1n)
        if (before !== undefined && anchor !== before) {
          throw new Error(`block ${ranges[i]![0] - 1n} is ${anchor}, not the range before's ${before}`)
        }
        ends.set(ranges[i]![1], to)
      }
      db.exec("BEGIN")
      for (const json of logs) {
        const log: EthLog = {
          ...json,
          blockNumber: BigInt(json.blockNumber),
          transactionIndex: Number(json.transactionIndex),
          logIndex: Number(json.logIndex)
        }
        const body = EthDeposits.creditBody(log, word)
        insert.run(EventId.make(CreditAccount.name, body), CreditAccount.name, body, EthDeposits.name)
      }
      checkpoint.run(EthDeposits.name, Checkpoints.checkpointKey, Buffer.from(JSON.stringify({ height: String(ranges[i]![1]) })))
      db.exec("COMMIT")
    }
    const ms = Number(process.hrtime.bigint() - start) / 1e6
    return { ms, cpu: cpuSpent(cpu0, cpuReading(target.nodePid)) }
  } finally {
    db.close()
  }
}

/** (b) The original's way: fixed `chunk`-block ranges, one write transaction per event, then one for the range's checkpoint. */
export const original = async (file: string, target: Target, chunk = 1_000): Promise<number> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const store = yield* EventStore
      const client = yield* EthereumClient
      const start = process.hrtime.bigint()
      const chainId = BigInt(yield* client.chainId)
      for (let from = target.startingHeight; from <= target.confirmed; from += BigInt(chunk)) {
        const to = from + BigInt(chunk) - 1n < target.confirmed ? from + BigInt(chunk) - 1n : target.confirmed
        const logs = yield* client.getLogs({ address: target.escrow, event: Contracts.creditEvent, fromBlock: from, toBlock: to })
        for (const log of logs) {
          const decoded = EthDeposits.decodeCredit(log, chainId, target.escrow)
          if (decoded._tag === "Credit") yield* store.transaction(store.broadcast(CreditAccount, decoded.payload))
        }
        yield* store.transaction(Checkpoints.writeCheckpoint(store.kv, { height: to }))
      }
      return Number(process.hrtime.bigint() - start) / 1e6
    }).pipe(
      Effect.provide(Layer.mergeAll(
        EventStore.layerFor(EthDeposits.name).pipe(Layer.provide(database(file))),
        EthereumClient.layer({ urls: [target.url], timeout: "30 seconds" })
      )),
      Effect.orDie
    )
  )

export const run = async (options: Options): Promise<ReadonlyArray<Result>> => {
  const spec: CatchupChain.ChainSpec = options.quick
    ? { blocks: 20_000, txs: 20, logsPerTx: 100 }
    : { blocks: 100_000, txs: 100, logsPerTx: 100 }
  const rounds = 5
  const dir = tempDir("catchup")
  try {
    return await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const built = yield* CatchupChain.build(spec)
      yield* CatchupChain.verify(built)
      yield* built.chain.anvil.mine(confirmations)
      const target = targetOf(built)
      return yield* Effect.promise(async () => {
        // Warm-up (JIT, native module, anvil's caches), not measured: also records the ranges.
        const warm = await ours(dir.path("warm.db"), target)
        const ranges = warm.ranges
        const chainId = await chainIdOf(target)
        const o: Array<number> = []
        const a: Array<number> = []
        const b: Array<number> = []
        const c: Array<number> = []
        const c1: Array<number> = []
        const cc: Array<number> = []
        /** The bare requests one at a time. */
        const a1: Array<number> = []
        /** CPU spent in each local run of ours, of the bare requests and of the raw pipeline (without and with the checks). */
        const oCpu: Array<CpuReading> = []
        const aCpu: Array<CpuReading> = []
        const cCpu: Array<CpuReading> = []
        const ccCpu: Array<CpuReading> = []
        /** Throws unless `file` holds exactly the chain's deposits. */
        const check = (file: string, who: string) => {
          const n = storedEvents(file)
          if (n !== built.logs) throw new Error(`${who} stored ${n} events, expected ${built.logs}`)
        }
        /** Ours over `on` into a fresh `file`, checked to hold every deposit. */
        const oursOn = async (on: Target, file: string, who: string) => {
          const res = await ours(file, on)
          check(file, who)
          return res
        }
        /** The bare requests to `on`, checked to see every log. */
        const bareOn = async (on: Target, inFlight?: number) => {
          const res = await bare(on, ranges, inFlight)
          if (res.logs !== built.logs) throw new Error(`bare eth_getLogs saw ${res.logs} logs, expected ${built.logs}`)
          return res
        }
        const runs = [
          async (r: number) => {
            const res = await oursOn(target, dir.path(`ours-${r}.db`), "ours")
            o.push(res.ms)
            oCpu.push(res.cpu)
          },
          async () => {
            const res = await bareOn(target)
            a.push(res.ms)
            aCpu.push(res.cpu)
          },
          async () => {
            a1.push((await bareOn(target, 1)).ms)
          },
          async (r: number) => {
            const file = dir.path(`original-${r}.db`)
            b.push(await original(file, target))
            check(file, "the original's way")
          },
          async (r: number) => {
            const file = dir.path(`raw-${r}.db`)
            const res = await raw(file, target, ranges, chainId, LogFollower.defaultInFlight)
            c.push(res.ms)
            cCpu.push(res.cpu)
            check(file, "the raw pipeline")
          },
          async (r: number) => {
            const file = dir.path(`raw2-${r}.db`)
            c1.push((await raw(file, target, ranges, chainId, 1)).ms)
            check(file, "the raw pipeline with one range in flight")
          },
          async (r: number) => {
            const file = dir.path(`rawChecked-${r}.db`)
            const res = await raw(file, target, ranges, chainId, LogFollower.defaultInFlight, true)
            cc.push(res.ms)
            ccCpu.push(res.cpu)
            check(file, "the raw pipeline with block checks")
          }
        ]
        for (let r = 0; r < rounds; r++) {
          for (let i = 0; i < runs.length; i++) await runs[(i + r) % runs.length]!(r)
        }
        const mo = median(o)
        const ma = median(a)
        const mb = median(b)
        const mc = median(c)
        const size = `${(spec.blocks).toLocaleString("en")} blocks, ${built.logs.toLocaleString("en")} deposits`
        const all = (xs: ReadonlyArray<number>) => xs.map((x) => Math.round(x)).join(", ")
        const rawBare = `raw/bare = ${(mc / ma).toFixed(2)}; with one range in flight at a time ` +
          `(${all(c1)} ms) ${(median(c1) / ma).toFixed(2)}; with ours' block-hash checks (the pre and post ` +
          `checks, the anchor and the depth check, ${4 * ranges.length} more calls, all through undici's request; ${all(cc)} ms) ` +
          `${(median(cc) / ma).toFixed(2)}, ours/that = ${(mo / median(cc)).toFixed(2)}`
        const cores = availableParallelism()
        /**
         * Medians of a run's CPU: this process, its main thread's busy time, the node, and the wall
         * time that CPU needs at the least on `cores` cores.
         */
        const cpuOf = (who: string, readings: ReadonlyArray<CpuReading>) => {
          const self = Math.round(median(readings.map((r) => r.self)))
          const here = `${who} ${self} ms here (its main thread busy ${Math.round(median(readings.map((r) => r.busy)))} ms)`
          if (readings.some((r) => r.other === undefined)) return here
          const node = Math.round(median(readings.map((r) => r.other!)))
          const least = Math.round(median(readings.map((r) => (r.self + r.other!) / cores)))
          return `${here} + ${node} ms in anvil (so at least ${least} ms of wall time on ${cores} cores)`
        }
        const cpu = `CPU time in the timed window, medians: ${cpuOf("ours", oCpu)}; ${cpuOf("bare", aCpu)}; ` +
          `${cpuOf("raw", cCpu)}; ${cpuOf("raw with the block checks", ccCpu)}; the bar allows ${Math.round(ma * 1.2)} ms`
        const common = `median of ${rounds} rounds (ours ${all(o)} ms; bare ${all(a)} ms; original ${all(b)} ms; raw ${all(c)} ms); ` +
          `${ranges.length} eth_getLogs ranges (${ranges.map(([f, t]) => Number(t - f + 1n)).join(",")} blocks); ` +
          `chain built in ${(built.buildMs / 1000).toFixed(1)} s (anvil --hardfork cancun --prune-history)`
        const local: Array<Result> = [
          {
            name: `catch-up vs bare eth_getLogs (${size})`,
            ours: Math.round(mo),
            baseline: Math.round(ma),
            unit: "ms",
            ratio: mo / ma,
            bar: "<= 1.2x the same eth_getLogs, bare",
            pass: mo / ma <= 1.2,
            note: `${common}; bare = the same requests as plain JSON-RPC POSTs through undici, ` +
              `${LogFollower.defaultInFlight} in flight as ours, each answer parsed, no decoding or storage; ` +
              `the raw pipeline (how near this floor plain code that stores gets here): ${rawBare}; the bare ` +
              `requests one at a time: ${all(a1)} ms, ours/that = ${(mo / median(a1)).toFixed(2)}; ${cpu}`
          },
          {
            name: `catch-up vs original's way (${size})`,
            ours: Math.round(mo),
            baseline: Math.round(mb),
            unit: "ms",
            ratio: mo / mb,
            bar: "informative (< 1x: faster)",
            pass: mo / mb < 1,
            note: `original = fixed 1,000-block ranges, one EventStore.transaction per event, one per range's checkpoint`
          },
          {
            name: `catch-up vs a raw pipeline (${size})`,
            ours: Math.round(mo),
            baseline: Math.round(mc),
            unit: "ms",
            ratio: mo / mc,
            bar: "informative (< 2x: how far ours is from plain code)",
            pass: mo / mc < 2,
            note: `raw = the same ranges as plain POSTs, ${LogFollower.defaultInFlight} in flight as ours, creditBody + EventId.make, one raw ` +
              `better-sqlite3 transaction per range (prepared INSERTs + the checkpoint, WAL); ${rawBare}; ` +
              `pass: ours at most doubles what plain code pays for the same events`
          }
        ]
        const hosted: Array<Result> = []
        for (const roundTrip of [20, 50]) {
          const proxy = await delayed(target, roundTrip)
          try {
            const timed = await sideBySide(
              rounds,
              async (r) =>
                (await oursOn(proxy.target, dir.path(`ours-${roundTrip}ms-${r}.db`), `ours over a ${roundTrip} ms round trip`))
                  .ms,
              async () => (await bareOn(proxy.target)).ms
            )
            const ratio = timed.ours / timed.baseline
            hosted.push({
              name: `catch-up over a ${roundTrip} ms round trip vs bare eth_getLogs (${size})`,
              ours: Math.round(timed.ours),
              baseline: Math.round(timed.baseline),
              unit: "ms",
              ratio,
              bar: "informative (<= 1.2x, as on anvil)",
              pass: ratio <= 1.2,
              note: `median of ${rounds} rounds (ours ${all(timed.oursAll)} ms; bare ${all(timed.baselineAll)} ms); both through rpcDelay.mjs, ` +
                `a proxy in a process of its own adding ${roundTrip} ms to every call (a hosted RPC's latency); bare ` +
                `with ${LogFollower.defaultInFlight} requests in flight, as ours`
            })
          } finally {
            proxy.stop()
          }
        }
        return [...local, ...hosted]
      })
    })))
  } finally {
    dir.remove()
  }
}
