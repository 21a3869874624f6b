/**
 * The devnet's consensus, reduced to what the vote ledger needs: one block at a time, the same
 * block executed by every validator, and their states compared after it.
 *
 * A block at height h:
 * 1. the proposer is the validator at h % N, or the next one holding a seat;
 * 2. it carries the proposer's VoteBodies (`Broadcaster.proposal`) and every VoteIds tx waiting
 *    in the mempool (submitted after earlier blocks);
 * 3. every node executes it in ONE SQL transaction: `setValidators` when the set changed, the
 *    bodies, each VoteIds tx (one from a validator without a seat is refused on every node alike:
 *    `NotAValidator`, the block goes on), `finalizeBlock`, `stateDigest`;
 * 4. the digests must all be equal, else `DigestMismatch` (the devnet stops: a ledger is not
 *    deterministic, which a real network would fork on);
 * 5. after commit, every node runs `Broadcaster.afterBlock`, which queues its VoteIds for the next block.
 */
import { SqlClient } from "@effect/sql"
import { Data, Effect, Metric } from "effect"
import type { EventId } from "../events/EventId.js"
import { Broadcaster } from "../voting/Broadcaster.js"
import { type FinalizeOutcome, type Validator as LedgerValidator, VoteLedger } from "../voting/VoteLedger.js"
import type { Mempool } from "./InProcessTransport.js"
import type { Validator } from "./Validator.js"

/** Caps on the proposer's VoteBodies (Kwil's `max_votes_per_tx` and a block-size share). */
export const proposalCaps = { maxVotes: 100, maxBytes: 1_000_000 } as const

/** Nodes ended a block in different states: a ledger is not deterministic. */
export class DigestMismatch extends Data.TaggedError("DigestMismatch")<{
  readonly height: bigint
  readonly digests: ReadonlyArray<{ readonly identity: string; readonly digest: string }>
}> {
  override get message() {
    const lines = this.digests.map((d) => `  ${d.identity}  ${d.digest}`).join("\n")
    return `state digests differ after block ${this.height}: the validators executed the same block into ` +
      `different states (a resolution or the vote ledger is not deterministic); compare their databases ` +
      `(keep them with --data-dir):\n${lines}`
  }
}

/** What one block did, as every node agreed. */
export interface BlockReport {
  readonly height: bigint
  readonly proposer: string
  /** The validator set the block was executed with (identities, sorted). */
  readonly validators: ReadonlyArray<string>
  /** Whether this block changed the validator set. */
  readonly validatorsChanged: boolean
  /** Events in the proposer's VoteBodies. */
  readonly bodies: number
  /** VoteIds txs executed, by sender. */
  readonly voteTxs: ReadonlyArray<{ readonly sender: string; readonly ids: number }>
  /** VoteIds txs refused because their sender had no seat (any more). */
  readonly refused: ReadonlyArray<string>
  readonly outcome: FinalizeOutcome
  /** For each resolution resolved in this block: who had voted for it. */
  readonly voters: ReadonlyMap<EventId, ReadonlyArray<string>>
  /** Every node's state digest after the block (all equal, or the block failed). */
  readonly digests: ReadonlyArray<{ readonly identity: string; readonly digest: string }>
}

const blocks = Metric.counter("devnet_blocks", { description: "devnet blocks produced", incremental: true })
const heightGauge = Metric.gauge("devnet_height", { description: "the devnet's last block height" })

/**
 * Produces blocks over `validators`. `produce(height, seats)` executes block `height` with the
 * identities in `seats` as the validator set (power 1 each).
 */
export const make = (validators: ReadonlyArray<Validator>, mempool: Mempool["Type"]) => {
  let lastSet: string | undefined

  const proposerOf = (height: bigint, seats: ReadonlySet<string>): Validator | undefined => {
    const n = validators.length
    for (let i = 0; i < n; i++) {
      const candidate = validators[Number((height + BigInt(i)) % BigInt(n))]!
      if (seats.has(candidate.identity)) return candidate
    }
    return undefined
  }

  const produce = Effect.fn("BlockProducer.produce")(function*(height: bigint, seatList: ReadonlyArray<string>) {
    const seats = new Set(seatList)
    const set: ReadonlyArray<LedgerValidator> = [...seats].sort().map((identity) => ({ identity, power: 1n }))
    const setKey = set.map((v) => v.identity).join(",")
    const changed = setKey !== lastSet
    const proposer = proposerOf(height, seats)
    if (proposer === undefined) return yield* Effect.dieMessage("the devnet needs at least one validator with a seat")
    const block = { height, proposer: proposer.identity }

    // `proposalCaps` are whole numbers: refusing them would be a defect here.
    const propose = Effect.flatMap(Broadcaster, (b) => b.proposal(proposalCaps)).pipe(Effect.catchTag("InvalidProposalCaps", Effect.die))
    const bodies = (yield* proposer.run(propose)).events
    const votes = yield* mempool.drain

    const execute = (node: Validator, first: boolean) =>
      node.run(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const ledger = yield* VoteLedger
        return yield* Effect.gen(function*() {
          if (changed) yield* ledger.setValidators(set)
          yield* ledger.applyVoteBodies(proposer.identity, bodies, block)
          const refused: Array<string> = []
          for (const tx of votes) {
            yield* ledger.applyVoteIds(tx.sender, tx.ids).pipe(
              Effect.catchTag("NotAValidator", () => Effect.sync(() => refused.push(tx.sender)))
            )
          }
          // Who voted, read before finalizing deletes the votes (read-only: no effect on the state).
          const open = first ? yield* ledger.all : []
          const outcome = yield* ledger.finalizeBlock(height)
          const digest = yield* ledger.stateDigest
          const resolved = new Set<string>(outcome.resolved)
          const voters = new Map(open.filter((r) => resolved.has(r.id)).map((r) => [r.id, r.voters] as const))
          return { outcome, digest, refused, voters }
        }).pipe(sql.withTransaction)
      }))

    const results = yield* Effect.forEach(validators, (node, i) => execute(node, i === 0))
    const digests = validators.map((node, i) => ({ identity: node.identity, digest: results[i]!.digest }))
    if (new Set(digests.map((d) => d.digest)).size !== 1) return yield* new DigestMismatch({ height, digests })
    lastSet = setKey

    yield* Effect.forEach(
      validators,
      (node) =>
        node.run(Effect.flatMap(Broadcaster, (b) =>
          b.afterBlock({ height, proposer: proposer.identity, isValidator: seats.has(node.identity) }))),
      { discard: true }
    )
    yield* Metric.increment(blocks)
    yield* Metric.set(heightGauge, Number(height))
    const first = results[0]!
    return {
      height,
      proposer: proposer.identity,
      validators: set.map((v) => v.identity),
      validatorsChanged: changed,
      bodies: bodies.length,
      voteTxs: votes.map((tx) => ({ sender: tx.sender, ids: tx.ids.length })),
      refused: first.refused,
      outcome: first.outcome,
      voters: first.voters,
      digests
    } satisfies BlockReport
  })

  return { produce } as const
}

/** A block producer over a fixed list of validators. */
export type BlockProducer = ReturnType<typeof make>
