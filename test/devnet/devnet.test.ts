/**
 * The devnet end to end, in process: a real anvil, 3 validators each with its own SQLite file,
 * 5 deposits (two of them equal, in one tx), a seat lost and regained. And the block producer's
 * loud failure when validators' states diverge.
 */
import { describe, expect, it } from "@effect/vitest"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Duration, Effect, Exit, Layer, Logger, LogLevel, Metric, Option, Ref } from "effect"
import * as DevnetLayer from "../../layers/Devnet.js"
import { isAlive } from "../../src/devnet/Anvil.js"
import * as BlockProducer from "../../src/devnet/BlockProducer.js"
import * as DataDir from "../../src/devnet/DataDir.js"
import { Devnet, DevnetTimeout } from "../../src/devnet/Devnet.js"
import { defaults, type DevnetConfig, validate } from "../../src/devnet/DevnetConfig.js"
import { Mempool } from "../../src/devnet/InProcessTransport.js"
import { Progress } from "../../src/devnet/Progress.js"
import * as Validator from "../../src/devnet/Validator.js"
import { balances, credit, creditAccount } from "../../src/extensions/creditAccount.js"
import { ListenerManager } from "../../src/listener/ListenerManager.js"

const config: DevnetConfig = {
  validators: 3,
  deposits: 5,
  blockTime: Duration.millis(150),
  confirmations: 1,
  follow: false,
  maxBlocks: 120,
  seatChange: { validator: 2, loseAt: 4n, regainAt: 10n }
}

describe("devnet", () => {
  it.live("credits every deposit once, with equal digests after every block, through a seat lost and regained", () =>
    Effect.gen(function*() {
      const { blocks, notes, progress } = yield* Progress.recording
      const { anvilPid, summary, validatorBalances } = yield* Effect.scoped(
        Effect.gen(function*() {
          const devnet = yield* Devnet
          const summary = yield* devnet.run
          const validatorBalances = yield* Effect.forEach(devnet.validators, (v) => v.run(balances))
          return { anvilPid: devnet.anvil.pid, summary, validatorBalances }
        }).pipe(Effect.provide(DevnetLayer.layer(config).pipe(Layer.provide(Layer.succeed(Progress, progress)))))
      ).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))

      // Every deposit credited, each once.
      expect(summary.deposits).toHaveLength(5)
      expect(summary.deposits.every((d) => Option.isSome(d.resolvedAt))).toBe(true)
      expect(new Set(summary.deposits.map((d) => d.id)).size).toBe(5)
      const statuses = yield* Ref.get(blocks)
      const resolved = statuses.flatMap((s) => s.report.outcome.resolved)
      expect(new Set(resolved).size).toBe(resolved.length)
      expect([...resolved].sort()).toEqual(summary.deposits.map((d) => d.id).sort())

      // Two equal deposits in one tx: two credits, told apart by the log index.
      const byTx = new Map<string, Array<number>>()
      for (const d of summary.deposits) byTx.set(d.txHash, [...(byTx.get(d.txHash) ?? []), d.logIndex])
      expect([...byTx.values()].some((logs) => logs.length === 2 && logs[0] !== logs[1])).toBe(true)

      // Balances equal the deposited sums, on every validator.
      const sums = new Map<string, bigint>()
      for (const d of summary.deposits) sums.set(d.account.toLowerCase(), (sums.get(d.account.toLowerCase()) ?? 0n) + d.amount)
      const expected = [...sums].sort(([a], [b]) => a.localeCompare(b)).map(([identifier, balance]) => ({ identifier, balance }))
      for (const b of validatorBalances) expect(b).toEqual(expected)
      expect(summary.balances.every((b) => b.balance === b.deposited)).toBe(true)

      // Digests: recorded for every block, equal on all three validators.
      expect(statuses.map((s) => s.report.height)).toEqual(statuses.map((_, i) => BigInt(i + 1)))
      for (const s of statuses) {
        expect(s.report.digests).toHaveLength(3)
        expect(new Set(s.report.digests.map((d) => d.digest)).size).toBe(1)
      }
      expect(statuses.at(-1)!.report.digests[0]!.digest).toBe(summary.digest)

      // The seat change: validator-2 out of the set for blocks 4..9, its listener stopped, then running again.
      const stateAt = (s: (typeof statuses)[number]) => s.validators[2]!.listeners.find((l) => l.name === "eth_deposits")!.state
      const before = statuses.filter((s) => s.report.height < 4n)
      const out = statuses.filter((s) => s.report.height >= 4n && s.report.height < 10n)
      const after = statuses.filter((s) => s.report.height >= 10n)
      expect(before.some((s) => stateAt(s) === "running")).toBe(true)
      expect(out.every((s) => !s.report.validators.includes("validator-2"))).toBe(true)
      expect(out.slice(1).every((s) => stateAt(s) === "stopped")).toBe(true)
      expect(after.every((s) => s.report.validators.includes("validator-2"))).toBe(true)
      expect(stateAt(after.at(-1)!)).toBe("running")
      const lines = yield* Ref.get(notes)
      expect(lines.some((l) => l.includes("validator-2 loses its seat"))).toBe(true)
      expect(lines.some((l) => l.includes("validator-2 regains its seat"))).toBe(true)

      // Each validator's metrics carry its identity: validator-2's listener started twice (the
      // seat regained), the others' once; every validator resolved every deposit.
      const of = (metric: Metric.Metric.Counter<number>, validator: number) =>
        Effect.map(Metric.value(metric).pipe(Effect.tagMetrics("validator", Validator.identityOf(validator))), (s) => s.count)
      const starts = Metric.tagged(ListenerManager.metrics.starts, "listener", "eth_deposits")
      expect(yield* of(starts, 0)).toBe(1)
      expect(yield* of(starts, 2)).toBe(2)
      const resolvedCount = Metric.counter("kwil_resolutions_resolved", { description: "resolutions confirmed and applied", incremental: true })
      for (const v of [0, 1, 2]) expect(yield* of(resolvedCount, v)).toBe(5)

      // Anvil is gone once the devnet's scope closed.
      expect(isAlive(anvilPid)).toBe(false)
      expect(() => process.kill(anvilPid, 0)).toThrow()
    }))

  it.live("fails with DevnetTimeout, naming the pending deposit, when deposits cannot be credited in --max-blocks", () =>
    Effect.gen(function*() {
      const { progress } = yield* Progress.recording
      // The deposit lands in block 1 at the earliest and is confirmed 2 blocks later: its votes come after block 3.
      const exit = yield* Effect.flatMap(Devnet, (d) => d.run).pipe(
        Effect.provide(DevnetLayer.layer({ ...config, deposits: 1, confirmations: 2, maxBlocks: 3, seatChange: false })),
        Effect.provide(Layer.succeed(Progress, progress)),
        Logger.withMinimumLogLevel(LogLevel.Warning),
        Effect.exit
      )
      const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
      expect(error).toBeInstanceOf(DevnetTimeout)
      expect((error as DevnetTimeout).pending).toHaveLength(1)
      expect((error as DevnetTimeout).message).toContain("not every deposit was credited within 3 blocks")
    }))

  it.scoped("refuses a --data-dir that holds an earlier devnet's databases, and keeps a named one", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "devnet-datadir-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      expect(yield* Effect.scoped(DataDir.acquire(dir))).toBe(dir)
      expect(existsSync(dir)).toBe(true)
      writeFileSync(join(dir, "validator-0.db"), "")
      const refused = yield* Effect.flip(Effect.scoped(DataDir.acquire(dir)))
      expect(refused.message).toContain("validator-0.db from an earlier devnet")
      const temp = yield* Effect.scoped(DataDir.acquire(undefined))
      expect(existsSync(temp)).toBe(false)
    }))

  it.scoped("fails with DigestMismatch when validators end a block in different states", () =>
    Effect.gen(function*() {
      const mempool = yield* Effect.provide(Mempool, Mempool.layer)
      const validators = yield* Effect.forEach([0, 1], (i) =>
        Validator.make(i, { filename: ":memory:", listeners: [], resolutions: [creditAccount] }, mempool))
      // A write outside any block: validator-1's state no longer follows the blocks.
      yield* validators[1]!.run(credit("0x00000000000000000000000000000000000000aa", 1n))
      const producer = BlockProducer.make(validators, mempool)
      const exit = yield* Effect.exit(producer.produce(1n, ["validator-0", "validator-1"]))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        expect(error).toBeInstanceOf(BlockProducer.DigestMismatch)
        expect((error as BlockProducer.DigestMismatch).message).toContain("state digests differ after block 1")
      }
    }))
})

describe("devnet config", () => {
  it.each([
    ["the default seat coming back after --max-blocks", { validators: 2, deposits: 2, maxBlocks: 12 }, "--max-blocks: 12 is too few: at least 13 blocks are needed for the seat given back at block 12"],
    ["more confirmations than --max-blocks", { validators: 1, deposits: 1, confirmations: 30, maxBlocks: 29 }, "--max-blocks: 29 is too few: at least 30 blocks are needed for a deposit's 30 confirmations"],
    ["a seat change with one validator", { validators: 1, seatChange: { validator: 0, loseAt: 2n, regainAt: 5n } }, "seatChange: validator 0 losing its seat at 2 and regaining it at 5 is not possible (nobody would be left to propose)"]
  ] as const)("refuses %s", (_, settings, says) => {
    expect(validate({ ...defaults, ...settings })?.message).toBe(says)
  })

  it("takes the defaults, the least blocks that can work, no deposits to confirm, and any --max-blocks with --follow", () => {
    expect(validate(defaults)).toBeUndefined()
    expect(validate({ ...defaults, validators: 2, deposits: 2, maxBlocks: 13 })).toBeUndefined()
    expect(validate({ ...defaults, validators: 1, deposits: 1, confirmations: 30, maxBlocks: 30 })).toBeUndefined()
    // Deposits sent faster than blocks: only the confirmations need blocks of their own.
    expect(validate({ ...defaults, validators: 1, deposits: 1000, maxBlocks: 2 })).toBeUndefined()
    expect(validate({ ...defaults, validators: 1, deposits: 0, confirmations: 5, maxBlocks: 1 })).toBeUndefined()
    expect(validate({ ...defaults, deposits: 1000, maxBlocks: 1, follow: true })).toBeUndefined()
  })
})
