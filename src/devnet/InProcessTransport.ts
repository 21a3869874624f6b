/**
 * The devnet's mempool: every validator's `VoteTransport` puts its VoteIds transactions here,
 * and the block producer takes them all into the next block (a real node would gossip them).
 *
 * VoteBodies never travel this way: the proposer puts them in its own block, so submitting one
 * is refused, as a real node's mempool would refuse it.
 */
import { Context, Effect, Layer, Ref } from "effect"
import { VoteSubmitError, VoteTransport, type VoteTx } from "../voting/VoteTransport.js"

/** A VoteIds transaction waiting for a block. */
export type VoteIdsTx = Extract<VoteTx, { readonly _tag: "VoteIds" }>

export class Mempool extends Context.Tag("kwil-listeners/devnet/Mempool")<Mempool, {
  /** Queues a VoteIds tx for the next block. */
  readonly submit: (tx: VoteIdsTx) => Effect.Effect<void>
  /** Takes every queued tx, in submission order, leaving the mempool empty. */
  readonly drain: Effect.Effect<ReadonlyArray<VoteIdsTx>>
  /** How many txs wait. */
  readonly size: Effect.Effect<number>
}>() {
  /** An empty mempool, shared by every validator of one devnet. */
  static readonly layer: Layer.Layer<Mempool> = Layer.effect(
    Mempool,
    Effect.map(Ref.make<ReadonlyArray<VoteIdsTx>>([]), (queue) =>
      Mempool.of({
        submit: (tx) => Ref.update(queue, (txs) => [...txs, tx]),
        drain: Ref.getAndSet(queue, []),
        size: Effect.map(Ref.get(queue), (txs) => txs.length)
      }))
  )
}

/** One validator's `VoteTransport` over the shared mempool. */
export const transport = (mempool: Mempool["Type"]): Layer.Layer<VoteTransport> =>
  Layer.succeed(
    VoteTransport,
    VoteTransport.of({
      submit: (tx) =>
        tx._tag === "VoteIds"
          ? mempool.submit(tx)
          : Effect.fail(
            new VoteSubmitError({
              tx: tx._tag,
              cause: new Error("VoteBodies go into the proposer's own block (Broadcaster.proposal), never the mempool")
            })
          )
    })
  )
