/**
 * The event store in the node's SQL database (tables from `storage/0001_events`).
 *
 * Inside a transaction, statements go straight to the transaction's connection (prepared and
 * cached by the client) instead of through the statement compiler: a catch-up writes thousands
 * of events per transaction and this halves the cost of each. Outside one, they go through the
 * client, which waits for any open transaction. Either way one statement per broadcast: the
 * processed check is part of the INSERT.
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Option } from "effect"
import type { EventBackend } from "./EventBackend.js"
import { EventStoreError } from "./errors.js"
import type { EventId } from "./EventId.js"
import type { LocalEvent } from "./EventLog.js"

interface EventRow {
  readonly id: string
  readonly type: string
  readonly body: Uint8Array
  readonly listener: string
  readonly voted: number
}

const columns = "id, type, body, listener, voted"
/** Ids are passed as one JSON array and expanded by `json_each`: one cached statement for any count. */
const inIds = "id IN (SELECT value FROM json_each(?))"

const statements = {
  insert: "INSERT INTO events (id, type, body, listener) SELECT ?, ?, ?, ? " +
    "WHERE NOT EXISTS (SELECT 1 FROM processed WHERE id = ?) ON CONFLICT DO NOTHING",
  kvGet: "SELECT value FROM kv WHERE listener = ? AND key = ?",
  kvSet: "INSERT INTO kv (listener, key, value) VALUES (?, ?, ?) " +
    "ON CONFLICT (listener, key) DO UPDATE SET value = excluded.value",
  kvDelete: "DELETE FROM kv WHERE listener = ? AND key = ?",
  // A negative LIMIT is no limit in SQLite.
  listAll: `SELECT ${columns} FROM events ORDER BY seq LIMIT ?`,
  listVoted: `SELECT ${columns} FROM events WHERE voted = ? ORDER BY seq LIMIT ?`,
  get: `SELECT ${columns} FROM events WHERE ${inIds} ORDER BY seq`,
  setVoted: `UPDATE events SET voted = ? WHERE ${inIds}`,
  delete: `DELETE FROM events WHERE ${inIds}`,
  addProcessed: "INSERT INTO processed (id) SELECT value FROM json_each(?) WHERE true ON CONFLICT DO NOTHING",
  isProcessed: "SELECT 1 AS found FROM processed WHERE id = ?"
} as const

/** A plain `Uint8Array` view of a driver `Buffer`, so values compare equal to what was stored. */
const bytes = (value: Uint8Array): Uint8Array => new Uint8Array(value.buffer, value.byteOffset, value.byteLength)

const toLocalEvent = (row: EventRow): LocalEvent => ({
  id: row.id as EventId,
  type: row.type,
  body: bytes(row.body),
  listener: row.listener,
  voted: row.voted === 1
})

/** Carries a failure of the caller's effect through `withTransaction`, apart from SQL failures. */
class Inner<E> {
  constructor(readonly error: E) {}
}

/** The SQL backend; requires the `0001_events` migration to have run. */
export const make: Effect.Effect<EventBackend, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()

  const onConnection = <A>(
    operation: string,
    inTransaction: (connection: Connection) => Effect.Effect<unknown, SqlError>,
    outside: () => Effect.Effect<unknown, SqlError>
  ): Effect.Effect<A, EventStoreError> =>
    Effect.contextWithEffect((context: Context.Context<never>) => {
      const open = Context.getOption(context, SqlClient.TransactionConnection)
      return (Option.isSome(open) ? inTransaction(open.value[0]) : outside()) as Effect.Effect<A, SqlError>
    }).pipe(Effect.mapError((cause) => new EventStoreError({ operation, cause })))

  /** Rows of a query. */
  const query = <Row extends object>(operation: string, text: string, params: ReadonlyArray<unknown>) =>
    onConnection<ReadonlyArray<Row>>(
      operation,
      (connection) => connection.execute(text, params, undefined),
      () => sql.unsafe<Row>(text, params)
    )

  /** The number of rows a write changed. */
  const write = (operation: string, text: string, params: ReadonlyArray<unknown>) =>
    Effect.map(
      onConnection<{ readonly changes: number }>(
        operation,
        (connection) => connection.executeRaw(text, params),
        () => sql.unsafe(text, params).raw
      ),
      (result) => result.changes
    )

  const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | EventStoreError, R> =>
    sql.withTransaction(Effect.mapError(effect, (error) => new Inner(error))).pipe(
      Effect.mapError((error) =>
        error instanceof Inner ? error.error as E : new EventStoreError({ operation: "transaction", cause: error })
      )
    )

  /** Runs `f` over `ids` as one JSON parameter; nothing at all for no ids. */
  const forIds = <A>(ids: ReadonlyArray<EventId>, none: A, f: (json: string) => Effect.Effect<A, EventStoreError>) =>
    ids.length === 0 ? Effect.succeed(none) : f(JSON.stringify(ids))

  const backend: EventBackend = {
    insert: (id, type, body, listener) =>
      Effect.map(write("broadcast", statements.insert, [id, type, body, listener, id]), (changes) => changes > 0),
    kvGet: (listener, key) =>
      Effect.map(
        query<{ readonly value: Uint8Array }>("kv.get", statements.kvGet, [listener, key]),
        (rows) => rows.length === 0 ? Option.none() : Option.some(bytes(rows[0]!.value))
      ),
    kvSet: (listener, key, value) => Effect.asVoid(write("kv.set", statements.kvSet, [listener, key, value])),
    kvDelete: (listener, key) => Effect.asVoid(write("kv.delete", statements.kvDelete, [listener, key])),
    transaction,
    log: {
      list: (options) => {
        // A limit below 1 asks for nothing; no limit is -1, SQLite's "no limit".
        if (options?.limit !== undefined && options.limit < 1) return Effect.succeed([])
        const limit = options?.limit === undefined ? -1 : Math.floor(options.limit)
        const rows = options?.voted === undefined
          ? query<EventRow>("list", statements.listAll, [limit])
          : query<EventRow>("list", statements.listVoted, [options.voted ? 1 : 0, limit])
        return Effect.map(rows, (rows) => rows.map(toLocalEvent))
      },
      get: (ids) =>
        forIds(ids, [], (json) => Effect.map(query<EventRow>("get", statements.get, [json]), (rows) => rows.map(toLocalEvent))),
      markVoted: (ids) => forIds(ids, undefined, (json) => Effect.asVoid(write("markVoted", statements.setVoted, [1, json]))),
      markUnvoted: (ids) =>
        forIds(ids, undefined, (json) => Effect.asVoid(write("markUnvoted", statements.setVoted, [0, json]))),
      delete: (ids) => forIds(ids, undefined, (json) => Effect.asVoid(write("delete", statements.delete, [json]))),
      markProcessed: (ids) =>
        forIds(ids, undefined, (json) =>
          transaction(
            Effect.zipRight(
              write("markProcessed", statements.addProcessed, [json]),
              write("markProcessed", statements.delete, [json])
            )
          ).pipe(Effect.asVoid)),
      isProcessed: (id) =>
        Effect.map(query<{ readonly found: number }>("isProcessed", statements.isProcessed, [id]), (rows) => rows.length > 0)
    }
  }
  return backend
})
