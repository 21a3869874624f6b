/**
 * The event store as a listener sees it: scoped to that one listener by the manager.
 * (The SQL and memory implementations live beside it; the node side is `EventLog`.)
 */
import { Context, Data, type Effect, type Option } from "effect"
import type { EventId } from "./EventId.js"
import type { EventType, PayloadCodecError } from "./EventType.js"

/** A broadcast of an event type that no resolution is registered for: the network could never vote it. */
export class UnknownEventType extends Data.TaggedError("UnknownEventType")<{
  readonly type: string
  readonly known: ReadonlyArray<string>
}> {
  override get message() {
    return `no resolution is registered for event type "${this.type}" ` +
      `(known: ${this.known.length === 0 ? "none" : this.known.join(", ")}); ` +
      `register its Resolution in the ResolutionRegistry layer`
  }
}

/** The storage under the event store failed (disk full, locked, corrupt file...). */
export class EventStoreError extends Data.TaggedError("EventStoreError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  override get message() {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `event store ${this.operation} failed: ${cause}`
  }
}

/** The service a listener uses to hand events to the network and to keep its own state. */
export class EventStore extends Context.Tag("kwil-listeners/EventStore")<EventStore, {
  /**
   * Stores an observed event for the network to vote on. Idempotent: the id is derived from the
   * type and the encoded body, so a second broadcast of the same event changes nothing, and an
   * event the network already processed is dropped silently. Returns the event's id.
   */
  readonly broadcast: <A, I>(
    type: EventType<A, I>,
    payload: A
  ) => Effect.Effect<EventId, UnknownEventType | PayloadCodecError | EventStoreError>
  /** `broadcast` for a payload already encoded to bytes. */
  readonly broadcastRaw: (
    type: string,
    body: Uint8Array
  ) => Effect.Effect<EventId, UnknownEventType | EventStoreError>
  /** A key-value store local to this node and this listener: never sent anywhere, never shared. */
  readonly kv: {
    /** The value under `key`, `Option.none()` when there is none. */
    readonly get: (key: string) => Effect.Effect<Option.Option<Uint8Array>, EventStoreError>
    readonly set: (key: string, value: Uint8Array) => Effect.Effect<void, EventStoreError>
    readonly delete: (key: string) => Effect.Effect<void, EventStoreError>
  }
  /**
   * Runs `effect` so that every broadcast and KV write in it commits together, or none does
   * when it fails. A listener writes its checkpoint in the same transaction as the events it covers.
   */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | EventStoreError, R>
}>() {}

/** The node-side factory: one `EventStore` per listener name. Provided by `EventStore.layerSql` / `layerMemory`. */
export class EventStorage extends Context.Tag("kwil-listeners/EventStorage")<EventStorage, {
  /** The event store scoped to `listener`: its KV keys are its own. */
  readonly forListener: (listener: string) => EventStore["Type"]
}>() {}
