/**
 * The catch-up benchmark's runs on a small chain of the same shape (a real anvil): each one sees
 * or stores every deposit, the bare floor with its ranges in flight as well as one at a time, so
 * a figure in the table is always the time of the whole work.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { bare, original, ours, raw, storedEvents, targetOf } from "../../bench/catchup.js"
import * as CatchupChain from "../../bench/catchupChain.js"
import { tempDir } from "../../bench/harness.js"
import * as LogFollower from "../../src/ethereum/LogFollower.js"

describe("the catch-up benchmark", () => {
  it.scopedLive("ours, the bare floor, the raw pipeline and the original's way each cover every deposit", () =>
    Effect.gen(function*() {
      // 8 deposit transactions of 40 logs over 12,000 blocks: more ranges than are in flight at once.
      const built = yield* CatchupChain.build({ blocks: 12_000, txs: 8, logsPerTx: 40 })
      yield* built.chain.anvil.mine(12)
      const target = targetOf(built)
      const dir = yield* Effect.acquireRelease(Effect.sync(() => tempDir("bench-test")), (d) => Effect.sync(d.remove))
      yield* Effect.promise(async () => {
        const mine = await ours(dir.path("ours.db"), target)
        expect(storedEvents(dir.path("ours.db"))).toBe(320)
        expect(mine.ranges.length).toBeGreaterThan(LogFollower.defaultInFlight)
        // Recorded as asked (ranges in flight ask in any order), they tile the chain from the escrow's block.
        const tiles = [...mine.ranges].sort(([a], [b]) => (a < b ? -1 : 1))
        expect(tiles.map(([from]) => from)).toEqual([target.startingHeight, ...tiles.slice(0, -1).map(([, to]) => to + 1n)])
        expect(tiles.at(-1)![1]).toBe(target.confirmed)

        // Many in flight: every answer counted (a `logs += await ...` would drop all but the last ones).
        expect((await bare(target, mine.ranges)).logs).toBe(320)
        expect((await bare(target, mine.ranges, 1)).logs).toBe(320)

        const chainId = BigInt(built.chain.anvil.chainId)
        await raw(dir.path("raw.db"), target, mine.ranges, chainId, LogFollower.defaultInFlight, true)
        expect(storedEvents(dir.path("raw.db"))).toBe(320)
        await original(dir.path("original.db"), target)
        expect(storedEvents(dir.path("original.db"))).toBe(320)
      })
    }), 120_000)
})
