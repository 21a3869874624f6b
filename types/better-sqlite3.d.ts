/** The few better-sqlite3 calls made directly (the benchmarks' raw baselines, the CLI's database check, tests): the package ships no types, and @types is not installed. */
declare module "better-sqlite3" {
  interface RunResult {
    readonly changes: number
    readonly lastInsertRowid: number | bigint
  }
  interface Statement {
    run(...params: ReadonlyArray<unknown>): RunResult
    all(...params: ReadonlyArray<unknown>): Array<unknown>
  }
  interface Database {
    prepare(sql: string): Statement
    exec(sql: string): Database
    pragma(source: string): unknown
    transaction<F extends (...args: Array<any>) => unknown>(fn: F): F
    close(): void
  }
  interface DatabaseConstructor {
    new (filename: string, options?: { readonly readonly?: boolean; readonly timeout?: number }): Database
  }
  const Database: DatabaseConstructor
  export default Database
}
