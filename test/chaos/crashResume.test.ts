/**
 * Chaos 1, crash and resume: `kwil-listeners listen` as a child process (`node bin/kwil-listeners.js`)
 * against an anvil holding a few thousand deposits (behind a proxy that caps `eth_getLogs` ranges
 * and answers in 10 ms), SIGKILLed at random moments of its catch-up (every other kill after a
 * random number of printed deposits, the others at a random time after it starts following), at
 * least ten times, restarted on the same database each time. After every kill the database passes
 * `PRAGMA integrity_check` and holds exactly the chain's deposits up to its checkpoint (the
 * events and the checkpoint agree); at the end a `--once` run completes and the stored events
 * equal the reference set read straight from the chain: none lost, none twice.
 */
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Deferred, Effect, Option } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Contracts from "../../src/extensions/contracts/index.js"
import * as EscrowChain from "../support/EscrowChain.js"
import * as RpcProxy from "../support/RpcProxy.js"
import * as Chaos from "./support/Chaos.js"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bin = join(root, "bin/kwil-listeners.js")
const kills = 10
const confirmations = 2n

const cleanEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KWIL_LISTENERS_")))

/**
 * Runs `listen` until `kill` says so (SIGKILL) or it exits; returns how it ended. `afterMillis`
 * counts from the listener's "following deposits" log line (the start of the catch-up, past the
 * process's own start-up and the listener's chain id check); any run is killed after 20 seconds
 * at the latest.
 */
const listen = (args: ReadonlyArray<string>, kill: { readonly afterLines?: number; readonly afterMillis?: number }) =>
  Effect.gen(function*() {
    const ended = yield* Deferred.make<{ readonly code: number | null; readonly signal: string | null; readonly lines: number; readonly stderr: string }>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, [bin, "listen", ...args], { cwd: root, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] })),
      (c: ChildProcess) => Effect.sync(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"))
    )
    let lines = 0
    let stderr = ""
    let timer: ReturnType<typeof setTimeout> | undefined
    const onOutput = (d: Buffer) => {
      for (const line of d.toString().split("\n")) {
        if (line.startsWith("{")) lines++
        if (timer === undefined && kill.afterMillis !== undefined && line.includes("following deposits")) {
          timer = setTimeout(() => child.kill("SIGKILL"), kill.afterMillis)
        }
      }
      if (kill.afterLines !== undefined && lines >= kill.afterLines) child.kill("SIGKILL")
    }
    child.stdout?.on("data", onOutput)
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-3000)
      onOutput(d)
    })
    child.once("close", (code, signal) => Deferred.unsafeDone(ended, Effect.succeed({ code, signal, lines, stderr })))
    const cap = setTimeout(() => child.kill("SIGKILL"), 20_000)
    const result = yield* Deferred.await(ended).pipe(
      Effect.timeoutFail({ duration: "90 seconds", onTimeout: () => new Error(`listen did not end: ${stderr}`) }),
      Effect.ensuring(Effect.sync(() => {
        clearTimeout(timer)
        clearTimeout(cap)
      }))
    )
    return result
  })

/** integrity_check and the checkpoint height, read with a plain connection. */
const inspect = (db: string) => {
  const conn = new Database(db)
  try {
    const integrity = (conn.prepare("PRAGMA integrity_check").all() as Array<Record<string, unknown>>).map((r) => Object.values(r)[0])
    return { integrity }
  } finally {
    conn.close()
  }
}

describe("chaos: crash and resume", () => {
  it.scopedLive(`listen killed ${kills} times at random moments of a catch-up of a few thousand deposits ends with exactly the chain's deposits`, () =>
    Effect.gen(function*() {
      const r = yield* Chaos.seed("crash and resume")
      const chain = yield* EscrowChain.make({}, 10n ** 15n)
      const made = yield* Chaos.makeDeposits(chain, r, 2_500, { maxPerTx: 40, maxGap: 4 })
      yield* chain.anvil.mine(Number(confirmations))
      const head = yield* chain.anvil.blockNumber
      const logs = yield* Effect.promise(() =>
        chain.anvil.publicClient.getLogs({ address: chain.deployment.escrow, event: Contracts.creditEvent, fromBlock: chain.deployment.escrowBlock, toBlock: head })
      )
      const want = yield* Chaos.reference(chain, head - confirmations)
      expect(want.length).toBe(made)
      const blockOf = new Map(logs.map((l) => [Chaos.keyOf({ txHash: l.transactionHash, logIndex: l.logIndex }), l.blockNumber] as const))

      const dir = yield* Chaos.tempDir("chaos-crash-")
      const db = join(dir, "node.db")
      const config = join(dir, "config.toml")
      // Small ranges: the catch-up takes many batches (many transactions to be killed in). A
      // provider that caps eth_getLogs at 8 blocks (in QuickNode's words) keeps them small, and
      // answers its other calls in 10 ms: a catch-up then lasts long enough for kills at random
      // times in its first 250 ms, or after up to 80 printed deposits, to fall inside it.
      writeFileSync(config, `[app.extensions.eth_deposits]\nblock_sync_chunk_size = "4"\n`)
      const provider = yield* RpcProxy.make(
        chain.anvil.httpUrl,
        RpcProxy.rangeCap("quicknode", { maxRange: 8 }),
        RpcProxy.always(RpcProxy.Fault.Delay({ millis: 10 }))
      )
      const args = [
        "--json", "--config", config,
        "--rpc", provider.url,
        "--contract", chain.deployment.escrow,
        "--from-block", String(chain.deployment.escrowBlock),
        "--confirmations", String(confirmations),
        "--db", db
      ]

      let before = 0
      let midway = 0
      for (let i = 0; i < kills; i++) {
        // Every other kill after a random number of printed deposits (inside the catch-up), the
        // others at a random time after the listener starts following: often in its start-up (its
        // first calls and first batch take a few hundred ms here), sometimes in a batch.
        const kill = i % 2 === 0 ? { afterLines: r.int(1, 80) } : { afterMillis: r.int(0, 400) }
        const run = yield* listen(args, kill)
        const { integrity } = inspect(db)
        const s = yield* Chaos.stored(db)
        const height = Option.match(s.checkpoint, { onNone: () => chain.deployment.escrowBlock - 1n, onSome: (c) => c.height })
        // eslint-disable-next-line no-console
        console.log(
          `[chaos] crash ${i + 1}: ${JSON.stringify(kill)} -> ${run.signal ?? `exit ${run.code}`} after ${run.lines} printed; ` +
            `stored ${s.deposits.length}, checkpoint ${height}`
        )
        expect(run.signal === "SIGKILL" || run.code === 0, run.stderr).toBe(true)
        expect(integrity).toEqual(["ok"])
        // Events and checkpoint agree: exactly the chain's deposits up to the checkpoint.
        const upTo = want.filter((p) => blockOf.get(Chaos.keyOf(p))! <= height)
        expect(Chaos.canonical(s.deposits)).toEqual(Chaos.canonical(upTo))
        expect(s.deposits.length).toBeGreaterThanOrEqual(before)
        before = s.deposits.length
        if (s.deposits.length > 0 && s.deposits.length < want.length) midway++
      }
      // The kills fell inside the catch-up (not all before its first batch or after its end).
      expect(midway).toBeGreaterThanOrEqual(kills / 2)

      const last = yield* listen(["--once", ...args], {})
      expect(last.code, last.stderr).toBe(0)
      const s = yield* Chaos.stored(db)
      expect(new Set(s.ids).size).toBe(s.ids.length)
      expect(s.deposits.length).toBe(want.length)
      expect(Chaos.canonical(s.deposits)).toEqual(Chaos.canonical(want))
      expect(inspect(db).integrity).toEqual(["ok"])
    }), 200_000)
})
