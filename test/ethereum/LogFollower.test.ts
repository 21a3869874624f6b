import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, FiberRef, Layer, Logger, Metric, Option, Ref, Stream, TestClock } from "effect"
import { EthereumClient, type EthLog } from "../../src/ethereum/EthereumClient.js"
import { RangeTooLarge, RpcBadRequest, RpcRateLimited, RpcTimeout } from "../../src/ethereum/errors.js"
import * as LogFollower from "../../src/ethereum/LogFollower.js"
import { blockHash, CONTRACT, FakeChain, TOPIC } from "./FakeChain.js"

type Event = LogFollower.FollowerEvent

const start = (
  layer: Layer.Layer<EthereumClient>,
  options: Partial<LogFollower.Options> = {}
) =>
  Effect.gen(function*() {
    const events = yield* Ref.make<ReadonlyArray<Event>>([])
    const fiber = yield* LogFollower.follow({
      filter: { address: CONTRACT, topics: [TOPIC] },
      from: LogFollower.startAt(0n),
      confirmations: 5,
      ...options
    }).pipe(
      Stream.runForEach((e) => Ref.update(events, (es) => [...es, e])),
      Effect.provide(layer),
      Effect.fork
    )
    yield* TestClock.adjust("10 millis")
    return { events: Ref.get(events), fiber }
  })

const batches = (events: ReadonlyArray<Event>) =>
  events.filter((e): e is LogFollower.Batch => e._tag === "Batch")

/** What a consumer holds after applying every event: rewinds drop the logs above the ancestor. */
const apply = (events: ReadonlyArray<Event>) => {
  let logs: Array<EthLog> = []
  let checkpoint: LogFollower.Checkpoint = LogFollower.startAt(0n)
  for (const e of events) {
    if (e._tag === "Batch") {
      expect(e.from).toBe(checkpoint.height + 1n) // contiguous, no block twice, no gap
      logs = [...logs, ...e.logs]
      checkpoint = e.checkpoint
    } else {
      logs = logs.filter((l) => l.blockNumber <= e.checkpoint.height)
      checkpoint = e.checkpoint
    }
  }
  return { logs, checkpoint }
}

/** `chain`'s client, which runs `change` on the chain once, as the logs from `fromBlock` are first asked for. */
const changedWhenAsked = (chain: FakeChain, fromBlock: bigint, change: () => void) => {
  let changed = false
  return chain.layerWith({
    getLogs: (p) =>
      Effect.suspend(() => {
        if (p.fromBlock === fromBlock && !changed) {
          changed = true
          change()
        }
        return chain.client.getLogs(p)
      })
  })
}

const logsUpTo = (chain: FakeChain, height: bigint) => chain.allLogs().filter((l) => l.blockNumber <= height)

/** Checks `events` are batches only, holding exactly `chain`'s logs up to `height`; returns those logs. */
const expectBatchesUpTo = (events: ReadonlyArray<Event>, chain: FakeChain, height: bigint) => {
  expect(events.every((e) => e._tag === "Batch")).toBe(true)
  const { checkpoint, logs } = apply(events)
  expect(checkpoint).toEqual({ height, hash: blockHash(chain, height) })
  expect(logs).toEqual(logsUpTo(chain, height))
  return logs
}

describe("LogFollower", () => {
  it.effect("emits only confirmed ranges, each with the hash of its last block", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(21) // blocks 0..20
      const f = yield* start(chain.layer)
      let events = yield* f.events
      expect(batches(events).map((b) => [b.from, b.to])).toEqual([[0n, 15n]])
      expect(apply(events).logs).toEqual(logsUpTo(chain, 15n))
      expect(batches(events)[0]!.toHash).toBe(blockHash(chain, 15n))

      chain.mine(3) // head 23 -> confirmed 18
      yield* TestClock.adjust("1 second")
      events = yield* f.events
      expect(batches(events).map((b) => [b.from, b.to])).toEqual([[0n, 15n], [16n, 18n]])
      expect(apply(events)).toEqual({ logs: logsUpTo(chain, 18n), checkpoint: { height: 18n, hash: blockHash(chain, 18n) } })
    }))

  it.effect("emits nothing until a block has its confirmations", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(4) // head 3, 5 confirmations: nothing confirmed
      const f = yield* start(chain.layer)
      yield* TestClock.adjust("10 seconds")
      expect(yield* f.events).toEqual([])
      chain.mine(2) // head 5 -> block 0 confirmed
      yield* TestClock.adjust("1 second")
      expect(batches(yield* f.events).map((b) => [b.from, b.to])).toEqual([[0n, 0n]])
    }))

  it.effect("confirms by the finalized and safe tags", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31) // head 30, finalized 20, safe 25
      const finalized = yield* start(chain.layer, { confirmations: "finalized" })
      const safe = yield* start(chain.layer, { confirmations: "safe" })
      expect(apply(yield* finalized.events).checkpoint.height).toBe(20n)
      expect(apply(yield* safe.events).checkpoint.height).toBe(25n)
      chain.mine(4)
      yield* TestClock.adjust("1 second")
      expect(apply(yield* finalized.events).checkpoint.height).toBe(24n)
      expect(apply(yield* safe.events)).toEqual({
        logs: logsUpTo(chain, 29n),
        checkpoint: { height: 29n, hash: blockHash(chain, 29n) }
      })
    }))

  it.effect("fails when the provider does not know the tag", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31)
      chain.tagsSupported = false
      const f = yield* start(chain.layer, { confirmations: "finalized" })
      const exit = yield* Fiber.await(f.fiber)
      expect(Exit.isFailure(exit) && exit.cause.toString()).toContain("BlockTagUnsupported")
    }))

  it.effect("a reorg within the confirmation depth costs nothing: the orphaned log is never emitted", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(21)
      const f = yield* start(chain.layer)
      const orphaned = chain.blocks[18]!.logs[0]!
      chain.reorg(3, () => 2) // blocks 18..20 replaced, within depth 5
      chain.mine(3) // head 23 -> confirmed 18
      yield* TestClock.adjust("1 second")
      const events = yield* f.events
      expect(events.every((e) => e._tag === "Batch")).toBe(true)
      const { logs } = apply(events)
      expect(logs).toEqual(logsUpTo(chain, 18n))
      expect(logs.map((l) => l.transactionHash)).not.toContain(orphaned.transactionHash)
      expect(logs.filter((l) => l.blockNumber === 18n)).toHaveLength(2) // the replacement is
    }))

  it.effect("a reorg deeper than the depth: FinalityViolation, rewind to the common ancestor, re-scan", () =>
    Effect.gen(function*() {
      const before = (yield* Metric.value(LogFollower.finalityViolations)).count
      const chain = new FakeChain(31)
      const f = yield* start(chain.layer, { range: { initial: 10 } })
      expect(batches(yield* f.events).map((b) => b.to)).toEqual([9n, 21n, 25n]) // the range grows
      chain.reorg(12, () => 3) // blocks 19..30: batch ends 21 and 25 are orphaned, 9 is not
      chain.mine(1)
      yield* TestClock.adjust("1 second")
      const events = yield* f.events
      const rewind = events.find((e): e is LogFollower.Rewind => e._tag === "Rewind")!
      expect(rewind.checkpoint).toEqual({ height: 9n, hash: blockHash(chain, 9n) })
      expect(rewind.violation.height).toBe(25n)
      expect(rewind.violation.actual).toBe(blockHash(chain, 25n))
      expect(events.indexOf(rewind)).toBe(3)
      expect(apply(events)).toEqual({ logs: logsUpTo(chain, 26n), checkpoint: { height: 26n, hash: blockHash(chain, 26n) } })
      expect((yield* Metric.value(LogFollower.finalityViolations)).count).toBe(before + 1)
    }))

  it.effect("a restart from a checkpoint that is no longer canonical rewinds through the consumer's history", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31)
      const old = { height: 10n, hash: blockHash(chain, 10n) }
      const stale = { height: 22n, hash: blockHash(chain, 22n) }
      chain.reorg(15) // blocks 16..30 replaced: the stored checkpoint 22 is orphaned
      const history = (below: bigint) =>
        Effect.succeed(below > old.height ? Option.some(old) : Option.none<LogFollower.Checkpoint>())
      const f = yield* start(chain.layer, { from: stale, history })
      const events = yield* f.events
      expect(events[0]).toMatchObject({ _tag: "Rewind", checkpoint: old })
      expect(batches(events)[0]!.from).toBe(11n)

      const alone = yield* start(chain.layer, { from: stale })
      const exit = yield* Fiber.await(alone.fiber)
      expect(Exit.isFailure(exit) && exit.cause.toString()).toContain("ReorgBeyondHistory")
    }))

  it.effect("a checkpoint above the chain's head, on a chain reset below an older checkpoint, rewinds at once", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31)
      const older = { height: 3n, hash: blockHash(chain, 3n) }
      const old = { height: 10n, hash: blockHash(chain, 10n) }
      chain.mine(20)
      const stale = { height: 40n, hash: blockHash(chain, 40n) }
      chain.reorg(46) // blocks 5..50 replaced, then the chain is cut back to 30: below the checkpoint
      chain.blocks.splice(31)
      const history = (below: bigint) =>
        Effect.succeed(Option.fromNullable([older, old].filter((c) => c.height < below).at(-1)))
      const f = yield* start(chain.layer, { from: stale, history })
      const events = yield* f.events
      expect(events[0]).toMatchObject({ _tag: "Rewind", checkpoint: older })
      expect((events[0] as LogFollower.Rewind).violation).toMatchObject({ height: 10n, expected: old.hash })
      const rescanned = logsUpTo(chain, 25n).filter((l) => l.blockNumber > older.height)
      expect(apply(events)).toEqual({ logs: rescanned, checkpoint: { height: 25n, hash: blockHash(chain, 25n) } })
    }))

  it.effect("a checkpoint above the head of a node still syncing: waits, says so once, then goes on from it", () =>
    Effect.gen(function*() {
      const warnings: Array<string> = []
      const logs = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message }) => {
          if (logLevel._tag === "Warning") warnings.push(String(message))
        })
      )
      const chain = new FakeChain(51)
      const old = { height: 10n, hash: blockHash(chain, 10n) }
      const ahead = { height: 40n, hash: blockHash(chain, 40n) }
      const full = chain.blocks.splice(31) // the node has synced up to block 30 so far
      const history = (below: bigint) => Effect.succeed(below > old.height ? Option.some(old) : Option.none())
      const f = yield* start(chain.layer.pipe(Layer.provideMerge(logs)), { from: ahead, history })
      chain.blocks.push(...full.slice(0, 5)) // head 35: still below
      yield* TestClock.adjust("5 seconds")
      expect(yield* f.events).toEqual([])
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain("below the checkpoint")
      chain.blocks.push(...full.slice(5)) // head 50: confirmed 45
      yield* TestClock.adjust("5 seconds")
      const events = yield* f.events
      expect(batches(events).map((b) => [b.from, b.to])).toEqual([[41n, 45n]])
      expect(warnings).toHaveLength(1)
    }))

  it.effect("a head that a lagging source reports lower never makes it re-emit or go back", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(21)
      chain.headScript = [20n, 7n, 7n, 7n, 7n]
      chain.missing.add(17n) // the lagging node does not have block 17 yet
      const f = yield* start(chain.layer)
      chain.mine(2) // head 22 -> confirmed 17
      yield* TestClock.adjust("6 seconds")
      expect(batches(yield* f.events).map((b) => b.to)).toEqual([15n])
      chain.missing.delete(17n)
      yield* TestClock.adjust("40 seconds")
      const events = yield* f.events
      expect(apply(events).checkpoint).toEqual({ height: 17n, hash: blockHash(chain, 17n) })
      expect(apply(events).logs).toEqual(logsUpTo(chain, 17n))
    }))

  it.effect("after a reorg to a shorter chain, a block is emitted only once it has its confirmations on that chain", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31) // head 30, 5 confirmations: 0..25
      const layer = changedWhenAsked(chain, 26n, () => {
        // A 5-deep reorg (within the depth) to a shorter chain: 27..31 become 27'..29'; 26 stays.
        chain.reorg(5)
        chain.blocks.splice(30)
      })
      const seen = yield* Ref.make<ReadonlyArray<readonly [Event, bigint]>>([])
      yield* LogFollower.follow({
        filter: { address: CONTRACT, topics: [TOPIC] },
        from: LogFollower.startAt(0n),
        confirmations: 5
      }).pipe(
        Stream.runForEach((e) => Ref.update(seen, (es) => [...es, [e, chain.head] as const])),
        Effect.provide(layer),
        Effect.fork
      )
      yield* TestClock.adjust("1 second")
      chain.mine(1) // head 30: the highest head seen was 31, so 26 counts as confirmed, yet has 4
      yield* TestClock.adjust("2 seconds")
      // Nothing was emitted past what the chain itself confirms.
      for (const [event, head] of yield* Ref.get(seen)) {
        if (event._tag === "Batch") expect(event.to).toBeLessThanOrEqual(head - 5n)
      }
      chain.reorg(4) // within the depth: replaces 26..29'
      chain.mine(3)
      yield* TestClock.adjust("5 seconds")
      // No orphaned log reached the consumer: batches only, exactly the chain's logs.
      expectBatchesUpTo((yield* Ref.get(seen)).map(([e]) => e), chain, chain.head - 5n)
    }))

  it.effect("a first URL behind the others never passes for a reorg when the ancestor is searched", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(61) // confirmed 55
      const behindAt = 20n // URL 0 stopped syncing at block 20 (the same chain below)
      const pinned = FiberRef.unsafeMake<number | undefined>(undefined)
      // Calls outside sameNode go to URL 0 (viem's fallback: a missing block is an answer, not an error).
      const onNode = <A, E>(first: Effect.Effect<A, E>, second: Effect.Effect<A, E>) =>
        Effect.flatMap(FiberRef.get(pinned), (n) => (n === 1 ? second : first))
      const layer = chain.layerWith({
        block: (ref) =>
          onNode(
            typeof ref === "bigint" && ref > behindAt ? Effect.succeed(Option.none()) : chain.client.block(ref),
            chain.client.block(ref)
          ),
        getLogs: (p) =>
          onNode(
            Effect.map(chain.client.getLogs(p), (logs) => logs.filter((l) => l.blockNumber <= behindAt)),
            chain.client.getLogs(p)
          ),
        // As the client's sameNode: URL 0, and on any failure the whole unit on URL 1.
        sameNode: (unit) => Effect.locally(unit, pinned, 0).pipe(Effect.catchAll(() => Effect.locally(unit, pinned, 1)))
      })
      const { events, fiber } = yield* start(layer, { range: { initial: 10 }, inFlight: 1, historySize: 3 })
      yield* TestClock.adjust("1 second")
      expect(batches(yield* events).map((b) => b.to)).toEqual([9n, 21n, 36n, 54n, 55n])
      chain.reorg(10) // 51..60 replaced: 54 and 55 orphaned, 36 still canonical
      chain.mine(1)
      yield* TestClock.adjust("2 seconds")
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      const rewind = (yield* events).find((e): e is LogFollower.Rewind => e._tag === "Rewind")
      expect(rewind?.checkpoint.height).toBe(36n)
    }))

  it.effect("under a tag, a range is never served by a node for which its last block is not that tag (a lagging fork)", () =>
    Effect.gen(function*() {
      const primary = new FakeChain(131) // head 130, finalized 120
      const lagging = new FakeChain(106) // the same chain up to 95, then its own fork 96..105
      lagging.reorg(10) // finalized there: 95
      const pinned = FiberRef.unsafeMake<number | undefined>(undefined)
      const onNode = <A, E>(call: (c: FakeChain) => Effect.Effect<A, E>) =>
        Effect.flatMap(FiberRef.get(pinned), (n) => call(n === 1 ? lagging : primary))
      // The primary's first logs time out: that unit moves to the lagging node.
      primary.failNext("eth_getLogs", new RpcTimeout({ method: "eth_getLogs" }))
      const layer = primary.layerWith({
        block: (ref) => onNode((c) => c.client.block(ref)),
        getLogs: (p) => onNode((c) => c.client.getLogs(p)),
        // As the client's sameNode: URL 0, and on any failure the whole unit on URL 1.
        sameNode: (unit) => Effect.locally(unit, pinned, 0).pipe(Effect.catchAll(() => Effect.locally(unit, pinned, 1)))
      })
      const from = { height: 90n, hash: primary.blocks[90]!.hash }
      const { events } = yield* start(layer, { from, confirmations: "finalized", range: { initial: 10 }, inFlight: 1 })
      yield* TestClock.adjust("5 seconds")
      const seen = yield* events
      // No fork log reached the consumer (nor a rewind after it): exactly the primary's logs.
      expect(seen.every((e) => e._tag === "Batch")).toBe(true)
      const logs = batches(seen).flatMap((b) => b.logs)
      expect(logs).toEqual(primary.allLogs().filter((l) => l.blockNumber > 90n && l.blockNumber <= 120n))
      expect(batches(seen).at(-1)?.to).toBe(120n)
    }))

  it.effect("logs that disagree with the batch's block hash are fetched again, never emitted", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(21)
      chain.tamperNext = (logs) => logs.map((l) => (l.blockNumber === 15n ? { ...l, blockHash: blockHash(chain, 3n) } : l))
      const f = yield* start(chain.layer)
      expect(yield* f.events).toEqual([])
      yield* TestClock.adjust("2 seconds")
      const events = yield* f.events
      expect(apply(events).logs).toEqual(logsUpTo(chain, 15n))
      expect(chain.calls.get("eth_getLogs")).toBe(2)
    }))

  it.effect("pipelines a catch-up: inFlight ranges (4 here) are fetched at once, the same ranges as one at a time", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(61) // confirmed 55: ranges end at 9, 21, 36, 54 and 55
      chain.latency = "100 millis"
      const counted = chain.countingInFlight()
      const stamped = yield* Ref.make<ReadonlyArray<readonly [bigint, number]>>([])
      yield* LogFollower.follow({ filter: { address: CONTRACT, topics: [TOPIC] }, from: LogFollower.startAt(0n), confirmations: 5, range: { initial: 10 }, inFlight: 4 }).pipe(
        Stream.runForEach((e) =>
          Effect.flatMap(TestClock.currentTimeMillis, (t) =>
            Ref.update(stamped, (xs) => [...xs, [e._tag === "Batch" ? e.to : -1n, t] as const])
          )
        ),
        Effect.provide(counted.layer),
        Effect.fork
      )
      yield* TestClock.adjust("1500 millis")
      // Each call answers after 100 ms; the head is known at 100. A range is its block check, its
      // logs, then its post check (and anchor): 3 round trips. The first four ranges go at once:
      // 400; the fifth starts when the first is used: 700 (one after another: 400, 700, 1000,
      // 1300, 1600).
      expect(yield* Ref.get(stamped)).toEqual([[9n, 400], [21n, 400], [36n, 400], [54n, 400], [55n, 700]])
      expect(counted.peak()).toBe(4)
      expect([...chain.requests].sort((x, y) => Number(x[0] - y[0]))).toEqual([[0n, 9n], [10n, 21n], [22n, 36n], [37n, 54n], [55n, 55n]])
    }))

  it.effect("inFlight: 1 fetches one range at a time", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(61)
      chain.latency = "100 millis"
      const f = yield* start(chain.layer, { range: { initial: 10 }, inFlight: 1 })
      yield* TestClock.adjust("1000 millis") // batches at 400, 700 and 1000; the next block check then
      expect(batches(yield* f.events).map((b) => b.to)).toEqual([9n, 21n, 36n])
      expect(chain.calls.get("eth_getLogs")).toBe(3)
    }))

  it.effect.each([undefined, Number.NaN, Infinity])("inFlight %s is taken as the default, 6 ranges at once", (inFlight) =>
    Effect.gen(function*() {
      const chain = new FakeChain(206) // confirmed 200: nine ranges of 10 blocks and more
      chain.latency = "100 millis"
      const counted = chain.countingInFlight()
      const f = yield* start(counted.layer, { range: { initial: 10 }, ...(inFlight === undefined ? {} : { inFlight }) })
      yield* TestClock.adjust("3 seconds")
      expect(apply(yield* f.events).checkpoint).toEqual({ height: 200n, hash: blockHash(chain, 200n) })
      expect(LogFollower.defaultInFlight).toBe(6)
      expect(counted.peak()).toBe(6)
    }))

  it.effect("after a refusal, ranges go one at a time until a size is accepted", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(206) // confirmed 200
      chain.latency = "100 millis"
      // Ranges of 10 and 12 blocks pass, 15 and more are refused: the first six ranges, asked at
      // once, are 0..9, 10..21 (12 blocks), 22..36 (15), 37..54 (18), 55..76 (22) and 77..103 (27).
      chain.rangeLimit = { blocks: 14, hint: { _tag: "Shrink" } }
      const counted = chain.countingInFlight()
      const f = yield* start(counted.layer, { range: { initial: 10 } })
      yield* TestClock.adjust("30 seconds")
      const { logs, checkpoint } = apply(yield* f.events)
      expect(checkpoint.height).toBe(200n)
      expect(logs).toEqual(logsUpTo(chain, 200n))
      // 22..36 is refused; its retry (7 blocks, from 22) is asked alone, as is the next range
      // (after the window's other refused ranges are dropped): the window opens again after it.
      const retry = counted.starts.findIndex(([from], i) => from === 22n && i > 3)
      expect(counted.starts[retry]).toEqual([22n, 1])
    }))

  it.effect("a range started ahead on a chain that then moved under the range before it is never used", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31) // confirmed 25: ranges end at 9, 21 and 25
      chain.latency = "100 millis"
      const old = new Set(chain.allLogs().filter((l) => l.blockNumber >= 16n).map((l) => l.transactionHash))
      // 0..9, 10..21 and 22..25 start at once. Block 21 is asked for by 10..21's block check
      // (t = 100), its post check (t = 300) and, as the anchor, by 22..25, whose block check
      // answers 50 ms late (so its anchor is asked at 350). The post check
      // answers late, after a reorg of blocks 16..30: 10..21 is fetched again, on the new chain,
      // while 22..25 has checked itself in full on the old one, its anchor the old block 21. It
      // must be fetched again too, and not be taken for a finality violation (a Rewind).
      let calls = 0
      const scripted = chain.layerWith({
        block: (ref) =>
          Effect.suspend(() =>
            ref === 21n && ++calls === 2
              ? Effect.delay(Effect.suspend(() => {
                chain.reorg(15)
                return chain.client.block(ref)
              }), "1 second")
              : ref === 25n
              ? Effect.delay(chain.client.block(ref), "50 millis")
              : chain.client.block(ref)
          )
      })
      const f = yield* start(scripted, { range: { initial: 10 } })
      yield* TestClock.adjust("10 seconds")
      const logs = expectBatchesUpTo(yield* f.events, chain, 25n)
      expect(logs.filter((l) => old.has(l.transactionHash))).toEqual([])
      // 22..25 on the old chain (ahead), then again on the new one.
      expect(chain.requests.filter(([from]) => from === 22n)).toEqual([[22n, 25n], [22n, 25n]])
    }))

  it.effect("a range started ahead that ends at the confirmed head of its time is used as is when the head grows", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31) // confirmed 25: ranges 0..9, 10..21 and 22..25 at once
      chain.latency = "100 millis"
      const scripted = chain.layerWith({
        getLogs: (p) => p.fromBlock === 10n ? Effect.delay(chain.client.getLogs(p), "2 seconds") : chain.client.getLogs(p)
      })
      const f = yield* start(scripted, { range: { initial: 10 } })
      yield* TestClock.adjust("600 millis")
      chain.mine(10) // head 40, confirmed 35: the plan after 21 would be 22..36, clipped to 22..35
      yield* TestClock.adjust("20 seconds")
      const events = yield* f.events
      expect(events.every((e) => e._tag === "Batch")).toBe(true)
      for (const b of batches(events)) {
        expect(b.toHash).toBe(blockHash(chain, b.to))
        expect(b.logs).toEqual(chain.allLogs().filter((l) => l.blockNumber >= b.from && l.blockNumber <= b.to))
      }
      expect(batches(events).map((b) => [b.from, b.to])).toEqual([[0n, 9n], [10n, 21n], [22n, 25n], [26n, 35n]])
      expect(chain.requests.filter(([from]) => from === 22n)).toEqual([[22n, 25n]])
    }))

  it.effect("a unit that fails for good before its block check fails the stream (nothing waits on it)", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31)
      chain.failNext("eth_getBlockByNumber", new RpcBadRequest({ method: "eth_getBlockByNumber", detail: "bad" }))
      const f = yield* start(chain.layer, { range: { initial: 10 } })
      yield* TestClock.adjust("10 seconds")
      const exit = yield* Fiber.poll(f.fiber)
      expect(Option.isSome(exit) && Exit.isFailure(exit.value)).toBe(true)
    }))

  it.effect("a stream interrupted mid catch-up stops the ranges started ahead too: no call after", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(206) // confirmed 200: more ranges than are fetched at once
      chain.latency = "100 millis"
      const f = yield* start(chain.layer, { range: { initial: 10 } })
      yield* TestClock.adjust("250 millis") // the first six ranges' logs in flight (asked at 200)
      expect(chain.calls.get("eth_getLogs")).toBe(LogFollower.defaultInFlight)
      expect(chain.requests).toEqual([]) // a request is recorded when answered
      yield* Fiber.interrupt(f.fiber)
      const calls = () => [...chain.calls.values()].reduce((a, b) => a + b, 0)
      const before = calls()
      yield* TestClock.adjust("10 seconds")
      expect(calls()).toBe(before)
      expect(chain.requests).toEqual([])
    }))

  it.effect("a range whose end was replaced by a reorg after its block check is fetched again", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31)
      const orphaned = chain.blocks[21]!.logs[0]!
      // The second range's logs are asked for after a reorg that replaced its end (block 21), whose
      // block check came with the first range's post check, before the reorg.
      const scripted = changedWhenAsked(chain, 10n, () => chain.reorg(15)) // blocks 16..30: block 9, the first checkpoint, stays
      const f = yield* start(scripted, { range: { initial: 10 } })
      yield* TestClock.adjust("5 seconds")
      const logs = expectBatchesUpTo(yield* f.events, chain, 25n)
      expect(logs.map((l) => l.transactionHash)).not.toContain(orphaned.transactionHash)
      expect(chain.requests.filter(([from]) => from === 10n)).toHaveLength(2)
    }))

  it.effect("retries healable errors with backoff, honouring Retry-After", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(21)
      chain.failNext(
        "eth_getLogs",
        new RpcTimeout({ method: "eth_getLogs" }),
        new RpcRateLimited({ method: "eth_getLogs", retryAfter: Option.some(Duration.seconds(5)), detail: "429" })
      )
      const f = yield* start(chain.layer)
      yield* TestClock.adjust("4500 millis") // without Retry-After the second retry is due by 3.6 s
      expect(yield* f.events).toEqual([])
      yield* TestClock.adjust("3 seconds")
      expect(apply(yield* f.events).checkpoint.height).toBe(15n)
      expect(chain.calls.get("eth_getLogs")).toBe(3)
    }))

  it.effect("fails at once on an error that cannot heal", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(21)
      chain.failNext("eth_getLogs", new RpcBadRequest({ method: "eth_getLogs", detail: "invalid params" }))
      const f = yield* start(chain.layer)
      const exit = yield* Fiber.await(f.fiber)
      expect(Exit.isFailure(exit) && exit.cause.toString()).toContain("RpcBadRequest")
      expect(chain.calls.get("eth_getLogs")).toBe(1)
    }))

  it.effect("adapts to a provider's range limit and still covers every block exactly once", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(3006) // confirmed 3000
      chain.rangeLimit = { blocks: 300, hint: { _tag: "Limit", blocks: 300 } }
      const f = yield* start(chain.layer)
      const { logs, checkpoint } = apply(yield* f.events)
      expect(checkpoint.height).toBe(3000n)
      expect(logs).toEqual(logsUpTo(chain, 3000n))
      // The first ranges, asked at once, are refused; every range after them keeps to the limit.
      const over = chain.requests.filter(([a, b]) => b - a + 1n > 300n)
      expect(over).toEqual([[0n, 999n], [1000n, 2249n], [2250n, 3000n]])
      expect(chain.requests.slice(over.length).every(([a, b]) => b - a + 1n <= 300n)).toBe(true)
    }))

  it.effect("halves on a refusal without a number, down to one block, then fails", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(3006)
      chain.rangeLimit = { blocks: 70, hint: { _tag: "Shrink" } }
      const f = yield* start(chain.layer)
      expect(apply(yield* f.events).logs).toEqual(logsUpTo(chain, 3000n))
      const first = chain.requests.filter(([a]) => a === 0n)
      expect(first.slice(0, 5).map(([a, b]) => Number(b - a + 1n))).toEqual([1000, 500, 250, 125, 62])

      const stuck = new FakeChain(20)
      stuck.rangeLimit = { blocks: 0, hint: { _tag: "Shrink" } }
      const g = yield* start(stuck.layer)
      const exit = yield* Fiber.await(g.fiber)
      expect(Exit.isFailure(exit) && exit.cause.toString()).toContain("LogRangeIrreducible")
    }))

  it.effect("re-makes a new-heads subscription that went silent", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(21)
      let subscriptions = 0
      const deadSocket = chain.layerWith({
        subscribes: true,
        // Emits the head once, then never again: a socket that died without closing.
        newHeads: Stream.suspend(() => {
          subscriptions++
          return Stream.concat(Stream.fromEffect(chain.client.headNumber), Stream.never)
        })
      })
      const f = yield* start(deadSocket, { reconnectionInterval: "60 seconds" })
      chain.mine(3)
      yield* TestClock.adjust("59 seconds")
      expect(batches(yield* f.events).map((b) => b.to)).toEqual([15n])
      yield* TestClock.adjust("3 seconds")
      expect(subscriptions).toBe(2)
      expect(batches(yield* f.events).map((b) => b.to)).toEqual([15n, 18n])
    }))

  it.effect("polls heads when the provider refuses the subscription", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(21)
      const refused = chain.layerWith({
        subscribes: true,
        newHeads: Stream.fail(new RpcBadRequest({ method: "eth_subscribe", detail: "method not supported" }))
      })
      const f = yield* start(refused, { pollInterval: "2 seconds" })
      chain.mine(3)
      yield* TestClock.adjust("2 seconds")
      expect(batches(yield* f.events).map((b) => b.to)).toEqual([15n, 18n])
    }))

  it.effect("pipelined ranges are the ranges of one at a time, also when a window adds ranges after those it reuses", () =>
    Effect.gen(function*() {
      const run = (inFlight: number) =>
        Effect.gen(function*() {
          const chain = new FakeChain(406) // confirmed 400
          chain.latency = "100 millis"
          const f = yield* start(chain.layer, { range: { initial: 10 }, inFlight })
          yield* TestClock.adjust("30 seconds")
          const { checkpoint, logs } = apply(yield* f.events)
          expect(checkpoint.height).toBe(400n)
          expect(logs).toEqual(logsUpTo(chain, 400n))
          yield* Fiber.interrupt(f.fiber)
          return [...chain.requests].sort((x, y) => Number(x[0] - y[0]))
        })
      expect(yield* run(LogFollower.defaultInFlight)).toEqual(yield* run(1))
    }))

  it.effect("a refused range interrupts the ranges started ahead of it: none of them is answered", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(101) // confirmed 95: 0..9, 10..21, 22..36, 37..54, 55..76 and 77..95 at once
      chain.latency = "100 millis"
      let refused = false
      const scripted = chain.layerWith({
        getLogs: (p) =>
          p.fromBlock === 10n && !refused
            ? Effect.suspend(() => {
              refused = true
              return Effect.delay(
                Effect.fail(new RangeTooLarge({ method: "eth_getLogs", requested: 12, hint: { _tag: "Shrink" }, detail: "fake" })),
                "100 millis"
              )
            })
            : p.fromBlock >= 22n && p.fromBlock <= 77n && p.toBlock - p.fromBlock >= 14n
            ? Effect.delay(chain.client.getLogs(p), "1 second") // the window's other ranges answer late
            : chain.client.getLogs(p)
      })
      const f = yield* start(scripted, { range: { initial: 10 } })
      yield* TestClock.adjust("30 seconds")
      const { checkpoint, logs } = apply(yield* f.events)
      expect(checkpoint).toEqual({ height: 95n, hash: blockHash(chain, 95n) })
      expect(logs).toEqual(logsUpTo(chain, 95n))
      // The window planned on 10..21 succeeding is interrupted when it is refused, before its answers.
      for (const stale of [[22n, 36n], [37n, 54n], [55n, 76n], [77n, 95n]]) {
        expect(chain.requests.some(([a, b]) => a === stale[0] && b === stale[1])).toBe(false)
      }
    }))

  it.effect("a finality violation stops the ranges started ahead at once, not after the ancestor is found", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(31) // confirmed 25: batches 0..9, 10..21, 22..25
      chain.latency = "100 millis"
      let slowAhead = false
      const scripted = chain.layerWith({
        getLogs: (p) =>
          slowAhead && p.fromBlock > 26n ? Effect.delay(chain.client.getLogs(p), "150 millis") : chain.client.getLogs(p)
      })
      const atRewind = yield* Ref.make<ReadonlyArray<readonly [bigint, bigint]> | undefined>(undefined)
      yield* LogFollower.follow({ filter: { address: CONTRACT, topics: [TOPIC] }, from: LogFollower.startAt(0n), confirmations: 5, range: { initial: 10 } }).pipe(
        Stream.runForEach((e) => e._tag === "Rewind" ? Ref.set(atRewind, [...chain.requests]) : Effect.void),
        Effect.provide(scripted),
        Effect.fork
      )
      yield* TestClock.adjust("3 seconds")
      expect(chain.requests.map(([, to]) => to)).toEqual([9n, 21n, 25n])
      // Blocks 21..30 replaced (25, the checkpoint, and 21 are orphaned; 9 stays), then 60 more:
      // confirmed 85, a fresh window from 26 whose first range finds block 25 moved. Finding the
      // ancestor takes two block calls (21, then 9): 200 ms in which the ranges ahead must not run.
      chain.reorg(10)
      chain.mine(60)
      slowAhead = true
      yield* TestClock.adjust("3 seconds")
      const seen = (yield* Ref.get(atRewind))!
      expect(seen).toBeDefined()
      expect(seen.filter(([from]) => from > 26n)).toEqual([])
    }))

  it.effect("a refused range that the confirmed head cut short is halved from its own size, not the policy's", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(16) // confirmed 10: the first range is 0..10 (11 blocks), not 1000
      chain.rangeLimit = { blocks: 3, hint: { _tag: "Shrink" } }
      const f = yield* start(chain.layer)
      const { logs, checkpoint } = apply(yield* f.events)
      expect(checkpoint.height).toBe(10n)
      expect(logs).toEqual(logsUpTo(chain, 10n))
      expect(chain.requests.slice(0, 3)).toEqual([[0n, 10n], [0n, 4n], [0n, 1n]])
    }))
})
