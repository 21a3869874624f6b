/**
 * The eth_deposits listener without a chain: log decoding, the checkpoint codec, config handling
 * at start, and a run against the scripted `FakeChain` (mock `EthereumClient`) with the memory
 * event store, driven by `TestClock`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Fiber, Layer, Metric, Option, Schema, TestClock } from "effect"
import { type Address, encodeAbiParameters, type Hex, pad, toHex } from "viem"
import { EventLog } from "../../src/events/EventLog.js"
import { EventStore } from "../../src/events/EventStore.js"
import type { EthLog } from "../../src/ethereum/EthereumClient.js"
import * as LogFollower from "../../src/ethereum/LogFollower.js"
import { ListenerContext } from "../../src/listener/Listener.js"
import { ListenerManager } from "../../src/listener/ListenerManager.js"
import { ListenerRegistry } from "../../src/listener/ListenerRegistry.js"
import { NodeInfo } from "../../src/listener/NodeInfo.js"
import * as ValidatorStatus from "../../src/listener/ValidatorStatus.js"
import { creditTopic } from "../../src/extensions/contracts/index.js"
import { CreditAccount, creditAccount } from "../../src/extensions/creditAccount.js"
import * as EthDeposits from "../../src/extensions/ethDeposits.js"
import * as Checkpoints from "../../src/extensions/ethDepositsCheckpoint.js"
import { ResolutionRegistry } from "../../src/voting/ResolutionRegistry.js"
import { CONTRACT, FakeChain } from "../ethereum/FakeChain.js"

const ACCOUNT: Address = "0x00000000000000000000000000000000000000aa"
const creditData = (account: Address, amount: bigint): Hex =>
  encodeAbiParameters([{ type: "address" }, { type: "uint256" }], [account, amount])

const log = (overrides: Partial<EthLog> = {}): EthLog => ({
  address: CONTRACT,
  topics: [creditTopic],
  data: creditData(ACCOUNT, 5n),
  blockNumber: 7n,
  blockHash: pad("0x07", { size: 32 }),
  transactionHash: pad("0x70", { size: 32 }),
  transactionIndex: 0,
  logIndex: 3,
  removed: false,
  ...overrides
})

describe("decodeCredit", () => {
  it("decodes a Credit log into a credit_account payload with the log index and chain id", () => {
    expect(EthDeposits.decodeCredit(log(), 5n, CONTRACT)).toEqual({
      _tag: "Credit",
      payload: { chainId: 5n, account: ACCOUNT, amount: 5n, txHash: pad("0x70", { size: 32 }), logIndex: 3 }
    })
  })

  it.each([
    ["an extra topic", log({ topics: [creditTopic, pad("0x01", { size: 32 })] }), "2 topics"],
    ["no topics", log({ topics: [] }), "0 topics"],
    ["another event", log({ topics: [pad("0x01", { size: 32 })] }), "not a Credit"],
    ["short data", log({ data: pad("0x05", { size: 32 }) }), "32 data bytes"],
    ["trailing data", log({ data: `${creditData(ACCOUNT, 5n)}00` }), "65 data bytes"],
    ["dirty address padding", log({ data: `0x01${creditData(ACCOUNT, 5n).slice(4)}` }), "padding"],
    ["another emitter", log({ address: "0x00000000000000000000000000000000000000c1" }), "not the escrow"],
    ["a short tx hash", log({ transactionHash: "0x1234" }), "transaction hash"],
    ["a log index past uint32", log({ logIndex: 2 ** 32 }), "outside uint32"],
    ["a negative log index", log({ logIndex: -1 }), "outside uint32"]
  ] as const)("refuses %s", (_, bad, reason) => {
    const decoded = EthDeposits.decodeCredit(bad, 1n, CONTRACT)
    expect(decoded._tag).toBe("Malformed")
    expect(decoded._tag === "Malformed" && decoded.reason).toContain(reason)
  })

  it("a checker that has passed a log still refuses the next log that differs from it (address, topic, transaction hash)", () => {
    const check = EthDeposits.creditChecker(CONTRACT)
    expect(check(log())).toBeUndefined()
    expect(check(log({ address: "0x00000000000000000000000000000000000000c1" }))).toContain("not the escrow")
    expect(check(log({ topics: [pad("0x01", { size: 32 })] }))).toContain("not a Credit")
    expect(check(log({ transactionHash: "0x1234" }))).toContain("transaction hash")
    expect(check(log({ data: `0x01${creditData(ACCOUNT, 5n).slice(4)}` }))).toContain("padding")
    // The same address and topic in other cases are still the escrow's Credit.
    expect(check(log({ address: CONTRACT.toUpperCase().replace("0X", "0x") as Address, topics: [creditTopic.toUpperCase().replace("0X", "0x") as Hex] })))
      .toBeUndefined()
    expect(check(log({ address: "0x00000000000000000000000000000000000000c1" }))).toContain("not the escrow")
    // A hand-made log may hold anything: a missing value is never taken for the last one checked.
    const fresh = EthDeposits.creditChecker(CONTRACT)
    expect(fresh(log({ topics: [undefined as unknown as Hex] }))).toContain("not a Credit")
    expect(fresh(log({ transactionHash: undefined as unknown as Hex }))).toContain("transaction hash")
  })

  it("builds the same body from the log as encoding its payload (mixed-case hex, big numbers included)", () => {
    const cases = [
      log(),
      log({ data: `0x${creditData(ACCOUNT, 2n ** 256n - 1n).slice(2).toUpperCase()}`, logIndex: 0xffff_ffff }),
      log({ data: creditData("0x00000000000000000000000000000000000000ff", 0n).replace("ff", "fF") as Hex, transactionHash: `0x${"aB".repeat(32)}` })
    ]
    for (const [i, l] of cases.entries()) {
      for (const chainId of [1n, 31337n, 2n ** 256n - 1n]) {
        const decoded = EthDeposits.decodeCredit(l, chainId, CONTRACT)
        if (decoded._tag !== "Credit") throw new Error(`case ${i} is not a Credit: ${decoded.reason}`)
        const encoded = Effect.runSync(CreditAccount.encode(decoded.payload))
        expect(EthDeposits.creditBody(l, EthDeposits.chainIdWord(chainId)), `case ${i}, chain ${chainId}`).toEqual(encoded)
      }
    }
  })

  it.each([
    ["data with a non-hex digit", log({ data: `0x${creditData(ACCOUNT, 5n).slice(2, -1)}g` as Hex })],
    ["data one byte short", log({ data: creditData(ACCOUNT, 5n).slice(0, -2) as Hex })],
    ["a short tx hash", log({ transactionHash: "0x1234" })],
    ["a tx hash with a non-hex digit", log({ transactionHash: `0x${"ab".repeat(31)}zz` })]
  ] as const)("creditBody throws on %s rather than leave bytes unwritten", (_, bad) => {
    expect(() => EthDeposits.creditBody(bad, EthDeposits.chainIdWord(1n))).toThrow(/not a canonical Credit log/)
  })
})

describe("checkpoint codec", () => {
  it("round-trips checkpoints and history, heights past 2^53 included", () => {
    const cp = { height: 2n ** 60n, hash: pad("0xab", { size: 32 }) }
    expect(Checkpoints.decodeCheckpoint(Checkpoints.encodeCheckpoint(cp))).toEqual(Either.right(cp))
    expect(new TextDecoder().decode(Checkpoints.encodeCheckpoint({ height: 9n }))).toBe(`{"height":"9"}`)
    const history = [{ height: 1n }, cp]
    expect(Checkpoints.decodeHistory(Checkpoints.encodeHistory(history))).toEqual(Either.right(history))
  })

  it("encodes by hand exactly what the schemas encode", () => {
    const cps = [{ height: 0n }, { height: 2n ** 60n, hash: pad("0xab", { size: 32 }) }, { height: 7n, hash: pad("0x7", { size: 32 }) }]
    for (const cp of cps) {
      expect(Checkpoints.encodeCheckpoint(cp)).toEqual(Schema.encodeSync(Checkpoints.CheckpointBytes)(cp))
    }
    expect(Checkpoints.encodeHistory(cps)).toEqual(Schema.encodeSync(Checkpoints.HistoryBytes)(cps))
    expect(Checkpoints.encodeHistory([])).toEqual(Schema.encodeSync(Checkpoints.HistoryBytes)([]))
    // A hash that could not be read back is refused, as the schema's encoder refused it.
    const bad = { height: 5n, hash: "0x1234" as Hex }
    expect(() => Schema.encodeSync(Checkpoints.CheckpointBytes)(bad)).toThrow()
    expect(() => Checkpoints.encodeCheckpoint(bad)).toThrow(/not 32 bytes of hex/)
    expect(() => Checkpoints.encodeHistory([{ height: 1n }, bad])).toThrow(/not 32 bytes of hex/)
  })

  it.effect("a writer reads the history once, then keeps it: appends, drops what a rewind orphans, keeps the last 64", () =>
    Effect.gen(function*() {
      const values = new Map<string, Uint8Array>([
        [Checkpoints.historyKey, Checkpoints.encodeHistory([{ height: 1n }, { height: 2n }])]
      ])
      let reads = 0
      const kv = {
        get: (key: string) => Effect.sync(() => {
          reads++
          return Option.fromNullable(values.get(key))
        }),
        set: (key: string, value: Uint8Array) => Effect.sync(() => void values.set(key, value)),
        delete: (key: string) => Effect.sync(() => void values.delete(key))
      }
      const stored = () => Either.getOrThrow(Checkpoints.decodeHistory(values.get(Checkpoints.historyKey)!))
      const write = yield* Checkpoints.makeWriter(kv)
      yield* write({ height: 5n })
      yield* write({ height: 9n })
      expect(stored().map((c) => c.height)).toEqual([1n, 2n, 5n, 9n])
      // A rewind to 3: the checkpoints above it came from orphaned blocks.
      yield* write({ height: 3n })
      expect(stored().map((c) => c.height)).toEqual([1n, 2n, 3n])
      expect(Checkpoints.decodeCheckpoint(values.get(Checkpoints.checkpointKey)!)).toEqual(Either.right({ height: 3n }))
      for (let h = 10n; h < 100n; h++) yield* write({ height: h })
      expect(stored()).toHaveLength(Checkpoints.historySize)
      expect(stored().at(-1)?.height).toBe(99n)
      expect(reads).toBe(1)
    }))

  it("refuses a corrupt value with the key and a way out", () => {
    const bad = Checkpoints.decodeCheckpoint(new TextEncoder().encode(`{"height":"x"}`))
    expect(Either.isLeft(bad) && bad.left.message).toMatch(/"checkpoint" cannot be decoded.*delete that KV key/)
  })

  it("refuses bytes that are not UTF-8 as a corrupt value, without throwing", () => {
    const notUtf8 = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])
    const checkpoint = Checkpoints.decodeCheckpoint(notUtf8)
    expect(Either.isLeft(checkpoint) && checkpoint.left).toMatchObject({ _tag: "CorruptCheckpoint", key: "checkpoint" })
    expect(Either.isLeft(checkpoint) && checkpoint.left.detail).toMatch(/not UTF-8/)
    const history = Checkpoints.decodeHistory(notUtf8)
    expect(Either.isLeft(history) && history.left).toMatchObject({ _tag: "CorruptCheckpoint", key: "history" })
  })
})

/**
 * Lets the listener run until `done` holds (at most 1,000 event-loop turns). Its follow loop
 * resumes through `setImmediate` (see `cooperative` in ethDeposits.ts), so after a `TestClock`
 * step it needs event-loop turns, not only microtasks, to get through a batch.
 */
const settle = <A, E, R>(read: Effect.Effect<A, E, R>, done: (a: A) => boolean): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    for (let turn = 0; ; turn++) {
      const a = yield* read
      if (done(a) || turn >= 1_000) return a
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
  })

/** The memory store, a listener context with `config`, and the fake chain's client. */
const setup = (config: Record<string, string> | undefined) => {
  const storage = EventStore.layerMemory.pipe(Layer.provide(ResolutionRegistry.layer(creditAccount)))
  const context = Layer.succeed(ListenerContext, {
    name: "eth_deposits",
    identity: "node",
    config: config ?? {},
    configured: config !== undefined
  })
  return Layer.mergeAll(EventStore.layerFor("eth_deposits"), context).pipe(Layer.provideMerge(storage))
}

const section = (overrides: Record<string, string> = {}) => ({
  rpc_provider: "http://127.0.0.1:1",
  contract_address: CONTRACT,
  required_confirmations: "2",
  ...overrides
})

/** The listener over `chain`, each log's data replaced by `data(log)`. */
const creditsOn = (chain: FakeChain, data: (log: EthLog) => Hex) => {
  const scripted = chain.layerWith({
    getLogs: (p) => Effect.map(chain.client.getLogs(p), (logs) => logs.map((l) => ({ ...l, data: data(l) })))
  })
  return { chain, listener: EthDeposits.makeEthDeposits({ client: () => scripted }) }
}

describe("the listener, without a chain", () => {
  it.effect("without a config section it returns at once (idle, as Kwil)", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(EthDeposits.ethDeposits.run))
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(yield* (yield* EventLog).list()).toEqual([])
    }).pipe(Effect.provide(setup(undefined))))

  it.effect.each([
    ["contract_address", { contract_address: "0x1234" }, /eth_deposits\.contract_address: "0x1234" is not a 20-byte hex address/],
    ["rpc_provider", { rpc_provider: "ftp://host" }, /eth_deposits\.rpc_provider: .* is not an http\(s\) or ws\(s\) URL/],
    ["required_confirmations", { required_confirmations: "-1" }, /eth_deposits\.required_confirmations: "-1" is not a non-negative integer/],
    ["reconnection_interval", { reconnection_interval: "2" }, /eth_deposits\.reconnection_interval: "2" is less than the minimum of 5 seconds/],
    ["block_sync_chunk_size", { block_sync_chunk_size: "0" }, /eth_deposits\.block_sync_chunk_size: "0" is not a positive integer/],
    ["finality", { finality: "latest" }, /eth_deposits\.finality: "latest" is not one of confirmations, safe, finalized/]
  ] as const)("a bad %s fails the start with InvalidConfig naming the key", ([key, overrides, message]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(EthDeposits.ethDeposits.run))
      expect(error).toMatchObject({ _tag: "InvalidConfig", key })
      expect(error.message).toMatch(message)
      const store = yield* EventStore
      expect(yield* store.kv.get(Checkpoints.checkpointKey)).toEqual(Option.none())
    }).pipe(Effect.provide(setup(section(overrides)))))

  it.effect("broadcasts decoded deposits, skips malformed logs, and checkpoints each batch", () =>
    Effect.gen(function*() {
      // Block n has one log; the odd blocks' logs are made well-formed Credits, the even ones stay malformed.
      const malformedBefore = (yield* Metric.value(EthDeposits.malformedLogs)).count
      const { chain, listener } = creditsOn(new FakeChain(10), (l) => (l.blockNumber % 2n === 1n ? creditData(ACCOUNT, l.blockNumber) : l.data))
      const fiber = yield* Effect.fork(Effect.scoped(listener.run))
      yield* TestClock.adjust("1 second")
      // Head 9, 2 confirmations: blocks 1..7 (starting_height 0: block 0 too).
      const store = yield* EventStore
      const checkpointAt = (height: bigint) =>
        settle(Checkpoints.readCheckpoint(store.kv), Option.exists((c) => c.height === height))
      yield* checkpointAt(7n)
      const events = yield* (yield* EventLog).list()
      const payloads = yield* Effect.forEach(events, (e) => CreditAccount.decode(e.body))
      expect(payloads.map((p) => [p.amount, p.logIndex])).toEqual([[1n, 0], [3n, 0], [5n, 0], [7n, 0]])
      expect(payloads.every((p) => p.chainId === 31337n && p.account === ACCOUNT)).toBe(true)
      expect((yield* Metric.value(EthDeposits.malformedLogs)).count - malformedBefore).toBe(4)
      const cp = yield* Checkpoints.readCheckpoint(store.kv)
      expect(Option.map(cp, (c) => c.height)).toEqual(Option.some(7n))

      chain.mine(2) // head 11: blocks 8, 9 confirmed
      yield* TestClock.adjust("1 second")
      expect(Option.map(yield* checkpointAt(9n), (c) => c.height)).toEqual(Option.some(9n))
      expect(yield* (yield* EventLog).list()).toHaveLength(5)
      const history = yield* Checkpoints.readHistory(store.kv)
      expect(history.map((c) => c.height)).toEqual([7n, 9n])
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(setup(section({ starting_height: "0" })))))

  it.effect("a batch of many hand-over slices is stored whole, in log order, with its checkpoint", () =>
    Effect.gen(function*() {
      // Head 301, 2 confirmations: blocks 0..299 in one range, one Credit each (amount = block + 1).
      const { chain, listener } = creditsOn(new FakeChain(302), (l) => creditData(ACCOUNT, l.blockNumber + 1n))
      const fiber = yield* Effect.fork(Effect.scoped(listener.run))
      yield* TestClock.adjust("1 second")
      const store = yield* EventStore
      yield* settle(Checkpoints.readCheckpoint(store.kv), Option.exists((c) => c.height === 299n))
      expect(chain.requests).toHaveLength(1)
      const events = yield* (yield* EventLog).list()
      const payloads = yield* Effect.forEach(events, (e) => CreditAccount.decode(e.body))
      expect(payloads.map((p) => p.amount)).toEqual(Array.from({ length: 300 }, (_, i) => BigInt(i + 1)))
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(setup(section({ starting_height: "0" })))))

  it.effect.each([
    [1, 1],
    [undefined, LogFollower.defaultInFlight]
  ] as const)("inFlight %s reaches the follower: at most %s eth_getLogs at once", ([inFlight, most]) =>
    Effect.gen(function*() {
      const chain = new FakeChain(60) // head 59, 2 confirmations: blocks 0..57 in ranges of 5, 6, 7...
      chain.latency = "10 millis"
      const counted = chain.countingInFlight()
      const listener = EthDeposits.makeEthDeposits({ client: () => counted.layer, ...(inFlight === undefined ? {} : { inFlight }) })
      const fiber = yield* Effect.fork(Effect.scoped(listener.run))
      const store = yield* EventStore
      for (let step = 0; step < 300; step++) {
        const cp = yield* Checkpoints.readCheckpoint(store.kv)
        if (Option.exists(cp, (c) => c.height === 57n)) break
        yield* TestClock.adjust("10 millis")
        yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      }
      expect(Option.map(yield* Checkpoints.readCheckpoint(store.kv), (c) => c.height)).toEqual(Option.some(57n))
      expect(counted.peak()).toBe(most)
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(setup(section({ starting_height: "0", block_sync_chunk_size: "5" })))))

  it.effect("resumes from max(checkpoint, starting_height)", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(20)
      const store = yield* EventStore
      yield* store.kv.set(Checkpoints.checkpointKey, Checkpoints.encodeCheckpoint({ height: 5n }))
      const listener = EthDeposits.makeEthDeposits({ client: () => chain.layer })
      const fiber = yield* Effect.fork(Effect.scoped(listener.run))
      yield* TestClock.adjust("1 second")
      yield* settle(Effect.sync(() => chain.requests.length), (n) => n > 0)
      // starting_height 12 is above the checkpoint: the scan starts at 12.
      expect(chain.requests[0]?.[0]).toBe(12n)
      // A store from before the source was kept adopts this run's.
      const source = yield* store.kv.get(Checkpoints.sourceKey)
      expect(Option.map(source, (b) => JSON.parse(new TextDecoder().decode(b))))
        .toEqual(Option.some({ chainId: "31337", contract: CONTRACT.toLowerCase(), genesis: chain.blocks[0]!.hash }))
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(setup(section({ starting_height: "12" })))))

  it.effect("a checkpoint of another contract or chain fails the run, naming both, and nothing is scanned", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(20)
      const store = yield* EventStore
      const listener = EthDeposits.makeEthDeposits({ client: () => chain.layer })
      // A first run records its source with its checkpoint.
      const first = yield* Effect.fork(Effect.scoped(listener.run))
      yield* TestClock.adjust("1 second")
      yield* settle(Checkpoints.readCheckpoint(store.kv), Option.isSome)
      yield* Fiber.interrupt(first)
      const before = chain.requests.length
      for (const [stored, what] of [
        [{ chainId: "31337", contract: "0x00000000000000000000000000000000000000b0" }, "contract"],
        [{ chainId: "1", contract: CONTRACT.toLowerCase() }, "chain"]
      ] as const) {
        yield* store.kv.set(Checkpoints.sourceKey, new TextEncoder().encode(JSON.stringify(stored)))
        const error = yield* Effect.flip(Effect.scoped(listener.run))
        expect(error._tag, what).toBe("CheckpointOfAnotherSource")
        expect(error.message).toContain(`chain ${stored.chainId}, contract ${stored.contract}`)
        expect(error.message).toContain(`follows chain 31337, contract ${CONTRACT.toLowerCase()}`)
        expect(error.message).toContain("contract_address")
      }
      expect(chain.requests).toHaveLength(before)
    }).pipe(Effect.provide(setup(section({ starting_height: "0" })))))

  it.effect("a source recorded by a run that stored no checkpoint locks nothing: the next run's replaces it", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(20)
      const store = yield* EventStore
      // A first run of another contract (a wrong config) that never stored a checkpoint.
      const other = { chainId: 31337n, contract: "0x00000000000000000000000000000000000000b0" }
      expect(yield* Checkpoints.resumePoint(store, other)).toEqual(Option.none())
      expect(yield* Checkpoints.readCheckpoint(store.kv)).toEqual(Option.none())
      // The corrected config runs, and records its own source.
      const listener = EthDeposits.makeEthDeposits({ client: () => chain.layer })
      const fiber = yield* Effect.fork(Effect.scoped(listener.run))
      yield* TestClock.adjust("1 second")
      yield* settle(Checkpoints.readCheckpoint(store.kv), Option.isSome)
      yield* Fiber.interrupt(fiber)
      const source = yield* store.kv.get(Checkpoints.sourceKey)
      expect(Option.map(source, (b) => JSON.parse(new TextDecoder().decode(b))))
        .toEqual(Option.some({ chainId: "31337", contract: CONTRACT.toLowerCase(), genesis: chain.blocks[0]!.hash }))
      // Now that it stored a checkpoint, the other contract is refused.
      const refused = yield* Effect.flip(Checkpoints.resumePoint(store, other))
      expect(refused._tag).toBe("CheckpointOfAnotherSource")
    }).pipe(Effect.provide(setup(section({ starting_height: "0" })))))

  it.effect("a checkpoint of another chain of the same id (another genesis: a dev chain restarted) is refused", () =>
    Effect.gen(function*() {
      const store = yield* EventStore
      const genesis = (n: number) => pad(toHex(n), { size: 32 })
      const source = { chainId: 31337n, contract: CONTRACT.toLowerCase() }
      // A store from before the genesis was kept: it adopts this run's, and resumes.
      yield* store.kv.set(Checkpoints.sourceKey, new TextEncoder().encode(JSON.stringify({ chainId: "31337", contract: source.contract })))
      yield* Checkpoints.writeCheckpoint(store.kv, { height: 5n })
      expect(yield* Checkpoints.resumePoint(store, { ...source, genesis: genesis(1) })).toEqual(Option.some({ height: 5n }))
      expect(Option.map(yield* store.kv.get(Checkpoints.sourceKey), (b) => JSON.parse(new TextDecoder().decode(b))))
        .toEqual(Option.some({ chainId: "31337", contract: source.contract, genesis: genesis(1) }))
      // The same id and contract on another chain: refused, naming both genesis blocks.
      const refused = yield* Effect.flip(Checkpoints.resumePoint(store, { ...source, genesis: genesis(2) }))
      expect(refused._tag).toBe("CheckpointOfAnotherSource")
      expect(refused.message).toContain(`chain 31337 (genesis ${genesis(1)})`)
      expect(refused.message).toContain(`follows chain 31337 (genesis ${genesis(2)})`)
      // A client that could not tell its genesis is not refused for it.
      expect(yield* Checkpoints.resumePoint(store, source)).toEqual(Option.some({ height: 5n }))
    }).pipe(Effect.provide(setup(section()))))

  it.effect("a stored checkpoint or source that is not UTF-8 fails the run with CorruptCheckpoint, and changes nothing", () =>
    Effect.gen(function*() {
      const chain = new FakeChain(20)
      const store = yield* EventStore
      const listener = EthDeposits.makeEthDeposits({ client: () => chain.layer })
      const notUtf8 = new Uint8Array([0xff, 0xfe, 0xfd])
      for (const key of [Checkpoints.checkpointKey, Checkpoints.sourceKey]) {
        yield* store.kv.delete(Checkpoints.checkpointKey)
        yield* store.kv.delete(Checkpoints.sourceKey)
        yield* store.kv.set(key, notUtf8)
        const error = yield* Effect.flip(Effect.scoped(listener.run))
        expect(error, key).toMatchObject({ _tag: "CorruptCheckpoint", key })
        expect(error.message).toContain("delete that KV key")
        // Nothing recorded: the source claim is rolled back with the unreadable checkpoint.
        for (const other of [Checkpoints.checkpointKey, Checkpoints.sourceKey]) {
          expect(yield* store.kv.get(other), other).toEqual(other === key ? Option.some(notUtf8) : Option.none())
        }
      }
      expect(chain.requests).toHaveLength(0)
      expect(yield* store.kv.get(Checkpoints.historyKey)).toEqual(Option.none())
    }).pipe(Effect.provide(setup(section({ starting_height: "0" })))))
})

describe("a bad config under the manager", () => {
  const node = (listener: ReturnType<typeof EthDeposits.makeEthDeposits>) =>
    ListenerManager.layer.pipe(
      Layer.provideMerge(ListenerRegistry.layer(listener)),
      Layer.provideMerge(ValidatorStatus.ValidatorStatus.layerRef(ValidatorStatus.active)),
      Layer.provide(NodeInfo.layer({ identity: "node", extensions: { eth_deposits: section({ contract_address: "0x12" }) } })),
      Layer.provide(EventStore.layerMemory.pipe(Layer.provide(ResolutionRegistry.layer(creditAccount)))),
      Layer.orDie
    )

  it.scoped("restart (the default): the listener backs off with the config error as its lastError", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust(1)
      const [status] = yield* (yield* ListenerManager).status
      expect(status).toMatchObject({ state: "backing-off" })
      expect(Option.getOrThrow(status!.lastError)).toMatch(/^InvalidConfig: eth_deposits\.contract_address: "0x12"/)
    }).pipe(Effect.provide(node(EthDeposits.ethDeposits))))

  it.scoped("onFailure stop: the listener stays failed, no retries", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("10 minutes")
      const [status] = yield* (yield* ListenerManager).status
      expect(status).toMatchObject({ state: "failed", restarts: 0 })
      expect(Option.getOrThrow(status!.lastError)).toContain("eth_deposits.contract_address")
    }).pipe(Effect.provide(node(EthDeposits.makeEthDeposits({ onFailure: "stop" })))))
})
