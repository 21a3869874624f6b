/**
 * A real local Ethereum node for the devnet, the end-to-end tests and the benchmarks: anvil from
 * the `@foundry-rs/anvil` npm package (its per-platform binary; nothing is downloaded at run
 * time), run as a scoped resource on a free loopback port.
 *
 * The process is killed by the scope's finalizer on every exit path (SIGTERM, then SIGKILL after
 * a grace period), and by a `process.on("exit")` hook should the Node process end without
 * closing the scope. A Node process killed by an unhandled signal or SIGKILL cannot run either:
 * then the anvil process outlives it (run the devnet under `NodeRuntime.runMain`, which turns
 * SIGINT/SIGTERM into interruption, so the finalizer runs).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as path from "node:path"
import { Context, Data, Deferred, Duration, Effect, ExecutionStrategy, Exit, Layer, Schedule, Scope } from "effect"
import {
  type Account,
  type Chain,
  type Hex,
  type PublicClient,
  type TestClient,
  type Transport,
  type WalletClient,
  createPublicClient,
  createTestClient,
  createWalletClient,
  defineChain,
  http
} from "viem"
import { type HDAccount, mnemonicToAccount } from "viem/accounts"

/** Anvil's default mnemonic: its accounts are funded with `balance` ether each. */
export const defaultMnemonic = "test test test test test test test test test test test junk"

export interface AnvilOptions {
  /** Seconds between blocks (interval mining). Unset: a block per transaction (automine). */
  readonly blockTime?: number
  /** No automine and no interval mining: blocks only through `mine`. Overrides `blockTime`. */
  readonly noMining?: boolean
  /** Default 31337. */
  readonly chainId?: number
  /** Number of dev accounts (default 10). */
  readonly accounts?: number
  /** Mnemonic the dev accounts derive from (default: anvil's). */
  readonly mnemonic?: string
  /** Ether per dev account (default 10000). */
  readonly balance?: number
  /** Block gas limit (e.g. higher for log-heavy benchmarks). */
  readonly gasLimit?: bigint
  /** Slots in an epoch: `finalized` is two epochs behind `latest`, `safe` one (anvil's rule). */
  readonly slotsInAnEpoch?: number
  /** Pass `--silent` (default true); when false anvil's output is logged at debug level. */
  readonly silent?: boolean
  /** Further command line arguments, appended as given. */
  readonly extraArgs?: ReadonlyArray<string>
  /** The binary to run (default: the npm package's, or `$ANVIL_BINARY`). */
  readonly binary?: string
  /** How long anvil may take to answer `eth_chainId` (default 20 seconds). */
  readonly startTimeout?: Duration.DurationInput
  /** How long to wait after SIGTERM before SIGKILL (default 2 seconds). */
  readonly killGrace?: Duration.DurationInput
}

/** Anvil could not be found, started, or did not answer. */
export class AnvilStartError extends Data.TaggedError("AnvilStartError")<{
  readonly reason: string
  readonly output: string
}> {
  override get message() {
    const tail = this.output.trim() === "" ? "" : `; its output ended with:\n${this.output.trim()}`
    return `anvil did not start: ${this.reason}${tail}`
  }
}

/** A call to a running anvil failed. */
export class AnvilRpcError extends Data.TaggedError("AnvilRpcError")<{
  readonly method: string
  readonly cause: unknown
}> {
  override get message() {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `anvil ${this.method} failed: ${cause}`
  }
}

/** A transaction to include in the new branch of a reorg, and the block offset (from the common ancestor) it goes in. */
export interface ReorgTransaction {
  readonly tx: { readonly from: Hex; readonly to?: Hex; readonly value?: bigint; readonly data?: Hex; readonly gas?: bigint } | Hex
  /** 0 = the first new block. */
  readonly block: number
}

/** A running anvil. */
export interface AnvilInstance {
  readonly httpUrl: string
  readonly wsUrl: string
  readonly port: number
  readonly pid: number
  readonly chainId: number
  /** A viem chain for this node (id and URLs), for clients made elsewhere. */
  readonly chain: Chain
  /** The funded dev accounts, derived from the mnemonic. */
  readonly accounts: ReadonlyArray<HDAccount>
  /** A public client over HTTP with a short polling interval (50 ms). */
  readonly publicClient: PublicClient
  /** viem's test actions in anvil mode (mine, snapshot, setAutomine, ...). */
  readonly testClient: TestClient<"anvil">
  /** A wallet client signing with dev account `index` (default 0). */
  readonly walletClient: (index?: number) => WalletClient<Transport, Chain, Account>
  /**
   * Mines `blocks` blocks now (`anvil_mine`), `interval` seconds apart in timestamps. On anvil
   * 1.7.1 each block costs time growing with the chain's height (about 1 ms at 1,000 blocks,
   * 5 ms at 3,000; `--prune-history` roughly halves it): chains of 100,000 empty blocks are
   * slow to make this way.
   */
  readonly mine: (blocks: number, interval?: number) => Effect.Effect<void, AnvilRpcError>
  /** The current head number. */
  readonly blockNumber: Effect.Effect<bigint, AnvilRpcError>
  /** Snapshots the chain (`evm_snapshot`). An id is good for one revert: take a new one after (foundry #6463). */
  readonly snapshot: Effect.Effect<Hex, AnvilRpcError>
  /** Reverts to a snapshot (`evm_revert`): blocks after it are gone, the head goes back. */
  readonly revert: (id: Hex) => Effect.Effect<void, AnvilRpcError>
  /**
   * Replaces the last `depth` blocks with `depth` new ones (`anvil_reorg`), holding `txs` and
   * nothing else: the replaced blocks' transactions and logs leave the canonical chain (the
   * head number stays; every replaced block gets a new hash). Verified on anvil 1.7.1 by
   * `test/devnet/Anvil.test.ts`.
   */
  readonly reorg: (depth: number, txs?: ReadonlyArray<ReorgTransaction>) => Effect.Effect<void, AnvilRpcError>
  /** Removes the last `depth` blocks (`anvil_rollback`): the head goes back by `depth`. */
  readonly rollback: (depth: number) => Effect.Effect<void, AnvilRpcError>
  /** Any RPC method, untyped: for what the helpers above do not cover. */
  readonly request: (method: string, params?: ReadonlyArray<unknown>) => Effect.Effect<unknown, AnvilRpcError>
}

/** The running anvil as a service, for layers (the devnet, end-to-end tests). */
export class Anvil extends Context.Tag("kwil-listeners/Anvil")<Anvil, AnvilInstance>() {
  /** Starts anvil when the layer is built, stops it when the layer is released. */
  static readonly layer = (options: AnvilOptions = {}): Layer.Layer<Anvil, AnvilStartError> =>
    Layer.scoped(Anvil, make(options))
}

const platformPackages: Record<string, string> = {
  "linux-x64": "@foundry-rs/anvil-linux-amd64",
  "linux-arm64": "@foundry-rs/anvil-linux-arm64",
  "darwin-x64": "@foundry-rs/anvil-darwin-amd64",
  "darwin-arm64": "@foundry-rs/anvil-darwin-arm64",
  "win32-x64": "@foundry-rs/anvil-win32-amd64"
}

/** The anvil binary shipped by the npm package for this platform (not the `bin.mjs` wrapper: we need the real pid). */
export const resolveBinary = (): Effect.Effect<string, AnvilStartError> =>
  Effect.suspend(() => {
    const fromEnv = process.env["ANVIL_BINARY"]
    if (fromEnv !== undefined && fromEnv !== "") return Effect.succeed(fromEnv)
    const pkg = platformPackages[`${process.platform}-${process.arch}`]
    if (pkg === undefined) {
      return Effect.fail(new AnvilStartError({ reason: `no anvil npm package for ${process.platform}-${process.arch}; set ANVIL_BINARY`, output: "" }))
    }
    return Effect.try({
      try: () => {
        const dir = path.dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`))
        const bin = path.join(dir, "bin", process.platform === "win32" ? "anvil.exe" : "anvil")
        if (!existsSync(bin)) throw new Error(`${bin} is missing`)
        return bin
      },
      catch: (cause) =>
        new AnvilStartError({
          reason: `${pkg} is not installed (${cause instanceof Error ? cause.message : String(cause)}); run npm ci`,
          output: ""
        })
    })
  })

/** A loopback port that was free a moment ago (bind port 0, read it, close). */
export const freePort: Effect.Effect<number, Error> = Effect.async<number, Error>((resume) => {
  const server = net.createServer()
  server.unref()
  server.once("error", (e) => resume(Effect.fail(e)))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(port > 0 ? Effect.succeed(port) : Effect.fail(new Error("no port assigned"))))
  })
})

const buildArgs = (options: AnvilOptions, port: number): Array<string> => {
  const args = ["--host", "127.0.0.1", "--port", String(port)]
  if (options.noMining === true) args.push("--no-mining")
  else if (options.blockTime !== undefined) args.push("--block-time", String(options.blockTime))
  if (options.chainId !== undefined) args.push("--chain-id", String(options.chainId))
  if (options.accounts !== undefined) args.push("--accounts", String(options.accounts))
  if (options.mnemonic !== undefined) args.push("--mnemonic", options.mnemonic)
  if (options.balance !== undefined) args.push("--balance", String(options.balance))
  if (options.gasLimit !== undefined) args.push("--gas-limit", options.gasLimit.toString())
  if (options.slotsInAnEpoch !== undefined) args.push("--slots-in-an-epoch", String(options.slotsInAnEpoch))
  if (options.silent ?? true) args.push("--silent")
  args.push(...(options.extraArgs ?? []))
  return args
}

/** Keeps the last few KB of the child's output, for error messages. */
const outputTail = (child: ChildProcess, onLine: (line: string) => void) => {
  let tail = ""
  const take = (chunk: Buffer) => {
    const text = chunk.toString("utf8")
    tail = (tail + text).slice(-4000)
    for (const line of text.split("\n")) if (line.trim() !== "") onLine(line)
  }
  child.stdout?.on("data", take)
  child.stderr?.on("data", take)
  return () => tail
}

const rpcCall = (url: string, method: string, params: ReadonlyArray<unknown> = []) =>
  Effect.tryPromise({
    try: async (signal) => {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
        signal
      })
      const body = (await res.json()) as { result?: unknown; error?: { code: number; message: string } }
      if (body.error !== undefined) throw new Error(`${body.error.message} (code ${body.error.code})`)
      return body.result
    },
    catch: (cause) => new AnvilRpcError({ method, cause })
  })

/** A process that is alive: `kill(pid, 0)` succeeds. */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

interface Spawned {
  readonly child: ChildProcess
  readonly pid: number
  readonly exited: Deferred.Deferred<number | string>
  readonly output: () => string
}

/** Spawns anvil on `port`; fails if it exits or does not answer `eth_chainId` in time. */
const spawnOnce = (
  binary: string,
  options: AnvilOptions,
  port: number
): Effect.Effect<Spawned, AnvilStartError, Scope.Scope> =>
  Effect.gen(function*() {
    const args = buildArgs(options, port)
    const exited = yield* Deferred.make<number | string>()
    const grace = Duration.decode(options.killGrace ?? "2 seconds")

    const spawned = yield* Effect.acquireRelease(
      Effect.async<Spawned, AnvilStartError>((resume) => {
        const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] })
        const output = outputTail(child, (line) => {
          if (options.silent === false) Effect.runFork(Effect.logDebug(line).pipe(Effect.annotateLogs({ anvil: port })))
        })
        child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed(code ?? signal ?? "unknown")))
        child.once("error", (e) => {
          Deferred.unsafeDone(exited, Effect.succeed(e.message))
          resume(Effect.fail(new AnvilStartError({ reason: `spawn ${binary}: ${e.message}`, output: output() })))
        })
        child.once("spawn", () => {
          // Last resort: the Node process ends without closing our scope.
          const onExit = () => child.kill("SIGKILL")
          process.once("exit", onExit)
          child.once("exit", () => process.removeListener("exit", onExit))
          resume(Effect.succeed({ child, pid: child.pid ?? -1, exited, output }))
        })
      }),
      ({ child, pid }) =>
        Effect.gen(function*() {
          if (yield* Deferred.isDone(exited)) return
          child.kill("SIGTERM")
          const graceful = yield* Deferred.await(exited).pipe(Effect.timeout(grace), Effect.option)
          if (graceful._tag === "None") {
            yield* Effect.logWarning("anvil ignored SIGTERM, sending SIGKILL").pipe(Effect.annotateLogs({ pid }))
            child.kill("SIGKILL")
            yield* Deferred.await(exited).pipe(Effect.timeout("5 seconds"), Effect.ignore)
          }
          yield* Effect.logDebug("anvil stopped").pipe(Effect.annotateLogs({ pid, port }))
        })
    )

    const url = `http://127.0.0.1:${port}`
    const answered = rpcCall(url, "eth_chainId").pipe(
      Effect.timeout("1 second"),
      Effect.retry(Schedule.spaced("50 millis")),
      Effect.mapError((e) => new AnvilStartError({ reason: String(e), output: spawned.output() })),
      Effect.timeoutFail({
        duration: options.startTimeout ?? "20 seconds",
        onTimeout: () => new AnvilStartError({ reason: `no answer to eth_chainId on ${url}`, output: spawned.output() })
      })
    )
    const died = Deferred.await(exited).pipe(
      Effect.flatMap((code) =>
        Effect.fail(new AnvilStartError({ reason: `anvil exited (${code}) during start`, output: spawned.output() }))
      )
    )
    yield* Effect.raceFirst(answered, died)
    return spawned
  })

/**
 * Starts anvil on a free loopback port and waits until it answers. Closing the scope stops it.
 * A port taken between choosing and binding (another process was quicker) is retried on a new one.
 */
export const make = (options: AnvilOptions = {}): Effect.Effect<AnvilInstance, AnvilStartError, Scope.Scope> =>
  Effect.gen(function*() {
    const binary = options.binary ?? (yield* resolveBinary())
    const { pid, port } = yield* Effect.gen(function*() {
      const port = yield* freePort.pipe(
        Effect.mapError((e) => new AnvilStartError({ reason: `no free port: ${e.message}`, output: "" }))
      )
      // Each attempt in its own child scope, so a failed one is stopped before the next.
      const attempt = yield* Effect.scope.pipe(Effect.flatMap((outer) => Scope.fork(outer, ExecutionStrategy.sequential)))
      const spawned = yield* spawnOnce(binary, options, port).pipe(
        Scope.extend(attempt),
        Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(attempt, exit) : Effect.void)
      )
      return { pid: spawned.pid, port }
    }).pipe(
      Effect.retry({
        schedule: Schedule.recurs(4),
        while: (e) => /address already in use|addrinuse|os error 98/i.test(e.output + e.reason)
      })
    )

    const httpUrl = `http://127.0.0.1:${port}`
    const wsUrl = `ws://127.0.0.1:${port}`
    const chainId = options.chainId ?? 31337
    const chain = defineChain({
      id: chainId,
      name: "Anvil",
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: [httpUrl], webSocket: [wsUrl] } }
    })
    const mnemonic = options.mnemonic ?? defaultMnemonic
    const accounts = Array.from({ length: options.accounts ?? 10 }, (_, i) => mnemonicToAccount(mnemonic, { addressIndex: i }))
    const transport = http(httpUrl, { retryCount: 0 })
    const publicClient = createPublicClient({ chain, transport, pollingInterval: 50 }) as PublicClient
    const testClient = createTestClient({ chain, transport, mode: "anvil", pollingInterval: 50 })
    const walletClient = (index = 0): WalletClient<Transport, Chain, Account> => {
      const account = accounts[index]
      if (account === undefined) throw new RangeError(`no dev account ${index} (there are ${accounts.length})`)
      return createWalletClient({ chain, transport, account, pollingInterval: 50 })
    }
    const request = (method: string, params: ReadonlyArray<unknown> = []) => rpcCall(httpUrl, method, params)
    const hexQ = (n: number | bigint) => `0x${n.toString(16)}`

    yield* Effect.logDebug("anvil started").pipe(Effect.annotateLogs({ pid, port, chainId }))
    return {
      httpUrl,
      wsUrl,
      port,
      pid,
      chainId,
      chain,
      accounts,
      publicClient,
      testClient,
      walletClient,
      request,
      mine: (blocks, interval = 0) => request("anvil_mine", [hexQ(blocks), hexQ(interval)]).pipe(Effect.asVoid),
      blockNumber: request("eth_blockNumber").pipe(Effect.map((n) => BigInt(n as string))),
      snapshot: request("evm_snapshot").pipe(Effect.map((id) => id as Hex)),
      revert: (id) =>
        request("evm_revert", [id]).pipe(
          Effect.filterOrFail(
            (ok) => ok === true,
            () => new AnvilRpcError({ method: "evm_revert", cause: new Error(`unknown snapshot ${id}`) })
          ),
          Effect.asVoid
        ),
      reorg: (depth, txs = []) =>
        request("anvil_reorg", [
          depth,
          txs.map(({ block, tx }) => [
            typeof tx === "string" ? tx : {
              from: tx.from,
              ...(tx.to === undefined ? {} : { to: tx.to }),
              ...(tx.value === undefined ? {} : { value: hexQ(tx.value) }),
              ...(tx.data === undefined ? {} : { data: tx.data }),
              ...(tx.gas === undefined ? {} : { gas: hexQ(tx.gas) })
            },
            block
          ])
        ]).pipe(Effect.asVoid),
      rollback: (depth) => request("anvil_rollback", [depth]).pipe(Effect.asVoid)
    } satisfies AnvilInstance
  }).pipe(Effect.withLogSpan("anvil"))

