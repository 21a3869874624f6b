/**
 * Shared pieces of the chaos suite (`test/chaos`): seeds that are printed and replayable, temp
 * databases, a chain holding many deposits, the reference set of deposits read straight from the
 * chain, what a database holds, and bounded polling.
 *
 * Seeds: every randomized test draws from `seed(label)`. With `CHAOS_SEED=<n>` every test uses
 * `n`; without it each draws a fresh one. Either way the seed is printed with the test's label
 * (`[chaos] <label> seed=<n>`), so a failure replays with `CHAOS_SEED=<n> npx vitest run test/chaos -t '<label>'`.
 */
import { Cause, Effect, Exit, Fiber, Layer, Option, Schedule } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Hash } from "viem"
import { EventLog } from "../../../src/events/EventLog.js"
import { EventStore } from "../../../src/events/EventStore.js"
import * as Contracts from "../../../src/extensions/contracts/index.js"
import { CreditAccount, type Payload } from "../../../src/extensions/creditAccount.js"
import * as EthDeposits from "../../../src/extensions/ethDeposits.js"
import * as Checkpoints from "../../../src/extensions/ethDepositsCheckpoint.js"
import * as DepositListener from "../../support/DepositListener.js"
import type * as EscrowChain from "../../support/EscrowChain.js"
import { prng } from "../../support/RpcProxy.js"

// --- seeds ------------------------------------------------------------------------------------

/** A seeded random source: `next()` in [0, 1), `int(lo, hi)` inclusive, `pick(xs)`. */
export interface Rng {
  readonly seed: number
  readonly next: () => number
  readonly int: (lo: number, hi: number) => number
  readonly pick: <A>(xs: ReadonlyArray<A>) => A
}

export const rng = (seed: number): Rng => {
  const next = prng(seed)
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1))
  return { seed, next, int, pick: (xs) => xs[int(0, xs.length - 1)]! }
}

/** The seed for `label`: `CHAOS_SEED` when set, else a fresh one; printed either way. */
export const seed = (label: string): Effect.Effect<Rng> =>
  Effect.sync(() => {
    const fromEnv = process.env["CHAOS_SEED"]
    const n = fromEnv !== undefined && fromEnv !== "" && Number.isSafeInteger(Number(fromEnv))
      ? Number(fromEnv)
      : Math.floor(Math.random() * 2 ** 31)
    // eslint-disable-next-line no-console
    console.log(`[chaos] ${label} seed=${n} (replay: CHAOS_SEED=${n} npx vitest run test/chaos -t '${label}')`)
    return rng(n)
  })

// --- temp files -------------------------------------------------------------------------------

/** A temp dir, removed with the scope. */
export const tempDir = (prefix = "chaos-") =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

// --- databases --------------------------------------------------------------------------------

export const database = DepositListener.database

/** What a database holds for the eth_deposits listener: its deposits (insertion order) and checkpoint. */
export interface Stored {
  readonly deposits: ReadonlyArray<Payload>
  readonly ids: ReadonlyArray<string>
  readonly checkpoint: Option.Option<{ readonly height: bigint; readonly hash?: Hash }>
}

/** Reads `filename` (opening and closing it). */
export const stored = (filename: string): Effect.Effect<Stored> =>
  Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(EventStore.layerFor(EthDeposits.name).pipe(Layer.provideMerge(database(filename))))
    return yield* Effect.gen(function*() {
      const events = yield* (yield* EventLog).list()
      const deposits = yield* Effect.forEach(events, (e) => CreditAccount.decode(e.body))
      const checkpoint = yield* Checkpoints.readCheckpoint((yield* EventStore).kv)
      return { deposits, ids: events.map((e) => e.id), checkpoint }
    }).pipe(Effect.provide(context))
  })).pipe(Effect.orDie)

/** A running listener over `filename` (see `DepositListener.start`). */
export const startListener = (filename: string, config: Record<string, string>, options: EthDeposits.Options = {}) =>
  DepositListener.start(filename, config, options, "chaos-node")

/** Short intervals: anvil answers in a millisecond. */
export const fast = DepositListener.fast

/** The listener's config section for `chain` over `url`. */
export const section = (chain: EscrowChain.EscrowChain, url: string, extra: Record<string, string> = {}) => ({
  rpc_provider: url,
  contract_address: chain.deployment.escrow,
  starting_height: String(chain.deployment.escrowBlock),
  required_confirmations: "2",
  ...extra
})

// --- polling ----------------------------------------------------------------------------------

/** Polls `read` until `done` holds (at most `within`); dies early when `fiber` has ended. */
export const eventually = <A, E, R>(
  read: Effect.Effect<A, E, R>,
  done: (a: A) => boolean,
  options: { readonly fiber?: Fiber.Fiber<unknown, unknown>; readonly within?: `${number} seconds`; readonly every?: `${number} millis` } = {}
) => {
  const within = options.within ?? "30 seconds"
  return Effect.gen(function*() {
    if (options.fiber !== undefined) {
      const ended = yield* Fiber.poll(options.fiber)
      if (Option.isSome(ended)) {
        const how = Exit.isFailure(ended.value) ? Cause.pretty(ended.value.cause) : "it returned"
        return yield* Effect.dieMessage(`the listener ended: ${how}`)
      }
    }
    return yield* read
  }).pipe(
    Effect.repeat(
      Schedule.spaced(options.every ?? "150 millis").pipe(Schedule.upTo(within), Schedule.zipRight(Schedule.recurUntil(done)))
    ),
    Effect.filterOrDieMessage(done, `not reached within ${within}`)
  )
}

// --- deposits and the reference set -----------------------------------------------------------

/** `txHash:logIndex`, the identity of a deposit. */
export const keyOf = (p: { readonly txHash: string; readonly logIndex: number }) =>
  `${p.txHash.toLowerCase()}:${String(p.logIndex).padStart(6, "0")}`

/** `payloads` as sorted `txHash:logIndex:account:amount` lines: equal lists, equal sets with no duplicates. */
export const canonical = (payloads: ReadonlyArray<Payload>): ReadonlyArray<string> =>
  payloads.map((p) => `${keyOf(p)}:${p.account}:${p.amount}:${p.chainId}`).sort()

/**
 * Makes about `count` deposits: batches of 1..`maxPerTx` Credits (some `depositMany`, equal
 * amounts in one tx), each tx in its own block, with 0..`maxGap` empty blocks after each.
 * Returns the number of Credit logs made.
 */
export const makeDeposits = (
  chain: EscrowChain.EscrowChain,
  r: Rng,
  count: number,
  options: { readonly maxPerTx?: number; readonly maxGap?: number } = {}
) =>
  Effect.gen(function*() {
    let made = 0
    while (made < count) {
      const n = Math.min(count - made, r.int(1, options.maxPerTx ?? 60))
      if (r.next() < 0.2) {
        yield* Contracts.depositMany(chain.clients, chain.deployment, BigInt(r.int(1, 1000)), BigInt(n))
      } else {
        yield* Contracts.depositBatch(chain.clients, chain.deployment, Array.from({ length: n }, () => BigInt(r.int(1, 10_000))))
      }
      made += n
      const gap = r.int(0, options.maxGap ?? 4)
      if (gap > 0) yield* chain.anvil.mine(gap)
    }
    return made
  })

/** Every Credit of the escrow up to block `to`, read straight from the chain (anvil, no proxy). */
export const reference = (chain: EscrowChain.EscrowChain, to: bigint) =>
  Effect.promise(() =>
    chain.anvil.publicClient.getLogs({
      address: chain.deployment.escrow,
      event: Contracts.creditEvent,
      fromBlock: chain.deployment.escrowBlock,
      toBlock: to
    })
  ).pipe(
    Effect.map((logs) =>
      logs.map((l): Payload => ({
        chainId: BigInt(chain.anvil.chainId),
        account: l.args._from!.toLowerCase() as Payload["account"],
        amount: l.args._amount!,
        txHash: l.transactionHash,
        logIndex: l.logIndex
      }))
    )
  )
