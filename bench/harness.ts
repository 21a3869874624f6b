/**
 * What every benchmark shares: its result row, side-by-side rounds and medians, temporary
 * databases. Machines are shared and noisy, so a figure is never one run: each round runs ours
 * and the baseline back to back (alternating which goes first), and a figure is the median.
 */
import { Effect, Layer } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import Database from "better-sqlite3"
import * as Node from "../layers/Node.js"
import * as WalCheckpointer from "../src/storage/WalCheckpointer.js"

/** One line of the table and of `bench/results.json`. */
export interface Result {
  readonly name: string
  /** Our figure, in `unit`. */
  readonly ours: number
  /** The baseline's figure in the same unit, or null where the bar is absolute. */
  readonly baseline: number | null
  readonly unit: string
  /** ours / baseline (for rates: higher is better; for times: lower is better); null without a baseline. */
  readonly ratio: number | null
  /** The bar, in words. */
  readonly bar: string
  readonly pass: boolean
  /** How the figure was made, or why a bar reads as it does. */
  readonly note?: string
}

export interface Options {
  /** Smaller sizes, for a run of a couple of minutes. */
  readonly quick: boolean
}

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Milliseconds `f` takes. */
export const time = async (f: () => Promise<unknown> | unknown): Promise<number> => {
  const start = process.hrtime.bigint()
  await f()
  return Number(process.hrtime.bigint() - start) / 1e6
}

/**
 * `rounds` rounds of `ours` and `baseline` side by side (the order alternates so neither always
 * runs on a warmer or a noisier machine); each returns its own figure. Returns the medians.
 */
export const sideBySide = async (
  rounds: number,
  ours: (round: number) => Promise<number>,
  baseline: (round: number) => Promise<number>
): Promise<{ ours: number; baseline: number; oursAll: Array<number>; baselineAll: Array<number> }> => {
  const oursAll: Array<number> = []
  const baselineAll: Array<number> = []
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      oursAll.push(await ours(round))
      baselineAll.push(await baseline(round))
    } else {
      baselineAll.push(await baseline(round))
      oursAll.push(await ours(round))
    }
  }
  return { ours: median(oursAll), baseline: median(baselineAll), oursAll, baselineAll }
}

/** A fresh directory for database files, removed by the returned function. */
export const tempDir = (label: string): { readonly path: (file: string) => string; readonly remove: () => void } => {
  const dir = mkdtempSync(join(tmpdir(), `kwil-bench-${label}-`))
  return { path: (file) => join(dir, file), remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** The node database at `filename` as the node opens it (`layers/Node.ts`): WAL, checkpointed on a thread of its own, migrated. */
export const nodeDb = (filename: string) =>
  Node.database(filename)

/**
 * A raw better-sqlite3 connection to `filename`, set up as the node's is: WAL, and its automatic
 * checkpoint at the node's backstop. The node checkpoints on a thread of its own, never inside its
 * commits; a baseline left at SQLite's default (every 1,000 pages, inside the commit that crosses
 * it) would pay a copy and an fsync that ours does not.
 */
export const rawDb = (filename: string): Database => {
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.pragma(`wal_autocheckpoint = ${WalCheckpointer.defaultBackstop}`)
  return db
}

/** Creates the node schema in `filename` and closes it, for a raw baseline to open. */
export const migrateFile = (filename: string): Promise<void> =>
  Effect.runPromise(Effect.scoped(Layer.build(nodeDb(filename))).pipe(Effect.asVoid))

/**
 * CPU time (ms) used so far by this process (all its threads) and by process `pid` (read from
 * Linux's `/proc/<pid>/stat`, in clock ticks of 10 ms; `undefined` where that cannot be read),
 * and the time this process's event loop was busy (its main thread: a run whose main thread is
 * busy all along is bound by it, however many cores are free). Differences of two readings give
 * what a run cost on each side of a JSON-RPC connection.
 */
export interface CpuReading {
  readonly self: number
  readonly other: number | undefined
  readonly busy: number
}

export const cpuReading = (pid?: number): CpuReading => {
  const usage = process.cpuUsage()
  let other: number | undefined
  if (pid !== undefined) {
    try {
      // Fields after the command's ")": state is the 1st, utime the 12th, stime the 13th.
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
      other = (Number(fields[11]) + Number(fields[12])) * 10
    } catch {
      other = undefined
    }
  }
  return { self: (usage.user + usage.system) / 1000, other, busy: performance.eventLoopUtilization().active }
}

/** The CPU used between two readings. */
export const cpuSpent = (from: CpuReading, to: CpuReading): CpuReading => ({
  self: to.self - from.self,
  other: from.other === undefined || to.other === undefined ? undefined : to.other - from.other,
  busy: to.busy - from.busy
})

export const round3 = (n: number): number => Math.round(n * 1000) / 1000
