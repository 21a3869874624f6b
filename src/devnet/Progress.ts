/**
 * How the devnet shows itself while it runs: one status line per block and a line for each thing
 * worth noticing (a deposit sent, a seat lost, a deposit credited).
 *
 * On a terminal the status line is redrawn in place and notes are printed above it; otherwise
 * every block is a plain line, for logs and CI.
 */
import { Context, Effect, Layer, Ref } from "effect"
import type { ListenerState, ListenerStatus } from "../listener/ListenerManager.js"
import type { BlockReport } from "./BlockProducer.js"
import { shortName } from "./Validator.js"

/** One validator's side of a status line. */
export interface ValidatorView {
  readonly identity: string
  /** Whether it holds a seat after the block. */
  readonly seat: boolean
  readonly listeners: ReadonlyArray<ListenerStatus>
}

/** Everything a status line shows after a block. */
export interface BlockStatus {
  readonly report: BlockReport
  /** The Ethereum head after the block. */
  readonly ethHead: bigint
  /** Distinct events stored on some node and not yet processed by the network. */
  readonly pendingEvents: number
  /** Open resolutions (voting in progress). */
  readonly openResolutions: number
  /** Deposits credited so far, of `sent` deposits sent (`planned` in the plan). */
  readonly credited: number
  readonly sent: number
  readonly planned: number
  readonly validators: ReadonlyArray<ValidatorView>
}

/**
 * Where progress is written: permanent lines, and one live status line redrawn in place when
 * `live` (a terminal). A host with its own terminal handling (the CLI's stderr line) adapts it here.
 */
export interface Lines {
  /** Whether the status line is redrawn in place; when false every status is a plain line. */
  readonly live: boolean
  /** The terminal width (the live line is cut to fit). */
  readonly columns: () => number
  /** Prints a permanent line (above the live line). */
  readonly print: (line: string) => void
  /** Replaces the live line. */
  readonly status: (text: string) => void
  /** Removes the live line. */
  readonly clearStatus: () => void
}

export class Progress extends Context.Tag("kwil-listeners/devnet/Progress")<Progress, {
  /** Shows the status after a block. */
  readonly block: (status: BlockStatus) => Effect.Effect<void>
  /** Prints a line that stays (above the status line on a terminal). */
  readonly note: (line: string) => Effect.Effect<void>
  /** Ends the live status line, before a final report is printed. */
  readonly end: Effect.Effect<void>
}>() {
  /** Progress on `lines`. */
  static readonly layer = (lines: Lines): Layer.Layer<Progress> => Layer.succeed(Progress, onLines(lines))

  /** Progress on a stream of its own (default stdout), redrawn in place when it is a TTY. */
  static readonly layerStream = (out: NodeJS.WriteStream = process.stdout): Layer.Layer<Progress> =>
    Layer.sync(Progress, () => onLines(streamLines(out)))

  /** Shows nothing (tests, or a devnet embedded in another program). */
  static readonly layerSilent: Layer.Layer<Progress> = Layer.succeed(
    Progress,
    Progress.of({ block: () => Effect.void, note: () => Effect.void, end: Effect.void })
  )

  /** A progress that keeps every status and note, for tests. */
  static readonly recording = Effect.gen(function*() {
    const blocks = yield* Ref.make<ReadonlyArray<BlockStatus>>([])
    const notes = yield* Ref.make<ReadonlyArray<string>>([])
    const progress = Progress.of({
      block: (status) => Ref.update(blocks, (all) => [...all, status]),
      note: (line) => Ref.update(notes, (all) => [...all, line]),
      end: Effect.void
    })
    return { progress, blocks, notes } as const
  })
}

const ansi = {
  green: (s: string) => `\x1b[32m${s}\x1b[39m`,
  yellow: (s: string) => `\x1b[33m${s}\x1b[39m`,
  red: (s: string) => `\x1b[31m${s}\x1b[39m`,
  dim: (s: string) => `\x1b[2m${s}\x1b[22m`,
  bold: (s: string) => `\x1b[1m${s}\x1b[22m`
}

const plain = { green: String, yellow: String, red: String, dim: String, bold: String } as const

const stateColour: Record<ListenerState, keyof typeof ansi> = {
  running: "green",
  "backing-off": "yellow",
  stopped: "dim",
  failed: "red"
}

/** A validator's listener states: `v3 running`, or `v3 eth_deposits:running,other:stopped`. */
const validatorText = (v: ValidatorView, paint: typeof ansi | typeof plain): string => {
  const states = v.listeners.length === 1
    ? paint[stateColour[v.listeners[0]!.state]](v.listeners[0]!.state)
    : v.listeners.map((l) => `${l.name}:${paint[stateColour[l.state]](l.state)}`).join(",")
  return `${shortName(v.identity)}${v.seat ? "" : paint.red("(no seat)")} ${states}`
}

/** The status line of a block. */
export const statusLine = (s: BlockStatus, colour = false): string => {
  const paint = colour ? ansi : plain
  const r = s.report
  const votes = r.voteTxs.reduce((n, tx) => n + tx.ids, 0)
  const credited = `credited ${s.credited}/${Math.max(s.sent, s.planned)}`
  return [
    paint.bold(`block ${r.height}`) + ` eth ${s.ethHead}`,
    `proposer ${shortName(r.proposer)}`,
    `bodies ${r.bodies} votes ${votes}`,
    `events ${s.pendingEvents} open ${s.openResolutions}`,
    s.credited === s.sent && s.sent >= s.planned && s.sent > 0 ? paint.green(credited) : credited,
    s.validators.map((v) => validatorText(v, paint)).join("  ")
  ].join(" │ ")
}

const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;]*m/g, "")

/** The live line within `width` columns: coloured when it fits as is, else plain and cut. */
const fit = (coloured: string, width: number): string => {
  if (coloured.length <= width) return coloured
  const text = stripAnsi(coloured)
  return text.length <= width ? text : text.slice(0, Math.max(0, width - 1)) + "…"
}

const onLines = (lines: Lines): Progress["Type"] =>
  Progress.of({
    block: (status) =>
      Effect.sync(() => {
        if (lines.live) lines.status(fit(statusLine(status, true), lines.columns() - 1))
        else lines.print(statusLine(status))
      }),
    note: (line) => Effect.sync(() => lines.print(line)),
    end: Effect.sync(() => lines.clearStatus())
  })

/** `Lines` over one stream, e.g. stdout. */
export const streamLines = (out: NodeJS.WriteStream): Lines => {
  let live = ""
  const clear = () => {
    if (live !== "") out.write("\r\x1b[2K")
  }
  return {
    live: out.isTTY === true,
    columns: () => out.columns ?? 120,
    print: (line) => {
      clear()
      out.write(line + "\n")
      if (live !== "") out.write(live)
    },
    status: (text) => {
      clear()
      live = text
      out.write(live)
    },
    clearStatus: () => {
      clear()
      live = ""
    }
  }
}
