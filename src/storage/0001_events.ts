/**
 * The local event store and the consensus set of processed ids.
 * - `events.seq` is the rowid: every new row gets one above all present rows, so ordering by it is
 *   insertion order (the only order `EventLog` ever returns).
 * - `kv` is keyed by `(listener, key)`: no choice of key bytes reaches another listener's rows
 *   (Kwil prefixed keys with `name + " "`).
 * - `processed` holds every resolved or expired id forever; a broadcast of one is dropped.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    listener TEXT NOT NULL,
    voted INTEGER NOT NULL DEFAULT 0 CHECK (voted IN (0, 1))
  )`
  // EventLog.list({ voted }) in insertion order.
  yield* sql`CREATE INDEX events_by_voted ON events (voted, seq)`
  yield* sql`CREATE TABLE kv (
    listener TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (listener, key)
  ) WITHOUT ROWID`
  yield* sql`CREATE TABLE processed (
    id TEXT PRIMARY KEY NOT NULL
  ) WITHOUT ROWID`
})
