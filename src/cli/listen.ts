/**
 * `kwil-listeners listen`: the `eth_deposits` listener alone, against any chain (Kwil's
 * `ethlisten`). Deposits are stored in a SQLite file (the node's schema, so `inspect` reads it)
 * and printed as they are stored: one line each, or one JSON object a line with `--json`.
 *
 * The listener runs directly (no listener manager, no voting): a failure it cannot heal after
 * `max_retries` ends the command with exit code 1 and the reason, rather than a silent restart.
 * Stored events are printed by reading the `events` table past the last row seen (insertion
 * order, each row once), so a deposit is printed once, right after the batch that stored it
 * commits. `--once` stops when the listener's checkpoint reaches the confirmed head as it was at
 * the start (`head - confirmations`, or the `safe`/`finalized` block).
 */
import { Command, Options } from "@effect/cli"
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Fiber, Layer, Option } from "effect"
import * as Node from "../../layers/Node.js"
import { EventStore } from "../events/EventStore.js"
import { EthereumClient, type EthLog } from "../ethereum/EthereumClient.js"
import type { Checkpoint } from "../ethereum/LogFollower.js"
import * as Retry from "../ethereum/Retry.js"
import { CreditAccount, creditAccount, type Payload } from "../extensions/creditAccount.js"
import * as EthDeposits from "../extensions/ethDeposits.js"
import * as Checkpoints from "../extensions/ethDepositsCheckpoint.js"
import type { EthDepositsConfig } from "../extensions/ethDepositsConfig.js"
import { ListenerContext } from "../listener/Listener.js"
import { endedCleanly } from "../listener/ListenerManager.js"
import { ResolutionRegistry } from "../voting/ResolutionRegistry.js"
import * as Health from "./Health.js"
import * as DatabaseLock from "./DatabaseLock.js"
import * as CliOptions from "./options.js"
import * as Progress from "./Progress.js"

/** The database `listen` uses when neither `--db` nor `KWIL_LISTENERS_DB` is given. */
export const defaultDb = "./kwil-listeners.db"

/** Everything `listen` needs, validated. */
export interface ListenSettings {
  readonly config: EthDepositsConfig
  /** The `eth_deposits` section as given to the listener (strings, as Kwil's). */
  readonly section: Readonly<Record<string, string>>
  readonly db: string
  readonly once: boolean
  readonly json: boolean
  readonly metricsPort: Option.Option<number>
}

// --- output -----------------------------------------------------------------------------------

/** A stored `credit_account` event as `listen` prints it. */
export interface DepositLine {
  readonly id: string
  readonly type: string
  readonly payload: Payload
  /** The block of its log, when this run saw the log. */
  readonly block: Option.Option<bigint>
}

/** `{ id, type, chainId, account, amount, txHash, logIndex, block }`; the amount as a decimal string. */
export const depositJson = (d: DepositLine) => ({
  id: d.id,
  type: d.type,
  chainId: Number(d.payload.chainId),
  account: d.payload.account,
  amount: d.payload.amount.toString(),
  txHash: d.payload.txHash,
  logIndex: d.payload.logIndex,
  block: Option.match(d.block, { onNone: () => null, onSome: Number })
})

/** `block=12 account=0x… amount=10 tx=0x… log=0`. */
export const depositText = (d: DepositLine): string =>
  `deposit block=${Option.getOrElse(Option.map(d.block, String), () => "?")} account=${d.payload.account} ` +
  `amount=${d.payload.amount} tx=${d.payload.txHash} log=${d.payload.logIndex}`

const logKey = (txHash: string, logIndex: number) => `${txHash.toLowerCase()}:${logIndex}`

/**
 * The block of every log the listener fetched, kept until its deposit is printed: the
 * `credit_account` payload has no block number, and the printed line shows it. A log fetched but
 * never stored (a malformed one, skipped; one of an orphaned block) is forgotten once the
 * checkpoint has passed its block, so a long run does not keep them all.
 */
export const makeLogBlocks = () => {
  /** By log: its block, and which `record` call recorded it. */
  const blocks = new Map<string, { readonly block: bigint; readonly recorded: number }>()
  let records = 0
  return {
    record: (logs: ReadonlyArray<EthLog>): void => {
      records++
      for (const log of logs) {
        blocks.set(logKey(log.transactionHash, log.logIndex), { block: log.blockNumber, recorded: records })
      }
    },
    /** The block of a stored log, forgotten as it is read (it is printed once). */
    take: (txHash: string, logIndex: number): Option.Option<bigint> => {
      const key = logKey(txHash, logIndex)
      const entry = blocks.get(key)
      blocks.delete(key)
      return Option.map(Option.fromNullable(entry), (e) => e.block)
    },
    /** What has been recorded so far: take it before reading the checkpoint (see `forgetUpTo`). */
    mark: (): number => records,
    /**
     * Forgets the logs of blocks up to `height` recorded by `mark`, once every event up to the
     * checkpoint `height` (read after `mark`) is printed. Those recorded later may be a re-scan
     * after a rewind below `height`, not stored yet.
     */
    forgetUpTo: (height: bigint, mark: number): void => {
      for (const [key, { block, recorded }] of blocks) if (block <= height && recorded <= mark) blocks.delete(key)
    },
    size: (): number => blocks.size
  }
}
type LogBlocks = ReturnType<typeof makeLogBlocks>

/** The listener's client, recording the block of every log it fetches in `blocks`. */
const clientRecordingBlocks = (blocks: LogBlocks) => (config: EthDepositsConfig) =>
  Layer.effect(
    EthereumClient,
    Effect.map(EthereumClient, (client) =>
      EthereumClient.of({
        ...client,
        getLogs: (params) => Effect.tap(client.getLogs(params), (logs) => Effect.sync(() => blocks.record(logs)))
      }))
  ).pipe(Layer.provide(EthereumClient.layer({ urls: config.rpcProviders })))

// --- the run ----------------------------------------------------------------------------------

/** The node database with the listener's event store: migrated, `credit_account` registered. */
const storage = (filename: string) =>
  EventStore.layerFor(EthDeposits.name).pipe(
    Layer.provideMerge(EventStore.layerSql),
    Layer.provideMerge(ResolutionRegistry.layer(creditAccount)),
    Layer.provideMerge(Node.database(filename))
  )

/** The `eth_deposits` key under which `listen` keeps the `seq` of the last event it printed. */
const printedKey = "listen.printed"

/**
 * The head now and the confirmed head, what `--once` catches up to (below 0 while nothing is
 * confirmed yet: on a chain younger than its confirmations, or without the tag's block).
 */
const heads = (config: EthDepositsConfig) =>
  Effect.flatMap(EthereumClient, (client) =>
    config.finality === "confirmations"
      ? Effect.map(client.headNumber, (head) => ({ head, confirmed: head - BigInt(config.requiredConfirmations) }))
      : Effect.all({
        head: client.headNumber,
        confirmed: Effect.map(client.block(config.finality), Option.match({ onNone: () => -1n, onSome: (b) => b.number }))
      }, { concurrency: 2 })
  ).pipe(Retry.healable({ maxRetries: config.maxRetries }))

/** Runs `listen` until interrupted, or (with `once`) until caught up. */
export const run = (settings: ListenSettings) => {
  let printed = 0
  return Effect.scoped(Effect.gen(function*() {
    const { config } = settings
    // The chain first: an RPC that cannot be reached leaves no database behind.
    const { source, chain } = yield* Effect.all({
      source: EthDeposits.sourceOf(config.contractAddress, { maxRetries: config.maxRetries }),
      chain: heads(config)
    }, { concurrency: 2 }).pipe(Effect.provide(EthereumClient.layer({ urls: config.rpcProviders })))
    const target = chain.confirmed
    yield* DatabaseLock.hold(settings.db)
    const context = yield* Layer.build(storage(settings.db))
    const sql = yield* Effect.provide(SqlClient.SqlClient, context)
    const store = yield* Effect.provide(EventStore, context)

    // Where the listener starts (as it computes it) and where `--once` stops.
    const floor = config.startingHeight - 1n
    const heightOf = Option.match({
      onNone: () => floor,
      onSome: (c: Checkpoint) => (c.height > floor ? c.height : floor)
    })
    const reached = Effect.map(Checkpoints.readCheckpoint(store.kv), heightOf)
    // The stored checkpoint must be this chain's and contract's before `--once` may call it caught
    // up: the listener checks the same as it starts, but the loop below could end before it did.
    const stored = yield* Checkpoints.resumePoint(store, source)
    const from = heightOf(stored)
    if (settings.once && Option.isSome(stored) && stored.value.height > chain.head) {
      // Not a lag to catch up: `--once` has nothing to do, and ends before the listener would say
      // so (it waits, or rewinds). Above the confirmed head only, the checkpoint was stored with
      // fewer confirmations: nothing to say.
      yield* Effect.logWarning(
        `the stored checkpoint, block ${stored.value.height}, is above the chain's head, block ${chain.head}: ` +
          "the node is still syncing, or the chain was reset or reorganised to fewer blocks"
      )
    }
    yield* Effect.logInfo(`listening for deposits to ${config.contractAddress}`).pipe(
      Effect.annotateLogs({ db: settings.db, from: String(from + 1n), confirmedHead: target < 0n ? "none yet" : String(target) })
    )

    // Print every row stored after the last one printed, in insertion order: where printing
    // stopped is kept in the store, so rows stored by a run that was stopped (Ctrl-C, a failure)
    // before it printed them are printed by the next. A database that never had it printed
    // starts after the rows present now.
    const blocks = makeLogBlocks()
    const kept = Option.flatMap(yield* store.kv.get(printedKey), (value) => {
      const seq = Number(new TextDecoder().decode(value))
      return Number.isSafeInteger(seq) && seq >= 0 ? Option.some(seq) : Option.none()
    })
    let cursor = Option.isSome(kept)
      ? kept.value
      : (yield* sql<{ seq: number | null }>`SELECT MAX(seq) AS seq FROM events`)[0]?.seq ?? 0
    let saved = Option.isSome(kept) ? cursor : -1
    const drain: Effect.Effect<void, unknown> = Effect.gen(function*() {
      for (;;) {
        const rows = yield* sql<{ seq: number; id: string; type: string; body: Uint8Array }>`
          SELECT seq, id, type, body FROM events WHERE seq > ${cursor} ORDER BY seq LIMIT 500`
        for (const row of rows) {
          // Past a row once it is printed: one cut short (Ctrl-C) is printed again, not lost.
          yield* print(row, blocks, settings.json)
          cursor = row.seq
          printed++
        }
        if (rows.length < 500) break
      }
      if (cursor !== saved) {
        yield* store.kv.set(printedKey, new TextEncoder().encode(String(cursor)))
        saved = cursor
      }
    })
    // However the run ends: what it stored is printed (the listener, started after this, is
    // stopped first; the database is closed after).
    yield* Effect.addFinalizer(() => Effect.ignore(drain))

    const listener = yield* EthDeposits.run({ client: clientRecordingBlocks(blocks) }).pipe(
      Effect.scoped,
      Effect.provide(Layer.mergeAll(
        Layer.succeed(EventStore, store),
        Layer.succeed(ListenerContext, ListenerContext.of({
          name: EthDeposits.name,
          identity: "kwil-listeners-cli",
          config: settings.section,
          configured: true
        }))
      )),
      Effect.forkScoped
    )

    if (Option.isSome(settings.metricsPort)) {
      // Loaded only when asked for: the OpenTelemetry exporter costs seconds of start-up.
      const MetricsServer = yield* Effect.promise(() => import("./MetricsServer.js"))
      // No manager here: the listener's state is its fiber's.
      const state = Effect.map(Fiber.poll(listener), Option.match({
        onNone: () => "running" as const,
        onSome: (exit) => endedCleanly(exit) ? "stopped" as const : "failed" as const
      }))
      const address = yield* MetricsServer.serve({
        port: settings.metricsPort.value,
        health: yield* health(config, listener),
        beforeScrape: Effect.flatMap(state, (s) => MetricsServer.recordStates([{ name: EthDeposits.name, state: s }]))
      })
      yield* Effect.logInfo(`serving ${address.url}/metrics and ${address.url}/health`)
    }

    const progress = yield* Progress.make({ from, target })
    let catchingUp = true
    for (;;) {
      // The checkpoint first: every event up to it is stored, so the drain prints them all, and
      // what was fetched before it and is left of those blocks was never stored.
      const mark = blocks.mark()
      const height = yield* reached
      yield* drain
      blocks.forgetUpTo(height, mark)
      if (catchingUp) {
        yield* progress.update(height)
        if (height >= target) {
          catchingUp = false
          yield* progress.finish()
          const reachedWhat = target < 0n
            ? `nothing confirmed yet (head ${chain.head}, ${config.finality === "confirmations" ? `${config.requiredConfirmations} confirmations` : `no ${config.finality} block`})`
            : `caught up to the confirmed head, block ${target}`
          yield* Effect.logInfo(
            settings.once ? reachedWhat : `${reachedWhat}; following new blocks (Ctrl-C to stop)`
          )
          if (settings.once) break
        }
      }
      const ended = yield* Fiber.poll(listener)
      if (Option.isSome(ended)) {
        yield* progress.finish()
        yield* drain
        // The listener only returns on its own when it has nothing to do; a failure ends the command.
        yield* ended.value
        break
      }
      yield* Effect.sleep("200 millis")
    }
    yield* Fiber.interrupt(listener)
    yield* drain
  })).pipe(
    // Also on Ctrl-C: what this run added.
    Effect.ensuring(Effect.suspend(() =>
      Effect.logInfo(`printed ${printed} deposit${printed === 1 ? "" : "s"} stored in ${settings.db}`)
    ))
  )
}

/**
 * `/health` for `listen`: the listener is running, and its checkpoint moves while it is behind
 * by more than its finality depth (a quiet chain is not a stall).
 */
const health = (config: EthDepositsConfig, listener: Fiber.Fiber<void, unknown>) =>
  Effect.gen(function*() {
    const depth = config.finality === "confirmations" ? config.requiredConfirmations + 2 : 128
    const stall = yield* Health.progressCheck({
      name: "checkpoint",
      progress: Health.gaugeValue(EthDeposits.checkpointGauge),
      maxAge: Duration.max(Duration.minutes(2), Duration.times(config.reconnectionInterval, 2)),
      expected: Effect.map(
        Effect.all([Health.gaugeValue(EthDeposits.headGauge), Health.gaugeValue(EthDeposits.checkpointGauge)]),
        ([head, checkpoint]) => head - checkpoint > depth
      )
    })
    const running = Effect.map(Fiber.poll(listener), Option.match({
      onNone: () => Health.healthy({ listener: "running" }),
      onSome: () => Health.unhealthy(["the eth_deposits listener stopped"], { listener: "stopped" })
    }))
    return Health.all(running, stall)
  })

const print = (
  row: { readonly id: string; readonly type: string; readonly body: Uint8Array },
  blocks: LogBlocks,
  json: boolean
) =>
  Effect.gen(function*() {
    if (row.type !== CreditAccount.name) {
      // Not the listener's (a shared database): shown raw.
      const hex = Buffer.from(row.body).toString("hex")
      return Progress.StderrLine.print(
        json ? JSON.stringify({ id: row.id, type: row.type, body: `0x${hex}` }) : `event ${row.id} type=${row.type} body=0x${hex}`
      )
    }
    const payload = yield* CreditAccount.decode(row.body)
    const line: DepositLine = { id: row.id, type: row.type, payload, block: blocks.take(payload.txHash, payload.logIndex) }
    Progress.StderrLine.print(json ? JSON.stringify(depositJson(line)) : depositText(line))
  })

// --- the command ------------------------------------------------------------------------------

const text = (flag: string, description: string, pseudo?: string) =>
  Options.text(flag).pipe(
    pseudo === undefined ? (o) => o : Options.withPseudoName(pseudo),
    Options.withDescription(CliOptions.describe(flag, description)),
    Options.optional
  )

const flags = {
  rpc: Options.text("rpc").pipe(
    Options.withPseudoName("URL"),
    Options.withDescription(CliOptions.describe(
      "rpc",
      "Ethereum JSON-RPC URL, http(s) or ws(s); repeat the flag or separate by commas for fallbacks (rpc_provider)"
    )),
    Options.repeated
  ),
  contract: text("contract", "the escrow contract's address (contract_address)", "ADDR"),
  fromBlock: text("from-block", "first block to scan when the database has no checkpoint (starting_height, default 0)", "N"),
  confirmations: text("confirmations", "blocks behind the head before a block is read (required_confirmations, default 12)", "N"),
  finality: text("finality", "confirmations (default), safe or finalized (finality)", "confirmations|safe|finalized"),
  db: text("db", `SQLite file for the events and the checkpoint (default ${defaultDb})`, "FILE"),
  once: Options.boolean("once").pipe(
    Options.withDescription(CliOptions.describe("once", "catch up to the confirmed head, then exit"))
  ),
  json: Options.boolean("json").pipe(
    Options.withDescription(CliOptions.describe("json", "print one JSON object per deposit"))
  ),
  config: text("config", "TOML file with an [app.extensions.eth_deposits] section (Kwil's keys)", "FILE"),
  metricsPort: text("metrics-port", "serve /metrics and /health on 127.0.0.1 at this port (0: a free one)", "N")
}

type Flags = Command.Command.ParseConfig<typeof flags>

/** Validates the flags, their environment variables and the config file. */
export const settings = (f: Flags): Effect.Effect<ListenSettings, CliOptions.BadInput> =>
  Effect.gen(function*() {
    const { config, section } = yield* CliOptions.ethDepositsSection({
      rpc: f.rpc.length === 0 ? Option.none() : Option.some(f.rpc.join(",")),
      contract: f.contract,
      "from-block": f.fromBlock,
      confirmations: f.confirmations,
      finality: f.finality
    }, f.config)
    const dbSetting = Option.getOrElse(yield* CliOptions.flagOrEnv("db", f.db), () => ({ value: defaultDb, source: "--db" }))
    return {
      config,
      section,
      db: yield* CliOptions.databaseFile(dbSetting),
      once: yield* CliOptions.switchOrEnv("once", f.once),
      json: yield* CliOptions.switchOrEnv("json", f.json),
      metricsPort: yield* CliOptions.port("metrics-port", f.metricsPort)
    }
  })

export const listenCommand = Command.make("listen", flags, (f) => Effect.flatMap(settings(f), run)).pipe(
  Command.withDescription(
    "Run the eth_deposits listener against a chain: store each deposit in a SQLite file and print it. " +
      "Each setting comes from its flag, else its KWIL_LISTENERS_* environment variable, else the --config file, else its default."
  )
)
