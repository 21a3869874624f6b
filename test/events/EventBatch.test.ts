/**
 * Broadcasts written as batches (`SqlEventStore`): which rows a batch added comes from the
 * INSERT's `changes` and `lastInsertRowid`, and from one query of the new rows when it added
 * fewer than it was given. Both stores must report the same: the memory store is the reference.
 */
import { Migrator } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Layer, Logger, LogLevel, Metric, Option, Schema } from "effect"
import { eventsDropped, eventsStored } from "../../src/events/EventBackend.js"
import * as EventId from "../../src/events/EventId.js"
import { EventLog } from "../../src/events/EventLog.js"
import { EventStorage, EventStore } from "../../src/events/EventStore.js"
import * as EventType from "../../src/events/EventType.js"
import events from "../../src/storage/0001_events.js"
import * as Resolution from "../../src/voting/Resolution.js"
import { ResolutionRegistry } from "../../src/voting/ResolutionRegistry.js"

const Raw = EventType.make("other", Schema.Uint8ArrayFromSelf)
const Registry = ResolutionRegistry.layer(Resolution.make({ type: Raw, resolve: () => Effect.void }))
const migrations = Layer.effectDiscard(Migrator.make({})({ loader: Migrator.fromRecord({ "0001_events": events }) }))

const layers: ReadonlyArray<readonly [string, () => Layer.Layer<EventStorage | EventLog>]> = [
  ["EventStore.layerSql (SQLite)", () =>
    EventStore.layerSql.pipe(
      Layer.provideMerge(migrations),
      Layer.provide(SqliteClient.layer({ filename: ":memory:" })),
      Layer.provide(Registry),
      Layer.orDie
    )],
  ["EventStore.layerMemory", () => EventStore.layerMemory.pipe(Layer.provide(Registry), Layer.orDie)]
]

/** The body of event `n`: distinct for every n. */
const body = (n: number) => Uint8Array.of(n & 0xff, n >> 8, 7)
const idOf = (n: number) => EventId.make("other", body(n))

/**
 * Runs `effect` and returns what it added to the stored and dropped counters, and the ids of the
 * "event dropped" debug logs, in order.
 */
const observed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const drops: Array<string> = []
    const logger = Logger.make(({ annotations, message }) => {
      const text = Array.isArray(message) ? message.join(" ") : String(message)
      if (text.startsWith("event dropped")) drops.push(String(Option.getOrElse(HashMap.get(annotations, "id"), () => "")))
    })
    const stored = (yield* Metric.value(eventsStored)).count
    const dropped = (yield* Metric.value(eventsDropped)).count
    yield* effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(LogLevel.Debug))
    return {
      stored: (yield* Metric.value(eventsStored)).count - stored,
      dropped: (yield* Metric.value(eventsDropped)).count - dropped,
      drops
    }
  })

for (const [label, fresh] of layers) {
  describe(label, () => {
    /** Broadcasts of `order`, one call each, or through `broadcastRawAll` in slices of varied sizes. */
    const ways: ReadonlyArray<readonly [string, (store: EventStore["Type"], order: ReadonlyArray<number>) => Effect.Effect<void, unknown>]> = [
      ["one broadcastRaw each", (store, order) =>
        Effect.forEach(order, (n) => store.broadcastRaw("other", body(n)), { discard: true })],
      ["broadcastRawAll in slices of 1 to 200", (store, order) =>
        Effect.gen(function*() {
          // Slices around and past the 128-row batch, so queued rows are written mid-call and at commit.
          const sizes = [1, 127, 2, 200, 130]
          let at = 0
          for (let i = 0; at < order.length; i++) {
            const slice = order.slice(at, at + sizes[i % sizes.length]!)
            const ids = yield* store.broadcastRawAll("other", slice.map(body))
            expect(ids).toEqual(slice.map(idOf))
            at += slice.length
          }
        })]
    ]
    for (const [way, broadcastAll] of ways) {
      it.effect(`a transaction mixing new, stored, processed and repeated ids counts and logs each exactly (${way})`, () =>
        Effect.gen(function*() {
          const store = (yield* EventStorage).forListener("eth")
          const log = yield* EventLog
          // Stored before: 5, 140, 299. Processed: 6, 141 (141 was never stored here).
          for (const n of [5, 140, 299]) yield* store.broadcastRaw("other", body(n))
          yield* log.markProcessed([idOf(6), idOf(141)])
          // 0..299 with 10 and 200 repeated right after themselves, and 150 again at the very
          // end: 303 broadcasts, so full batches and smaller ones, each with and without drops.
          const order: Array<number> = []
          for (let n = 0; n < 300; n++) {
            order.push(n)
            if (n === 10 || n === 200) order.push(n)
          }
          order.push(150)
          const before = yield* log.list()
          const result = yield* observed(store.transaction(broadcastAll(store, order)))
          const droppedIds = [5, 6, 10, 140, 141, 200, 299, 150].map(idOf)
          expect(result.stored).toBe(300 - 5) // every n once, but 5, 140, 299 (stored) and 6, 141 (processed)
          expect(result.dropped).toBe(8)
          expect([...result.drops].sort()).toEqual([...droppedIds].sort())
          const added = (yield* log.list()).slice(before.length).map((e) => e.id)
          expect(added).toEqual(
            Array.from({ length: 300 }, (_, n) => n).filter((n) => ![5, 6, 140, 141, 299].includes(n)).map(idOf)
          )
        }).pipe(Effect.provide(fresh())))
    }

    it.effect("a batch that adds nothing, and one that adds everything", () =>
      Effect.gen(function*() {
        const store = (yield* EventStorage).forListener("eth")
        const log = yield* EventLog
        const all = yield* observed(
          store.transaction(Effect.forEach([1, 2, 3, 4], (n) => store.broadcastRaw("other", body(n)), { discard: true }))
        )
        expect(all).toEqual({ stored: 4, dropped: 0, drops: [] })
        yield* log.markProcessed([idOf(9)])
        const none = yield* observed(
          store.transaction(Effect.forEach([4, 3, 9, 1], (n) => store.broadcastRaw("other", body(n)), { discard: true }))
        )
        expect(none).toEqual({ stored: 0, dropped: 4, drops: [4, 3, 9, 1].map(idOf) })
        expect((yield* log.list()).map((e) => e.id)).toEqual([1, 2, 3, 4].map(idOf))
      }).pipe(Effect.provide(fresh())))

    it.effect("rows added after deletes and in a later transaction are told apart from the earlier ones", () =>
      Effect.gen(function*() {
        const store = (yield* EventStorage).forListener("eth")
        const log = yield* EventLog
        yield* store.transaction(Effect.forEach([1, 2, 3], (n) => store.broadcastRaw("other", body(n)), { discard: true }))
        // Deleting the newest rows lets new rows take their seqs again.
        yield* log.delete([idOf(3), idOf(2)])
        const result = yield* observed(
          store.transaction(Effect.forEach([1, 2, 4, 3], (n) => store.broadcastRaw("other", body(n)), { discard: true }))
        )
        expect(result).toEqual({ stored: 3, dropped: 1, drops: [idOf(1)] })
        expect((yield* log.list()).map((e) => e.id)).toEqual([1, 2, 4, 3].map(idOf))
      }).pipe(Effect.provide(fresh())))
  })
}
