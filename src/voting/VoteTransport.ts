/**
 * How a node's votes leave it: the host node provides `VoteTransport` (a mempool submit on a real
 * node, an in-process queue on the devnet). The vote ledger never depends on it; the broadcaster does.
 */
import { Context, Data, Effect, Layer, Ref } from "effect"
import type { EventId } from "../events/EventId.js"

/** An event as carried in a proposer's VoteBodies: the id is recomputed from these by every node. */
export interface VoteBody {
  readonly type: string
  readonly body: Uint8Array
}

/**
 * A vote transaction. `VoteBodies` is only ever built by the block proposer and goes into its own
 * proposal (never the mempool); `VoteIds` is what every other validator submits after a block.
 */
export type VoteTx = Data.TaggedEnum<{
  VoteIds: { readonly sender: string; readonly ids: ReadonlyArray<EventId> }
  VoteBodies: { readonly sender: string; readonly events: ReadonlyArray<VoteBody> }
}>

/** Constructors and matchers for `VoteTx`: `VoteTx.VoteIds({ sender, ids })`. */
export const VoteTx = Data.taggedEnum<VoteTx>()

/** The node could not accept a vote transaction (mempool full, bad nonce, node shutting down...). */
export class VoteSubmitError extends Data.TaggedError("VoteSubmitError")<{
  readonly tx: VoteTx["_tag"]
  readonly cause: unknown
}> {
  override get message() {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `the node refused a ${this.tx} transaction: ${cause}; the votes stay un-sent and are retried after the next block`
  }
}

export class VoteTransport extends Context.Tag("kwil-listeners/VoteTransport")<VoteTransport, {
  /** Hands `tx` to the node for inclusion in a later block. Success means accepted, not included. */
  readonly submit: (tx: VoteTx) => Effect.Effect<void, VoteSubmitError>
}>() {
  /**
   * A transport that records every submitted transaction, for tests and simple hosts:
   * `submitted` holds them in submission order.
   */
  static readonly recording = Effect.gen(function*() {
    const submitted = yield* Ref.make<ReadonlyArray<VoteTx>>([])
    const transport = VoteTransport.of({
      submit: (tx) => Ref.update(submitted, (txs) => [...txs, tx])
    })
    return { transport, submitted } as const
  })

  /** A layer whose transport appends to `submitted`. */
  static readonly layerRef = (submitted: Ref.Ref<ReadonlyArray<VoteTx>>) =>
    Layer.succeed(VoteTransport, VoteTransport.of({ submit: (tx) => Ref.update(submitted, (txs) => [...txs, tx]) }))
}
