/**
 * Where the devnet's validators keep their SQLite files: a directory the user names (kept after
 * the run, to inspect), or a fresh temporary one removed when the devnet stops.
 *
 * A named directory that already holds validator databases is refused: every devnet starts a new
 * chain, and checkpoints and events from an earlier chain would not match it.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Data, Effect, type Scope } from "effect"

/** The data directory cannot be used. */
export class DataDirError extends Data.TaggedError("DataDirError")<{
  readonly dir: string
  readonly reason: string
}> {
  override get message() {
    return `--data-dir ${this.dir}: ${this.reason}`
  }
}

/** A validator's database file name. */
export const databaseFile = (identity: string): string => `${identity}.db`

const isDatabase = (name: string) => /^validator-\d+\.db(-wal|-shm)?$/.test(name)

/**
 * Why `dir` cannot be the data directory, or `undefined` when it can (as far as can be told
 * without creating it): it is not a directory, or it holds an earlier devnet's databases. Checked
 * with the flags, before anything starts, and again by `acquire`.
 */
export const problem = (dir: string): string | undefined => {
  const path = resolve(dir)
  try {
    if (!existsSync(path)) return undefined
    if (!statSync(path).isDirectory()) return "it is not a directory"
    const taken = readdirSync(path).filter(isDatabase)
    return taken.length === 0 ? undefined :
      `it already holds ${taken.join(", ")} from an earlier devnet; each devnet starts a new chain, ` +
        `so remove those files or choose another directory`
  } catch (e) {
    return `it cannot be read: ${e instanceof Error ? e.message : String(e)}`
  }
}

/**
 * The directory to use: `dir` (created if missing, kept) or a temp dir removed with the scope.
 * The temp dir is acquired before the validators, so it is removed after their files are closed.
 */
export const acquire = (dir: string | undefined): Effect.Effect<string, DataDirError, Scope.Scope> =>
  dir === undefined
    ? Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "kwil-devnet-"))),
      (made) => Effect.sync(() => rmSync(made, { recursive: true, force: true }))
    )
    : Effect.try({
      try: () => {
        const refused = problem(dir)
        if (refused !== undefined) throw new Error(refused)
        const path = resolve(dir)
        mkdirSync(path, { recursive: true })
        return path
      },
      catch: (e) => new DataDirError({ dir, reason: e instanceof Error ? e.message : String(e) })
    })
