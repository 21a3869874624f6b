import { Migrator, SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Layer, Metric, Option, Schema } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { eventsDropped, eventsStored } from "../../src/events/EventBackend.js"
import * as EventId from "../../src/events/EventId.js"
import { EventLog } from "../../src/events/EventLog.js"
import { EventStorage, EventStore } from "../../src/events/EventStore.js"
import * as EventType from "../../src/events/EventType.js"
import events from "../../src/storage/0001_events.js"
import * as Resolution from "../../src/voting/Resolution.js"
import { ResolutionRegistry } from "../../src/voting/ResolutionRegistry.js"
import { withSavepoint } from "../../src/voting/TxSql.js"

const Credit = EventType.make(
  "credit_account",
  EventType.json(Schema.Struct({ account: Schema.NonEmptyString, amount: Schema.BigInt }))
)
const Unregistered = EventType.make("not_registered", EventType.json(Schema.String))

/** A type of one-byte bodies checked by `accepts`; `decodes` counts its schema's decodes. */
let decodes = 0
const Checked = EventType.make(
  "checked",
  Schema.transform(Schema.Uint8ArrayFromSelf, Schema.Number, {
    strict: true,
    decode: (b) => {
      decodes++
      return b[0] ?? 0
    },
    encode: (n) => Uint8Array.of(n)
  }),
  { accepts: (b) => (b.length === 1 ? undefined : "one byte") }
)

/** A type whose encoding of NaN (null) its own decoding refuses. */
const Amount = EventType.make("amount", EventType.json(Schema.Struct({ n: Schema.Number })))

const Registry = ResolutionRegistry.layer(
  Resolution.make({ type: Credit, resolve: () => Effect.void }),
  Resolution.make({ type: Amount, resolve: () => Effect.void }),
  Resolution.make({ type: EventType.make("other", Schema.Uint8ArrayFromSelf), resolve: () => Effect.void }),
  Resolution.make({ type: Checked, resolve: () => Effect.void })
)

const bytes = (...values: ReadonlyArray<number>) => Uint8Array.from(values)
const text = (value: string) => new TextEncoder().encode(value)

/** The event store of `listener` from the layer under test. */
const storeOf = (listener = "eth") => Effect.map(EventStorage, (storage) => storage.forListener(listener))

/** The ids the log holds, in its order. */
const ids = (options?: Parameters<EventLog["Type"]["list"]>[0]) =>
  Effect.flatMap(EventLog, (log) => log.list(options)).pipe(Effect.map((rows) => rows.map((row) => row.id)))

class Boom extends Schema.TaggedError<Boom>()("Boom", {}) {}

type StoreLayer = Layer.Layer<EventStorage | EventLog>

/** Everything an event store must do, run against each implementation with a fresh store per test. */
const suite = (label: string, fresh: () => StoreLayer) =>
  describe(label, () => {
    const test = (name: string, body: () => Effect.Effect<void, unknown, EventStorage | EventLog>) =>
      it.effect(name, () => Effect.provide(body(), fresh()))

    test("broadcasts are idempotent: same event, same id, one row", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const first = yield* store.broadcastRaw("other", bytes(1, 2))
        const again = yield* store.broadcastRaw("other", bytes(1, 2))
        expect(first).toBe(EventId.make("other", bytes(1, 2)))
        expect(again).toBe(first)
        // The same body from another listener is the same event.
        expect(yield* (yield* storeOf("other")).broadcastRaw("other", bytes(1, 2))).toBe(first)
        const other = yield* store.broadcastRaw("other", bytes(1, 3))
        expect(yield* ids()).toEqual([first, other])
      }))

    test("counts stored and dropped events", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const stored = (yield* Metric.value(eventsStored)).count
        const dropped = (yield* Metric.value(eventsDropped)).count
        yield* store.broadcastRaw("other", bytes(9))
        yield* store.broadcastRaw("other", bytes(9))
        expect((yield* Metric.value(eventsStored)).count).toBe(stored + 1)
        expect((yield* Metric.value(eventsDropped)).count).toBe(dropped + 1)
      }))

    test("a typed payload round-trips through its EventType", () =>
      Effect.gen(function*() {
        const store = yield* storeOf("eth")
        const payload = { account: "0xabc", amount: 12345678901234567890n }
        const id = yield* store.broadcast(Credit, payload)
        const [event] = yield* Effect.flatMap(EventLog, (log) => log.get([id]))
        expect(event).toMatchObject({ id, type: "credit_account", listener: "eth", voted: false })
        expect(id).toBe(EventId.make("credit_account", event!.body))
        expect(yield* Credit.decode(event!.body)).toEqual(payload)
      }))

    test("a bad payload is a PayloadCodecError and stores nothing", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const error = yield* Effect.flip(store.broadcast(Credit, { account: "", amount: 1n }))
        expect(error._tag).toBe("PayloadCodecError")
        expect(error).toMatchObject({ type: "credit_account", direction: "encode" })
        expect(yield* ids()).toEqual([])
      }))

    test("a typed body the registered type cannot decode is a PayloadCodecError and stores nothing", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        // A payload that does not round-trip: NaN is encoded as null, which the schema refuses.
        const nan = yield* Effect.flip(store.broadcast(Amount, { n: Number.NaN }))
        expect(nan).toMatchObject({ _tag: "PayloadCodecError", type: "amount", direction: "decode" })
        // A type of a registered name with another schema: its bodies are not the resolution's.
        const Impostor = EventType.make("credit_account", EventType.json(Schema.String))
        const one = yield* Effect.flip(store.broadcast(Impostor, "hello"))
        expect(one).toMatchObject({ _tag: "PayloadCodecError", type: "credit_account", direction: "decode" })
        const all = yield* Effect.flip(store.broadcastAll(Impostor, ["a", "b"]))
        expect(all).toMatchObject({ _tag: "PayloadCodecError", type: "credit_account", direction: "decode", index: 0 })
        expect(yield* ids()).toEqual([])
      }))

    test("raw bytes its type cannot decode are a PayloadCodecError and store nothing", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const error = yield* Effect.flip(store.broadcastRaw("credit_account", text("not json")))
        expect(error).toMatchObject({ _tag: "PayloadCodecError", type: "credit_account", direction: "decode" })
        // Bytes that are not UTF-8 at all: the same typed error, not a defect.
        const notText = yield* Effect.flip(store.broadcastRaw("credit_account", bytes(0xff, 0xfe)))
        expect(notText).toMatchObject({ _tag: "PayloadCodecError", type: "credit_account", direction: "decode" })
        expect(notText.message).toContain("UTF-8")
        expect(yield* ids()).toEqual([])
        // The same type accepts a body it can decode.
        yield* store.broadcastRaw("credit_account", text(JSON.stringify({ account: "a", amount: "1" })))
        expect(yield* ids()).toHaveLength(1)
      }))

    test("an unknown type is UnknownEventType and stores nothing", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const raw = yield* Effect.flip(store.broadcastRaw("not_registered", bytes(1)))
        expect(raw).toMatchObject({ _tag: "UnknownEventType", type: "not_registered", known: ["amount", "checked", "credit_account", "other"] })
        expect(raw.message).toContain("ResolutionRegistry")
        const typed = yield* Effect.flip(store.broadcast(Unregistered, "x"))
        expect(typed._tag).toBe("UnknownEventType")
        expect(yield* ids()).toEqual([])
      }))

    test("broadcastAll and broadcastRawAll store many in order, as one call each would", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const payloads = [{ account: "a", amount: 1n }, { account: "b", amount: 2n }, { account: "a", amount: 1n }]
        // Outside a transaction, and inside one.
        const typed = yield* store.broadcastAll(Credit, payloads)
        const raw = yield* store.transaction(store.broadcastRawAll("other", [bytes(1), bytes(2)]))
        const each = yield* Effect.forEach(payloads, (p) => Credit.encode(p))
        expect(typed).toEqual(each.map((body) => EventId.make("credit_account", body)))
        expect(raw).toEqual([EventId.make("other", bytes(1)), EventId.make("other", bytes(2))])
        // The repeated payload is one event.
        expect(yield* ids()).toEqual([typed[0], typed[1], ...raw])
        expect(yield* store.broadcastRawAll("other", [])).toEqual([])
        expect(yield* ids()).toHaveLength(4)
      }))

    test("one bad item among many is a PayloadCodecError naming it, and nothing of the call is stored", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const good = text(JSON.stringify({ account: "a", amount: "1" }))
        const raw = yield* Effect.flip(store.broadcastRawAll("credit_account", [good, good, text("not json")]))
        expect(raw).toMatchObject({ _tag: "PayloadCodecError", type: "credit_account", direction: "decode", index: 2 })
        expect(raw.message).toContain("(item 2)")
        const typed = yield* Effect.flip(
          store.transaction(store.broadcastAll(Credit, [{ account: "a", amount: 1n }, { account: "", amount: 1n }]))
        )
        expect(typed).toMatchObject({ _tag: "PayloadCodecError", direction: "encode", index: 1 })
        const unknown = yield* Effect.flip(store.broadcastRawAll("not_registered", [bytes(1)]))
        expect(unknown._tag).toBe("UnknownEventType")
        expect(yield* ids()).toEqual([])
      }))

    test("broadcastRawAll checks bodies with their type's accepts, without decoding them", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const before = decodes
        const stored = yield* store.broadcastRawAll("checked", [bytes(1), bytes(2)])
        expect(yield* ids()).toEqual(stored)
        const error = yield* Effect.flip(store.broadcastRawAll("checked", [bytes(3), bytes(4, 5)]))
        expect(error).toMatchObject({ _tag: "PayloadCodecError", type: "checked", index: 1, cause: "one byte" })
        expect(yield* ids()).toEqual(stored)
        expect(decodes).toBe(before)
      }))

    test("processed ids are dropped silently", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const log = yield* EventLog
        const id = yield* store.broadcastRaw("other", bytes(1))
        const kept = yield* store.broadcastRaw("other", bytes(2))
        expect(yield* log.isProcessed(id)).toBe(false)
        yield* log.markProcessed([id])
        expect(yield* log.isProcessed(id)).toBe(true)
        expect(yield* ids()).toEqual([kept])
        // Broadcasting it again succeeds with its id and stores nothing.
        expect(yield* store.broadcastRaw("other", bytes(1))).toBe(id)
        expect(yield* ids()).toEqual([kept])
        // Also for an id that was never stored here (the network resolved it first).
        const elsewhere = EventId.make("other", bytes(3))
        yield* log.markProcessed([elsewhere, elsewhere])
        yield* store.broadcastRaw("other", bytes(3))
        expect(yield* ids()).toEqual([kept])
      }))

    test("kv: get, set, overwrite, delete; a missing key is none", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        expect(yield* store.kv.get("lh")).toEqual(Option.none())
        yield* store.kv.set("lh", text("100"))
        expect(yield* store.kv.get("lh")).toEqual(Option.some(text("100")))
        yield* store.kv.set("lh", text("200"))
        expect(yield* store.kv.get("lh")).toEqual(Option.some(text("200")))
        yield* store.kv.delete("lh")
        yield* store.kv.delete("lh")
        expect(yield* store.kv.get("lh")).toEqual(Option.none())
      }))

    test("kv keys are scoped by (listener, key): prefixing would collide here", () =>
      Effect.gen(function*() {
        // Kwil's `name + " " + key` makes both of these "a b c".
        const a = yield* storeOf("a")
        const ab = yield* storeOf("a b")
        yield* a.kv.set("b c", text("of a"))
        yield* ab.kv.set("c", text("of a b"))
        expect(yield* a.kv.get("b c")).toEqual(Option.some(text("of a")))
        expect(yield* ab.kv.get("c")).toEqual(Option.some(text("of a b")))
        expect(yield* a.kv.get("c")).toEqual(Option.none())
        expect(yield* ab.kv.get("b c")).toEqual(Option.none())
        yield* a.kv.delete("b c")
        expect(yield* ab.kv.get("c")).toEqual(Option.some(text("of a b")))
      }))

    test("stored bytes are not changed by the caller mutating its arrays", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const body = bytes(1, 2, 3)
        const value = bytes(4, 5)
        yield* store.broadcastRaw("other", body)
        yield* store.kv.set("k", value)
        body[0] = 99
        value[0] = 99
        const [event] = yield* Effect.flatMap(EventLog, (log) => log.list())
        expect(event!.body).toEqual(bytes(1, 2, 3))
        const read = Option.getOrThrow(yield* store.kv.get("k"))
        expect(read).toEqual(bytes(4, 5))
        read[0] = 77
        expect(yield* store.kv.get("k")).toEqual(Option.some(bytes(4, 5)))
      }))

    test("transaction commits events and kv together", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const id = yield* store.transaction(
          Effect.zipLeft(store.broadcastRaw("other", bytes(1)), store.kv.set("lh", text("10")))
        )
        expect(yield* ids()).toEqual([id])
        expect(yield* store.kv.get("lh")).toEqual(Option.some(text("10")))
      }))

    test("transaction rolls back events and kv together on failure", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const log = yield* EventLog
        const before = yield* store.broadcastRaw("other", bytes(0))
        yield* store.kv.set("lh", text("old"))
        yield* store.kv.set("gone", text("kept"))
        const exit = yield* Effect.exit(store.transaction(Effect.gen(function*() {
          yield* store.broadcastRaw("other", bytes(1))
          yield* store.kv.set("lh", text("new"))
          yield* store.kv.set("fresh", text("x"))
          yield* store.kv.delete("gone")
          yield* log.markVoted([before])
          yield* log.markProcessed([EventId.make("other", bytes(7))])
          return yield* new Boom()
        })))
        expect(exit).toEqual(Exit.fail(new Boom()))
        expect(yield* log.list()).toMatchObject([{ id: before, voted: false }])
        expect(yield* store.kv.get("lh")).toEqual(Option.some(text("old")))
        expect(yield* store.kv.get("fresh")).toEqual(Option.none())
        expect(yield* store.kv.get("gone")).toEqual(Option.some(text("kept")))
        expect(yield* log.isProcessed(EventId.make("other", bytes(7)))).toBe(false)
        // A defect rolls back too.
        const died = yield* Effect.exit(store.transaction(
          Effect.zipRight(store.broadcastRaw("other", bytes(2)), Effect.die("bug"))
        ))
        expect(Exit.isFailure(died)).toBe(true)
        expect(yield* ids()).toEqual([before])
      }))

    test("a nested transaction is a savepoint", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const outer = yield* store.transaction(Effect.gen(function*() {
          const kept = yield* store.broadcastRaw("other", bytes(1))
          yield* store.transaction(
            Effect.zipRight(store.broadcastRaw("other", bytes(2)), store.kv.set("inner", text("x"))).pipe(
              Effect.zipRight(new Boom())
            )
          ).pipe(Effect.catchTag("Boom", () => Effect.void))
          yield* store.kv.set("outer", text("y"))
          return kept
        }))
        expect(yield* ids()).toEqual([outer])
        expect(yield* store.kv.get("inner")).toEqual(Option.none())
        expect(yield* store.kv.get("outer")).toEqual(Option.some(text("y")))
      }))

    test("nested transactions opened at once by forked fibers run one after another: a failing one undoes only its own writes", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const aStarted = yield* Deferred.make<void>()
        const results = yield* store.transaction(Effect.all([
          store.transaction(Effect.gen(function*() {
            yield* store.kv.set("a", text("a"))
            yield* store.broadcastRaw("other", bytes(1))
            yield* Deferred.succeed(aStarted, undefined)
            for (let i = 0; i < 50; i++) yield* Effect.yieldNow() // time for b to interleave, were it let
            return yield* new Boom()
          })).pipe(Effect.either),
          Effect.zipRight(
            Deferred.await(aStarted),
            store.transaction(Effect.zipRight(store.kv.set("b", text("b")), store.broadcastRaw("other", bytes(2))))
          ).pipe(Effect.either)
        ], { concurrency: 2 }))
        expect(results.map((r) => r._tag)).toEqual(["Left", "Right"])
        expect(yield* store.kv.get("a")).toEqual(Option.none())
        expect(yield* store.kv.get("b")).toEqual(Option.some(text("b")))
        expect(yield* ids()).toEqual([EventId.make("other", bytes(2))])
      }))

    test("EventLog: insertion order, voted flags, limit, get, delete", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const log = yield* EventLog
        // Bodies chosen so that id order differs from insertion order.
        const [e1, e2, e3, e4] = yield* Effect.forEach(
          [bytes(4), bytes(3), bytes(2), bytes(1)],
          (body) => store.broadcastRaw("other", body)
        )
        expect(yield* ids()).toEqual([e1, e2, e3, e4])
        expect([e1, e2, e3, e4].sort()).not.toEqual([e1, e2, e3, e4])
        yield* log.markVoted([e4!, e2!])
        expect(yield* ids({ voted: true })).toEqual([e2, e4])
        expect(yield* ids({ voted: false })).toEqual([e1, e3])
        expect(yield* ids({ voted: false, limit: 1 })).toEqual([e1])
        expect(yield* ids({ limit: 3 })).toEqual([e1, e2, e3])
        expect(yield* ids({ limit: 0 })).toEqual([])
        expect(yield* ids({ limit: -1 })).toEqual([])
        yield* log.markUnvoted([e2!])
        expect(yield* ids({ voted: false })).toEqual([e1, e2, e3])
        const unknown = EventId.make("other", bytes(42))
        expect((yield* log.get([e3!, unknown, e1!])).map((e) => e.id)).toEqual([e1, e3])
        expect(yield* log.get([])).toEqual([])
        yield* log.delete([e1!])
        expect(yield* ids()).toEqual([e2, e3, e4])
        // A rolled-back delete puts the row back in its place, not at the end.
        yield* Effect.exit(store.transaction(Effect.zipRight(log.delete([e2!]), new Boom())))
        expect(yield* ids()).toEqual([e2, e3, e4])
        // A new event comes after all present ones, even after deletes.
        yield* log.delete([e4!])
        const e5 = yield* store.broadcastRaw("other", bytes(0))
        expect(yield* ids()).toEqual([e2, e3, e5])
      }))

    test("a fiber forked in a transaction that uses the store after it ended fails and stores nothing", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const ended = yield* Deferred.make<void>()
        const late = yield* store.transaction(
          Effect.gen(function*() {
            yield* store.broadcastRaw("other", bytes(1))
            return yield* Effect.fork(Effect.zipRight(
              Deferred.await(ended),
              Effect.all([
                Effect.either(store.broadcastRaw("other", bytes(2))),
                Effect.either(store.kv.set("late", text("x"))),
                Effect.either(Effect.flatMap(EventLog, (log) => log.list()))
              ])
            ))
          })
        )
        yield* Deferred.succeed(ended, undefined)
        const results = yield* Fiber.join(late)
        for (const result of results as ReadonlyArray<Either.Either<unknown, { readonly _tag: string; readonly message: string }>>) {
          expect(Either.isLeft(result)).toBe(true)
          const error = (result as Either.Left<{ readonly _tag: string; readonly message: string }, unknown>).left
          expect(error._tag).toBe("EventStoreError")
          expect(error.message).toContain("forked in has ended")
          expect(error.message).toContain("join fibers forked inside EventStore.transaction")
        }
        expect(yield* ids()).toEqual([EventId.make("other", bytes(1))])
        expect(yield* store.kv.get("late")).toEqual(Option.none())
      }))

    test("a limit that is no finite number is no limit", () =>
      Effect.gen(function*() {
        const store = yield* storeOf()
        const a = yield* store.broadcastRaw("other", bytes(1))
        const b = yield* store.broadcastRaw("other", bytes(2))
        expect(yield* ids({ limit: Infinity })).toEqual([a, b])
        expect(yield* ids({ limit: Number.NaN })).toEqual([a, b])
        expect(yield* ids({ limit: 1.5 })).toEqual([a])
        expect(yield* ids({ limit: -Infinity })).toEqual([])
        // Finite, but past what SQLite's 64-bit LIMIT holds: every row, as the memory store gives.
        expect(yield* ids({ limit: 1e20 })).toEqual([a, b])
        expect(yield* ids({ limit: Number.MAX_VALUE })).toEqual([a, b])
      }))
  })

const migrations = Layer.effectDiscard(Migrator.make({})({ loader: Migrator.fromRecord({ "0001_events": events }) }))

/** The SQL store over a migrated SQLite database at `filename`. */
const sqlite = (filename: string): StoreLayer =>
  EventStore.layerSql.pipe(
    Layer.provideMerge(migrations),
    Layer.provide(SqliteClient.layer({ filename })),
    Layer.provide(Registry),
    Layer.orDie
  )

/** `sqlite(":memory:")` with its SQL client, for tests that run SQL of their own beside the store. */
const sqliteWithClient = EventStore.layerSql.pipe(
  Layer.provideMerge(migrations),
  Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })),
  Layer.provide(Registry),
  Layer.orDie
)

suite("EventStore.layerSql (SQLite)", () => sqlite(":memory:"))
suite("EventStore.layerMemory", () => EventStore.layerMemory.pipe(Layer.provide(Registry), Layer.orDie))

describe("EventStore.layerSql only", () => {
  it.scoped("a file database keeps events, votes, kv and processed ids across close and reopen", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "kwil-events-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const file = join(dir, "node.db")
      const processed = EventId.make("other", bytes(9))
      const [first, second] = yield* Effect.gen(function*() {
        const store = yield* storeOf()
        const log = yield* EventLog
        const first = yield* store.broadcastRaw("other", bytes(1))
        const second = yield* store.transaction(
          Effect.zipLeft(store.broadcastRaw("other", bytes(2)), store.kv.set("lh", text("42")))
        )
        yield* log.markVoted([second])
        yield* log.markProcessed([processed])
        return [first, second] as const
      }).pipe(Effect.provide(sqlite(file)))

      yield* Effect.gen(function*() {
        const store = yield* storeOf()
        const log = yield* EventLog
        expect(yield* log.list()).toMatchObject([{ id: first, voted: false }, { id: second, voted: true }])
        expect(yield* store.kv.get("lh")).toEqual(Option.some(text("42")))
        expect(yield* log.isProcessed(processed)).toBe(true)
        yield* store.broadcastRaw("other", bytes(9))
        expect(yield* ids()).toEqual([first, second])
      }).pipe(Effect.provide(sqlite(file)))
    }))

  it.effect("a batch that fails to write fails its transaction, even if the caller caught the failure", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe("CREATE TRIGGER refuse_ff BEFORE INSERT ON events WHEN NEW.body = x'ff' BEGIN SELECT RAISE(ABORT, 'refused'); END")
      const store = yield* storeOf()
      const exit = yield* Effect.exit(store.transaction(Effect.gen(function*() {
        yield* store.broadcastRaw("other", bytes(1))
        // 1 + 127 rows fill a batch, which is written now and refused.
        const bodies = [...Array.from({ length: 126 }, (_, i) => bytes(3, i)), bytes(0xff)]
        const caught = yield* Effect.either(store.broadcastRawAll("other", bodies))
        expect(Either.isLeft(caught) && caught.left._tag).toBe("EventStoreError")
        yield* store.broadcastRaw("other", bytes(2))
      })))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(exit).toMatchObject({ cause: { error: { _tag: "EventStoreError", operation: "broadcast" } } })
      expect(yield* ids()).toEqual([])
    }).pipe(Effect.provide(sqliteWithClient)))

  it.effect("TxSql.withSavepoint inside a transaction is a level of its own: its rollback undoes its rows only", () =>
    Effect.gen(function*() {
      const store = yield* storeOf()
      const before = yield* store.transaction(Effect.gen(function*() {
        const before = yield* store.broadcastRaw("other", bytes(1))
        // More rows than a batch inside the savepoint, which then fails.
        yield* Effect.exit(withSavepoint("user_level")(Effect.gen(function*() {
          for (let i = 0; i < 130; i++) yield* store.broadcastRaw("other", bytes(4, i))
          return yield* new Boom()
        })))
        return before
      }))
      expect(yield* ids()).toEqual([before])
    }).pipe(Effect.provide(sqliteWithClient)))

  it.effect("EventLog inside a foreign nested transaction fails while broadcasts of the level around it are queued", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const log = yield* EventLog
      const store = yield* storeOf()
      yield* store.transaction(Effect.gen(function*() {
        const id = yield* store.broadcastRaw("other", bytes(1))
        const error = yield* Effect.flip(sql.withTransaction(log.list()))
        expect(error).toMatchObject({ _tag: "EventStoreError", operation: "list" })
        expect(error.message).toContain("nest EventLog calls in EventStore.transaction")
        // Called at the store's level, it writes the queue; nothing is left to miss below it.
        expect((yield* log.list()).map((e) => e.id)).toEqual([id])
        expect((yield* sql.withTransaction(log.list())).map((e) => e.id)).toEqual([id])
      }))
    }).pipe(Effect.provide(sqliteWithClient)))

  it.effect("SQL failures are EventStoreError naming the operation", () =>
    Effect.gen(function*() {
      const store = yield* storeOf()
      const error = yield* Effect.flip(store.broadcastRaw("other", bytes(1)))
      expect(error).toMatchObject({ _tag: "EventStoreError", operation: "broadcast" })
      expect(error.message).toContain("no such table")
      const kv = yield* Effect.flip(store.kv.get("lh"))
      expect(kv).toMatchObject({ _tag: "EventStoreError", operation: "kv.get" })
    }).pipe(
      // No migrations: every table is missing.
      Effect.provide(EventStore.layerSql.pipe(
        Layer.provide(SqliteClient.layer({ filename: ":memory:" })),
        Layer.provide(Registry),
        Layer.orDie
      ))
    ))
})
