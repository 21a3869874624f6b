/**
 * Refuses a database written by a newer version of this package. `@effect/sql`'s migrator only
 * runs migrations above the newest one recorded, so a database that already holds migration 5
 * while this build knows 1..3 would be opened silently, with tables this code does not
 * understand. `check` fails with `DatabaseTooNew` instead; run it before the migrator.
 */
import { SqlClient } from "@effect/sql"
import type { Migrator } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect } from "effect"

/** The migrator's bookkeeping table (the `@effect/sql` default). */
export const migrationsTable = "effect_sql_migrations"

/** The database holds migrations this build does not know: it was written by a newer version. */
export class DatabaseTooNew extends Data.TaggedError("DatabaseTooNew")<{
  /** The newest migration recorded in the database. */
  readonly found: { readonly id: number; readonly name: string }
  /** The newest migration this build knows. */
  readonly known: number
}> {
  override get message() {
    return `the node database has schema migration ${this.found.id} (${this.found.name}), but this version ` +
      `of kwil-listeners knows migrations up to ${this.known}: it was written by a newer version; ` +
      `upgrade kwil-listeners or use another database file`
  }
}

/** Fails with `DatabaseTooNew` when the database records a migration above the newest of `loader`. */
export const check = (
  loader: Migrator.Loader
): Effect.Effect<void, DatabaseTooNew | SqlError | Migrator.MigrationError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tables = yield* sql<{ readonly name: string }>`
      SELECT name FROM sqlite_master WHERE type = 'table' AND name = ${migrationsTable}`
    if (tables.length === 0) return
    const rows = yield* sql<{ readonly migration_id: number; readonly name: string }>`
      SELECT migration_id, name FROM ${sql(migrationsTable)} ORDER BY migration_id DESC LIMIT 1`.withoutTransform
    const newest = rows[0]
    if (newest === undefined) return
    const known = Math.max(0, ...(yield* loader).map(([id]) => id))
    if (newest.migration_id > known) {
      return yield* new DatabaseTooNew({ found: { id: newest.migration_id, name: newest.name }, known })
    }
  })
