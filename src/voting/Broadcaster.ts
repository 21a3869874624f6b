/**
 * Turns this node's locally observed events into votes.
 *
 * - As the block proposer, `proposal` gives the VoteBodies to put in the block: local events that
 *   have no resolution yet, or one without this node's vote (a body for an existing resolution
 *   adds the proposer's vote), in insertion order, within a count and a byte cap.
 * - After every block, `afterBlock` makes a validator that did not propose it submit VoteIds for
 *   its local events that now have a resolution it has not voted for, and marks them voted.
 *   A vote that still has not landed `resendAfterBlocks` blocks after it was sent is sent again
 *   (the original never re-sent a lost vote).
 *
 * Sent heights are kept in memory; after a restart, every voted-but-not-landed event counts as
 * sent at the first block seen, so it is re-sent `resendAfterBlocks` later.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Data, Effect, Layer, Metric, Ref } from "effect"
import type { EventId } from "../events/EventId.js"
import { EventLog, type LocalEvent } from "../events/EventLog.js"
import type { EventStoreError } from "../events/EventStore.js"
import { NodeInfo } from "../listener/NodeInfo.js"
import { VoteLedger } from "./VoteLedger.js"
import { type VoteSubmitError, VoteTransport, VoteTx } from "./VoteTransport.js"

/** Broadcaster settings. */
export interface BroadcasterConfig {
  /** Most ids in one VoteIds tx (Kwil's `max_votes_per_tx`, default 100). */
  readonly maxVotesPerTx?: number
  /** Blocks after which a sent vote not seen in the ledger is sent again (default 10). */
  readonly resendAfterBlocks?: number
}

/** A `BroadcasterConfig` value the broadcaster cannot work with. */
export class InvalidBroadcasterConfig extends Data.TaggedError("InvalidBroadcasterConfig")<{
  readonly key: "maxVotesPerTx" | "resendAfterBlocks"
  readonly value: number
}> {
  override get message() {
    return `broadcaster config ${this.key} = ${this.value}: must be a whole number of at least 1 ` +
      (this.key === "maxVotesPerTx" ? "(0 would never send a vote)" : "(0 would send every open vote again each block)")
  }
}

/** Caps of a `proposal` that are not whole numbers of at least 0 (NaN would cap nothing). */
export class InvalidProposalCaps extends Data.TaggedError("InvalidProposalCaps")<{
  readonly key: "maxVotes" | "maxBytes"
  readonly value: number
}> {
  override get message() {
    return `proposal caps ${this.key} = ${this.value}: must be a whole number of at least 0`
  }
}

/** The block just committed, as the host saw it. */
export interface CommittedBlock {
  readonly height: bigint
  /** Who proposed it: that validator sends no VoteIds for it (its nonce is taken by the block). */
  readonly proposer: string
  /** Whether this node holds power after it. Non-validators send nothing. */
  readonly isValidator: boolean
}

/** What `afterBlock` submitted. */
export interface AfterBlockOutcome {
  /** Ids voted for the first time, in insertion order. */
  readonly sent: ReadonlyArray<EventId>
  /** Ids sent again because the earlier vote never landed. */
  readonly resent: ReadonlyArray<EventId>
}

export type VoteBodiesTx = Extract<VoteTx, { readonly _tag: "VoteBodies" }>

const votesSent = Metric.counter("kwil_votes_sent", { description: "vote ids submitted", incremental: true })
const votesResent = Metric.counter("kwil_votes_resent", {
  description: "vote ids submitted again after not landing",
  incremental: true
})

const encoder = new TextEncoder()

/** The bytes an event takes in a VoteBodies tx: body, type name and id. */
export const voteBodySize = (event: Pick<LocalEvent, "id" | "type" | "body">): number =>
  event.body.length + encoder.encode(event.type).length + event.id.length

export class Broadcaster extends Context.Tag("kwil-listeners/Broadcaster")<Broadcaster, {
  /**
   * The VoteBodies this node puts in a block it proposes: local events with no resolution yet, in
   * insertion order, at most `maxVotes` of them and at most `maxBytes` (see `voteBodySize`). It
   * stops at the first event that does not fit; an event larger than `maxBytes` alone is skipped.
   */
  readonly proposal: (caps: {
    readonly maxVotes: number
    readonly maxBytes: number
  }) => Effect.Effect<VoteBodiesTx, InvalidProposalCaps | EventStoreError | SqlError>
  /**
   * Run after each committed block: a validator that did not propose it submits one VoteIds tx
   * (fresh votes first, then re-sends, at most `maxVotesPerTx`) and marks the fresh ones voted.
   * Events whose vote already counts (e.g. ones this node proposed) are marked voted without sending.
   */
  readonly afterBlock: (
    block: CommittedBlock
  ) => Effect.Effect<AfterBlockOutcome, EventStoreError | SqlError | VoteSubmitError>
}>() {
  /** The broadcaster of the node named by `NodeInfo`. */
  static readonly layer = (
    config: BroadcasterConfig = {}
  ): Layer.Layer<Broadcaster, InvalidBroadcasterConfig, EventLog | VoteLedger | VoteTransport | NodeInfo> =>
    Layer.effect(Broadcaster, make(config))
}

/** `value` of `key` when it is a whole number of at least 1. */
const atLeastOne = (key: InvalidBroadcasterConfig["key"], value: number) =>
  Number.isSafeInteger(value) && value >= 1 ? Effect.succeed(value) : Effect.fail(new InvalidBroadcasterConfig({ key, value }))

const make = (config: BroadcasterConfig) =>
  Effect.gen(function*() {
    const maxVotesPerTx = yield* atLeastOne("maxVotesPerTx", config.maxVotesPerTx ?? 100)
    const resendAfterBlocks = BigInt(yield* atLeastOne("resendAfterBlocks", config.resendAfterBlocks ?? 10))
    const events = yield* EventLog
    const ledger = yield* VoteLedger
    const transport = yield* VoteTransport
    const { identity } = yield* NodeInfo
    /** id -> height its vote was last sent at, for votes not yet seen in the ledger. */
    const sentAt = yield* Ref.make(new Map<EventId, bigint>())
    /** The height of the last block `afterBlock` saw. */
    const lastHeight = yield* Ref.make<bigint | undefined>(undefined)

    const proposal = Effect.fn("Broadcaster.proposal")(function*(caps: {
      readonly maxVotes: number
      readonly maxBytes: number
    }) {
      for (const key of ["maxVotes", "maxBytes"] as const) {
        if (!Number.isSafeInteger(caps[key]) || caps[key] < 0) {
          return yield* new InvalidProposalCaps({ key, value: caps[key] })
        }
      }
      // Every local event this node has no vote for in the ledger: a new one creates its resolution,
      // and one another proposer created gets this node's vote (the ledger adds it). A proposer
      // sends no VoteIds for its own block, so a validator that proposes every block (the last
      // one left) would otherwise never vote for others' resolutions, nor re-send a lost vote.
      // A vote already sent as VoteIds goes again only once it is due for a re-send.
      const local = yield* events.list()
      const status = yield* ledger.voteStatus(identity, local.map((e) => e.id))
      const pending = yield* Ref.get(sentAt)
      const height = yield* Ref.get(lastHeight)
      const due = (id: EventId) => {
        const at = pending.get(id)
        return at === undefined || height === undefined || height - at >= resendAfterBlocks
      }
      const chosen: Array<LocalEvent> = []
      let bytes = 0
      for (const event of local) {
        if (chosen.length >= caps.maxVotes) break
        if (status.get(event.id) === "voted" || (event.voted && !due(event.id))) continue
        const size = voteBodySize(event)
        if (size > caps.maxBytes) {
          yield* Effect.logWarning("event larger than a whole VoteBodies tx: never proposed").pipe(
            Effect.annotateLogs({ id: event.id, type: event.type, bytes: size, maxBytes: caps.maxBytes })
          )
          continue
        }
        if (bytes + size > caps.maxBytes) break
        bytes += size
        chosen.push(event)
      }
      return VoteTx.VoteBodies({
        sender: identity,
        events: chosen.map((e) => ({ type: e.type, body: e.body }))
      }) as VoteBodiesTx
    })

    const afterBlock = Effect.fn("Broadcaster.afterBlock")(function*(block: CommittedBlock) {
      const none: AfterBlockOutcome = { sent: [], resent: [] }
      yield* Ref.set(lastHeight, block.height)
      if (!block.isValidator) {
        yield* Ref.set(sentAt, new Map())
        return none
      }
      const unvoted = yield* events.list({ voted: false })
      const unvotedStatus = yield* ledger.voteStatus(identity, unvoted.map((e) => e.id))
      const landed = unvoted.filter((e) => unvotedStatus.get(e.id) === "voted").map((e) => e.id)
      if (landed.length > 0) yield* events.markVoted(landed)
      const fresh = unvoted.filter((e) => unvotedStatus.get(e.id) === "open").map((e) => e.id)

      const voted = yield* events.list({ voted: true })
      const votedStatus = yield* ledger.voteStatus(identity, voted.map((e) => e.id))
      const pending = yield* Ref.get(sentAt)
      const due: Array<EventId> = []
      for (const { id } of voted) {
        if (votedStatus.get(id) !== "open") {
          pending.delete(id)
          continue
        }
        const at = pending.get(id)
        if (at === undefined) pending.set(id, block.height) // unknown (restart): count from now
        else if (block.height - at >= resendAfterBlocks) due.push(id)
      }
      for (const id of pending.keys()) if (!votedStatus.has(id)) pending.delete(id)

      if (block.proposer === identity) return none
      const batch = [...fresh, ...due].slice(0, maxVotesPerTx)
      if (batch.length === 0) return none
      yield* transport.submit(VoteTx.VoteIds({ sender: identity, ids: batch }))
      const sent = batch.slice(0, Math.min(fresh.length, batch.length))
      const resent = batch.slice(sent.length)
      yield* events.markVoted(sent)
      for (const id of batch) pending.set(id, block.height)
      yield* Metric.incrementBy(votesSent, batch.length)
      yield* Metric.incrementBy(votesResent, resent.length)
      yield* Effect.logDebug("votes submitted").pipe(
        Effect.annotateLogs({ height: block.height.toString(), sent: sent.length, resent: resent.length })
      )
      if (resent.length > 0) {
        yield* Effect.logWarning("votes re-sent: earlier VoteIds never landed").pipe(
          Effect.annotateLogs({ height: block.height.toString(), ids: resent.join(",") })
        )
      }
      return { sent, resent } satisfies AfterBlockOutcome
    })

    return Broadcaster.of({ proposal, afterBlock })
  })
