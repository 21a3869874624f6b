/**
 * A stand-in for `walCheckpointer.worker.mjs` whose connection fails: it says it is ready, then
 * reports a failed checkpoint and ends, as the real thread does on an I/O error.
 */
import { parentPort } from "node:worker_threads"

parentPort.postMessage({ type: "ready" })
setTimeout(() => {
  parentPort.postMessage({ type: "error", reason: "disk I/O error" })
  parentPort.close()
}, 50)
