/**
 * SQL helpers for code that runs inside the host's block transaction (the vote ledger and the
 * `resolve` of resolutions), where thousands of small statements run per block.
 *
 * - `withSavepoint`: `@effect/sql` 0.52's nested `withTransaction` opens `SAVEPOINT
 *   effect_sql_<depth>` and never releases it on success, so SQLite's savepoint stack grows with
 *   every nested call until COMMIT and each later write journals its pages once per open
 *   savepoint. Finalizing 10,000 resolutions that way took 18 s. This pairs every SAVEPOINT with a
 *   RELEASE (ROLLBACK TO + RELEASE on failure or interruption).
 * - `query` / `run` / `changes`: inside a transaction they go straight to the transaction's connection
 *   (prepared and cached by the driver), skipping the statement compiler and span of the `sql`
 *   template: about 6 us a statement instead of 30-45 us.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Exit, Option } from "effect"

const openConnection = Effect.serviceOption(SqlClient.TransactionConnection)

/** The rows of `text` with positional `?` parameters. */
export const query = <Row extends object>(
  text: string,
  params: ReadonlyArray<unknown> = []
): Effect.Effect<ReadonlyArray<Row>, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(openConnection, (open) =>
    Option.isSome(open)
      ? open.value[0].execute(text, params, undefined) as Effect.Effect<ReadonlyArray<Row>, SqlError>
      : Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<Row>(text, params).withoutTransform))

/** Runs a statement for its effect. */
export const run = (
  text: string,
  params: ReadonlyArray<unknown> = []
): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(openConnection, (open) =>
    Option.isSome(open)
      ? Effect.asVoid(open.value[0].executeRaw(text, params))
      : Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.asVoid(sql.unsafe(text, params).raw)))

/** Runs a write and returns how many rows it changed (SQLite's `changes()`). */
export const changes = (
  text: string,
  params: ReadonlyArray<unknown> = []
): Effect.Effect<number, SqlError, SqlClient.SqlClient> =>
  Effect.map(
    Effect.flatMap(openConnection, (open) =>
      Option.isSome(open)
        ? open.value[0].executeRaw(text, params)
        : Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(text, params).raw)),
    changesOf
  )

const changesOf = (result: unknown): number => {
  const count = typeof result === "object" && result !== null ? (result as { changes?: unknown }).changes : undefined
  return typeof count === "number" ? count : Number(count ?? 0)
}

/**
 * Runs `effect` so that its writes are undone if it fails, inside the caller's open transaction;
 * outside one, it is a plain `sql.withTransaction`. `name` must be a plain SQL identifier.
 */
export const withSavepoint = (name: string) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R | SqlClient.SqlClient> =>
  Effect.flatMap(openConnection, (open) => {
    if (Option.isNone(open)) return Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(effect))
    const [connection, depth] = open.value
    const exec = (text: string) => connection.executeRaw(text, [])
    // A level of its own, as `withTransaction`'s nesting makes one: code inside can tell it from
    // the level around it (the event store keeps its queued broadcasts out of it).
    const inside = Effect.provideService(effect, SqlClient.TransactionConnection, [connection, depth + 1])
    return Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(exec(`SAVEPOINT ${name}`), Effect.exit(restore(inside))).pipe(
        Effect.flatMap((exit) =>
          Effect.as(
            Exit.isSuccess(exit)
              ? exec(`RELEASE SAVEPOINT ${name}`)
              : Effect.zipRight(exec(`ROLLBACK TO SAVEPOINT ${name}`), exec(`RELEASE SAVEPOINT ${name}`)),
            exit
          )
        ),
        Effect.flatten
      )
    )
  })
