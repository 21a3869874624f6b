/**
 * WAL checkpoints on a thread of their own, so the node's event loop seldom stops to make them.
 *
 * The node database is in WAL mode: a commit appends pages to the `-wal` file, and a checkpoint
 * copies them back into the database file. By default SQLite checkpoints on the committing
 * connection whenever the WAL passes 1,000 pages, and better-sqlite3 is synchronous, so that copy
 * (and its fsync) ran on the event loop, inside whichever commit crossed the line. A catch-up
 * rewrites most pages of the event id index at every commit, and crossed it often. On the
 * catch-up benchmark (16 catch-ups each, alternating, on 2 cores with anvil on the same machine;
 * medians), from the first commit on: the event loop's worst delay 15.4 ms with this layer
 * against 42.2 without, its p99 12.3 against 14.4; the catch-up 436 ms against 448 (an earlier
 * comparison of 20 each: 436 against 464).
 *
 * This layer starts a worker thread with a second connection that runs a PASSIVE checkpoint every
 * `interval` (default 100 ms): PASSIVE neither waits for nor blocks the node's connection. The
 * connection's own automatic checkpoint is raised to a backstop (default 10,000 pages, about
 * 40 MB), not turned off: SQLite rewinds the WAL only when a write begins after a checkpoint
 * copied every frame, and while commits come back to back the thread's checkpoints never catch
 * the last one, so without the backstop the WAL would grow without end (a review measured
 * 639 MB). When the WAL passes it, the connection checkpoints itself, right after its commit, and
 * the WAL rewinds at the next; most of its frames are copied by then.
 *
 * When the thread cannot start (or does not within 10 s) or ends early (its connection fails), the
 * connection gets its automatic checkpoints back and a warning is logged: the node goes on as
 * before. Closing the layer stops watching the thread, restores the connection's setting, then
 * has the thread make a last checkpoint and end. In-memory and non-WAL databases are left as they
 * are.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Layer } from "effect"
import { Worker } from "node:worker_threads"

/** How to checkpoint. */
export interface Options {
  /** Time between two checkpoints (default 100 ms). */
  readonly interval?: Duration.DurationInput
  /** WAL pages past which the connection checkpoints itself (default 10,000; see the module comment). */
  readonly backstop?: number
  /** The thread's script (default `walCheckpointer.worker.mjs`, beside this file); a test gives one that fails. */
  readonly thread?: URL
}

/** What the thread says (see `walCheckpointer.worker.mjs`). */
type FromThread =
  | { readonly type: "ready" }
  | { readonly type: "failed" | "error"; readonly reason: string }

/** The node connection's own automatic checkpoint, in WAL pages (see the module comment). */
export const defaultBackstop = 10_000

const script = new URL("./walCheckpointer.worker.mjs", import.meta.url)

/** A started thread: `exited` resolves when it ends, and `reason` then says why. */
interface Thread {
  readonly worker: Worker
  readonly exited: Promise<void>
  readonly reason: () => string
}

/** The thread, once its connection is open; or why it could not start. */
const spawn = (thread: URL, filename: string, intervalMs: number) =>
  Effect.async<Thread, string>((resume) => {
    // No `execArgv`: the script is plain JavaScript, and a loader the process runs under (tsx) would
    // otherwise start again in the thread, costing more than the thread itself.
    const worker = new Worker(thread, { workerData: { filename, intervalMs }, execArgv: [] })
    let started = false
    let reason = "the thread exited"
    const exited = new Promise<void>((resolve) => {
      worker.once("exit", (code) => {
        if (!started) resume(Effect.fail(`the thread exited (${code}) before opening the database: ${reason}`))
        resolve()
      })
    })
    // Listened to for the thread's whole life (an `error` event nobody listens to would throw here).
    worker.on("error", (error) => {
      reason = `the thread crashed: ${error.message}`
    })
    worker.on("message", (message: FromThread) => {
      if (message.type === "error") reason = `a checkpoint failed: ${message.reason}`
      if (started) return
      started = true
      resume(message.type === "ready" ? Effect.succeed({ worker, exited, reason: () => reason }) : Effect.fail(message.reason))
    })
    return Effect.promise(() => worker.terminate())
  })

/** Asks the thread for a last checkpoint and waits for it to end (terminated after 5 s). */
const stop = (thread: Thread) =>
  Effect.sync(() => thread.worker.postMessage("stop")).pipe(
    Effect.zipRight(Effect.promise(() => thread.exited)),
    // Interruptible, though it runs as a finalizer: else the timeout could not end the wait.
    Effect.interruptible,
    Effect.timeout("5 seconds"),
    Effect.catchAll(() => Effect.promise(() => thread.worker.terminate()))
  )

/** Checkpoints for the SQLite file `filename`, opened by the `SqlClient`; see the module comment. */
export const layer = (filename: string, options: Options = {}): Layer.Layer<never, SqlError, SqlClient.SqlClient> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    if (filename === "" || filename === ":memory:") return
    const sql = yield* SqlClient.SqlClient
    const [mode] = yield* sql.unsafe<{ readonly journal_mode: string }>("PRAGMA journal_mode")
    if (mode?.journal_mode !== "wal") return
    const [setting] = yield* sql.unsafe<{ readonly wal_autocheckpoint: number }>("PRAGMA wal_autocheckpoint")
    const automatic = setting?.wal_autocheckpoint ?? 1000
    const restore = sql.unsafe(`PRAGMA wal_autocheckpoint = ${automatic}`).pipe(Effect.ignore)
    const intervalMs = Math.max(1, Duration.toMillis(Duration.decode(options.interval ?? Duration.millis(100))))

    const backstop = Math.max(1, Math.floor(options.backstop ?? defaultBackstop))
    const starting = spawn(options.thread ?? script, filename, intervalMs).pipe(
      Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "the thread did not open the database within 10 s" }),
      // Interruptible although it is the acquire of `acquireRelease`: a thread that never answers
      // must not hold up an interrupted start (interrupting it terminates the thread).
      Effect.interruptible
    )
    const started = yield* Effect.either(Effect.acquireRelease(starting, stop))
    if (started._tag === "Left") {
      return yield* Effect.logWarning("cannot checkpoint the WAL on a thread of its own; the connection does").pipe(
        Effect.annotateLogs({ database: filename, reason: started.left })
      )
    }
    // A connection whose automatic checkpoints were off (0) stays so: whoever turned them off checkpoints.
    yield* sql.unsafe(`PRAGMA wal_autocheckpoint = ${automatic <= 0 ? automatic : Math.max(automatic, backstop)}`)
    yield* Effect.addFinalizer(() => restore)
    // Added last, so it is interrupted first when the layer closes (before `stop`).
    const thread = started.right
    yield* Effect.promise(() => thread.exited).pipe(
      Effect.map(thread.reason),
      Effect.flatMap((reason) =>
        Effect.zipRight(
          restore,
          Effect.logWarning("the WAL checkpoint thread ended; the connection checkpoints again").pipe(
            Effect.annotateLogs({ database: filename, reason })
          )
        )
      ),
      Effect.forkScoped
    )
  }))
