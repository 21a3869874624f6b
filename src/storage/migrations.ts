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

/**
 * Brings the database at the `SqlClient` up to the newest schema; a database written by a newer
 * version of this package fails with `DatabaseTooNew` instead of being opened silently.
 */
export const layer = Layer.effectDiscard(Effect.zipRight(SchemaGuard.check(loader), Migrator.make({})({ loader })))
