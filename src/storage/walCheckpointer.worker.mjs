/**
 * The thread of `WalCheckpointer.ts` (plain JavaScript: a worker thread loads it as is, under
 * node, tsx and vitest alike). It opens its own connection to the node database and runs a
 * PASSIVE WAL checkpoint every `intervalMs`: it copies committed pages from the WAL into the
 * database file without waiting for, or blocking, the node's connection.
 *
 * To the parent: `{ type: "ready" }` once open; `{ type: "failed", reason }` when the file cannot
 * be opened, and `{ type: "error", reason }` when a checkpoint fails: the thread then ends, and the
 * parent gives checkpoints back to its own connection. From the parent: `"stop"`: a last
 * checkpoint, then the connection is closed and the thread ends.
 */
import Database from "better-sqlite3"
import { parentPort, workerData } from "node:worker_threads"

const { filename, intervalMs } = workerData

const reasonOf = (error) => (error instanceof Error ? error.message : String(error))

let db
try {
  db = new Database(filename, { fileMustExist: true })
} catch (error) {
  parentPort.postMessage({ type: "failed", reason: reasonOf(error) })
  parentPort.close()
}

if (db !== undefined) {
  let timer
  const end = () => {
    clearInterval(timer)
    db.close()
    parentPort.close()
  }
  /** One PASSIVE checkpoint; false when it failed (reported, and the thread ends). */
  const checkpoint = () => {
    try {
      db.pragma("wal_checkpoint(PASSIVE)")
      return true
    } catch (error) {
      parentPort.postMessage({ type: "error", reason: reasonOf(error) })
      end()
      return false
    }
  }
  timer = setInterval(checkpoint, intervalMs)
  parentPort.on("message", (message) => {
    if (message === "stop" && checkpoint()) end()
  })
  parentPort.postMessage({ type: "ready" })
}
