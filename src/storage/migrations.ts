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

export const loader = Migrator.fromRecord({
  "0001_events": events,
  "0002_voting": voting,
  "0003_accounts": accounts
})

/** Every table a kwil-listeners database holds: the migrations' own and the migrator's record of them. */
export const ownTables: ReadonlySet<string> = new Set([
  "effect_sql_migrations",
  "events",
  "kv",
  "processed",
  "resolutions",
  "votes",
  "validators",
  "accounts"
])

/**
 * Whether a database with `tables` is (or was begun as) a kwil-listeners database: it holds one of
 * ours. A host node may keep tables of its own beside them; a database with tables, none of them
 * ours, is another program's.
 */
export const holdsOurs = (tables: Iterable<string>): boolean => [...tables].some((t) => ownTables.has(t))

/**
 * Brings the database at the `SqlClient` up to the newest schema; a database written by a newer
 * version of this package fails with `DatabaseTooNew` instead of being opened silently.
 */
export const layer = Layer.effectDiscard(Effect.zipRight(SchemaGuard.check(loader), Migrator.make({})({ loader })))
