import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Logger, Schedule, Scope } from "effect"
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
    sql.withTransaction(sql.unsafe("INSERT INTO pages SELECT randomblob(4000) FROM generate_series(1, 2000)").pipe(
      Effect.catchAll(() =>
        // Without the series extension: a recursive CTE.
        sql.unsafe(
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) " +
            "INSERT INTO pages SELECT randomblob(4000) FROM n"
        )
      )
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

describe("WalCheckpointer", () => {
  it.scopedLive("checkpoints on its own thread: the connection's automatic checkpoints are off, and committed pages reach the file", () =>
    Effect.gen(function*() {
      const file = yield* tempFile
      yield* Effect.gen(function*() {
        expect(yield* automatic).toBe(0)
        yield* writePages
        // The connection never checkpoints now: only the thread can have copied the pages.
        yield* untilCheckpointed(file)
      }).pipe(Effect.provide(WalCheckpointer.layer(file, { interval: "20 millis" }).pipe(
        Layer.provideMerge(SqliteClient.layer({ filename: file }))
      )))
    }))

  it.scopedLive("closing it makes a last checkpoint and gives the connection its automatic checkpoints back", () =>
    Effect.gen(function*() {
      const file = yield* tempFile
      const client = yield* Layer.build(SqliteClient.layer({ filename: file }))
      yield* Effect.gen(function*() {
        const scope = yield* Scope.make()
        // An interval no test waits for: only the last checkpoint, on close, copies anything.
        yield* Layer.buildWithScope(WalCheckpointer.layer(file, { interval: Duration.hours(1) }), scope)
        expect(yield* automatic).toBe(0)
        yield* writePages
        expect(yield* fileSize(file)).toBeLessThan(1_000_000)
        yield* Scope.close(scope, Exit.void)
        expect(yield* fileSize(file)).toBeGreaterThan(7_000_000)
        expect(yield* automatic).toBe(1000)
      }).pipe(Effect.provide(client))
    }))

  it.scopedLive("a database its thread cannot open: a warning, and the connection keeps its automatic checkpoints", () =>
    Effect.gen(function*() {
      const file = yield* tempFile
      const lines: Array<string> = []
      yield* Effect.gen(function*() {
        // The connection holds the file open; the thread, opening it by name, finds nothing.
        unlinkSync(file)
        yield* capturing(Layer.build(WalCheckpointer.layer(file, { interval: "20 millis" })), lines)
        expect(yield* automatic).toBe(1000)
        expect(lines.join("\n")).toContain("cannot checkpoint the WAL on a thread of its own")
        expect(lines.join("\n")).toContain(file)
      }).pipe(Effect.provide(SqliteClient.layer({ filename: file })))
    }))

  it.scopedLive("a thread that fails later: a warning naming the reason, and the connection checkpoints again", () =>
    Effect.gen(function*() {
      const file = yield* tempFile
      const lines: Array<string> = []
      const thread = new URL("../support/failingCheckpointer.mjs", import.meta.url)
      yield* Effect.gen(function*() {
        yield* capturing(Layer.build(WalCheckpointer.layer(file, { thread })), lines)
        expect(yield* automatic).toBe(0)
        yield* automatic.pipe(
          Effect.filterOrFail((n) => n === 1000, () => "not yet"),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds")))
        )
        expect(lines.join("\n")).toContain("the WAL checkpoint thread ended")
        expect(lines.join("\n")).toContain("a checkpoint failed: disk I/O error")
      }).pipe(Effect.provide(SqliteClient.layer({ filename: file })))
    }))

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
