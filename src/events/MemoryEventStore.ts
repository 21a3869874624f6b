/**
 * The event store in memory, with the SQL store's behaviour: idempotent broadcasts, processed ids
 * dropped, KV keyed by `(listener, key)`, and transactions that commit or roll back events and KV
 * together. A transaction holds a lock (as the SQL store's single connection does) and keeps a
 * journal of undo steps; a failure replays it backwards to where the transaction (or savepoint)
 * began. Values are copied in and out, so a caller mutating its arrays changes nothing stored.
 */
import { Effect, Exit, FiberRef, Option } from "effect"
import { type EventBackend, oneNestedAtATime, reportOne } from "./EventBackend.js"
import { type EventStoreError, outlivedTransaction } from "./errors.js"
import type { EventId } from "./EventId.js"
import type { LocalEvent } from "./EventLog.js"

interface Row {
  readonly seq: number
  readonly id: EventId
  readonly type: string
  readonly body: Uint8Array
  readonly listener: string
  voted: boolean
}

type Journal = Array<() => void>

const copy = (value: Uint8Array): Uint8Array => Uint8Array.from(value)

const toLocalEvent = (row: Row): LocalEvent => ({
  id: row.id,
  type: row.type,
  body: copy(row.body),
  listener: row.listener,
  voted: row.voted
})

/** Undoes the journal's steps after `mark`, newest first. */
const rollback = (journal: Journal, mark: number) => {
  while (journal.length > mark) journal.pop()!()
}

/** The memory backend: empty at every build. */
export const make: Effect.Effect<EventBackend> = Effect.gen(function*() {
  /** Insertion-ordered; `ordered` is false after a rollback put back a deleted row at the end. */
  const events = new Map<EventId, Row>()
  let ordered = true
  let nextSeq = 1
  const kv = new Map<string, Map<string, Uint8Array>>()
  const processed = new Set<EventId>()

  const lock = yield* Effect.makeSemaphore(1)
  /** The open transaction's journal, inherited by the fibers it forks. */
  const current = FiberRef.unsafeMake<Journal | undefined>(undefined)
  /**
   * The innermost open `transaction` level (a savepoint shares its transaction's journal but is a
   * level of its own), inherited by the fibers it forks, and whether it has ended: as in the SQL
   * store, a fiber that outlives the level it was forked in can no longer use the store.
   */
  const level = FiberRef.unsafeMake<{ ended: boolean } | undefined>(undefined)

  /** Runs `f` atomically: inside the open transaction, else alone under the lock. */
  const atomically = <A>(operation: string, f: (journal: Journal | undefined) => A): Effect.Effect<A, EventStoreError> =>
    Effect.withFiberRuntime((fiber) => {
      if (fiber.getFiberRef(level)?.ended === true) return Effect.fail(outlivedTransaction(operation))
      const journal = fiber.getFiberRef(current)
      return journal !== undefined ? Effect.sync(() => f(journal)) : lock.withPermits(1)(Effect.sync(() => f(undefined)))
    })

  const inOrder = (): Iterable<Row> => {
    if (!ordered) {
      const rows = [...events.values()].sort((a, b) => a.seq - b.seq)
      events.clear()
      for (const row of rows) events.set(row.id, row)
      ordered = true
    }
    return events.values()
  }

  const deleteEvent = (id: EventId, journal: Journal | undefined) => {
    const row = events.get(id)
    if (row === undefined) return
    events.delete(id)
    journal?.push(() => {
      events.set(id, row)
      ordered = false
    })
  }

  const setVoted = (ids: ReadonlyArray<EventId>, voted: boolean) =>
    atomically(voted ? "markVoted" : "markUnvoted", (journal) => {
      for (const id of ids) {
        const row = events.get(id)
        if (row === undefined || row.voted === voted) continue
        row.voted = voted
        journal?.push(() => {
          row.voted = !voted
        })
      }
    })

  const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | EventStoreError, R> =>
    Effect.withFiberRuntime((fiber) => {
      if (fiber.getFiberRef(level)?.ended === true) return Effect.fail(outlivedTransaction("transaction"))
      const outer = fiber.getFiberRef(current)
      const undoOnFailure = (journal: Journal, mark: number) =>
        Effect.onExit((exit: Exit.Exit<A, E>) => Exit.isFailure(exit) ? Effect.sync(() => rollback(journal, mark)) : Effect.void)
      const here = { ended: false }
      const inLevel = Effect.locally(effect, level, here).pipe(
        Effect.ensuring(Effect.sync(() => {
          here.ended = true
        }))
      )
      if (outer !== undefined) {
        // A savepoint: its mark is taken once it holds its level's turn.
        const enclosing = fiber.getFiberRef(level) ?? outer
        return Effect.suspend(() => inLevel.pipe(undoOnFailure(outer, outer.length))).pipe(oneNestedAtATime(enclosing))
      }
      const journal: Journal = []
      return Effect.locally(inLevel, current, journal).pipe(undoOnFailure(journal, 0), lock.withPermits(1))
    })

  const backend: EventBackend = {
    insert: (id, type, body, listener) =>
      Effect.flatMap(
        atomically("broadcast", (journal) => {
          if (processed.has(id) || events.has(id)) return false
          events.set(id, { seq: nextSeq++, id, type, body: copy(body), listener, voted: false })
          journal?.push(() => events.delete(id))
          return true
        }),
        (stored) => Effect.as(reportOne(stored, id, type, listener), id)
      ),
    insertAll: (ids, type, bodies, listener) =>
      Effect.as(Effect.forEach(ids, (id, i) => backend.insert(id, type, bodies[i]!, listener), { discard: true }), ids),
    kvGet: (listener, key) =>
      atomically("kv.get", () => Option.map(Option.fromNullable(kv.get(listener)?.get(key)), copy)),
    kvSet: (listener, key, value) =>
      atomically("kv.set", (journal) => {
        let values = kv.get(listener)
        if (values === undefined) kv.set(listener, values = new Map())
        const entries = values
        const previous = entries.get(key)
        entries.set(key, copy(value))
        journal?.push(() => previous === undefined ? entries.delete(key) : entries.set(key, previous))
      }),
    kvDelete: (listener, key) =>
      atomically("kv.delete", (journal) => {
        const entries = kv.get(listener)
        const previous = entries?.get(key)
        if (entries === undefined || previous === undefined) return
        entries.delete(key)
        journal?.push(() => entries.set(key, previous))
      }),
    transaction,
    log: {
      list: (options) =>
        atomically("list", () => {
          const limit = options?.limit === undefined ? Infinity : Math.floor(options.limit)
          const result: Array<LocalEvent> = []
          if (limit < 1) return result
          for (const row of inOrder()) {
            if (options?.voted !== undefined && row.voted !== options.voted) continue
            result.push(toLocalEvent(row))
            if (result.length >= limit) break
          }
          return result
        }),
      get: (ids) =>
        atomically("get", () => {
          const wanted = new Set(ids)
          const result: Array<LocalEvent> = []
          for (const row of inOrder()) if (wanted.has(row.id)) result.push(toLocalEvent(row))
          return result
        }),
      markVoted: (ids) => setVoted(ids, true),
      markUnvoted: (ids) => setVoted(ids, false),
      delete: (ids) =>
        atomically("delete", (journal) => {
          for (const id of ids) deleteEvent(id, journal)
        }),
      markProcessed: (ids) =>
        atomically("markProcessed", (journal) => {
          for (const id of ids) {
            deleteEvent(id, journal)
            if (processed.has(id)) continue
            processed.add(id)
            journal?.push(() => processed.delete(id))
          }
        }),
      isProcessed: (id) => atomically("isProcessed", () => processed.has(id))
    }
  }
  return backend
})
