/**
 * The CLI as a user runs it: `node bin/kwil-listeners.js ...` in a child process (killed by a
 * finalizer if a test ends first), against a real anvil with the test escrow for `listen` and
 * `inspect`, and without a chain for the bad-input cases (exit 2, one line naming the problem).
 */
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Duration, Effect, Layer, Schedule } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import type { Log } from "viem"
import * as Node from "../../layers/Node.js"
import * as Anvil from "../../src/devnet/Anvil.js"
import * as EventId from "../../src/events/EventId.js"
import * as Contracts from "../../src/extensions/contracts/index.js"
import { CreditAccount } from "../../src/extensions/creditAccount.js"
import * as EscrowChain from "../support/EscrowChain.js"

const root = resolve(import.meta.dirname, "../..")
const bin = join(root, "bin/kwil-listeners.js")

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The environment without any KWIL_LISTENERS_* of the machine running the tests. */
const cleanEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KWIL_LISTENERS_")))

/** Runs the CLI to its end (killed after `timeout`, or when the test's scope closes first). */
const cli = (args: ReadonlyArray<string>, options: { readonly env?: Record<string, string>; readonly timeout?: Duration.DurationInput } = {}) =>
  Effect.acquireUseRelease(
    Effect.sync(() =>
      spawn(process.execPath, [bin, ...args], { cwd: root, env: { ...cleanEnv(), ...options.env }, stdio: ["ignore", "pipe", "pipe"] })
    ),
    (child) =>
      Effect.async<Run>((resume) => {
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
        child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
      }).pipe(
        Effect.timeoutFail({
          duration: options.timeout ?? Duration.seconds(90),
          onTimeout: () => new Error(`kwil-listeners ${args.join(" ")} did not finish in time`)
        }),
        Effect.orDie
      ),
    (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
  )

/** A CLI left running: its output so far, a wait for a line, and a signal. Killed when the scope closes. */
const cliRunning = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, [bin, ...args], { cwd: root, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] })),
      (c) => Effect.sync(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"))
    )
    const out = { stdout: "", stderr: "" }
    child.stdout.on("data", (d: Buffer) => (out.stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out.stderr += d.toString()))
    const exited = Effect.async<number | null>((resume) => {
      if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
      child.on("exit", (code) => resume(Effect.succeed(code)))
    })
    /** Polls the output until `pattern` shows up in it. */
    const waitFor = (stream: "stdout" | "stderr", pattern: RegExp) =>
      Effect.suspend(() => {
        const m = pattern.exec(out[stream])
        return m === null ? Effect.fail("not yet" as const) : Effect.succeed(m)
      }).pipe(
        Effect.retry(Schedule.spaced("100 millis")),
        Effect.timeoutFail({ duration: "90 seconds", onTimeout: () => new Error(`no ${pattern} on ${stream}:\n${out.stderr}`) }),
        Effect.orDie
      )
    return { child, out, exited, waitFor }
  })

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "kwil-cli-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const jsonLines = (out: string): ReadonlyArray<Record<string, unknown>> =>
  out.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Record<string, unknown>)

/** What `listen --json` must print for these receipts' Credit logs (without ids). */
const expected = (chainId: number, receipts: ReadonlyArray<{ readonly logs: ReadonlyArray<Log> }>) =>
  receipts.flatMap((r) =>
    Contracts.decodeCredits([...r.logs]).map((c) => ({
      type: "credit_account",
      chainId,
      account: c.from.toLowerCase(),
      amount: c.amount.toString(),
      txHash: c.transactionHash,
      logIndex: c.logIndex,
      block: Number(c.blockNumber)
    }))
  )

/** Orders printed or expected deposits by transaction and log index. */
const byLog = (a: object, b: object) => {
  const key = (x: object) => {
    const r = x as Record<string, unknown>
    return `${String(r["txHash"])}:${String(r["logIndex"]).padStart(4, "0")}`
  }
  return key(a).localeCompare(key(b))
}

/** One test chain: deposits mined, two confirmations on top. */
const chainWithDeposits = Effect.gen(function*() {
  const chain = yield* EscrowChain.make()
  const receipts = [
    yield* Contracts.deposit(chain.clients, chain.deployment, 10n),
    yield* Contracts.depositMany(chain.clients, chain.deployment, 7n, 2n),
    yield* Contracts.depositBatch(chain.clients, chain.deployment, [1n, 2n, 3n])
  ]
  yield* chain.anvil.mine(2)
  return { chain, want: expected(chain.anvil.chainId, receipts) }
})

describe("kwil-listeners listen and inspect on anvil", () => {
  it.scopedLive("listen --once --json prints each deposit once and exits 0; inspect --json shows the same events", () =>
    Effect.gen(function*() {
      const { chain, want } = yield* chainWithDeposits
      const db = join(yield* tempDir, "node.db")
      const flags = [
        "--rpc", chain.anvil.httpUrl,
        "--contract", chain.deployment.escrow,
        "--from-block", String(chain.deployment.escrowBlock),
        "--confirmations", "2",
        "--db", db
      ]
      const first = yield* cli(["listen", "--once", "--json", ...flags])
      expect(first.stderr).not.toContain("kwil-listeners:")
      expect(first.code).toBe(0)
      const printed = jsonLines(first.stdout)
      expect(want).toHaveLength(6)
      expect([...printed].sort(byLog).map(({ id: _, ...rest }) => rest)).toEqual([...want].sort(byLog))
      expect(new Set(printed.map((p) => p["id"])).size).toBe(6)

      // With the default 12 confirmations this young chain has no confirmed block: said so.
      const young = yield* cli(["listen", "--once", ...flags.filter((f, i) => f !== "--confirmations" && flags[i - 1] !== "--confirmations")])
      expect(young.code).toBe(0)
      expect(young.stderr).toMatch(/nothing confirmed yet \(head \d+, 12 confirmations\)/)
      expect(young.stderr).not.toMatch(/block -\d/)

      // Again: resumes from its checkpoint, stores and prints nothing twice.
      const second = yield* cli(["listen", "--once", "--json", ...flags])
      expect(second.code).toBe(0)
      expect(second.stdout).toBe("")

      // Where printing stopped is kept: rows a stopped run stored but never printed (here, as if
      // it had printed two) are printed by the next run, and only those.
      const kv = (statement: (sql: SqlClient.SqlClient) => Effect.Effect<unknown, unknown>) =>
        Effect.scoped(Effect.flatMap(
          Effect.flatMap(Layer.build(Node.database(db)), (context) => Effect.provide(SqlClient.SqlClient, context)),
          statement
        ))
      const printedMark = kv((sql) => sql<{ value: Uint8Array }>`SELECT value FROM kv WHERE key = 'listen.printed'`)
      const mark = (yield* printedMark) as ReadonlyArray<{ value: Uint8Array }>
      expect(mark.map((r) => new TextDecoder().decode(r.value))).toEqual(["6"])
      yield* kv((sql) => sql`UPDATE kv SET value = ${new TextEncoder().encode("2")} WHERE key = 'listen.printed'`)
      const resumed = yield* cli(["listen", "--once", "--json", ...flags])
      expect(resumed.code).toBe(0)
      // Their blocks are known only from logs the run fetched itself (not in the body): null here.
      const withoutBlock = (rows: ReadonlyArray<Record<string, unknown>>) => rows.map(({ block: _, ...rest }) => rest)
      expect(withoutBlock(jsonLines(resumed.stdout))).toEqual(withoutBlock(printed.slice(2)))
      expect(jsonLines(resumed.stdout).map((r) => r["block"])).toEqual([null, null, null, null])
      expect(resumed.stderr).toContain("printed 4 deposits stored in")

      // The chain cut back below the stored checkpoint (a node re-syncing, or a dev chain rolled
      // back): said so, not a silent "caught up" to a head the checkpoint is past.
      yield* chain.anvil.rollback(3)
      const behind = yield* cli(["listen", "--once", ...flags])
      expect(behind.code).toBe(0)
      expect(behind.stderr).toMatch(/stored checkpoint, block \d+, is above the chain's head/)
      expect(behind.stdout).toBe("")
      yield* chain.anvil.mine(3)
      // Above the confirmed head only (more confirmations than the run that stored it): no alarm.
      const stricter = yield* cli(["listen", "--once", ...flags.map((f, i) => (flags[i - 1] === "--confirmations" ? "5" : f))])
      expect(stricter.code).toBe(0)
      expect(stricter.stderr).not.toContain("is above the chain's")

      // The same database over another chain: refused, not "caught up" (its checkpoint is past that chain's head).
      const other = yield* Anvil.make({ chainId: 5 })
      const foreign = yield* cli(["listen", "--once", ...flags.map((f) => (f === chain.anvil.httpUrl ? other.httpUrl : f))])
      expect(foreign.code).toBe(1)
      expect(foreign.stderr).toContain(`stored checkpoint is of chain ${chain.anvil.chainId}`)
      expect(foreign.stderr).toContain("but this run follows chain 5")
      expect(foreign.stderr).not.toContain("caught up")
      // A new chain of the same id, its escrow at the same address (a dev chain restarted): refused
      // too, by its genesis block, rather than "caught up" to a height it never had.
      const restarted = yield* EscrowChain.make()
      expect(restarted.deployment.escrow).toBe(chain.deployment.escrow)
      const again = yield* cli(["listen", "--once", ...flags.map((f) => (f === chain.anvil.httpUrl ? restarted.anvil.httpUrl : f))])
      expect(again.code).toBe(1)
      expect(again.stderr).toContain(`stored checkpoint is of chain ${chain.anvil.chainId} (genesis 0x`)
      expect(again.stderr).not.toContain("caught up")

      const inspected = yield* cli(["inspect", "--db", db, "--json"])
      expect(inspected.code).toBe(0)
      const report = JSON.parse(inspected.stdout) as {
        events: ReadonlyArray<{ id: string; type: string; payload: Record<string, unknown> }>
        checkpoints: ReadonlyArray<{ listener: string; key: string; value: unknown }>
        resolutions: ReadonlyArray<unknown>
        balances: ReadonlyArray<unknown>
      }
      expect(report.events.map((e) => ({ id: e.id, type: e.type, ...e.payload })).sort(byLog)).toEqual(
        [...printed].sort(byLog).map(({ block: _, ...rest }) => rest)
      )
      const head = yield* chain.anvil.blockNumber
      expect(report.checkpoints.find((c) => c.listener === "eth_deposits" && c.key === "checkpoint")?.value).toMatchObject({
        height: String(head - 2n)
      })
      expect(report.resolutions).toEqual([])
      expect(report.balances).toEqual([])

      // The text forms.
      const text = yield* cli(["inspect", "--db", db])
      expect(text.code).toBe(0)
      expect(text.stdout).toContain("events (6)")
      expect(text.stdout).toContain("balances (0)")

      // A checkpoint that is not UTF-8 (its source gone): refused with the key and a way out, and
      // nothing recorded (the source claim is rolled back with it).
      yield* kv((sql) => sql`UPDATE kv SET value = ${new Uint8Array([0xff, 0xfe])} WHERE key = 'checkpoint'`)
      yield* kv((sql) => sql`DELETE FROM kv WHERE key = 'source'`)
      const corrupt = yield* cli(["listen", "--once", ...flags])
      expect(corrupt.code).toBe(1)
      expect(corrupt.stderr).toContain(`stored "checkpoint" cannot be decoded`)
      expect(corrupt.stderr).not.toContain("caught up")
      const sources = yield* kv((sql) => sql`SELECT value FROM kv WHERE key = 'source'`)
      expect(sources).toEqual([])
    }), { timeout: 120_000 })

  it.scopedLive("environment variables and a TOML config file configure listen (flag > env > file)", () =>
    Effect.gen(function*() {
      const { chain, want } = yield* chainWithDeposits
      const dir = yield* tempDir
      const config = join(dir, "node.toml")
      // The file's confirmations (1000), or its finalized tag (anvil's is 64 blocks down, before
      // any deposit), would leave nothing confirmed: the environment's 2 confirmations win both.
      writeFileSync(config, [
        "[app.extensions.eth_deposits]",
        `rpc_provider = ["${chain.anvil.httpUrl}"]`,
        `contract_address = "0x0000000000000000000000000000000000000001"`,
        `starting_height = ${chain.deployment.escrowBlock}`,
        "required_confirmations = 1000",
        `finality = "finalized"`,
        ""
      ].join("\n"))
      const run = yield* cli(["listen", "--contract", chain.deployment.escrow], {
        env: {
          KWIL_LISTENERS_CONFIG: config,
          KWIL_LISTENERS_CONTRACT: "not-an-address", // the flag wins over it
          KWIL_LISTENERS_CONFIRMATIONS: "2",
          KWIL_LISTENERS_DB: join(dir, "env.db"),
          KWIL_LISTENERS_ONCE: "1",
          KWIL_LISTENERS_JSON: "true"
        }
      })
      expect(run.stderr).not.toContain("kwil-listeners:")
      expect(run.stderr).not.toContain("ignored")
      expect(run.code).toBe(0)
      expect(jsonLines(run.stdout).map(({ id: _, ...rest }) => rest).sort(byLog)).toEqual([...want].sort(byLog))
      expect(existsSync(join(dir, "env.db"))).toBe(true)
    }), { timeout: 120_000 })
})

describe("kwil-listeners listen, following", () => {
  it.scopedLive("prints a new deposit as it is confirmed, serves /health and /metrics, and stops on SIGINT with exit 0", () =>
    Effect.gen(function*() {
      const chain = yield* EscrowChain.make()
      const db = join(yield* tempDir, "node.db")
      const run = yield* cliRunning([
        "listen", "--json", "--metrics-port", "0", "--confirmations", "0", "--db", db,
        "--rpc", chain.anvil.httpUrl, "--contract", chain.deployment.escrow
      ])
      const url = (yield* run.waitFor("stderr", /serving (http:\/\/127\.0\.0\.1:\d+)\/metrics/))[1]!
      yield* run.waitFor("stderr", /following new blocks/)
      const health = yield* Effect.promise(() => fetch(`${url}/health`))
      expect(health.status).toBe(200)
      const receipt = yield* Contracts.deposit(chain.clients, chain.deployment, 42n)
      yield* run.waitFor("stdout", /"amount":"42"/)
      const metrics = yield* Effect.promise(() => fetch(`${url}/metrics`).then((r) => r.text()))
      expect(metrics).toMatch(/eth_deposits_checkpoint \d+/)
      expect(metrics).toMatch(/^listener_state\{[^}]*listener="eth_deposits"[^}]*state="running"[^}]*\} 1$/m)
      expect(metrics).toMatch(/^listener_state\{[^}]*listener="eth_deposits"[^}]*state="failed"[^}]*\} 0$/m)
      expect(metrics).toMatch(/^eth_follower_finality_violations_total(\{[^}]*\})? 0$/m)
      // A second run on the same database (by another name: a link) while this one runs:
      // refused, and it stored nothing; the lock leaves no journal beside it.
      const link = `${db}-link.db`
      symlinkSync(db, link)
      const second = yield* cli(["listen", "--once", "--confirmations", "0", "--db", link, "--rpc", chain.anvil.httpUrl, "--contract", chain.deployment.escrow])
      expect(second.code).toBe(1)
      expect(second.stderr).toContain(`${link} is in use by another listen run`)
      expect(second.stdout).toBe("")
      expect(existsSync(`${db}.lock-journal`)).toBe(false)
      run.child.kill("SIGINT")
      expect(yield* run.exited).toBe(0)
      expect(jsonLines(run.out.stdout)).toEqual([
        expect.objectContaining({ amount: "42", txHash: receipt.transactionHash, block: Number(receipt.blockNumber) })
      ])
      expect(run.out.stderr).toContain("printed 1 deposit stored in")
      // Its lock went with it: the next run goes on.
      const after = yield* cli(["listen", "--once", "--confirmations", "0", "--db", db, "--rpc", chain.anvil.httpUrl, "--contract", chain.deployment.escrow])
      expect(after.code).toBe(0)
    }), { timeout: 120_000 })
})

/** A node database holding `n` credit_account events, made with the node's own schema. */
const databaseWithEvents = (file: string, n: number) =>
  Effect.scoped(Effect.gen(function*() {
    const sql = yield* Effect.provide(SqlClient.SqlClient, yield* Layer.build(Node.database(file)))
    const bodies = yield* CreditAccount.encodeAll(Array.from({ length: n }, (_, i) => ({
      chainId: 31337n,
      account: `0x${(i + 1).toString(16).padStart(40, "0")}` as const,
      amount: BigInt(i + 1),
      txHash: `0x${(i + 1).toString(16).padStart(64, "0")}` as const,
      logIndex: 0
    })))
    yield* sql.withTransaction(Effect.forEach(bodies, (body) =>
      sql`INSERT INTO events (id, type, body, listener) VALUES (${EventId.make(CreditAccount.name, body)}, ${CreditAccount.name}, ${body}, 'eth_deposits')`, { discard: true }))
  }))

describe("kwil-listeners output through a pipe", () => {
  it.scopedLive("a reader slower than the command still gets all of its output before it exits", () =>
    Effect.gen(function*() {
      const db = join(yield* tempDir, "big.db")
      yield* databaseWithEvents(db, 20_000)
      const child = yield* Effect.acquireRelease(
        Effect.sync(() => spawn(process.execPath, [bin, "inspect", "--db", db, "--json"], { cwd: root, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] })),
        (c) => Effect.sync(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"))
      )
      // Nothing is read for a second: the command writes into a full pipe and ends meanwhile.
      child.stdout.pause()
      setTimeout(() => child.stdout.resume(), 1_000)
      const run = yield* Effect.async<Run>((resume) => {
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
        child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
      })
      expect(run.code).toBe(0)
      expect(run.stdout.length).toBeGreaterThan(1_000_000)
      expect((JSON.parse(run.stdout) as { events: ReadonlyArray<unknown> }).events).toHaveLength(20_000)
    }), { timeout: 120_000 })
})

describe("kwil-listeners devnet", () => {
  /** `devnet --follow` once its deposit is credited, and the pid of its one anvil. */
  const followingDevnet = Effect.gen(function*() {
    const run = yield* cliRunning(["devnet", "--follow", "--validators", "2", "--deposits", "1", "--block-time", "200ms", "--metrics-port", "0"])
    yield* run.waitFor("stdout", /credited/)
    const anvils = execFileSync("pgrep", ["-P", String(run.child.pid), "-f", "anvil"]).toString().trim().split("\n").map(Number)
    expect(anvils).toHaveLength(1)
    return { anvil: anvils[0]!, run }
  })

  it.scopedLive("devnet --follow stops cleanly on SIGINT: exit 0, its anvil gone", () =>
    Effect.gen(function*() {
      const { anvil, run } = yield* followingDevnet
      // Each validator's listeners in /metrics, by state.
      const url = (yield* run.waitFor("stdout", /(http:\/\/127\.0\.0\.1:\d+)\/metrics/))[1]!
      const metrics = yield* Effect.promise(() => fetch(`${url}/metrics`).then((r) => r.text()))
      for (const validator of ["validator-0", "validator-1"]) {
        const series = metrics.split("\n").filter((l) => l.startsWith("listener_state{") && l.includes(`validator="${validator}"`))
        expect(series.filter((l) => l.includes('listener="eth_deposits"')).length, metrics).toBe(4)
        expect(series.filter((l) => l.endsWith(" 1")).length).toBeGreaterThan(0)
      }
      run.child.kill("SIGINT")
      expect(yield* run.exited).toBe(0)
      expect(() => process.kill(anvil, 0)).toThrow()
    }), { timeout: 120_000 })

  it.scopedLive("devnet --follow whose reader goes away (| head) stops as on Ctrl-C: exit 0, its anvil gone, no EPIPE crash", () =>
    Effect.gen(function*() {
      const { anvil, run } = yield* followingDevnet
      run.child.stdout.destroy()
      expect(yield* run.exited).toBe(0)
      expect(run.out.stderr).not.toContain("EPIPE")
      expect(() => process.kill(anvil, 0)).toThrow()
    }), { timeout: 120_000 })

  it.scopedLive("devnet --follow | tee, Ctrl-C: the reader ends too, and the report written to it after the signal does not cut the cleanup short", () =>
    Effect.gen(function*() {
      const { anvil, run } = yield* followingDevnet
      run.child.kill("SIGINT")
      run.child.stdout.destroy()
      const signal = yield* Effect.async<NodeJS.Signals | null>((resume) => {
        if (run.child.exitCode !== null || run.child.signalCode !== null) return resume(Effect.succeed(run.child.signalCode))
        run.child.on("exit", (_, signal) => resume(Effect.succeed(signal)))
      })
      expect([signal, run.child.exitCode]).toEqual([null, 0])
      expect(() => process.kill(anvil, 0)).toThrow()
    }), { timeout: 120_000 })
})

describe("kwil-listeners bad input", () => {
  const contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
  const rpc = "http://127.0.0.1:1"

  it.scopedLive("exits 2 with one line naming the flag, variable or file and why", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const badToml = join(dir, "bad.toml")
      writeFileSync(badToml, "[app.extensions.eth_deposits]\nrpc_provider = \n")
      const usedDataDir = join(dir, "used")
      mkdirSync(usedDataDir)
      writeFileSync(join(usedDataDir, "validator-0.db"), "")
      // Another program's SQLite database, though it has a table of one of our names: never written to.
      const foreignDb = join(dir, "other.db")
      const tablesOf = (file: string) => {
        const db = new Database(file)
        try {
          return db.prepare("SELECT name FROM sqlite_master ORDER BY name").all()
        } finally {
          db.close()
        }
      }
      new Database(foreignDb).exec("CREATE TABLE t (x); CREATE TABLE accounts (x)").close()
      const cases: ReadonlyArray<{ args: ReadonlyArray<string>; env?: Record<string, string>; says: ReadonlyArray<string> }> = [
        { args: ["listen", "--rpc", rpc, "--contract", contract, "--db", foreignDb], says: ["--db", "other.db", "another program's SQLite database (tables accounts, t)"] },
        { args: ["listen", "--bogus"], says: ["--bogus"] },
        { args: ["listen", "--rpc", rpc, "--contract", "0x1234"], says: ["--contract", "0x1234", "20-byte hex address"] },
        { args: ["listen", "--rpc", rpc, "--contract", contract, "--confirmations", "-3"], says: ["--confirmations", "-3"] },
        { args: ["listen", "--rpc", rpc, "--contract", contract, "--confirmations", "lots"], says: ["--confirmations", "\"lots\"", "non-negative integer"] },
        { args: ["listen", "--contract", contract], says: ["--rpc", "missing", "KWIL_LISTENERS_RPC"] },
        { args: ["listen", "--config", join(dir, "nope.toml")], says: ["nope.toml", "no such file"] },
        { args: ["listen", "--config", badToml], says: ["bad.toml:2", "invalid TOML"] },
        { args: ["listen", "--rpc", rpc, "--contract", contract], env: { KWIL_LISTENERS_FINALITY: "soon" }, says: ["KWIL_LISTENERS_FINALITY", "soon"] },
        { args: ["listen", "--rpc", rpc, "--contract", contract, "--db", join(dir, "missing", "x.db")], says: ["--db", "does not exist"] },
        { args: ["inspect", "--db", join(dir, "none.db")], says: ["--db", "none.db", "no such file"] },
        { args: ["inspect", "--db", badToml], says: ["--db", "bad.toml", "is not a SQLite database"] },
        { args: ["listen", "--rpc", rpc, "--contract", contract, "--db", badToml], says: ["--db", "bad.toml", "is not a SQLite database"] },
        // A file that cannot be read (reading it fails with EIO): one line, not a stack trace.
        { args: ["listen", "--rpc", rpc, "--contract", contract, "--db", "/proc/self/mem"], says: ["--db", "/proc/self/mem", "cannot be read"] },
        { args: ["devnet", "--max-blocks", "5"], says: ["--max-blocks", "5 is too few", "the seat given back at block 12"] },
        { args: ["devnet", "--data-dir", badToml], says: ["--data-dir", "bad.toml", "is not a directory"] },
        { args: ["devnet"], env: { KWIL_LISTENERS_DATA_DIR: usedDataDir }, says: ["KWIL_LISTENERS_DATA_DIR", "already holds validator-0.db"] },
        { args: ["nonsense"], says: ["'nonsense' is not a command", "devnet", "listen"] }
      ]
      const runs = yield* Effect.forEach(cases, (c) => cli(c.args, c.env === undefined ? {} : { env: c.env }), { concurrency: 6 })
      expect(tablesOf(foreignDb)).toEqual([{ name: "accounts" }, { name: "t" }])
      runs.forEach((run, i) => {
        const c = cases[i]!
        const context = `${c.args.join(" ")} -> ${run.stderr}`
        expect(run.code, context).toBe(2)
        expect(run.stdout, context).toBe("")
        const lines = run.stderr.split("\n").filter((l) => l.trim() !== "")
        expect(lines, context).toHaveLength(1)
        expect(lines[0]).toMatch(/^kwil-listeners: /)
        for (const s of c.says) expect(lines[0], context).toContain(s)
      })
      // inspect never creates the database it was pointed at.
      expect(existsSync(join(dir, "none.db"))).toBe(false)
    }), { timeout: 300_000 })

  it.scopedLive("an RPC that cannot be reached: exit 1 with its reason, and no database left behind", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const config = join(dir, "node.toml")
      writeFileSync(config, [
        "[app.extensions.eth_deposits]",
        `rpc_provider = "${rpc}"`,
        `contract_address = "${contract}"`,
        "max_retries = 0",
        ""
      ].join("\n"))
      const db = join(dir, "new.db")
      const run = yield* cli(["listen", "--config", config, "--db", db])
      expect(run.code, run.stderr).toBe(1)
      expect(run.stderr).toMatch(/^kwil-listeners: .*127\.0\.0\.1:1/m)
      expect(existsSync(db)).toBe(false)
    }))

  it.scopedLive("any other failure exits 1 with its reason, also when the error keeps it in its cause (a SqlError)", () =>
    Effect.gen(function*() {
      const db = join(yield* tempDir, "broken.db")
      // SQLite's header, then garbage where its schema should be.
      yield* Effect.scoped(Effect.flatMap(
        Effect.flatMap(Layer.build(SqliteClient.layer({ filename: db })), (context) => Effect.provide(SqlClient.SqlClient, context)),
        (sql) => sql`CREATE TABLE events (x INTEGER)`
      ))
      const bytes = readFileSync(db)
      bytes.fill(0x5a, 100)
      writeFileSync(db, bytes)
      const run = yield* cli(["inspect", "--db", db])
      expect(run.code).toBe(1)
      expect(run.stderr.trim()).toBe("kwil-listeners: Failed to prepare statement: database disk image is malformed")
    }))
})
