/**
 * `devnet`: the whole loop on this machine, what `npm start` runs. A local anvil, the test token
 * and escrow, N validators in this process (each its own SQLite database), deposits sent,
 * observed, voted and credited, with live progress; then a table of the deposits and balances.
 *
 * Without `--follow` it exits 0 once every deposit is credited on every validator, and 1 with
 * the reason when that cannot happen (`--max-blocks` reached, validators' states diverged).
 * With `--follow` it keeps producing blocks and sending a deposit now and then until Ctrl-C,
 * then prints what it got and exits 0. Every exit path stops the listeners, closes the databases
 * and kills anvil. Each flag can also come from its `KWIL_LISTENERS_*` environment variable.
 */
import { Command, Options } from "@effect/cli"
import { Duration, Effect, Layer, Logger, LogLevel, Option } from "effect"
import * as DevnetLayer from "../../layers/Devnet.js"
import * as DataDir from "../devnet/DataDir.js"
import { Devnet } from "../devnet/Devnet.js"
import * as DevnetConfig from "../devnet/DevnetConfig.js"
import { type Lines, Progress } from "../devnet/Progress.js"
import * as Summary from "../devnet/Summary.js"
import * as Health from "./Health.js"
import * as CliOptions from "./options.js"
import { StderrLine } from "./Progress.js"

const text = (flag: string, description: string, pseudo: string) =>
  Options.text(flag).pipe(
    Options.withPseudoName(pseudo),
    Options.withDescription(CliOptions.describe(flag, description)),
    Options.optional
  )

const flags = {
  validators: text("validators", "validators in the network, each its own node and database (default 4)", "N"),
  deposits: text("deposits", "deposits to send and see credited (default 10)", "N"),
  blockTime: text("block-time", "time between blocks, e.g. 500ms or 1s; an Ethereum block is mined with each (default 500ms)", "TIME"),
  confirmations: text("confirmations", "blocks a deposit waits on Ethereum before the listeners read it (default 2)", "N"),
  dataDir: text("data-dir", "keep the validators' databases in this directory (default: a temp dir removed at exit)", "DIR"),
  maxBlocks: text("max-blocks", "fail if the deposits are not all credited after this many blocks (default 200)", "N"),
  metricsPort: text("metrics-port", "serve /metrics and /health on this port while the devnet runs", "N"),
  follow: Options.boolean("follow").pipe(
    Options.withDescription(CliOptions.describe("follow", "keep running (and depositing now and then) until Ctrl-C"))
  ),
  verbose: Options.boolean("verbose").pipe(
    Options.withDescription(CliOptions.describe("verbose", "also show the validators' own info logs (on stderr)"))
  )
}

type Flags = Command.Command.ParseConfig<typeof flags>

/** The devnet's settings, from flags and environment. */
export interface DevnetSettings {
  readonly config: DevnetConfig.DevnetConfig
  readonly metricsPort: Option.Option<number>
  readonly verbose: boolean
}

/** A whole-number setting within `[min, max]`, or its default. */
const wholeNumber = (flag: string, value: Option.Option<string>, fallback: number, min: number, max: number) =>
  Effect.flatMap(CliOptions.flagOrEnv(flag, value), Option.match({
    onNone: () => Effect.succeed(fallback),
    onSome: ({ source, value }) => {
      const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN
      return n >= min && n <= max
        ? Effect.succeed(n)
        : Effect.fail(new CliOptions.UsageError({ subject: source, reason: `${JSON.stringify(value)} is not a whole number from ${min} to ${max}` }))
    }
  }))

/** Validates the flags and their environment variables: a bad one is a `UsageError` (exit 2). */
export const settings = (f: Flags): Effect.Effect<DevnetSettings, CliOptions.UsageError> =>
  Effect.gen(function*() {
    const d = DevnetConfig.defaults
    const blockTimeSetting = yield* CliOptions.flagOrEnv("block-time", f.blockTime)
    const blockTime = Option.isNone(blockTimeSetting) ? d.blockTime : DevnetConfig.parseBlockTime(blockTimeSetting.value.value)
    if (blockTime === undefined || Duration.lessThan(blockTime, Duration.millis(20))) {
      const { source, value } = Option.getOrThrow(blockTimeSetting)
      return yield* new CliOptions.UsageError({
        subject: source,
        reason: `${JSON.stringify(value)} is not a block time of at least 20ms (write e.g. 500ms, 2s)`
      })
    }
    const dataDir = yield* CliOptions.flagOrEnv("data-dir", f.dataDir)
    // Checked now, not once anvil runs and the contracts are deployed.
    if (Option.isSome(dataDir)) {
      const { source, value } = dataDir.value
      const problem = DataDir.problem(value)
      if (problem !== undefined) return yield* new CliOptions.UsageError({ subject: `${source} ${value}`, reason: problem })
    }
    const config: DevnetConfig.DevnetConfig = {
      validators: yield* wholeNumber("validators", f.validators, d.validators, 1, 32),
      deposits: yield* wholeNumber("deposits", f.deposits, d.deposits, 0, 1000),
      blockTime,
      confirmations: yield* wholeNumber("confirmations", f.confirmations, d.confirmations, 0, 64),
      follow: yield* CliOptions.switchOrEnv("follow", f.follow),
      maxBlocks: yield* wholeNumber("max-blocks", f.maxBlocks, d.maxBlocks, 1, 1_000_000),
      ...(Option.isSome(dataDir) ? { dataDir: dataDir.value.value } : {})
    }
    return {
      config,
      metricsPort: yield* CliOptions.port("metrics-port", f.metricsPort),
      verbose: yield* CliOptions.switchOrEnv("verbose", f.verbose)
    }
  })

/** The progress lines: the live status on stderr (a terminal), everything that stays on stdout. */
const lines: Lines = {
  live: StderrLine.isTTY,
  columns: () => process.stderr.columns ?? 120,
  print: (line) => StderrLine.print(line),
  status: (line) => StderrLine.status(line),
  clearStatus: () => StderrLine.clearStatus()
}

/** `/health` of the devnet: every validator's listeners (stopped is fine for one without a seat). */
const health = Effect.flatMap(Devnet, (devnet) =>
  Effect.map(
    Effect.forEach(devnet.validators, (v) =>
      v.run(Health.listenerHealth({ allowStopped: true })).pipe(
        Effect.map((report) => ({
          problems: report.problems.map((p) => `${v.identity}: ${p}`),
          details: { [v.identity]: report.details }
        }))
      )),
    (reports): Health.HealthReport => ({
      problems: reports.flatMap((r) => r.problems),
      details: Object.assign({}, ...reports.map((r) => r.details))
    })
  ))

/** Serves /metrics and /health for the devnet's life, when a port is given. */
const metrics = (port: Option.Option<number>) =>
  Option.match(port, {
    onNone: () => Effect.void,
    onSome: (port) =>
      Effect.gen(function*() {
        const context = yield* Effect.context<Devnet>()
        // Loaded only when asked for: it brings OpenTelemetry, which every other run can skip.
        const MetricsServer = yield* Effect.promise(() => import("./MetricsServer.js"))
        const devnet = yield* Devnet
        const address = yield* MetricsServer.serve({
          port,
          health: Effect.provide(health, context),
          // Each validator runs its own listeners: their states carry its identity (see `Validator.run`).
          beforeScrape: Effect.forEach(devnet.validators, (v) => v.run(MetricsServer.recordListenerStates), { discard: true })
        })
        yield* Effect.flatMap(Progress, (p) => p.note(`metrics: ${address.url}/metrics and ${address.url}/health`))
      })
  })

/** Runs the devnet for `s` and prints its report. */
export const run = (s: DevnetSettings) =>
  Effect.gen(function*() {
    const devnet = yield* Devnet
    const progress = yield* Progress
    yield* metrics(s.metricsPort)
    const printReport = (summary: Parameters<typeof Summary.format>[0]) =>
      Effect.zipRight(progress.end, Effect.sync(() => StderrLine.print(`\n${Summary.format(summary)}`)))
    const summary = yield* devnet.run.pipe(
      Effect.onInterrupt(() =>
        devnet.summary.pipe(
          Effect.flatMap(printReport),
          Effect.catchAllCause(() => Effect.void)
        )
      )
    )
    yield* printReport(summary)
  }).pipe(
    Effect.scoped,
    Effect.provide(DevnetLayer.layer(s.config).pipe(Layer.provideMerge(Progress.layer(lines)))),
    Logger.withMinimumLogLevel(s.verbose ? LogLevel.Info : LogLevel.Warning)
  )

export const devnetCommand = Command.make("devnet", flags, (f) => Effect.flatMap(settings(f), run)).pipe(
  Command.withDescription(
    "Run a validator network on a local anvil: deposits are sent, observed by every validator's eth_deposits " +
      "listener, voted on and credited, with live progress; one validator loses its seat mid-run and gets it back. " +
      "Ends with a table of deposits and balances (or runs until Ctrl-C with --follow)."
  )
)
