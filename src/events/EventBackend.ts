/**
 * What an event store implementation (SQL or memory) provides, and the listener-facing service
 * built on it once for both, so the two cannot drift apart in what they check, count and log.
 */
import { Effect, Metric, Option } from "effect"
import type { ResolutionRegistry } from "../voting/ResolutionRegistry.js"
import { UnknownEventType } from "./errors.js"
import type { EventStoreError } from "./errors.js"
import * as EventId from "./EventId.js"
import type { EventLog } from "./EventLog.js"
import type { EventStorage, EventStoreService } from "./EventStore.js"

/**
 * Runs the nested transactions opened under one enclosing `level` one at a time (each backend
 * keys it by its own level object): a savepoint undoes everything written after it began, so two
 * open at once (forked fibers) would each undo, or keep, the other's writes.
 */
export const oneNestedAtATime = (() => {
  const locks = new WeakMap<object, Effect.Semaphore>()
  return (level: object): (<A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) => {
    let lock = locks.get(level)
    if (lock === undefined) locks.set(level, lock = Effect.unsafeMakeSemaphore(1))
    return lock.withPermits(1)
  }
})()

/** The storage primitives; every write joins the caller's open transaction, if any. */
export interface EventBackend {
  /**
   * Adds the event unless its id is stored or processed already, and succeeds with `id` either
   * way. The backend reports the outcome: `reportOne` for a row it wrote at once, `reportBatch`
   * for rows it wrote later as one batch (see `SqlEventStore`), so the counts and logs are the
   * same either way.
   */
  readonly insert: (
    id: EventId.EventId,
    type: string,
    body: Uint8Array,
    listener: string
  ) => Effect.Effect<EventId.EventId, EventStoreError>
  /** `insert` of each of `ids` (with its body, in order), as one step; succeeds with `ids`. */
  readonly insertAll: (
    ids: ReadonlyArray<EventId.EventId>,
    type: string,
    bodies: ReadonlyArray<Uint8Array>,
    listener: string
  ) => Effect.Effect<ReadonlyArray<EventId.EventId>, EventStoreError>
  /** The value under `(listener, key)`. */
  readonly kvGet: (listener: string, key: string) => Effect.Effect<Option.Option<Uint8Array>, EventStoreError>
  /** Stores `value` under `(listener, key)`. */
  readonly kvSet: (listener: string, key: string, value: Uint8Array) => Effect.Effect<void, EventStoreError>
  /** Removes `(listener, key)`. */
  readonly kvDelete: (listener: string, key: string) => Effect.Effect<void, EventStoreError>
  /** All-or-nothing `effect`; nested calls are savepoints. */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | EventStoreError, R>
  /** The node-side view of the same rows. */
  readonly log: EventLog["Type"]
}

/** Events added to the local store by a broadcast. */
export const eventsStored = Metric.counter("kwil_events_stored", {
  description: "events a listener broadcast that were added to the local event store",
  incremental: true
})

/** Broadcasts that added nothing: the event was stored already or the network processed it. */
export const eventsDropped = Metric.counter("kwil_events_dropped", {
  description: "broadcasts dropped because the event was already stored or already processed",
  incremental: true
})

/** What a broadcast that added nothing logs and counts. */
const dropped = (id: EventId.EventId, type: string, listener: string) =>
  Effect.logDebug("event dropped: already stored or already processed").pipe(
    Effect.annotateLogs({ listener, type, id }),
    Effect.zipRight(Metric.increment(eventsDropped))
  )

/** The outcome of one broadcast written at once: `stored` when it added a row. */
export const reportOne = (stored: boolean, id: EventId.EventId, type: string, listener: string): Effect.Effect<void> =>
  stored ? Metric.increment(eventsStored) : dropped(id, type, listener)

/** The outcome of broadcasts written as one batch: `stored` rows added, `skipped` ones dropped. */
export const reportBatch = (
  stored: number,
  skipped: ReadonlyArray<{ readonly id: EventId.EventId; readonly type: string; readonly listener: string }>
): Effect.Effect<void> =>
  Effect.zipRight(
    stored === 0 ? Effect.void : Metric.incrementBy(eventsStored, stored),
    skipped.length === 0 ? Effect.void : Effect.forEach(skipped, (row) => dropped(row.id, row.type, row.listener), {
      discard: true
    })
  )

/** The per-listener `EventStore`s over `backend`, refusing types `registry` cannot resolve. */
export const makeStorage = (
  backend: EventBackend,
  registry: ResolutionRegistry["Type"]
): EventStorage["Type"] => ({
  forListener: (listener) => {
    // Kept free of Effect.gen and of steps beyond the codec's and the backend's (which succeeds
    // with the id): this is the hot path of a catch-up, thousands of broadcasts per transaction.
    const unknown = (type: string) => Effect.fail(new UnknownEventType({ type, known: registry.types }))
    const insert = (type: string, body: Uint8Array) => backend.insert(EventId.make(type, body), type, body, listener)
    const insertAll = (type: string, bodies: ReadonlyArray<Uint8Array>) =>
      backend.insertAll(bodies.map((body) => EventId.make(type, body)), type, bodies, listener)

    // Every body is checked by the registered type before anything is stored, the typed calls'
    // too (their encoding is the caller's: a payload that does not round-trip, or a type of the
    // same name with another schema): a body the resolution could never decode would only be
    // proposed, voted on and fail in `resolve`.
    const broadcastRaw: EventStoreService["broadcastRaw"] = (type, body) => {
      const resolution = registry.get(type)
      return Option.isNone(resolution)
        ? unknown(type)
        : Effect.flatMap(resolution.value.type.decode(body), () => insert(type, body))
    }
    const broadcastRawAll: EventStoreService["broadcastRawAll"] = (type, bodies) => {
      const resolution = registry.get(type)
      return Option.isNone(resolution)
        ? unknown(type)
        : Effect.zipRight(resolution.value.type.checkAll(bodies), insertAll(type, bodies))
    }

    const service: EventStoreService = {
      broadcast: (type, payload) =>
        // Check the type first: an unknown type is the more useful error, and it costs no encoding.
        Option.isNone(registry.get(type.name))
          ? unknown(type.name)
          : Effect.flatMap(type.encode(payload), (body) => broadcastRaw(type.name, body)),
      broadcastRaw,
      broadcastAll: (type, payloads) =>
        Option.isNone(registry.get(type.name))
          ? unknown(type.name)
          : Effect.flatMap(type.encodeAll(payloads), (bodies) => broadcastRawAll(type.name, bodies)),
      broadcastRawAll,
      kv: {
        get: (key) => backend.kvGet(listener, key),
        set: (key, value) => backend.kvSet(listener, key, value),
        delete: (key) => backend.kvDelete(listener, key)
      },
      transaction: backend.transaction
    }
    return service
  }
})
