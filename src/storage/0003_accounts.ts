/**
 * Balances credited by the `credit_account` resolution. A balance is a uint256, more than SQLite's
 * int64 holds, so it is kept as a decimal string and added with bigint in `resolve`.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE accounts (
    identifier TEXT PRIMARY KEY NOT NULL,
    balance TEXT NOT NULL
  ) WITHOUT ROWID`
})
