/**
 * The event store as a listener sees it: scoped to that one listener by the manager.
 * The node side of the same rows is `EventLog`; both come from one layer, `EventStore.layerSql`
 * (the node database) or `EventStore.layerMemory` (tests, no database).
 */
import type { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, type Option } from "effect"
import { ResolutionRegistry } from "../voting/ResolutionRegistry.js"
import { type EventBackend, makeStorage } from "./EventBackend.js"
import type { EventId } from "./EventId.js"
import { EventLog } from "./EventLog.js"
import type { EventType, PayloadCodecError } from "./EventType.js"
import type { EventStoreError, UnknownEventType } from "./errors.js"
import * as MemoryEventStore from "./MemoryEventStore.js"
import * as SqlEventStore from "./SqlEventStore.js"

export { EventStoreError, UnknownEventType } from "./errors.js"

/** What a listener can do with its event store. */
export interface EventStoreService {
  /**
   * Stores an observed event for the network to vote on. Idempotent: the id is derived from the
   * type and the encoded body, so a second broadcast of the same event changes nothing, and an
   * event the network already processed is dropped silently. Returns the event's id. The body is
   * then checked by the registered type, as `broadcastRaw` checks it: a payload that does not
   * round-trip, or a type of the registered name with another schema, fails with
   * `PayloadCodecError` and nothing is stored.
   */
  readonly broadcast: <A, I>(
    type: EventType<A, I>,
    payload: A
  ) => Effect.Effect<EventId, UnknownEventType | PayloadCodecError | EventStoreError>
  /**
   * `broadcast` for a payload already encoded to bytes. The body is decoded with the registered
   * type first: bytes it cannot decode fail with `PayloadCodecError` and nothing is stored.
   */
  readonly broadcastRaw: (
    type: string,
    body: Uint8Array
  ) => Effect.Effect<EventId, UnknownEventType | PayloadCodecError | EventStoreError>
  /**
   * `broadcast` of many payloads of one type, as one step: every payload is encoded first (the
   * first that cannot be fails with `PayloadCodecError` naming its index, and nothing is stored),
   * then checked as `broadcastRawAll` checks them, then each is stored as `broadcast` would, in
   * order, with the same ids, counts and logs. For a
   * listener handing over a batch (a range of logs) inside `transaction`: the per-event work is
   * plain code rather than Effect steps. Returns the ids in order.
   */
  readonly broadcastAll: <A, I>(
    type: EventType<A, I>,
    payloads: ReadonlyArray<A>
  ) => Effect.Effect<ReadonlyArray<EventId>, UnknownEventType | PayloadCodecError | EventStoreError>
  /**
   * `broadcastAll` for bodies already encoded: every body is checked first by the registered type
   * (`EventType.checkAll`: its `accepts` when it has one, else a decode), and nothing of the call
   * is stored when one fails.
   */
  readonly broadcastRawAll: (
    type: string,
    bodies: ReadonlyArray<Uint8Array>
  ) => Effect.Effect<ReadonlyArray<EventId>, UnknownEventType | PayloadCodecError | EventStoreError>
  /** A key-value store local to this node and this listener: never sent anywhere, never shared. */
  readonly kv: {
    /** The value under `key`, `Option.none()` when there is none. */
    readonly get: (key: string) => Effect.Effect<Option.Option<Uint8Array>, EventStoreError>
    /** Stores `value` under `key`, replacing any earlier value. */
    readonly set: (key: string, value: Uint8Array) => Effect.Effect<void, EventStoreError>
    /** Removes `key`; removing a missing key is not an error. */
    readonly delete: (key: string) => Effect.Effect<void, EventStoreError>
  }
  /**
   * Runs `effect` so that every broadcast and KV write in it commits together, or none does
   * when it fails (or is interrupted). A listener writes its checkpoint in the same transaction as
   * the events it covers. Nested calls are savepoints: an inner failure that the outer effect
   * catches undoes only the inner writes. Nested calls made at once (by forked fibers) run one
   * after another, since a savepoint undoes whatever was written after it began: so a nested
   * call must not wait on a sibling's (joining it from inside a nested call of its own waits
   * forever), and a write the enclosing level makes while a nested call runs, outside any, is
   * not isolated from it (whether a failing nested call undoes it depends on the store: don't).
   * A store failure to write (an `EventStoreError` from a
   * broadcast) fails the transaction even if the effect catches it: rows may be lost with it. A
   * fiber forked inside must be joined before `effect` returns: once its level has ended, its
   * store calls fail with `EventStoreError` and do nothing.
   */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | EventStoreError, R>
}

/** The node-side factory: one `EventStore` per listener name. Provided by `EventStore.layerSql` / `layerMemory`. */
export class EventStorage extends Context.Tag("kwil-listeners/EventStorage")<EventStorage, {
  /** The event store scoped to `listener`: its KV keys are its own. */
  readonly forListener: (listener: string) => EventStoreService
}>() {}

/** Builds `EventStorage` and `EventLog` over one backend, so both views share its rows and transactions. */
const toLayer = <R>(
  backend: Effect.Effect<EventBackend, never, R>
): Layer.Layer<EventStorage | EventLog, never, R | ResolutionRegistry> =>
  Layer.effectContext(Effect.gen(function*() {
    const events = yield* backend
    const registry = yield* ResolutionRegistry
    return Context.make(EventStorage, EventStorage.of(makeStorage(events, registry))).pipe(
      Context.add(EventLog, events.log)
    )
  }))

/** The service a listener uses to hand events to the network and to keep its own state. */
export class EventStore extends Context.Tag("kwil-listeners/EventStore")<EventStore, EventStoreService>() {
  /** Events, KV and processed ids in the node's SQL database (run `0001_events` first). */
  static readonly layerSql: Layer.Layer<EventStorage | EventLog, never, SqlClient.SqlClient | ResolutionRegistry> =
    toLayer(SqlEventStore.make)

  /** The same behaviour in memory, transactions included: for listener tests and mock nodes. */
  static readonly layerMemory: Layer.Layer<EventStorage | EventLog, never, ResolutionRegistry> = toLayer(
    MemoryEventStore.make
  )

  /** The event store of one listener, from the node's `EventStorage` (for tools and tests). */
  static readonly layerFor = (listener: string): Layer.Layer<EventStore, never, EventStorage> =>
    Layer.effect(EventStore, Effect.map(EventStorage, (storage) => storage.forListener(listener)))
}
