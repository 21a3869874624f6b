/**
 * Where the CLI's settings come from, and how a bad one is reported.
 *
 * Every flag has an environment variable, `KWIL_LISTENERS_` and the flag's name in upper snake
 * case (`--from-block` is `KWIL_LISTENERS_FROM_BLOCK`). The `eth_deposits` settings can also come
 * from a TOML file (`--config FILE`, Kwil's `[app.extensions.eth_deposits]` keys). Precedence,
 * per setting: flag > environment > config file > default. An empty environment variable counts
 * as unset.
 *
 * Values are taken as text and validated in one place (`decodeEthDepositsConfig`), so the same
 * rules apply whichever way a value arrives; a bad value is a `UsageError` that names where it
 * came from (the flag, the variable or the file and key): one line, exit code 2.
 */
import Database from "better-sqlite3"
import { Config, Data, Effect, Option } from "effect"
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs"
import { dirname, resolve } from "node:path"
import type { DataDirError } from "../devnet/DataDir.js"
import type { InvalidDevnetConfig } from "../devnet/DevnetConfig.js"
import { type ConfigFileError, loadConfigFile } from "../extensions/configFile.js"
import * as Migrations from "../storage/migrations.js"
import { migrationsTable } from "../storage/schemaGuard.js"
import {
  decodeEthDepositsConfig,
  type EthDepositsConfig,
  type InvalidConfig,
  type Key,
  section as sectionName
} from "../extensions/ethDepositsConfig.js"

/** A bad flag, environment variable or value: the CLI prints `subject: reason` and exits 2. */
export class UsageError extends Data.TaggedError("UsageError")<{
  /** What was wrong: `--confirmations`, `KWIL_LISTENERS_RPC`, `config file x.toml: eth_deposits.finality`. */
  readonly subject: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.subject}: ${this.reason}`
  }
}

/** The errors that mean "the user asked for something that cannot work" (exit code 2). */
export type BadInput = UsageError | InvalidConfig | ConfigFileError | InvalidDevnetConfig | DataDirError

const badInputTags: ReadonlySet<string> = new Set([
  "UsageError",
  "InvalidConfig",
  "ConfigFileUnreadable",
  "ConfigFileSyntaxError",
  "ConfigFileInvalid",
  "InvalidDevnetConfig",
  "DataDirError"
])

/** Whether `error` is bad input (exit 2) rather than a failure while running (exit 1). */
export const isBadInput = (error: unknown): error is BadInput =>
  typeof error === "object" && error !== null && "_tag" in error && badInputTags.has(String(error._tag))

/** The prefix of every environment variable. */
export const envPrefix = "KWIL_LISTENERS_"

/** The environment variable of a flag: `from-block` is `KWIL_LISTENERS_FROM_BLOCK`. */
export const envName = (flag: string): string => envPrefix + flag.toUpperCase().replaceAll("-", "_")

/** A flag's help text with its environment variable, so `--help` documents both. */
export const describe = (flag: string, text: string): string => `${text} [env ${envName(flag)}]`

/** A setting's value and where it came from (for error messages). */
export interface Sourced {
  readonly value: string
  /** `--rpc`, `KWIL_LISTENERS_RPC`, or `config file x.toml: eth_deposits.rpc_provider`. */
  readonly source: string
}

/** The environment variable, when set and not empty (read through `Config`, so tests can swap the provider). */
const fromEnv = (name: string): Effect.Effect<Option.Option<string>> =>
  Config.option(Config.string(name)).pipe(
    Effect.map(Option.filter((s) => s.trim() !== "")),
    Effect.orElseSucceed(() => Option.none<string>())
  )

/** A text setting: the flag if given, else its environment variable. */
export const flagOrEnv = (flag: string, value: Option.Option<string>): Effect.Effect<Option.Option<Sourced>> =>
  Option.match(value, {
    onSome: (v) => Effect.succeed(Option.some({ value: v, source: `--${flag}` })),
    onNone: () =>
      Effect.map(fromEnv(envName(flag)), Option.map((v): Sourced => ({ value: v, source: envName(flag) })))
  })

const truthy = new Set(["1", "true", "yes", "on"])
const falsy = new Set(["0", "false", "no", "off"])

/**
 * A boolean flag: `true` if given, else its environment variable (`1/true/yes/on`, `0/false/no/off`),
 * else false. @effect/cli's boolean options read `--flag=false` as absent (they default to false),
 * so an explicit false cannot beat a true variable (the README says so).
 */
export const switchOrEnv = (flag: string, given: boolean): Effect.Effect<boolean, UsageError> =>
  given ? Effect.succeed(true) : Effect.flatMap(fromEnv(envName(flag)), Option.match({
    onNone: () => Effect.succeed(false),
    onSome: (raw) => {
      const v = raw.trim().toLowerCase()
      if (truthy.has(v)) return Effect.succeed(true)
      if (falsy.has(v)) return Effect.succeed(false)
      return Effect.fail(
        new UsageError({ subject: envName(flag), reason: `${JSON.stringify(raw)} is not a boolean (use 1/true/yes or 0/false/no)` })
      )
    }
  }))

/** A TCP port setting (flag or environment), 0 (any free port) to 65535. */
export const port = (flag: string, value: Option.Option<string>): Effect.Effect<Option.Option<number>, UsageError> =>
  Effect.flatMap(flagOrEnv(flag, value), Option.match({
    onNone: () => Effect.succeed(Option.none<number>()),
    onSome: ({ source, value }) => {
      const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN
      return n >= 0 && n <= 65535
        ? Effect.succeed(Option.some(n))
        : Effect.fail(new UsageError({ subject: source, reason: `${JSON.stringify(value)} is not a TCP port (0 to 65535; 0 picks a free one)` }))
    }
  }))

/** The first bytes of every SQLite database file. */
const sqliteHeader = Buffer.from("SQLite format 3\0")

/**
 * Why the file at `path` cannot be a node database: it cannot be read, or it is neither empty nor
 * starts as a SQLite database does; `undefined` when it can.
 */
const notSqlite = (path: string): string | undefined => {
  try {
    const fd = openSync(path, "r")
    try {
      const head = Buffer.alloc(sqliteHeader.length)
      const read = readSync(fd, head, 0, head.length, 0)
      return read === 0 || (read === head.length && head.equals(sqliteHeader)) ? undefined : "is not a SQLite database"
    } finally {
      closeSync(fd)
    }
  } catch (e) {
    return `cannot be read: ${e instanceof Error ? e.message : String(e)}`
  }
}

/**
 * `value` resolved, when the file there `canBeAbsent` or exists as a SQLite file (or an empty
 * one) that `fits`; else a `UsageError` naming `source` and why.
 */
const sqliteFile = (
  { source, value }: Sourced,
  canBeAbsent: (path: string) => string | undefined,
  fits: (path: string) => string | undefined = () => undefined
) => {
  const path = resolve(value)
  const problem = !existsSync(path)
    ? canBeAbsent(path)
    : !statSync(path).isFile()
    ? "is not a file"
    : notSqlite(path) ?? (statSync(path).size > 0 ? fits(path) : undefined)
  return problem === undefined
    ? Effect.succeed(path)
    : Effect.fail(new UsageError({ subject: `${source} ${value}`, reason: problem }))
}

/** A database file that must already exist (inspect never creates one), and be SQLite's. */
export const existingFile = (sourced: Sourced): Effect.Effect<string, UsageError> =>
  sqliteFile(sourced, () => "no such file (inspect never creates a database)")

/**
 * Why the SQLite file at `path` is another program's: it has tables, and is not a kwil-listeners
 * database (see `Migrations.isOurs`). Opened read-only, for this question only.
 */
const foreignDatabase = (path: string): string | undefined => {
  let db: InstanceType<typeof Database> | undefined
  try {
    db = new Database(path, { readonly: true })
    const tables = (db.prepare(Migrations.ownershipQueries.tables).all() as Array<{ name: string }>).map((r) => r.name)
    const recorded = tables.includes(migrationsTable)
      ? db.prepare(Migrations.ownershipQueries.recorded).all() as Array<Migrations.Recorded>
      : []
    return tables.length === 0 || Migrations.isOurs(tables, recorded)
      ? undefined
      : `is another program's SQLite database (tables ${tables.join(", ")}): give a new file, or one a ` +
        `kwil-listeners node made`
  } catch (e) {
    return `cannot be read: ${e instanceof Error ? e.message : String(e)}`
  } finally {
    db?.close()
  }
}

/**
 * A node database to create or open: its directory must exist, and a file already there must be
 * SQLite's (or empty) and hold no other program's tables, so a wrong path is refused before
 * anything else is done (and another program's database is never written to).
 */
export const databaseFile = (sourced: Sourced): Effect.Effect<string, UsageError> =>
  sqliteFile(sourced, (path) => {
    const dir = dirname(path)
    return existsSync(dir) && statSync(dir).isDirectory() ? undefined : `the directory ${dir} does not exist`
  }, foreignDatabase)

// --- the eth_deposits section -----------------------------------------------------------------

/** The `listen` flags that set `eth_deposits` keys, and the key each sets. */
export const sectionFlags = [
  { flag: "rpc", key: "rpc_provider" },
  { flag: "contract", key: "contract_address" },
  { flag: "from-block", key: "starting_height" },
  { flag: "confirmations", key: "required_confirmations" },
  { flag: "finality", key: "finality" }
] as const satisfies ReadonlyArray<{ readonly flag: string; readonly key: Key }>

export type SectionFlag = typeof sectionFlags[number]["flag"]

/** The `eth_deposits` section as the listener gets it, and where each key came from. */
export interface ResolvedSection {
  readonly section: Readonly<Record<string, string>>
  readonly sources: Readonly<Record<string, string>>
  readonly config: EthDepositsConfig
}

/**
 * Builds the `eth_deposits` section from the flags (`Option.none` when not given), their
 * environment variables and the config file (if any), then validates it. Fails with a
 * `UsageError` naming the flag, variable or file key of the first bad value, or the config file's
 * own error.
 */
export const ethDepositsSection = (
  flags: Readonly<Record<SectionFlag, Option.Option<string>>>,
  configFlag: Option.Option<string>
): Effect.Effect<ResolvedSection, UsageError | ConfigFileError> =>
  Effect.gen(function*() {
    const section: Record<string, string> = {}
    const sources: Record<string, string> = {}
    const file = yield* flagOrEnv("config", configFlag)
    if (Option.isSome(file)) {
      const path = file.value.value
      const sections = yield* loadConfigFile(path)
      for (const [key, value] of Object.entries(sections[sectionName] ?? {})) {
        section[key] = value
        sources[key] = `config file ${path}: ${sectionName}.${key}`
      }
    }
    /** Where each key came from: 0 the file, 1 an environment variable, 2 a flag. */
    const rank: Record<string, number> = Object.fromEntries(Object.keys(section).map((key) => [key, 0]))
    for (const { flag, key } of sectionFlags) {
      const given = yield* flagOrEnv(flag, flags[flag])
      if (Option.isSome(given)) {
        section[key] = given.value.value
        sources[key] = given.value.source
        rank[key] = given.value.source.startsWith("--") ? 2 : 1
      }
    }
    // A number of confirmations given above the `finality` tag (`--confirmations` over a file's
    // `finality = "finalized"`) is what the operator means now: it beats the tag, as a flag beats
    // the file, instead of being ignored with a warning.
    const confirmationsRank = rank["required_confirmations"]
    if (confirmationsRank !== undefined && rank["finality"] !== undefined && confirmationsRank > rank["finality"]) {
      section["finality"] = "confirmations"
      sources["finality"] = sources["required_confirmations"]!
    }
    const config = yield* decodeEthDepositsConfig(section).pipe(
      Effect.mapError((e) => toUsageError(e, sources))
    )
    return { section, sources, config }
  })

/** Rewrites an `InvalidConfig` so it names where the value came from. */
const toUsageError = (e: InvalidConfig, sources: Readonly<Record<string, string>>): UsageError => {
  const flag = sectionFlags.find((f) => f.key === e.key)?.flag
  const source = sources[e.key]
  if (source === undefined) {
    // Missing: say every way to set it.
    const ways = [
      ...(flag === undefined ? [] : [`--${flag}`, envName(flag)]),
      `${e.key} under [app.extensions.${e.section}] in the --config file`
    ]
    return new UsageError({
      subject: flag === undefined ? `${e.section}.${e.key}` : `--${flag}`,
      reason: `${e.reason.replace(/^is required: /, "missing: ")}; set it with ${ways.join(", or ")}`
    })
  }
  return new UsageError({
    subject: source,
    reason: e.value === undefined ? e.reason : `${JSON.stringify(e.value)} ${e.reason}`
  })
}
