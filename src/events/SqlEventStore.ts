/**
 * The event store in the node's SQL database (tables from `storage/0001_events`).
 *
 * Inside a transaction, statements go straight to the transaction's connection (prepared and
 * cached by the client) instead of through the statement compiler. Outside one, they go through
 * the client, which waits for any open transaction. The processed check is part of the INSERT.
 *
 * Broadcasts inside `transaction` are batched: each is queued (its body copied) and the queue is
 * written as multi-row INSERTs of up to `BATCH` rows, when it is full, before any `EventLog` call
 * or nested `transaction`, and before the transaction commits. A catch-up writes thousands of
 * events per transaction, and one statement per row cost more in the client (statement cache,
 * fibers) than in SQLite: batching about doubles the rate. Which rows a batch added is read from
 * the statement's `changes` and `lastInsertRowid`, not with `RETURNING` (which cost SQLite and the
 * driver more per row than the insert itself saved): see `flush`. What a caller can see of it:
 * - a broadcast returns its id at once; a failure to write it fails a later broadcast, the next
 *   `EventLog` call or the transaction itself, which then rolls back whole, as before: events and
 *   KV still commit or roll back together. Once a batch failed, every later write of its level
 *   fails too, so a caller that catches the first failure still cannot commit without those rows;
 * - the stored/dropped counts and logs of queued broadcasts come when their batch is written;
 * - SQL run directly on the connection (not through this store) does not see queued rows until
 *   then; inside a foreign level nested in `transaction` (a `sql.withTransaction`, or
 *   `TxSql.withSavepoint`), broadcasts are written one by one (queued rows cannot be written into
 *   that level: its rollback would lose them), so they may come before the queued ones in
 *   `EventLog` order, and an `EventLog` call there fails while rows of the level around it are
 *   still queued (it could not see them);
 * - a fiber forked inside `transaction` that is still running when its level ends fails every
 *   later store call: its queue will not be written again, and the level's connection may by then
 *   be in another fiber's transaction (the memory store does the same).
 *
 * Nested transactions are savepoints, each released when it succeeds (`withSavepoint`):
 * `@effect/sql` 0.52's nested `withTransaction` never releases them, so they piled up.
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, type Fiber, FiberRef, Option } from "effect"
import { withSavepoint } from "../voting/TxSql.js"
import { type EventBackend, oneNestedAtATime, reportBatch, reportOne } from "./EventBackend.js"
import { EventStoreError, outlivedTransaction } from "./errors.js"
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
  // `OR IGNORE`, not `ON CONFLICT DO NOTHING`: no statement journal (see `insertMany`).
  insert: "INSERT OR IGNORE INTO events (id, type, body, listener) SELECT ?, ?, ?, ? " +
    "WHERE NOT EXISTS (SELECT 1 FROM processed WHERE id = ?)",
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
  // `OR IGNORE`, not `ON CONFLICT DO NOTHING`: no statement journal (see `insertMany`).
  addProcessed: "INSERT OR IGNORE INTO processed (id) SELECT value FROM json_each(?)",
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

/** Rows per multi-row INSERT (4 parameters each); smaller batches go in power-of-two sizes, so few statements are ever prepared. */
const BATCH = 128

/**
 * `INSERT` of `rows` events at once, skipping stored and processed ids, in one cached statement per
 * size. `OR IGNORE` rather than `ON CONFLICT DO NOTHING`: a statement that writes many rows and
 * could abort half-way (`DO NOTHING` covers only the unique id; a `NOT NULL` could still abort)
 * makes SQLite keep a statement journal of every page it touches, in a temporary file. With
 * `OR IGNORE` no constraint can abort it and there is none: 100,000 rows in one transaction cost
 * 11.8 instead of 16.9 µs a row (a scratch comparison on this machine). Our rows never hold a
 * `NULL` (each value is made here), so the only rows it skips are the ones `DO NOTHING` skipped.
 */
const insertMany = (() => {
  const made = new Map<number, string>()
  return (rows: number): string => {
    let text = made.get(rows)
    if (text === undefined) {
      text = "INSERT OR IGNORE INTO events (id, type, body, listener) SELECT column1, column2, column3, column4 FROM (VALUES " +
        Array.from({ length: rows }, () => "(?, ?, ?, ?)").join(", ") +
        ") AS v WHERE NOT EXISTS (SELECT 1 FROM processed p WHERE p.id = v.column1)"
      made.set(rows, text)
    }
    return text
  }
})()

/** The ids of the rows with `seq` in `(after, upTo]`: what one INSERT added (see `flush`). */
const addedBetween = "SELECT id FROM events WHERE seq > ? AND seq <= ?"

/** Bytes of body copies per arena (see `Queue.arena`); a longer body gets a copy of its own. */
const ARENA = 64 * 1024
const OWN_COPY = 4 * 1024

/** The broadcasts queued by one `transaction` level, for the connection state `owner` it opened. */
interface Queue {
  /** The `TransactionConnection` value the level runs under; another one means a foreign nested transaction. */
  readonly owner: unknown
  /** The connection of that level, where its rows are written. */
  readonly connection: Connection
  /** `id, type, body, listener` of each queued row, in order: a full batch is its INSERT's parameters as is. */
  values: Array<unknown>
  /**
   * Where bodies are copied (the caller may reuse its array before the batch is written): one
   * allocation for many bodies instead of one each. A full arena is replaced, never reused, so a
   * queued copy is never overwritten; it lives as long as a row still refers to it.
   */
  arena: Uint8Array
  used: number
  /**
   * The failure of a batch of it that could not be written: its rows are lost, so the level must
   * not commit. Every later write of the queue (its last one, before the level commits, above
   * all) fails with it, even if the caller caught the first.
   */
  failed: EventStoreError | undefined
  /** Set when its level has ended: a fiber forked in it that is still running can no longer use the store. */
  ended: boolean
}

/** `body` copied into `queue`'s arena. */
const copyBody = (queue: Queue, body: Uint8Array): Uint8Array => {
  const length = body.length
  if (length > OWN_COPY) return body.slice()
  if (queue.used + length > queue.arena.length) {
    queue.arena = new Uint8Array(ARENA)
    queue.used = 0
  }
  const copy = new Uint8Array(queue.arena.buffer, queue.used, length)
  copy.set(body)
  queue.used += length
  return copy
}

const newQueue = (owner: readonly [Connection, ...Array<unknown>]): Queue =>
  ({ owner, connection: owner[0], values: [], arena: new Uint8Array(0), used: 0, failed: undefined, ended: false })

/** The outcome of one INSERT of a batch, as the driver reports a write. */
interface RunResult {
  readonly changes: number
  readonly lastInsertRowid: number | bigint
}

/** Carries a failure of the caller's effect through `withTransaction`, apart from SQL failures. */
class Inner<E> {
  constructor(readonly error: E) {}
}

/** The SQL backend; requires the `0001_events` migration to have run. */
export const make: Effect.Effect<EventBackend, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()
  /** The queue of the innermost open `transaction` of this store, inherited by the fibers it forks. */
  const currentQueue = FiberRef.unsafeMake<Queue | undefined>(undefined)

  /**
   * Writes `queue`'s rows on its connection and reports which were added.
   *
   * `seq` is an INTEGER PRIMARY KEY, and each new row gets one above all present rows (see
   * `0001_events`): the rows one INSERT adds are the `changes` seqs up to its `lastInsertRowid`.
   * When a batch added every row (a catch-up's usual case) that is all there is to know; when it
   * added fewer (some ids were stored or processed already, or queued twice), one query of that
   * seq range says which. It runs right after its INSERT; a row that another fiber of the same
   * transaction (the only ones that can use its connection) deleted in between would count as
   * dropped, not stored. Nothing in this package deletes events concurrently with a broadcast.
   */
  const flush = (queue: Queue): Effect.Effect<void, EventStoreError> => {
    // Takes the rows now: call it when they are to be written (under `Effect.suspend` if need be).
    if (queue.failed !== undefined) return Effect.fail(queue.failed)
    if (queue.values.length === 0) return Effect.void
    const { connection, values } = queue
    queue.values = []
    const rows = values.length / 4
    let stored = 0
    const skipped: Array<{ readonly id: EventId; readonly type: string; readonly listener: string }> = []
    /** Rows `[start, start + size)`, of which those whose id is in `added` (all when it is `true`) were added. */
    const tally = (start: number, size: number, added: true | Set<string>) => {
      for (let row = start; row < start + size; row++) {
        const id = values[row * 4] as EventId
        // An id queued twice is added once: the first is stored, the repeat dropped.
        if (added === true || added.delete(id)) stored++
        else skipped.push({ id, type: values[row * 4 + 1] as string, listener: values[row * 4 + 3] as string })
      }
    }
    const chunks: Array<readonly [start: number, size: number]> = []
    let start = 0
    for (let size = BATCH; start < rows; size >>= 1) {
      while (rows - start >= size) {
        chunks.push([start, size])
        start += size
      }
    }
    const writeChunk = ([start, size]: readonly [number, number]) =>
      Effect.flatMap(
        connection.executeRaw(
          insertMany(size),
          size === rows ? values : values.slice(start * 4, (start + size) * 4)
        ) as Effect.Effect<RunResult, SqlError>,
        ({ changes, lastInsertRowid }) => {
          if (changes === size) return Effect.sync(() => tally(start, size, true))
          if (changes === 0) return Effect.sync(() => tally(start, size, new Set()))
          const last = Number(lastInsertRowid)
          return Effect.map(
            connection.execute(addedBetween, [last - changes, last], undefined),
            (added) => tally(start, size, new Set((added as ReadonlyArray<{ readonly id: string }>).map((row) => row.id)))
          )
        }
      )
    return Effect.forEach(chunks, writeChunk, { discard: true }).pipe(
      Effect.mapError((cause) => {
        queue.failed = new EventStoreError({ operation: "broadcast", cause })
        return queue.failed
      }),
      Effect.zipRight(Effect.suspend(() => reportBatch(stored, skipped)))
    )
  }

  /**
   * The queue of the current `transaction` level, when `fiber` runs at that level (not outside a
   * transaction, nor inside a foreign nested one).
   */
  const queueHere = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Queue | undefined => {
    const queue = fiber.getFiberRef(currentQueue)
    // An ended level has no queue: the store's calls then see the fiber outlived it (`onConnection`).
    if (queue === undefined || queue.ended) return undefined
    const open = Context.getOption(fiber.currentContext, SqlClient.TransactionConnection)
    return Option.isSome(open) && open.value === queue.owner ? queue : undefined
  }

  /** Whether `fiber` was forked inside a `transaction` level that has ended since. */
  const outlived = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean => fiber.getFiberRef(currentQueue)?.ended === true

  /**
   * Writes the queue of the current `transaction` level, when this fiber is at that level. With
   * `strict` (for `EventLog` calls, which must see every broadcast made before them), inside a
   * foreign level nested in it (a `sql.withTransaction` or a savepoint not of this store) the
   * queued rows cannot be written (that level's rollback would lose them) nor seen: the call fails
   * rather than answer without them.
   */
  const flushQueued = (operation: string, strict: boolean): Effect.Effect<void, EventStoreError> =>
    Effect.withFiberRuntime((fiber) => {
      const queue = fiber.getFiberRef(currentQueue)
      if (queue === undefined) return Effect.void
      if (queue.ended) return Effect.fail(outlivedTransaction(operation))
      if (queueHere(fiber) === queue) return flush(queue)
      return strict && queue.values.length > 0
        ? Effect.fail(
          new EventStoreError({
            operation,
            cause: new Error("broadcasts of the enclosing EventStore.transaction are still queued"),
            hint: "nest EventLog calls in EventStore.transaction rather than a transaction or savepoint of your own, " +
              "or call one before opening it"
          })
        )
        : Effect.void
    })

  const onConnection = <A>(
    operation: string,
    inTransaction: (connection: Connection) => Effect.Effect<unknown, SqlError>,
    outside: () => Effect.Effect<unknown, SqlError>
  ): Effect.Effect<A, EventStoreError> =>
    Effect.withFiberRuntime((fiber) => {
      // Its transaction's connection is no longer its own: it may be in another fiber's transaction.
      if (outlived(fiber)) return Effect.fail(outlivedTransaction(operation))
      const open = Context.getOption(fiber.currentContext, SqlClient.TransactionConnection)
      return ((Option.isSome(open) ? inTransaction(open.value[0]) : outside()) as Effect.Effect<A, SqlError>).pipe(
        Effect.mapError((cause) => new EventStoreError({ operation, cause }))
      )
    })

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

  /** `effect` with a queue of its own, written when it succeeds (still inside its transaction or savepoint). */
  const queued = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | EventStoreError, R> =>
    Effect.withFiberRuntime((fiber) => {
      const open = Context.getOption(fiber.currentContext, SqlClient.TransactionConnection)
      if (Option.isNone(open)) return effect // not reached: always run inside a transaction
      const queue = newQueue(open.value)
      return Effect.locally(Effect.zipLeft(effect, Effect.suspend(() => flush(queue))), currentQueue, queue).pipe(
        Effect.ensuring(Effect.sync(() => {
          queue.ended = true
        }))
      )
    })

  const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | EventStoreError, R> => {
    const body = queued(Effect.mapError(effect, (error) => new Inner(error)))
    return Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (open) =>
      Option.isNone(open)
        ? sql.withTransaction(body)
        // The enclosing level's queue goes in first: its rows must not be undone by this savepoint.
        : Effect.zipRight(
          flushQueued("transaction", false),
          withSavepoint("kwil_events")(body).pipe(Effect.provideService(SqlClient.SqlClient, sql))
        ).pipe(oneNestedAtATime(open.value))).pipe(
        Effect.mapError((error) =>
          error instanceof Inner
            ? error.error as E
            : error instanceof EventStoreError
            ? error
            : new EventStoreError({ operation: "transaction", cause: error })
        )
      )
  }

  /** Direct insert of one event. */
  const insertOne = (id: EventId, type: string, body: Uint8Array, listener: string) =>
    Effect.flatMap(
      write("broadcast", statements.insert, [id, type, body, listener, id]),
      (changes) => Effect.as(reportOne(changes > 0, id, type, listener), id)
    )

  /** Runs `f` over `ids` as one JSON parameter; nothing at all for no ids. */
  const forIds = <A>(ids: ReadonlyArray<EventId>, none: A, f: (json: string) => Effect.Effect<A, EventStoreError>) =>
    ids.length === 0 ? Effect.succeed(none) : f(JSON.stringify(ids))

  /** An `EventLog` operation: it sees every broadcast made before it. */
  const logged = <A>(operation: string, effect: Effect.Effect<A, EventStoreError>) =>
    Effect.zipRight(flushQueued(operation, true), effect)

  const backend: EventBackend = {
    insert: (id, type, body, listener) =>
      Effect.withFiberRuntime((fiber) => {
        const queue = queueHere(fiber)
        if (queue === undefined) return insertOne(id, type, body, listener)
        queue.values.push(id, type, copyBody(queue, body), listener)
        return queue.values.length >= BATCH * 4 ? Effect.as(flush(queue), id) : Effect.succeed(id)
      }),
    insertAll: (ids, type, bodies, listener) =>
      Effect.withFiberRuntime((fiber) => {
        const queue = queueHere(fiber)
        if (queue === undefined) {
          return Effect.as(
            Effect.forEach(ids, (id, i) => insertOne(id, type, bodies[i]!, listener), { discard: true }),
            ids
          )
        }
        for (let i = 0; i < ids.length; i++) queue.values.push(ids[i], type, copyBody(queue, bodies[i]!), listener)
        return queue.values.length >= BATCH * 4 ? Effect.as(flush(queue), ids) : Effect.succeed(ids)
      }),
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
        // A limit below 1 asks for nothing; no limit (or one that is no number, or past 2^53,
        // which could overflow SQLite's 64-bit LIMIT: no store holds that many) is -1, "no limit".
        if (options?.limit !== undefined && options.limit < 1) return Effect.succeed([])
        const limit = options?.limit === undefined || !(options.limit <= Number.MAX_SAFE_INTEGER)
          ? -1
          : Math.floor(options.limit)
        const rows = options?.voted === undefined
          ? query<EventRow>("list", statements.listAll, [limit])
          : query<EventRow>("list", statements.listVoted, [options.voted ? 1 : 0, limit])
        return logged("list", Effect.map(rows, (rows) => rows.map(toLocalEvent)))
      },
      get: (ids) =>
        forIds(ids, [], (json) =>
          logged("get", Effect.map(query<EventRow>("get", statements.get, [json]), (rows) => rows.map(toLocalEvent)))),
      markVoted: (ids) =>
        forIds(ids, undefined, (json) => logged("markVoted", Effect.asVoid(write("markVoted", statements.setVoted, [1, json])))),
      markUnvoted: (ids) =>
        forIds(ids, undefined, (json) =>
          logged("markUnvoted", Effect.asVoid(write("markUnvoted", statements.setVoted, [0, json])))),
      delete: (ids) =>
        forIds(ids, undefined, (json) => logged("delete", Effect.asVoid(write("delete", statements.delete, [json])))),
      markProcessed: (ids) =>
        forIds(ids, undefined, (json) =>
          transaction(
            Effect.zipRight(
              write("markProcessed", statements.addProcessed, [json]),
              write("markProcessed", statements.delete, [json])
            )
          ).pipe(Effect.asVoid)),
      isProcessed: (id) =>
        logged(
          "isProcessed",
          Effect.map(query<{ readonly found: number }>("isProcessed", statements.isProcessed, [id]), (rows) => rows.length > 0)
        )
    }
  }
  return backend
})
