/**
 * The node's view of the locally stored events: what the block proposer puts in its VoteBodies,
 * what a validator still has to vote for, and the clean-up after the network decided.
 * Every list is in insertion order, so every caller sees the same stable order.
 */
import { Context, type Effect } from "effect"
import type { EventId } from "./EventId.js"
import type { EventStoreError } from "./errors.js"

/** An event as stored on this node. */
export interface LocalEvent {
  readonly id: EventId
  readonly type: string
  readonly body: Uint8Array
  /** The listener that observed it. */
  readonly listener: string
  /** Whether this node has sent its vote for it. */
  readonly voted: boolean
}

export class EventLog extends Context.Tag("kwil-listeners/EventLog")<EventLog, {
  /** Stored events in insertion order, optionally only voted or un-voted ones, at most `limit`. */
  readonly list: (options?: {
    readonly voted?: boolean
    readonly limit?: number
  }) => Effect.Effect<ReadonlyArray<LocalEvent>, EventStoreError>
  /** The stored events among `ids`, in insertion order. */
  readonly get: (ids: ReadonlyArray<EventId>) => Effect.Effect<ReadonlyArray<LocalEvent>, EventStoreError>
  /** Records that this node's votes for `ids` were sent. */
  readonly markVoted: (ids: ReadonlyArray<EventId>) => Effect.Effect<void, EventStoreError>
  /** Records that the votes for `ids` must be sent again (a vote that never landed). */
  readonly markUnvoted: (ids: ReadonlyArray<EventId>) => Effect.Effect<void, EventStoreError>
  /** Deletes the local rows for `ids`. */
  readonly delete: (ids: ReadonlyArray<EventId>) => Effect.Effect<void, EventStoreError>
  /**
   * Records that the network processed `ids` (resolved or expired): their local rows are deleted
   * and any later broadcast of them is dropped silently.
   */
  readonly markProcessed: (ids: ReadonlyArray<EventId>) => Effect.Effect<void, EventStoreError>
  /** Whether the network processed `id`. */
  readonly isProcessed: (id: EventId) => Effect.Effect<boolean, EventStoreError>
}>() {}
