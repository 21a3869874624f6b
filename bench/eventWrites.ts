/**
 * Benchmark 2, event writes: events per second through `EventStore.broadcastRaw`, all in one
 * `EventStore.transaction`, against raw better-sqlite3: one prepared INSERT per event in one
 * `db.transaction`, into the same schema in a file database of its own, set up as the node's
 * (WAL, its automatic checkpoint at the node's backstop: `rawDb`).
 * Both compute each event's id (`EventId.make`), which any writer of an event row has to do.
 * Bar: at least 0.5x the raw rate.
 */
import { Effect, Layer, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { EventStorage, EventStore } from "../src/events/EventStore.js"
import * as EventId from "../src/events/EventId.js"
import * as EventType from "../src/events/EventType.js"
import * as Resolution from "../src/voting/Resolution.js"
import { ResolutionRegistry } from "../src/voting/ResolutionRegistry.js"
import { migrateFile, nodeDb, type Options, rawDb, type Result, sideBySide, tempDir, time } from "./harness.js"

/**
 * Opaque 160-byte bodies (the size of a `credit_account` body) under a type whose schema is the
 * bytes themselves: `broadcastRaw` decodes every body with its type, and this measures the write
 * path, not a payload codec.
 */
const BenchEvent = EventType.make("bench_event", Schema.Uint8ArrayFromSelf)
const benchResolution = Resolution.make({ type: BenchEvent, resolve: () => Effect.void })
const type = BenchEvent.name

/** `count` distinct 160-byte bodies (the size of a `credit_account` body). */
const bodies = (count: number): Array<Uint8Array> => Array.from({ length: count }, () => new Uint8Array(randomBytes(160)))

const ours = async (file: string, events: ReadonlyArray<Uint8Array>): Promise<number> => {
  const layer = EventStore.layerSql.pipe(
    Layer.provide(ResolutionRegistry.layer(benchResolution)),
    Layer.provide(nodeDb(file))
  )
  return Effect.runPromise(
    Effect.gen(function*() {
      const store = (yield* EventStorage).forListener("bench")
      const write = store.transaction(
        Effect.forEach(events, (body) => store.broadcastRaw(type, body), { discard: true })
      )
      return yield* Effect.promise(() => time(() => Effect.runPromise(write)))
    }).pipe(Effect.provide(layer), Effect.scoped)
  )
}

const raw = async (file: string, events: ReadonlyArray<Uint8Array>): Promise<number> => {
  await migrateFile(file)
  const db = rawDb(file)
  try {
    const insert = db.prepare("INSERT INTO events (id, type, body, listener) VALUES (?, ?, ?, ?)")
    const all = db.transaction(() => {
      for (const body of events) insert.run(EventId.make(type, body), type, body, "bench")
    })
    return await time(() => all())
  } finally {
    db.close()
  }
}

export const run = async (options: Options): Promise<ReadonlyArray<Result>> => {
  const count = options.quick ? 20_000 : 100_000
  const rounds = options.quick ? 5 : 7
  const dir = tempDir("writes")
  try {
    // One warm-up of each: JIT and the native module, not measured.
    const warm = bodies(2_000)
    await ours(dir.path("warm-ours.db"), warm)
    await raw(dir.path("warm-raw.db"), warm)
    const rate = (ms: number) => count / (ms / 1000)
    const figures = await sideBySide(
      rounds,
      (r) => ours(dir.path(`ours-${r}.db`), bodies(count)).then(rate),
      (r) => raw(dir.path(`raw-${r}.db`), bodies(count)).then(rate)
    )
    const ratio = figures.ours / figures.baseline
    return [{
      name: `event writes (${count.toLocaleString("en")} in one transaction)`,
      ours: Math.round(figures.ours),
      baseline: Math.round(figures.baseline),
      unit: "events/s",
      ratio,
      bar: ">= 0.5x raw better-sqlite3",
      pass: ratio >= 0.5,
      note: `median of ${rounds} side-by-side rounds; both compute event ids`
    }]
  } finally {
    dir.remove()
  }
}
