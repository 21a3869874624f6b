/**
 * Chaos 6, storage faults: a child process writing batches to the node database (events and
 * checkpoint in one EventStore transaction, as the eth_deposits listener does; see
 * support/writer.ts) is killed with SIGKILL inside a transaction, or at a random moment, again
 * and again on the same file. After every kill the database, reopened, passes
 * `PRAGMA integrity_check`, its events and checkpoint agree (count = checkpoint height, no event
 * past the checkpoint), every commit the child reported is there, and the next run resumes.
 */
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Deferred, Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { join } from "node:path"
import * as Chaos from "./support/Chaos.js"

const writer = fileURLToPath(new URL("./support/writer.ts", import.meta.url))
const kills = 6

/** Runs the writer on `db` and SIGKILLs it at the moment `when` picks from its output; returns the last commit it reported. */
const runAndKill = (db: string, seed: number, when: (line: string) => boolean) =>
  Effect.gen(function*() {
    const killed = yield* Deferred.make<{ readonly lastCommit: number; readonly at: string }>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, ["--import", "tsx", writer, db, String(seed)], { stdio: ["ignore", "pipe", "pipe"] })),
      (c: ChildProcess) => Effect.sync(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"))
    )
    let lastCommit = 0
    let done = false
    let stderr = ""
    let buffer = ""
    child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)))
    child.stdout?.on("data", (d: Buffer) => {
      buffer += d.toString()
      const lines = buffer.split("\n")
      buffer = lines.pop() ?? ""
      for (const line of lines) {
        if (line.startsWith("commit ")) lastCommit = Number(line.slice(7))
        if (done) continue
        if (when(line)) {
          done = true
          child.kill("SIGKILL")
          Deferred.unsafeDone(killed, Effect.succeed({ lastCommit, at: line }))
        }
      }
    })
    child.once("exit", (code, signal) => {
      if (signal !== "SIGKILL") Deferred.unsafeDone(killed, Effect.dieMessage(`the writer exited (${code ?? signal}) before the kill: ${stderr}`))
    })
    const result = yield* Deferred.await(killed).pipe(Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(`no kill moment: ${stderr}`) }))
    // Wait for the process to be gone before reading the file.
    yield* Effect.async<void>((resume) => {
      if (child.exitCode !== null || child.signalCode !== null) resume(Effect.void)
      else child.once("exit", () => resume(Effect.void))
    })
    return result
  })

/** integrity_check, the event count, the checkpoint height (0 when none) and the highest event amount. */
const inspect = (db: string) => {
  const conn = new Database(db)
  try {
    const integrity = (conn.prepare("PRAGMA integrity_check").all() as Array<Record<string, unknown>>).map((r) => Object.values(r)[0])
    const count = Number((conn.prepare("SELECT COUNT(*) AS n FROM events").all()[0] as { n: number }).n)
    const row = conn.prepare("SELECT value FROM kv WHERE listener = 'eth_deposits' AND key = 'checkpoint'").all()[0] as { value: Uint8Array } | undefined
    const height = row === undefined ? 0 : Number((JSON.parse(Buffer.from(row.value).toString("utf8")) as { height: string }).height)
    return { integrity, count, height }
  } finally {
    conn.close()
  }
}

describe("chaos: storage faults", () => {
  it.scopedLive(`a writer killed ${kills} times inside its transactions leaves a consistent database each time`, () =>
    Effect.gen(function*() {
      const r = yield* Chaos.seed("storage faults")
      const db = join(yield* Chaos.tempDir("chaos-storage-"), "node.db")
      let committed = 0
      for (let i = 0; i < kills; i++) {
        // Most kills right after a `begin` (inside the transaction: events written, checkpoint not);
        // some on a random line of output (between transactions or in one).
        const inside = r.next() < 0.7
        const skip = r.int(0, 6)
        let seen = 0
        const { at, lastCommit } = yield* runAndKill(db, r.int(1, 2 ** 30), (line) =>
          (inside ? line.startsWith("begin ") : true) && seen++ >= skip)
        const state = inspect(db)
        // eslint-disable-next-line no-console
        console.log(`[chaos] storage kill ${i + 1} at "${at}": ${JSON.stringify(state)}; last reported commit ${lastCommit}`)
        expect(state.integrity).toEqual(["ok"])
        expect(state.count).toBe(state.height)
        expect(state.height).toBeGreaterThanOrEqual(lastCommit)
        expect(state.height).toBeGreaterThanOrEqual(committed)
        committed = state.height
      }
      expect(committed).toBeGreaterThan(0)
    }), 120_000)
})
