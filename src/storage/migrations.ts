/**
 * The node database's schema, forward-only. Each step is its own file; this record orders them.
 * Run with `Migrator.make({})({ loader })` (no platform services needed).
 */
import { Migrator } from "@effect/sql"
import { Effect, Layer } from "effect"
import events from "./0001_events.js"
import voting from "./0002_voting.js"
import accounts from "./0003_accounts.js"
import * as SchemaGuard from "./schemaGuard.js"

const steps = {
  "0001_events": events,
  "0002_voting": voting,
  "0003_accounts": accounts
}

export const loader = Migrator.fromRecord(steps)

/** A migration as the migrator records it in its table ("0001_events" is 1, "events"). */
export interface Recorded {
  readonly migration_id: number
  readonly name: string
}

/** What `isOurs` is asked about: a database's tables, and (when it has the migrator's table) its records. */
export const ownershipQueries = {
  tables: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
  recorded: `SELECT migration_id, name FROM ${SchemaGuard.migrationsTable}`
} as const

/**
 * Whether a database holding `tables`, with `recorded` migrations, is (or was begun as) a
 * kwil-listeners database. Ours are made by the migrator, so they hold its record (a run stopped
 * before the first migration leaves only that), and every migration it records under one of our
 * ids is ours. Ids past ours are a newer version's, for the schema guard to refuse. Another
 * program's database, even one with an `events` table or migrated by @effect/sql, is not ours.
 */
export const isOurs = (tables: ReadonlyArray<string>, recorded: ReadonlyArray<Recorded>): boolean =>
  tables.includes(SchemaGuard.migrationsTable) &&
  recorded.every(({ migration_id, name }) =>
    migration_id > Object.keys(steps).length ||
    Object.hasOwn(steps, `${String(migration_id).padStart(4, "0")}_${name}`)
  )

/**
 * Brings the database at the `SqlClient` up to the newest schema; a database written by a newer
 * version of this package fails with `DatabaseTooNew` instead of being opened silently.
 */
export const layer = Layer.effectDiscard(Effect.zipRight(SchemaGuard.check(loader), Migrator.make({})({ loader })))
