/**
 * Chaos 3, reorgs: repeated `anvil_reorg`s at random depths around the confirmation depth D while
 * the eth_deposits listener follows the chain (SQLite, in process). Before each reorg the
 * listener has caught up with the confirmed head (head - D), so:
 * - a reorg of depth <= D replaces only unconfirmed blocks: no deposit of an orphaned block may
 *   ever be stored (= broadcast), and no finality violation is reported;
 * - a deeper one replaces the checkpoint's block: it is reported (one finality violation each),
 *   the listener rewinds to the common ancestor and stores the new branch's deposits.
 * At the end the stored set holds every canonical deposit exactly once; anything else stored
 * comes from blocks orphaned by a deep reorg (documented: those expire unconfirmed).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Metric, Option } from "effect"
import { join } from "node:path"
import { encodeFunctionData } from "viem"
import * as LogFollower from "../../src/ethereum/LogFollower.js"
import * as Contracts from "../../src/extensions/contracts/index.js"
import * as EscrowChain from "../support/EscrowChain.js"
import * as Chaos from "./support/Chaos.js"

const D = 3
const rounds = 10

describe("chaos: reorgs", () => {
  it.scopedLive(`${rounds} reorgs at random depths around the confirmation depth (${D})`, () =>
    Effect.gen(function*() {
      const r = yield* Chaos.seed("reorgs")
      const chain = yield* EscrowChain.make({}, 10n ** 15n)
      // Bury the deploy, mint and approve below the deepest reorg (D + 3): a reorg that orphaned
      // the approval would make every later deposit revert ("insufficient allowance").
      yield* chain.anvil.mine(D + 3)
      const db = join(yield* Chaos.tempDir("chaos-reorg-"), "node.db")
      const violationsBefore = (yield* Metric.value(LogFollower.finalityViolations)).count
      const { fiber } = yield* Chaos.startListener(
        db,
        Chaos.section(chain, chain.anvil.httpUrl, { required_confirmations: String(D), block_sync_chunk_size: "50" })
      )
      let amount = 1n
      const shallowOrphans = new Set<string>()
      const deepOrphans = new Set<string>()
      let deep = 0

      /** The listener has reached head - D, on the canonical block there. */
      const caughtUp = Effect.gen(function*() {
        const head = yield* chain.anvil.blockNumber
        const block = yield* Effect.promise(() => chain.anvil.publicClient.getBlock({ blockNumber: head - BigInt(D) }))
        yield* Chaos.eventually(
          Chaos.stored(db),
          (s) => Option.exists(s.checkpoint, (c) => c.height === block.number && c.hash === block.hash),
          { fiber, within: "20 seconds", every: "100 millis" }
        )
      })

      for (let round = 0; round < rounds; round++) {
        for (let i = r.int(1, 3); i > 0; i--) yield* Contracts.deposit(chain.clients, chain.deployment, amount++)
        const gap = r.int(0, 2)
        if (gap > 0) yield* chain.anvil.mine(gap)
        yield* caughtUp

        // Alternate shallow (1..D) and deep (D+1..D+3) reorgs, each depth drawn at random.
        const depth = round % 2 === 0 ? r.int(1, D) : r.int(D + 1, D + 3)
        const head = yield* chain.anvil.blockNumber
        const orphans = depth <= D ? shallowOrphans : deepOrphans
        // Every canonical deposit in the blocks about to be replaced (earlier reorgs' txs included).
        const logs = yield* Effect.promise(() =>
          chain.anvil.publicClient.getLogs({
            address: chain.deployment.escrow,
            event: Contracts.creditEvent,
            fromBlock: head - BigInt(depth) + 1n,
            toBlock: head
          })
        )
        for (const l of logs) orphans.add(l.transactionHash.toLowerCase())
        if (depth > D) deep++
        const txs = Array.from({ length: r.int(0, 2) }, () => ({ tx: depositTx(chain, amount++), block: r.int(0, depth - 1) }))
        yield* chain.anvil.reorg(depth, txs)
        yield* chain.anvil.mine(D + 1)
        yield* caughtUp
      }

      const head = yield* chain.anvil.blockNumber
      const canonical = Chaos.canonical(yield* Chaos.reference(chain, head - BigInt(D)))
      const got = yield* Chaos.stored(db)
      const gotLines = Chaos.canonical(got.deposits)
      // eslint-disable-next-line no-console
      console.log(
        `[chaos] reorgs: ${deep} deep, ${rounds - deep} shallow; orphaned deposits ${shallowOrphans.size} shallow, ` +
          `${deepOrphans.size} deep; stored ${got.deposits.length}, canonical ${canonical.length}`
      )
      // Nothing from a block orphaned within the depth was ever stored.
      expect(got.deposits.filter((p) => shallowOrphans.has(p.txHash.toLowerCase()))).toEqual([])
      // Every canonical deposit exactly once (ids are unique; the canonical lines all present).
      expect(new Set(got.ids).size).toBe(got.ids.length)
      const gotSet = new Set(gotLines)
      expect(canonical.filter((l) => !gotSet.has(l))).toEqual([])
      // The rest are deposits of blocks that a deep reorg orphaned after they were confirmed.
      const canonicalSet = new Set(canonical)
      const extra = got.deposits.filter((p) => !canonicalSet.has(Chaos.canonical([p])[0]!))
      expect(extra.filter((p) => !deepOrphans.has(p.txHash.toLowerCase()))).toEqual([])
      // Each deep reorg was reported once; no shallow one was.
      expect((yield* Metric.value(LogFollower.finalityViolations)).count - violationsBefore).toBe(deep)
    }).pipe(Logger.withMinimumLogLevel(LogLevel.None)), 120_000)
})

/** A deposit transaction from dev account 0 (funded and approved), for `anvil_reorg`. */
const depositTx = (chain: EscrowChain.EscrowChain, amount: bigint) => ({
  from: chain.anvil.accounts[0]!.address,
  to: chain.deployment.escrow,
  data: encodeFunctionData({ abi: Contracts.escrowAbi, functionName: "deposit", args: [amount] }),
  gas: 200_000n
})
