/**
 * `kwil-listeners inspect --db FILE`: what a node's database holds: the local events (with
 * `credit_account` payloads decoded), the listeners' KV entries (the `eth_deposits` checkpoint
 * and its history decoded), the open resolutions and the credited balances.
 *
 * The file is opened read-only and never created or migrated: inspecting is safe on a database a
 * node is using. Tables a database does not have yet (an older schema) show as empty.
 */
import { Command, Options } from "@effect/cli"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Either, Layer, Option } from "effect"
import { EventLog } from "../events/EventLog.js"
import { EventStore } from "../events/EventStore.js"
import { balances, CreditAccount, creditAccount, type Payload } from "../extensions/creditAccount.js"
import * as Checkpoints from "../extensions/ethDepositsCheckpoint.js"
import { section as ethDeposits } from "../extensions/ethDepositsConfig.js"
import { ResolutionRegistry } from "../voting/ResolutionRegistry.js"
import * as Migrations from "../storage/migrations.js"
import { migrationsTable } from "../storage/schemaGuard.js"
import { VoteLedger } from "../voting/VoteLedger.js"
import * as CliOptions from "./options.js"
import { StderrLine } from "./Progress.js"

/** A JSON value (what `--json` prints). */
type Json = string | number | boolean | null | ReadonlyArray<Json> | { readonly [key: string]: Json }

/** A `credit_account` payload as JSON: the amount as a decimal string. */
export const payloadJson = (p: Payload): Json => ({
  chainId: Number(p.chainId),
  account: p.account,
  amount: p.amount.toString(),
  txHash: p.txHash,
  logIndex: p.logIndex
})

const hex = (bytes: Uint8Array): string => `0x${Buffer.from(bytes).toString("hex")}`

/** A body decoded when its type is known, else its bytes as hex. */
const decodeBody = (type: string, body: Uint8Array): Effect.Effect<Json> =>
  type === CreditAccount.name
    ? CreditAccount.decode(body).pipe(Effect.map(payloadJson), Effect.orElseSucceed(() => hex(body)))
    : Effect.succeed(hex(body))

/** Maps stored rows, each with its body decoded (`decodeBody`). */
const withPayloads = <T extends { readonly type: string; readonly body: Uint8Array }, B>(f: (row: T, payload: Json) => B) =>
<E, R>(rows: Effect.Effect<ReadonlyArray<T>, E, R>): Effect.Effect<Array<B>, E, R> =>
  Effect.flatMap(rows, Effect.forEach((row) => Effect.map(decodeBody(row.type, row.body), (payload) => f(row, payload))))

const checkpointJson = (c: { readonly height: bigint; readonly hash?: string }): Json =>
  c.hash === undefined ? { height: c.height.toString() } : { height: c.height.toString(), hash: c.hash }

/** A KV value: decoded where its format is known, else UTF-8 text if it is text, else hex. */
const decodeKv = (listener: string, key: string, value: Uint8Array): { readonly format: string; readonly value: Json } => {
  if (listener === ethDeposits && key === Checkpoints.checkpointKey) {
    const c = Checkpoints.decodeCheckpoint(value)
    if (Either.isRight(c)) return { format: "checkpoint", value: checkpointJson(c.right) }
  }
  if (listener === ethDeposits && key === Checkpoints.historyKey) {
    const h = Checkpoints.decodeHistory(value)
    if (Either.isRight(h)) return { format: "history", value: h.right.map(checkpointJson) }
  }
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(value)
    // eslint-disable-next-line no-control-regex
    if (!/[\u0000-\u0008\u000e-\u001f]/.test(text)) return { format: "utf8", value: text }
  } catch {
    // not text
  }
  return { format: "hex", value: hex(value) }
}

/** Everything `inspect` shows, as `--json` prints it. */
export interface Report {
  readonly events: ReadonlyArray<{ readonly id: string; readonly type: string; readonly payload: Json; readonly listener: string; readonly voted: boolean }>
  readonly checkpoints: ReadonlyArray<{ readonly listener: string; readonly key: string; readonly format: string; readonly value: Json }>
  readonly resolutions: ReadonlyArray<{
    readonly id: string
    readonly type: string
    readonly payload: Json
    readonly proposer: string
    readonly createdHeight: string
    readonly expirationHeight: string
    readonly approvedPower: string
    readonly voters: ReadonlyArray<string>
  }>
  readonly balances: ReadonlyArray<{ readonly account: string; readonly balance: string }>
}

/** The database read-only, with the node's read views over it. */
const database = (filename: string) => {
  const sqlite = SqliteClient.layer({ filename, readonly: true, disableWAL: true })
  const events = EventStore.layerSql.pipe(Layer.provideMerge(ResolutionRegistry.layer(creditAccount)))
  return VoteLedger.layer.pipe(Layer.provideMerge(events), Layer.provideMerge(sqlite))
}

/** Reads the report from the database at `filename` (which must exist). */
export const report = (filename: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // A file that is not SQLite at all was refused with the flags (`CliOptions.existingFile`).
    const tables = new Set(
      (yield* sql.unsafe<{ name: string }>(Migrations.ownershipQueries.tables)).map((r) => r.name)
    )
    const recorded = tables.has(migrationsTable)
      ? yield* sql.unsafe<Migrations.Recorded>(Migrations.ownershipQueries.recorded)
      : []
    if (!Migrations.isOurs([...tables], recorded)) {
      return yield* new CliOptions.UsageError({
        subject: `--db ${filename}`,
        reason: "is not a kwil-listeners database (no migration of ours is recorded in it)"
      })
    }
    const events: Report["events"] = tables.has("events")
      ? yield* Effect.flatMap(EventLog, (log) => log.list()).pipe(
        withPayloads((e, payload) => ({ id: e.id, type: e.type, payload, listener: e.listener, voted: e.voted }))
      )
      : []
    const checkpoints: Report["checkpoints"] = tables.has("kv")
      ? (yield* sql<{ listener: string; key: string; value: Uint8Array }>`
          SELECT listener, key, value FROM kv ORDER BY listener, key`).map((r) => ({
            listener: r.listener,
            key: r.key,
            ...decodeKv(r.listener, r.key, r.value)
          }))
      : []
    const resolutions: Report["resolutions"] = tables.has("resolutions") && tables.has("votes") && tables.has("validators")
      ? yield* Effect.flatMap(VoteLedger, (ledger) => ledger.all).pipe(
        withPayloads((r, payload) => ({
          id: r.id,
          type: r.type,
          payload,
          proposer: r.proposer,
          createdHeight: r.createdHeight.toString(),
          expirationHeight: r.expirationHeight.toString(),
          approvedPower: r.approvedPower.toString(),
          voters: r.voters
        }))
      )
      : []
    const accounts: Report["balances"] = tables.has("accounts")
      ? (yield* balances).map((b) => ({ account: b.identifier, balance: b.balance.toString() }))
      : []
    return { events, checkpoints, resolutions, balances: accounts } satisfies Report
  })

const describePayload = (payload: Json): string =>
  typeof payload === "object" && payload !== null && !Array.isArray(payload)
    ? Object.entries(payload).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")
    : `body=${String(payload)}`

/** The report as text, a titled section per table. */
export const reportText = (r: Report): ReadonlyArray<string> => {
  const section = <A>(title: string, rows: ReadonlyArray<A>, line: (a: A) => string) => [
    `${title} (${rows.length})`,
    ...rows.map((row) => `  ${line(row)}`)
  ]
  return [
    ...section("events", r.events, (e) =>
      `${e.id} ${e.type} ${describePayload(e.payload)} listener=${e.listener}${e.voted ? " voted" : ""}`),
    ...section("checkpoints", r.checkpoints, (c) =>
      `${c.listener} ${c.key} = ${
        c.format === "history" && Array.isArray(c.value)
          ? `${c.value.length} checkpoints${c.value.length > 0 ? `, last ${JSON.stringify(c.value.at(-1))}` : ""}`
          : typeof c.value === "string" ? c.value : JSON.stringify(c.value)
      }`),
    ...section("resolutions", r.resolutions, (res) =>
      `${res.id} ${res.type} ${describePayload(res.payload)} proposer=${res.proposer} created=${res.createdHeight} ` +
      `expires=${res.expirationHeight} approvedPower=${res.approvedPower} voters=${res.voters.join(",")}`),
    ...section("balances", r.balances, (b) => `${b.account} ${b.balance}`)
  ]
}

/** Runs `inspect` on an existing database file. */
export const run = (filename: string, json: boolean) =>
  report(filename).pipe(
    Effect.provide(database(filename)),
    Effect.flatMap((r) =>
      Effect.sync(() => {
        if (json) StderrLine.print(JSON.stringify(r))
        else for (const line of reportText(r)) StderrLine.print(line)
      })
    )
  )

const flags = {
  db: Options.text("db").pipe(
    Options.withPseudoName("FILE"),
    Options.withDescription(CliOptions.describe("db", "the node's SQLite database (never created)")),
    Options.optional
  ),
  json: Options.boolean("json").pipe(
    Options.withDescription(CliOptions.describe("json", "print one JSON object { events, checkpoints, resolutions, balances }"))
  )
}

export const inspectCommand = Command.make("inspect", flags, (f) =>
  Effect.gen(function*() {
    const db = yield* CliOptions.flagOrEnv("db", f.db)
    if (Option.isNone(db)) {
      return yield* new CliOptions.UsageError({ subject: "--db", reason: `missing: the database file to inspect (or ${CliOptions.envName("db")})` })
    }
    const filename = yield* CliOptions.existingFile(db.value)
    yield* run(filename, yield* CliOptions.switchOrEnv("json", f.json))
  })).pipe(
    Command.withDescription("Show the events, checkpoints, resolutions and balances in a node's database.")
  )
