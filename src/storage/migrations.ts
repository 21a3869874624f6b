/**
 * The node database's schema, forward-only. Each step is its own file; this record orders them.
 * Run with `Migrator.make({})({ loader })` (no platform services needed).
 */
import { Migrator } from "@effect/sql"
import { Layer } from "effect"
import events from "./0001_events.js"
import voting from "./0002_voting.js"
import accounts from "./0003_accounts.js"

export const loader = Migrator.fromRecord({
  "0001_events": events,
  "0002_voting": voting,
  "0003_accounts": accounts
})

/** Brings the database at the `SqlClient` up to the newest schema. */
export const layer = Layer.effectDiscard(Migrator.make({})({ loader }))
