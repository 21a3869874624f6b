import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Logger, Schedule, Scope } from "effect"
import { mkdtempSync, rmSync, statSync, unlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as WalCheckpointer from "../../src/storage/WalCheckpointer.js"

/** A fresh directory, removed when the test's scope closes. */
const tempFile = Effect.map(
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "kwil-wal-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  ),
  (dir) => join(dir, "node.db")
)

/** The connection's `wal_autocheckpoint`. */
const automatic = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql.unsafe<{ readonly wal_autocheckpoint: number }>("PRAGMA wal_autocheckpoint"),
    (rows) => rows[0]!.wal_autocheckpoint
  ))

/** About 8 MB of pages committed in one transaction: in the WAL until a checkpoint copies them. */
const writePages = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.zipRight(
    sql.unsafe("CREATE TABLE IF NOT EXISTS pages (x BLOB)"),
    sql.withTransaction(sql.unsafe(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) " +
        "INSERT INTO pages SELECT randomblob(4000) FROM n"
    ))
  ))

const fileSize = (file: string) => Effect.sync(() => statSync(file).size)

/** Waits (real time, up to 5 s) until the database file itself holds the pages. */
const untilCheckpointed = (file: string) =>
  fileSize(file).pipe(
    Effect.filterOrFail((size) => size > 7_000_000, () => "not yet"),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds")))
  )

/** Log lines (message and annotations) written while `effect` runs. */
const capturing = <A, E, R>(effect: Effect.Effect<A, E, R>, lines: Array<string>) =>
  effect.pipe(Effect.provide(Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, message }) => {
      lines.push(`${String(message)} ${JSON.stringify(Object.fromEntries(annotations))}`)
    })
  )))

/**
 * `body` with a connection to a fresh file database, given its path (in WAL mode unless
 * `disableWAL`). What `body` opens in its scope closes before the connection, as in a node.
 */
const onFile = <A, E, R>(
  body: (file: string) => Effect.Effect<A, E, R>,
  options: { readonly disableWAL?: boolean } = {}
) =>
  Effect.flatMap(tempFile, (file) =>
    body(file).pipe(Effect.scoped, Effect.provide(SqliteClient.layer({ filename: file, ...options }))))

/**
 * `body` over a fresh file database whose checkpointer runs the thread `script` (from
 * `test/support`), with what the layer logged while it started.
 */
const withThread = <A, E>(script: string, body: (warnings: () => string) => Effect.Effect<A, E, SqlClient.SqlClient>) =>
  onFile((file) => {
    const lines: Array<string> = []
    const thread = new URL(`../support/${script}`, import.meta.url)
    return Effect.zipRight(
      capturing(Layer.build(WalCheckpointer.layer(file, { thread })), lines),
      body(() => lines.join("\n"))
    )
  })

describe("WalCheckpointer", () => {
  it.scopedLive("checkpoints on its own thread: the connection's automatic checkpoint is raised to the backstop, and committed pages reach the file", () =>
    onFile((file) =>
      Effect.gen(function*() {
        yield* Layer.build(WalCheckpointer.layer(file, { interval: "20 millis", backstop: 50_000 }))
        expect(yield* automatic).toBe(50_000)
        yield* writePages
        // The connection checkpoints only past 50,000 pages now: only the thread can have copied these.
        yield* untilCheckpointed(file)
      })))

  it.scopedLive("closing it makes a last checkpoint and gives the connection its automatic checkpoints back", () =>
    onFile((file) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        // An interval no test waits for: only the last checkpoint, on close, copies anything.
        yield* Layer.buildWithScope(WalCheckpointer.layer(file, { interval: Duration.hours(1) }), scope)
        expect(yield* automatic).toBe(10_000)
        yield* writePages
        expect(yield* fileSize(file)).toBeLessThan(1_000_000)
        yield* Scope.close(scope, Exit.void)
        expect(yield* fileSize(file)).toBeGreaterThan(7_000_000)
        expect(yield* automatic).toBe(1000)
      })))

  it.scopedLive("a database its thread cannot open: a warning, and the connection keeps its automatic checkpoints", () =>
    onFile((file) =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        // The connection holds the file open; the thread, opening it by name, finds nothing.
        unlinkSync(file)
        yield* capturing(Layer.build(WalCheckpointer.layer(file, { interval: "20 millis" })), lines)
        expect(yield* automatic).toBe(1000)
        expect(lines.join("\n")).toContain("cannot checkpoint the WAL on a thread of its own")
        expect(lines.join("\n")).toContain(file)
      })))

  it.scopedLive("a thread that fails later: a warning naming the reason, and the connection checkpoints again", () =>
    withThread("failingCheckpointer.mjs", (warnings) =>
      Effect.gen(function*() {
        expect(yield* automatic).toBe(10_000)
        yield* automatic.pipe(
          Effect.filterOrFail((n) => n === 1000, () => "not yet"),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds")))
        )
        expect(warnings()).toContain("the WAL checkpoint thread ended")
        expect(warnings()).toContain("a checkpoint failed: disk I/O error")
      })))

  it.scopedLive("commits back to back, which no checkpoint of the thread catches up with: the backstop keeps the WAL bounded", () =>
    onFile((file) =>
      Effect.gen(function*() {
        yield* Layer.build(WalCheckpointer.layer(file, { interval: "20 millis", backstop: 100 }))
        const sql = yield* SqlClient.SqlClient
        // 200 rows of 3 KB, a page each; every transaction rewrites 20 of them: about 20 WAL frames a commit.
        yield* sql.unsafe("CREATE TABLE rows (id INTEGER PRIMARY KEY, x BLOB)")
        yield* sql.withTransaction(Effect.forEach(
          Array.from({ length: 200 }, (_, i) => i),
          (i) => sql.unsafe("INSERT INTO rows VALUES (?, randomblob(3000))", [i]),
          { discard: true }
        ))
        for (let t = 0; t < 1000; t++) {
          yield* sql.unsafe(
            "UPDATE rows SET x = randomblob(3000) WHERE id IN (SELECT value FROM json_each(?))",
            [JSON.stringify(Array.from({ length: 20 }, (_, i) => (t * 7 + i * 10) % 200))]
          )
        }
        // 20,000 frames were written after the first 205. With the backstop the WAL rewinds every few
        // commits (its peak was 1,000 to 1,500 frames in scratch runs: the connection's checkpoint is
        // busy while the thread's runs); without it, it holds every frame. The file never shrinks.
        expect(yield* fileSize(`${file}-wal`)).toBeLessThan(8_000 * 4096)
      })))

  it.scopedLive("closing it restores the connection's own setting, whatever it was", () =>
    onFile((file) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe("PRAGMA wal_autocheckpoint = 500")
        const scope = yield* Scope.make()
        yield* Layer.buildWithScope(WalCheckpointer.layer(file), scope)
        expect(yield* automatic).toBe(10_000)
        yield* Scope.close(scope, Exit.void)
        expect(yield* automatic).toBe(500)
      })))

  it.scopedLive("a thread that throws as it loads: the warning says what it threw", () =>
    withThread("throwingCheckpointer.mjs", (warnings) =>
      Effect.gen(function*() {
        expect(yield* automatic).toBe(1000)
        expect(warnings()).toContain("cannot load the SQLite driver")
      })))

  it.scopedLive("a thread that never answers does not hold up an interrupted start", () =>
    onFile((file) =>
      Effect.gen(function*() {
        const thread = new URL("../support/silentCheckpointer.mjs", import.meta.url)
        const building = yield* Effect.fork(Effect.scoped(Layer.build(WalCheckpointer.layer(file, { thread }))))
        yield* Effect.sleep("200 millis")
        // Interrupting terminates the thread at once, well before the 10 s start timeout.
        const interrupted = yield* Effect.timeout(Fiber.interrupt(building), "2 seconds")
        expect(Exit.isInterrupted(interrupted)).toBe(true)
        expect(yield* automatic).toBe(1000)
      })))

  it.scopedLive("a file database not in WAL mode is left as it is: no thread", () =>
    onFile((file) =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        yield* capturing(Layer.build(WalCheckpointer.layer(file)), lines)
        expect(yield* automatic).toBe(1000)
        expect(lines).toEqual([])
      }), { disableWAL: true }))

  it.scopedLive("an in-memory database is left as it is: no thread", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      yield* Effect.gen(function*() {
        const before = yield* automatic
        yield* capturing(Layer.build(WalCheckpointer.layer(":memory:")), lines)
        expect(yield* automatic).toBe(before)
        expect(lines).toEqual([])
      }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" })))
    }))
})
