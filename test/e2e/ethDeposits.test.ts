/**
 * The eth_deposits listener end to end: a real anvil (each test its own, on a free loopback
 * port, stopped by a finalizer), the test escrow, and events stored in SQLite. Most tests run the
 * listener directly (ListenerContext + EventStore over a SQLite file in a temp dir); one runs it
 * through the real ListenerManager. Deposits are mined by automine or `anvil.mine`; the stored
 * events are polled on a bounded `Schedule`, never on a fixed sleep.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Metric, Option, Schedule, Scope } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { encodeFunctionData, type Log } from "viem"
import { EventLog } from "../../src/events/EventLog.js"
import { EventStore } from "../../src/events/EventStore.js"
import * as LogFollower from "../../src/ethereum/LogFollower.js"
import * as Contracts from "../../src/extensions/contracts/index.js"
import { CreditAccount, type Payload } from "../../src/extensions/creditAccount.js"
import * as EthDeposits from "../../src/extensions/ethDeposits.js"
import * as Checkpoints from "../../src/extensions/ethDepositsCheckpoint.js"
import { ListenerManager } from "../../src/listener/ListenerManager.js"
import { ListenerRegistry } from "../../src/listener/ListenerRegistry.js"
import { NodeInfo } from "../../src/listener/NodeInfo.js"
import { ValidatorStatus, ValidatorStatusControl } from "../../src/listener/ValidatorStatus.js"
import * as EscrowChain from "../support/EscrowChain.js"
import * as DepositListener from "../support/DepositListener.js"
import * as RpcProxy from "../support/RpcProxy.js"

/** A temp dir for SQLite files, removed with the scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "eth-deposits-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** What a test reads back from a database. */
const reader = (filename: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      EventStore.layerFor(EthDeposits.name).pipe(Layer.provideMerge(DepositListener.database(filename))),
      scope
    )
    return { context, close: Scope.close(scope, Exit.void) }
  })

/** Stored credit_account payloads, in insertion order. */
const storedDeposits = (filename: string) =>
  Effect.scoped(Effect.gen(function*() {
    const { close, context } = yield* reader(filename)
    yield* Effect.addFinalizer(() => close)
    const events = yield* Effect.provide(Effect.flatMap(EventLog, (log) => log.list()), context)
    return yield* Effect.forEach(events, (e) => CreditAccount.decode(e.body))
  }))

/** The stored checkpoint. */
const storedCheckpoint = (filename: string) =>
  Effect.scoped(Effect.gen(function*() {
    const { close, context } = yield* reader(filename)
    yield* Effect.addFinalizer(() => close)
    return yield* Effect.provide(Effect.flatMap(EventStore, (s) => Checkpoints.readCheckpoint(s.kv)), context)
  }))

const startListener = DepositListener.start

/** Polls `read` until `done` holds (at most `within`); fails early if the listener fiber ended. */
const eventually = <A, E, R>(
  read: Effect.Effect<A, E, R>,
  done: (a: A) => boolean,
  fiber?: Fiber.RuntimeFiber<void, unknown>,
  within: `${number} seconds` = "20 seconds"
) =>
  Effect.gen(function*() {
    if (fiber !== undefined) {
      const ended = yield* Fiber.poll(fiber)
      if (Option.isSome(ended)) return yield* Effect.dieMessage(`the listener ended: ${String(ended.value)}`)
    }
    return yield* read
  }).pipe(
    Effect.repeat(
      Schedule.spaced("100 millis").pipe(Schedule.upTo(within), Schedule.zipRight(Schedule.recurUntil(done)))
    ),
    Effect.filterOrDieMessage(done, `not reached within ${within}`)
  )

const section = (chain: EscrowChain.EscrowChain, url: string, extra: Record<string, string> = {}) => ({
  rpc_provider: url,
  contract_address: chain.deployment.escrow,
  starting_height: String(chain.deployment.escrowBlock),
  required_confirmations: "2",
  ...extra
})

/** The payloads `receipt`'s Credit logs must become. */
const expected = (chain: EscrowChain.EscrowChain, receipts: ReadonlyArray<{ readonly logs: ReadonlyArray<Log> }>) =>
  receipts.flatMap((r) =>
    Contracts.decodeCredits([...r.logs]).map((c): Payload => ({
      chainId: BigInt(chain.anvil.chainId),
      account: c.from.toLowerCase() as Payload["account"],
      amount: c.amount,
      txHash: c.transactionHash,
      logIndex: c.logIndex
    }))
  )

const sortKey = (p: Payload) => `${p.txHash}:${String(p.logIndex).padStart(6, "0")}`
const sorted = (ps: ReadonlyArray<Payload>) => [...ps].sort((a, b) => sortKey(a).localeCompare(sortKey(b)))

const broadcastCount = Effect.map(Metric.value(EthDeposits.depositsBroadcast), (s) => s.count)

/**
 * The broadcasts counted since `before`, once at least `n` (the count follows the commit a test
 * sees in the database: read at once, it may not be there yet).
 */
const broadcastSince = (before: number, n: number, fiber: Fiber.RuntimeFiber<void, unknown>) =>
  Effect.map(eventually(broadcastCount, (c) => c - before >= n, fiber), (c) => c - before)

describe("eth_deposits on anvil", () => {
  it.scopedLive("stores each deposit once, with account, amount, tx hash and log index; equal Credits in one tx are two events", () =>
    Effect.gen(function*() {
      const chain = yield* EscrowChain.make()
      const db = join(yield* tempDir, "node.db")
      const before = yield* broadcastCount
      const { fiber } = yield* startListener(db, section(chain, chain.anvil.httpUrl))
      const receipts = [
        yield* Contracts.deposit(chain.clients, chain.deployment, 10n),
        yield* Contracts.deposit(chain.clients, chain.deployment, 20n),
        yield* Contracts.depositMany(chain.clients, chain.deployment, 7n, 2n), // two equal Credit logs
        yield* Contracts.depositBatch(chain.clients, chain.deployment, [1n, 2n, 3n])
      ]
      yield* chain.anvil.mine(2) // confirm the last one
      const want = expected(chain, receipts)
      expect(want).toHaveLength(7)
      const got = yield* eventually(storedDeposits(db), (ps) => ps.length >= want.length, fiber)
      expect(sorted(got)).toEqual(sorted(want))
      const many = got.filter((p) => p.txHash === receipts[2]!.transactionHash)
      expect(many.map((p) => p.amount)).toEqual([7n, 7n])
      expect(new Set(many.map((p) => p.logIndex)).size).toBe(2)
      // The checkpoint reached the confirmed head, and nothing was broadcast twice.
      const head = yield* chain.anvil.blockNumber
      yield* eventually(storedCheckpoint(db), Option.exists((c) => c.height === head - 2n), fiber)
      expect(yield* broadcastSince(before, 7, fiber)).toBe(7)
      expect(yield* storedDeposits(db)).toHaveLength(7)
    }))

  it.scopedLive("nothing is stored before its confirmations", () =>
    Effect.gen(function*() {
      const chain = yield* EscrowChain.make()
      const db = join(yield* tempDir, "node.db")
      const { fiber } = yield* startListener(db, section(chain, chain.anvil.wsUrl, { required_confirmations: "3" }))
      const receipt = yield* Contracts.deposit(chain.clients, chain.deployment, 5n)
      const d = receipt.blockNumber
      yield* chain.anvil.mine(2) // 2 of 3 confirmations
      yield* eventually(storedCheckpoint(db), Option.exists((c) => c.height === d - 1n), fiber)
      expect(yield* storedDeposits(db)).toEqual([])
      yield* chain.anvil.mine(1)
      const got = yield* eventually(storedDeposits(db), (ps) => ps.length === 1, fiber)
      expect(got).toEqual(expected(chain, [receipt]))
      expect(Option.map(yield* storedCheckpoint(db), (c) => c.height)).toEqual(Option.some(d))
    }))

  it.scopedLive("with finality = finalized nothing past the finalized block is stored", () =>
    Effect.gen(function*() {
      // slotsInAnEpoch 2: finalized = latest - 4.
      const chain = yield* EscrowChain.make({ slotsInAnEpoch: 2 })
      const db = join(yield* tempDir, "node.db")
      const { fiber } = yield* startListener(
        db,
        section(chain, chain.anvil.httpUrl, { finality: "finalized" })
      )
      const receipt = yield* Contracts.deposit(chain.clients, chain.deployment, 9n)
      const d = receipt.blockNumber
      yield* chain.anvil.mine(3) // latest d+3, finalized d-1
      yield* eventually(storedCheckpoint(db), Option.exists((c) => c.height === d - 1n), fiber)
      expect(yield* storedDeposits(db)).toEqual([])
      yield* chain.anvil.mine(1) // finalized d
      yield* eventually(storedDeposits(db), (ps) => ps.length === 1, fiber)
      const finalized = yield* Effect.promise(() => chain.anvil.publicClient.getBlock({ blockTag: "finalized" }))
      const cp = yield* storedCheckpoint(db)
      expect(Option.exists(cp, (c) => c.height <= finalized.number)).toBe(true)
    }))

  it.scopedLive("a stop and a restart over the same database resume from the checkpoint: no gap, no duplicate", () =>
    Effect.gen(function*() {
      const chain = yield* EscrowChain.make()
      const db = join(yield* tempDir, "node.db")
      const config = section(chain, chain.anvil.httpUrl, { required_confirmations: "1" })
      const before = yield* broadcastCount
      const first = yield* startListener(db, config)
      const r1 = yield* Contracts.deposit(chain.clients, chain.deployment, 1n)
      const r2 = yield* Contracts.deposit(chain.clients, chain.deployment, 2n)
      yield* chain.anvil.mine(1)
      yield* eventually(storedDeposits(db), (ps) => ps.length === 2, first.fiber)
      expect(yield* broadcastSince(before, 2, first.fiber)).toBe(2)
      yield* first.stop
      const stoppedAt = Option.getOrThrow(yield* storedCheckpoint(db)).height

      // Deposits while the listener is down.
      const r3 = yield* Contracts.deposit(chain.clients, chain.deployment, 3n)
      const r4 = yield* Contracts.depositMany(chain.clients, chain.deployment, 4n, 2n)
      yield* chain.anvil.mine(1)

      const second = yield* startListener(db, config)
      const head = yield* chain.anvil.blockNumber
      yield* eventually(storedCheckpoint(db), Option.exists((c) => c.height === head - 1n), second.fiber)
      expect(head - 1n).toBeGreaterThan(stoppedAt)
      const got = yield* storedDeposits(db)
      expect(sorted(got)).toEqual(sorted(expected(chain, [r1, r2, r3, r4])))
      // Each deposit was broadcast exactly once over both runs: the second run began after the checkpoint.
      expect(yield* broadcastSince(before, 5, second.fiber)).toBe(5)
    }))

  it.scopedLive("a reorg within the confirmation depth: the orphaned deposit is never stored, the new one is", () =>
    Effect.gen(function*() {
      const chain = yield* EscrowChain.make()
      const db = join(yield* tempDir, "node.db")
      const { fiber } = yield* startListener(db, section(chain, chain.anvil.httpUrl, { required_confirmations: "3" }))
      const orphan = yield* Contracts.deposit(chain.clients, chain.deployment, 111n)
      yield* chain.anvil.mine(1) // orphan has 1 of 3 confirmations
      yield* eventually(storedCheckpoint(db), Option.exists((c) => c.height === orphan.blockNumber - 2n), fiber)
      // Replace the orphan's block and the next with two new ones holding another deposit.
      yield* chain.anvil.reorg(2, [{ tx: depositTx(chain, 222n), block: 0 }])
      yield* chain.anvil.mine(3)
      const got = yield* eventually(storedDeposits(db), (ps) => ps.length >= 1, fiber)
      const head = yield* chain.anvil.blockNumber
      yield* eventually(storedCheckpoint(db), Option.exists((c) => c.height === head - 3n), fiber)
      expect((yield* storedDeposits(db)).map((p) => p.amount)).toEqual([222n])
      expect(got.some((p) => p.txHash === orphan.transactionHash)).toBe(false)
    }))

  it.scopedLive("a reorg deeper than the depth is a FinalityViolation; the listener rewinds and stores the new chain's deposit", () =>
    Effect.gen(function*() {
      const chain = yield* EscrowChain.make()
      const db = join(yield* tempDir, "node.db")
      const violations = (yield* Metric.value(LogFollower.finalityViolations)).count
      const { fiber } = yield* startListener(db, section(chain, chain.anvil.httpUrl, { required_confirmations: "1" }))
      const orphan = yield* Contracts.deposit(chain.clients, chain.deployment, 111n)
      yield* chain.anvil.mine(2)
      yield* eventually(storedCheckpoint(db), Option.exists((c) => c.height === orphan.blockNumber + 1n), fiber)
      expect((yield* storedDeposits(db)).map((p) => p.amount)).toEqual([111n])

      yield* chain.anvil.reorg(3, [{ tx: depositTx(chain, 222n), block: 1 }])
      yield* chain.anvil.mine(1)
      const got = yield* eventually(storedDeposits(db), (ps) => ps.some((p) => p.amount === 222n), fiber)
      // The orphaned event stays local (it will expire unconfirmed); the new one is stored once.
      expect(got.map((p) => p.amount)).toEqual([111n, 222n])
      expect((yield* Metric.value(LogFollower.finalityViolations)).count - violations).toBe(1)
      const head = yield* chain.anvil.blockNumber
      const cp = yield* eventually(storedCheckpoint(db), Option.exists((c) => c.height === head - 1n), fiber)
      const canonical = yield* Effect.promise(() => chain.anvil.publicClient.getBlock({ blockNumber: head - 1n }))
      expect(Option.getOrThrow(cp).hash).toBe(canonical.hash)
    }))

  it.scopedLive("through a faulty RPC (range caps, 429, timeouts, drops, resets) every deposit arrives once", () =>
    Effect.gen(function*() {
      const chain = yield* EscrowChain.make()
      const db = join(yield* tempDir, "node.db")
      const receipts = []
      for (let i = 1n; i <= 6n; i++) {
        receipts.push(yield* Contracts.deposit(chain.clients, chain.deployment, i))
        yield* chain.anvil.mine(3)
      }
      const proxy = yield* RpcProxy.make(
        chain.anvil.httpUrl,
        // The first rule that claims a call decides it: the cap comes last, so faults hit eth_getLogs too.
        RpcProxy.times(3, RpcProxy.Fault.RateLimit({}), ["eth_getLogs"]),
        RpcProxy.times(1, RpcProxy.Fault.RateLimit({ retryAfter: 1 })),
        RpcProxy.random({
          rate: 0.25,
          seed: 7,
          faults: [
            [1, RpcProxy.Fault.Delay({ millis: 1_500 })], // past the 1 s timeout
            [2, RpcProxy.Fault.Drop()],
            [1, RpcProxy.Fault.Reset()],
            [1, RpcProxy.Fault.ServerError({ status: 503 })],
            [1, RpcProxy.Fault.RateLimit({})]
          ]
        }),
        RpcProxy.rangeCap("alchemy", { maxRange: 4 })
      )
      const before = yield* broadcastCount
      const { fiber } = yield* startListener(
        db,
        section(chain, proxy.url, { required_confirmations: "1", block_sync_chunk_size: "50", max_retries: "100" }),
        { timeout: "1 second" }
      )
      const got = yield* eventually(storedDeposits(db), (ps) => ps.length >= 6, fiber, "40 seconds")
      expect(sorted(got)).toEqual(sorted(expected(chain, receipts)))
      expect(yield* broadcastSince(before, 6, fiber)).toBe(6)
      const faults = (yield* proxy.stats).faults
      expect(faults.RangeCap ?? 0).toBeGreaterThan(0)
      expect(faults.RateLimit ?? 0).toBeGreaterThanOrEqual(4)
      expect((faults.Drop ?? 0) + (faults.Reset ?? 0) + (faults.Delay ?? 0)).toBeGreaterThan(0)
    }))

  it.scopedLive("through the ListenerManager: runs while the node is a synced validator, resumes after losing and regaining the seat", () =>
    Effect.gen(function*() {
      const chain = yield* EscrowChain.make()
      const db = join(yield* tempDir, "node.db")
      const config = section(chain, chain.anvil.wsUrl, { required_confirmations: "1" })
      const node = ListenerManager.layer.pipe(
        Layer.provideMerge(ListenerRegistry.layer(EthDeposits.makeEthDeposits(DepositListener.fast))),
        Layer.provideMerge(ValidatorStatus.layerRef()),
        Layer.provideMerge(NodeInfo.layer({ identity: "node-0", extensions: { eth_deposits: config } })),
        Layer.provideMerge(DepositListener.database(db))
      )
      const context = yield* Layer.build(node)
      const run = <A, E>(effect: Effect.Effect<A, E, ListenerManager | ValidatorStatusControl>) =>
        Effect.provide(effect, context)
      const state = run(Effect.flatMap(ListenerManager, (m) => m.status)).pipe(Effect.map((s) => s[0]!))

      const r1 = yield* Contracts.deposit(chain.clients, chain.deployment, 1n)
      yield* chain.anvil.mine(1)
      expect((yield* state).state).toBe("stopped")
      yield* run(Effect.flatMap(ValidatorStatusControl, (c) => c.set({ synced: true, validator: true })))
      yield* eventually(storedDeposits(db), (ps) => ps.length === 1)

      yield* run(Effect.flatMap(ValidatorStatusControl, (c) => c.update((s) => ({ ...s, validator: false }))))
      yield* eventually(state, (s) => s.state === "stopped")
      expect(yield* run(Effect.flatMap(ListenerManager, (m) => m.fibers))).toBe(0)
      const r2 = yield* Contracts.deposit(chain.clients, chain.deployment, 2n)
      yield* chain.anvil.mine(1)
      yield* run(Effect.flatMap(ValidatorStatusControl, (c) => c.update((s) => ({ ...s, validator: true }))))
      const got = yield* eventually(storedDeposits(db), (ps) => ps.length === 2)
      expect(sorted(got)).toEqual(sorted(expected(chain, [r1, r2])))
      const status = yield* state
      expect(status).toMatchObject({ state: "running", restarts: 0 })
      expect(Option.isNone(status.lastError)).toBe(true)
    }))
})

/** A deposit transaction from dev account 0 (funded and approved), for `anvil_reorg`. */
const depositTx = (chain: EscrowChain.EscrowChain, amount: bigint) => ({
  from: chain.anvil.accounts[0]!.address,
  to: chain.deployment.escrow,
  data: encodeFunctionData({ abi: Contracts.escrowAbi, functionName: "deposit", args: [amount] }),
  gas: 200_000n
})
