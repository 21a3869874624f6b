/**
 * One `listen` run at a time on a database: a run holds an exclusive SQLite lock on `<db>.lock`
 * (an empty file left beside the database, after links are followed) for as long as it runs.
 * Two runs on one database would each store and print the other's deposits and move one print
 * mark. The operating system drops
 * the lock with the process however it ends, so a killed run never leaves it held.
 */
import Database from "better-sqlite3"
import { Data, Effect, type Scope } from "effect"
import { existsSync, realpathSync } from "node:fs"

/** Another run holds the database's lock. */
export class DatabaseInUse extends Data.TaggedError("DatabaseInUse")<{ readonly db: string }> {
  override get message() {
    return `${this.db} is in use by another listen run (it holds ${this.db}.lock): stop that one first, or give ` +
      `another --db`
  }
}

/** The lock file could not be made or opened (a directory that cannot be written, say). */
export class DatabaseLockFailed extends Data.TaggedError("DatabaseLockFailed")<{
  readonly db: string
  readonly reason: string
}> {
  override get message() {
    return `cannot lock ${this.db} (${this.db}.lock): ${this.reason}`
  }
}

/** Holds the lock of `db` until the scope closes. */
export const hold = (db: string): Effect.Effect<void, DatabaseInUse | DatabaseLockFailed, Scope.Scope> =>
  Effect.asVoid(Effect.acquireRelease(
    Effect.try({
      try: () => {
        // The database's own path: two names (a link) for one database take one lock.
        const lock = new Database(`${existsSync(db) ? realpathSync(db) : db}.lock`, { timeout: 0 })
        try {
          // No journal file: the lock is all this database is for.
          lock.pragma("journal_mode = MEMORY")
          lock.exec("BEGIN EXCLUSIVE")
        } catch (e) {
          lock.close()
          throw e
        }
        return lock
      },
      catch: (e) =>
        typeof e === "object" && e !== null && "code" in e && e.code === "SQLITE_BUSY"
          ? new DatabaseInUse({ db })
          : new DatabaseLockFailed({ db, reason: e instanceof Error ? e.message : String(e) })
    }),
    (lock) => Effect.sync(() => lock.close())
  ))
