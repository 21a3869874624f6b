/**
 * Loads listener config from a TOML file in Kwil's layout: each `[app.extensions.<name>]` table is
 * one listener's section, flattened to string to string as Kwil hands it to listeners. Numbers
 * become decimal strings, booleans `true`/`false`, arrays of scalars comma-joined (so
 * `rpc_provider = ["https://a", "wss://b"]` works), dates ISO 8601. Everything else in the file is
 * ignored. A file without `app.extensions` configures no listener (they idle, as in Kwil).
 */
import { readFile } from "node:fs/promises"
import { Data, Effect, Either } from "effect"
import { parse, TomlDate, TomlError, type TomlTable, type TomlValue } from "smol-toml"

/** Listener name to its section. */
export type ExtensionsConfig = Readonly<Record<string, Readonly<Record<string, string>>>>

/** The file cannot be read (missing, a directory, no permission). */
export class ConfigFileUnreadable extends Data.TaggedError("ConfigFileUnreadable")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `config file ${this.path}: cannot be read: ${this.reason}`
  }
}

/** The file is not valid TOML; `line` and `column` are 1-based. */
export class ConfigFileSyntaxError extends Data.TaggedError("ConfigFileSyntaxError")<{
  readonly path: string
  readonly line: number
  readonly column: number
  readonly reason: string
}> {
  override get message(): string {
    return `config file ${this.path}:${this.line}:${this.column}: invalid TOML: ${this.reason}`
  }
}

/** Valid TOML, but not Kwil's layout; `key` is the dotted path of the offending entry. */
export class ConfigFileInvalid extends Data.TaggedError("ConfigFileInvalid")<{
  readonly path: string
  readonly key: string
  readonly reason: string
}> {
  override get message(): string {
    return `config file ${this.path}: ${this.key} ${this.reason}`
  }
}

export type ConfigFileError = ConfigFileUnreadable | ConfigFileSyntaxError | ConfigFileInvalid

const isTable = (v: TomlValue | undefined): v is TomlTable =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof TomlDate)

type Scalar = string | number | bigint | boolean | TomlDate

const scalar = (v: TomlValue): v is Scalar => !Array.isArray(v) && !isTable(v)

const showScalar = (v: Scalar): string => (v instanceof TomlDate ? v.toISOString() : String(v))

/** One value as Kwil's string form, or why it has none. */
const flatten = (v: TomlValue): Either.Either<string, string> => {
  if (scalar(v)) return Either.right(showScalar(v))
  if (isTable(v)) return Either.left("is a table; a listener's values must be strings, numbers, booleans or arrays of them")
  const parts: Array<string> = []
  for (const item of v) {
    if (!scalar(item)) return Either.left("is an array holding arrays or tables; only arrays of strings, numbers or booleans are accepted")
    const s = showScalar(item)
    if (s.includes(",")) return Either.left(`is an array with an element containing a comma (${JSON.stringify(s)}), which cannot be joined unambiguously`)
    parts.push(s)
  }
  return Either.right(parts.join(","))
}

/** Extracts the `[app.extensions.*]` sections from parsed TOML. */
const extensions = (path: string, doc: TomlTable): Either.Either<ExtensionsConfig, ConfigFileInvalid> => {
  const invalid = (key: string, reason: string) => Either.left(new ConfigFileInvalid({ path, key, reason }))
  const app = doc["app"]
  if (app === undefined) return Either.right({})
  if (!isTable(app)) return invalid("app", "is not a table (expected [app.extensions.<name>] sections)")
  const exts = app["extensions"]
  if (exts === undefined) return Either.right({})
  if (!isTable(exts)) return invalid("app.extensions", "is not a table (expected [app.extensions.<name>] sections)")
  const out: Record<string, Record<string, string>> = {}
  for (const [name, sectionValue] of Object.entries(exts)) {
    const where = `app.extensions.${name}`
    if (!isTable(sectionValue)) return invalid(where, "is not a table (write it as a [" + where + "] section)")
    const values: Record<string, string> = {}
    for (const [key, value] of Object.entries(sectionValue)) {
      const flat = flatten(value)
      if (Either.isLeft(flat)) return invalid(`${where}.${key}`, flat.left)
      values[key] = flat.right
    }
    out[name] = values
  }
  return Either.right(out)
}

/**
 * Parses TOML text (`path` only names it in errors). Unsafe keys (`__proto__`, `constructor`) are
 * refused as syntax errors so no section can touch an object prototype.
 */
export const parseConfigToml = (
  text: string,
  path = "<inline>"
): Either.Either<ExtensionsConfig, ConfigFileSyntaxError | ConfigFileInvalid> => {
  let doc: TomlTable
  try {
    doc = parse(text, { integersAsBigInt: "asNeeded", useLegacyDate: true, unsafeKeyBehaviour: "throw" })
  } catch (e) {
    if (e instanceof TomlError) {
      const reason = (e.message.split("\n")[0] ?? "").replace(/^Invalid TOML document:\s*/, "")
      return Either.left(new ConfigFileSyntaxError({ path, line: e.line, column: e.column, reason }))
    }
    return Either.left(new ConfigFileSyntaxError({ path, line: 1, column: 1, reason: String(e) }))
  }
  return extensions(path, doc)
}

const describeReadError = (e: unknown): string => {
  const code = typeof e === "object" && e !== null && "code" in e ? String(e.code) : undefined
  switch (code) {
    case "ENOENT":
      return "no such file (ENOENT)"
    case "EISDIR":
      return "it is a directory (EISDIR)"
    case "EACCES":
    case "EPERM":
      return `permission denied (${code})`
    default:
      return e instanceof Error ? e.message : String(e)
  }
}

/** Reads and parses a TOML config file into listener sections. */
export const loadConfigFile = (path: string): Effect.Effect<ExtensionsConfig, ConfigFileError> =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (e) => new ConfigFileUnreadable({ path, reason: describeReadError(e) })
  }).pipe(
    Effect.flatMap((text) => parseConfigToml(text, path)),
    Effect.withSpan("configFile.load", { attributes: { path } })
  )
