/**
 * The catch-up progress of `listen`: blocks done of the blocks to scan, blocks per second and the
 * time left. On a terminal it is a bar redrawn in place on stderr; elsewhere (a pipe, a log file)
 * a plain line every few seconds, so logs stay readable.
 *
 * Log lines and the bar share stderr: `StderrLine.write` clears the bar, writes the line and
 * draws the bar again, so a log never lands in the middle of a bar.
 */
import { Clock, Effect, Logger, type LogLevel } from "effect"

/** What the bar shows at one moment. */
export interface Snapshot {
  /** Blocks scanned since the start of the catch-up. */
  readonly done: bigint
  /** Blocks to scan in all (at least 1). */
  readonly total: bigint
  /** Milliseconds since the catch-up started. */
  readonly elapsedMs: number
}

/** `1h02m`, `3m05s`, `42s`. */
export const formatDuration = (ms: number): string => {
  if (!Number.isFinite(ms)) return "?"
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
}

/** Blocks per second so far (0 before any time has passed). */
export const rate = (s: Snapshot): number => (s.elapsedMs <= 0 ? 0 : (Number(s.done) * 1000) / s.elapsedMs)

/** The time left at the current rate, in milliseconds (`Infinity` when nothing moved yet). */
export const eta = (s: Snapshot): number => {
  const r = rate(s)
  const left = Number(s.total - s.done)
  return left <= 0 ? 0 : r <= 0 ? Number.POSITIVE_INFINITY : (left / r) * 1000
}

const fraction = (s: Snapshot): number =>
  s.total <= 0n ? 1 : Math.min(1, Math.max(0, Number(s.done) / Number(s.total)))

const figures = (s: Snapshot): string =>
  `${s.done}/${s.total} blocks, ${Math.round(rate(s))} blocks/s, ETA ${formatDuration(eta(s))}`

/** The terminal bar: `catching up [#####-----]  50% 500/1000 blocks, 250 blocks/s, ETA 2s`. */
export const renderBar = (s: Snapshot, width = 24): string => {
  const f = fraction(s)
  const filled = Math.round(f * width)
  const pct = `${Math.floor(f * 100)}%`.padStart(4)
  return `catching up [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${pct} ${figures(s)}`
}

/** The plain line for non-terminals: `catching up: 50% (500/1000 blocks, 250 blocks/s, ETA 2s)`. */
export const renderLine = (s: Snapshot): string => `catching up: ${Math.floor(fraction(s) * 100)}% (${figures(s)})`

// --- stderr -----------------------------------------------------------------------------------

/**
 * stderr, with one transient status line on a terminal. A process has one stderr, so this is a
 * module-level value; everything the CLI writes to stderr goes through it.
 */
export const StderrLine = (() => {
  const stream = process.stderr
  let status = ""
  const clear = () => {
    if (status !== "" && stream.isTTY) stream.write("\r\x1b[2K")
  }
  return {
    /** Whether stderr is a terminal (the bar is drawn only then). */
    get isTTY(): boolean {
      return stream.isTTY === true
    },
    /** A permanent line (a log, a message): above the bar, which is redrawn after it. */
    write(line: string): void {
      clear()
      stream.write(line.endsWith("\n") ? line : `${line}\n`)
      if (status !== "" && stream.isTTY) stream.write(status)
    },
    /** A line of output on stdout, kept clear of the bar when both go to the same terminal. */
    print(line: string): void {
      clear()
      process.stdout.write(`${line}\n`)
      if (status !== "" && stream.isTTY) stream.write(status)
    },
    /** Replaces the status line (on a terminal only; elsewhere this does nothing). */
    status(text: string): void {
      if (!stream.isTTY) return
      clear()
      status = text.slice(0, Math.max(20, (stream.columns || 120) - 1))
      stream.write(status)
    },
    /** Removes the status line. */
    clearStatus(): void {
      clear()
      status = ""
    }
  }
})()

/** Effect's logs, one line each on stderr (never stdout: `--json` output stays pure), around the bar. */
export const stderrLogger = Logger.make<unknown, void>(({ annotations, date, logLevel, message }) => {
  const text = (Array.isArray(message) ? message : [message]).map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(" ")
  let fields = ""
  for (const [k, v] of annotations) fields += ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`
  StderrLine.write(`${date.toISOString().slice(11, 19)} ${levelLabel(logLevel)} ${text}${fields}`)
})

const levelLabel = (level: LogLevel.LogLevel): string => level.label.padEnd(5)

// --- the reporter -----------------------------------------------------------------------------

/** Options of `make`. */
export interface ProgressOptions {
  /** The checkpoint the catch-up starts from (blocks up to it are done). */
  readonly from: bigint
  /** The confirmed head to reach. */
  readonly target: bigint
  /** Draw a bar (default: when stderr is a terminal). */
  readonly tty?: boolean
  /** Plain lines at most this often, in milliseconds (default 2000). */
  readonly plainEveryMs?: number
  /** Where plain lines and the bar go (default `StderrLine`). */
  readonly out?: Pick<typeof StderrLine, "write" | "status" | "clearStatus">
}

/** Reports catch-up progress; `update` with each new checkpoint height, `finish` once at the end. */
export interface Progress {
  readonly update: (height: bigint) => Effect.Effect<void>
  /** Removes the bar and writes `line` (if given) as a permanent line. */
  readonly finish: (line?: string) => Effect.Effect<void>
}

/** A progress reporter on the Effect `Clock` (so tests can drive it with `TestClock`). */
export const make = (options: ProgressOptions): Effect.Effect<Progress> =>
  Effect.gen(function*() {
    const out = options.out ?? StderrLine
    const tty = options.tty ?? StderrLine.isTTY
    const plainEvery = options.plainEveryMs ?? 2000
    const total = options.target > options.from ? options.target - options.from : 1n
    const started = yield* Clock.currentTimeMillis
    let lastPlain = started
    let lastDone = -1n
    return {
      update: (height) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            const raw = height - options.from
            const done = raw < 0n ? 0n : raw > total ? total : raw
            const snapshot = { done, total, elapsedMs: now - started }
            if (tty) {
              out.status(renderBar(snapshot))
            } else if (done !== lastDone && now - lastPlain >= plainEvery) {
              lastPlain = now
              out.write(renderLine(snapshot))
            }
            lastDone = done
          })),
      finish: (line) =>
        Effect.sync(() => {
          out.clearStatus()
          if (line !== undefined) out.write(line)
        })
    }
  })
