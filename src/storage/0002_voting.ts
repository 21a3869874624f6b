/**
 * Consensus tables of the vote ledger. Every node holds the same rows after the same blocks;
 * `VoteLedger.stateDigest` hashes them (with `processed` and `accounts`).
 * Power and heights are SQLite INTEGERs (int64): the ledger refuses a validator set whose total
 * power does not fit, so every sum over it fits too.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE resolutions (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    proposer TEXT NOT NULL,
    created_height INTEGER NOT NULL,
    expiration_height INTEGER NOT NULL
  )`
  yield* sql`CREATE INDEX resolutions_by_expiration ON resolutions (expiration_height)`
  yield* sql`CREATE TABLE votes (
    resolution_id TEXT NOT NULL,
    voter TEXT NOT NULL,
    PRIMARY KEY (resolution_id, voter)
  ) WITHOUT ROWID`
  yield* sql`CREATE TABLE validators (
    identity TEXT PRIMARY KEY NOT NULL,
    power INTEGER NOT NULL CHECK (power > 0)
  ) WITHOUT ROWID`
})
