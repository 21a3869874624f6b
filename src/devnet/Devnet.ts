/**
 * The devnet: a whole validator network in one process, against a real local Ethereum (anvil).
 * What `npm start` runs, and what the end-to-end test drives.
 *
 * Built (layers/Devnet.ts): anvil, the test token and escrow, N validators (each a full node
 * from layers/Node.ts with its own SQLite file, running the `eth_deposits` listener), funded
 * depositor accounts. `run` then, every block time: produces a block (`BlockProducer`), mines an
 * Ethereum block so confirmations advance, sends the planned deposits one by one, applies the
 * seat change (a validator leaves the set and comes back), and shows progress, until every
 * deposit is credited, the same on every node. It fails with `DigestMismatch` when nodes
 * disagree, `DevnetTimeout` when deposits are still pending after `maxBlocks` blocks, and
 * `BalanceMismatch` when a balance is not the sum of its account's deposits.
 */
import { Context, Data, Duration, Effect, Fiber, Metric, Option, Ref, Schedule } from "effect"
import { EventLog } from "../events/EventLog.js"
import { EventStorage } from "../events/EventStore.js"
import type { SqlError } from "@effect/sql/SqlError"
import type { EventStoreError } from "../events/EventStore.js"
import type { PayloadCodecError } from "../events/EventType.js"
import type * as Contracts from "../extensions/contracts/index.js"
import type { ContractError } from "../extensions/contracts/index.js"
import * as CreditAccount from "../extensions/creditAccount.js"
import * as EthDeposits from "../extensions/ethDeposits.js"
import * as Checkpoints from "../extensions/ethDepositsCheckpoint.js"
import type { ListenerState } from "../listener/ListenerManager.js"
import { type InvalidBlockHeight, type InvalidValidatorSet, type NotBlockProposer, VoteLedger } from "../voting/VoteLedger.js"
import type { VoteSubmitError } from "../voting/VoteTransport.js"
import type { AnvilInstance, AnvilRpcError } from "./Anvil.js"
import type { BlockProducer, BlockReport, DigestMismatch } from "./BlockProducer.js"
import * as Deposits from "./DepositGenerator.js"
import type { DevnetConfig, SeatChange } from "./DevnetConfig.js"
import { type BlockStatus, Progress, type ValidatorView } from "./Progress.js"
import { shortName, type Validator } from "./Validator.js"

/** A deposit and what became of it. */
export interface DepositRecord extends Deposits.SentDeposit {
  /** The devnet block that credited it. */
  readonly resolvedAt: Option.Option<bigint>
  /** The validators whose votes it had when it resolved. */
  readonly voters: ReadonlyArray<string>
}

/** Where the devnet stands: returned by `run`, and readable at any time with `summary`. */
export interface DevnetSummary {
  /** The last devnet block. */
  readonly height: bigint
  readonly deposits: ReadonlyArray<DepositRecord>
  /** Per account (lower-case): the credited balance (same on every node) and the sum deposited. */
  readonly balances: ReadonlyArray<{ readonly account: string; readonly balance: bigint; readonly deposited: bigint }>
  /** The common state digest after the last block. */
  readonly digest: string
}

/** Not every deposit was credited in time. */
export class DevnetTimeout extends Data.TaggedError("DevnetTimeout")<{
  readonly blocks: number
  readonly pending: ReadonlyArray<DepositRecord>
  readonly detail: string
}> {
  override get message() {
    const list = this.pending.map((d) => `  ${d.account} ${d.amount} (tx ${d.txHash}, log ${d.logIndex})`).join("\n")
    return `not every deposit was credited within ${this.blocks} blocks (--max-blocks): ${this.pending.length} ` +
      `still pending${list === "" ? "" : `:\n${list}`}\n${this.detail}`
  }
}

/** A credited balance is not the sum of that account's deposits (a deposit was lost or credited twice). */
export class BalanceMismatch extends Data.TaggedError("BalanceMismatch")<{
  readonly identity: string
  readonly account: string
  readonly balance: bigint
  readonly deposited: bigint
}> {
  override get message() {
    return `${this.identity} credited ${this.account} with ${this.balance}, but its deposits sum to ${this.deposited}: ` +
      `a deposit was lost or credited twice`
  }
}

export class Devnet extends Context.Tag("kwil-listeners/devnet/Devnet")<Devnet, {
  readonly config: DevnetConfig
  readonly anvil: AnvilInstance
  readonly deployment: Contracts.Deployment
  readonly validators: ReadonlyArray<Validator>
  /** Where the validators' SQLite files are. */
  readonly dataDir: string
  /**
   * Produces blocks every block time. Without `follow` it succeeds once every planned deposit is
   * credited on every node (and the seat change is over); with `follow` it runs until interrupted.
   */
  readonly run: Effect.Effect<DevnetSummary, DevnetError>
  /** The state now: deposits so far and the balances on the first node. */
  readonly summary: Effect.Effect<DevnetSummary, DevnetError>
}>() {}

/** Why a running devnet stopped. */
export type DevnetError =
  | DigestMismatch
  | DevnetTimeout
  | BalanceMismatch
  | ContractError
  | AnvilRpcError
  | PayloadCodecError
  | SqlError
  | EventStoreError
  | InvalidValidatorSet
  | NotBlockProposer
  | InvalidBlockHeight
  | VoteSubmitError

const credited = Metric.counter("devnet_deposits_credited", { description: "devnet deposits credited", incremental: true })

const short = (hex: string): string => (hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex)

interface State {
  height: bigint
  digest: string
  deposits: Array<DepositRecord>
  /** All planned deposits sent. */
  sentAll: boolean
  /** Listener states seen after the last block, by validator then listener. */
  states: Map<string, Map<string, ListenerState>>
}

/** The devnet's `run` and `summary` over its parts. */
export const make = (parts: {
  readonly config: DevnetConfig
  readonly seatChange: SeatChange | undefined
  readonly anvil: AnvilInstance
  readonly deployment: Contracts.Deployment
  readonly validators: ReadonlyArray<Validator>
  readonly producer: BlockProducer
  readonly dataDir: string
}) =>
  Effect.gen(function*() {
    const { anvil, config, deployment, producer, seatChange, validators } = parts
    const progress = yield* Progress
    const first = validators[0]!
    const plan = Deposits.plan(config.deposits)
    const planned = plan.reduce((n, tx) => n + tx.count, 0)
    const state = yield* Ref.make<State>({ height: 0n, digest: "", deposits: [], sentAll: false, states: new Map() })

    const seatsAt = (height: bigint): ReadonlyArray<string> =>
      validators.filter((v) =>
        seatChange === undefined || v.index !== seatChange.validator || height < seatChange.loseAt ||
        height >= seatChange.regainAt
      ).map((v) => v.identity)

    const summary = Effect.gen(function*() {
      const s = yield* Ref.get(state)
      const deposited = new Map<string, bigint>()
      for (const d of s.deposits) deposited.set(d.account.toLowerCase(), (deposited.get(d.account.toLowerCase()) ?? 0n) + d.amount)
      const held = yield* first.run(CreditAccount.balances)
      const accounts = [...new Set([...deposited.keys(), ...held.map((b) => b.identifier)])].sort()
      return {
        height: s.height,
        deposits: [...s.deposits],
        balances: accounts.map((account) => ({
          account,
          balance: held.find((b) => b.identifier === account)?.balance ?? 0n,
          deposited: deposited.get(account) ?? 0n
        })),
        digest: s.digest
      } satisfies DevnetSummary
    })

    const send = (tx: Deposits.PlannedTx) =>
      Effect.gen(function*() {
        const sent = yield* Deposits.send(anvil, deployment, tx)
        yield* Ref.update(state, (s) => ({
          ...s,
          deposits: [...s.deposits, ...sent.map((d) => ({ ...d, resolvedAt: Option.none(), voters: [] }))]
        }))
        const what = sent.length > 1 ? `${sent.length} equal deposits in one tx (log ${sent.map((d) => d.logIndex).join(", ")})` : "deposit"
        yield* progress.note(
          `→ ${what}: ${short(sent[0]!.account)} ${tx.amount} (tx ${short(sent[0]!.txHash)}, eth block ${sent[0]!.block})`
        )
      })

    /** Sends the plan, one tx per block time; with `follow`, a deposit every 10 block times after. */
    const generator = Effect.gen(function*() {
      yield* Effect.forEach(plan, (tx) => Effect.zipRight(send(tx), Effect.sleep(config.blockTime)), { discard: true })
      yield* Ref.update(state, (s) => ({ ...s, sentAll: true }))
      if (!config.follow) return
      let n = 0
      yield* Effect.suspend(() => send(Deposits.extra(n++))).pipe(
        Effect.repeat(Schedule.spaced(Duration.times(config.blockTime, 10)))
      )
    })

    const checkpointOf = (v: Validator) =>
      v.run(Effect.flatMap(EventStorage, (storage) => Checkpoints.readCheckpoint(storage.forListener(EthDeposits.name).kv))).pipe(
        Effect.map(Option.match({ onNone: () => "no checkpoint yet", onSome: (c) => `checkpoint eth block ${c.height}` })),
        Effect.orElseSucceed(() => "checkpoint unreadable")
      )

    /** Notes seat changes and listener state changes after block `height`. */
    const noteChanges = (report: BlockReport, views: ReadonlyArray<ValidatorView>) =>
      Effect.gen(function*() {
        if (seatChange !== undefined) {
          const v = validators[seatChange.validator]!
          if (report.height === seatChange.loseAt) {
            yield* progress.note(`✖ block ${report.height}: ${v.identity} loses its seat (removed from the validator set on every ledger); its listeners stop`)
          } else if (report.height === seatChange.regainAt) {
            yield* progress.note(`✔ block ${report.height}: ${v.identity} regains its seat; its listeners start again from their ${yield* checkpointOf(v)}`)
          }
        }
        for (const tx of report.refused) {
          yield* progress.note(`  block ${report.height}: VoteIds from ${tx} refused on every node (no seat)`)
        }
        const s = yield* Ref.get(state)
        for (const view of views) {
          const before = s.states.get(view.identity)
          const now = new Map(view.listeners.map((l) => [l.name, l.state] as const))
          if (before !== undefined) {
            for (const [name, st] of now) {
              const was = before.get(name)
              if (was !== undefined && was !== st) {
                const why = st === "stopped" || st === "running" ? "" : ` (${Option.getOrElse(view.listeners.find((l) => l.name === name)!.lastError, () => "")})`
                yield* progress.note(`  ${view.identity} ${name}: ${was} → ${st}${why}`)
              }
            }
          }
          s.states.set(view.identity, now)
        }
      })

    const views = (height: bigint) => {
      const seats = new Set(seatsAt(height))
      return Effect.forEach(validators, (v) =>
        Effect.map(v.listeners, (listeners): ValidatorView => ({ identity: v.identity, seat: seats.has(v.identity), listeners })))
    }

    const step = Effect.gen(function*() {
      const height = (yield* Ref.get(state)).height + 1n
      const report = yield* producer.produce(height, seatsAt(height))
      // The set changed in this block: tell the node after commit, as a real node's validator updates do.
      if (seatChange !== undefined && (height === seatChange.loseAt || height === seatChange.regainAt)) {
        yield* validators[seatChange.validator]!.setSeat(height === seatChange.regainAt)
      }
      yield* anvil.mine(1)

      const resolved = new Set<string>(report.outcome.resolved)
      const newly: Array<DepositRecord> = []
      yield* Ref.update(state, (s) => ({
        ...s,
        height,
        digest: report.digests[0]!.digest,
        deposits: s.deposits.map((d) => {
          if (!resolved.has(d.id) || Option.isSome(d.resolvedAt)) return d
          const done = { ...d, resolvedAt: Option.some(height), voters: report.voters.get(d.id) ?? [] }
          newly.push(done)
          return done
        })
      }))
      yield* Metric.incrementBy(credited, newly.length)
      for (const d of newly) {
        yield* progress.note(
          `✔ credited ${short(d.account)} +${d.amount} (tx ${short(d.txHash)}, log ${d.logIndex}) in block ${height}, ` +
            `votes ${d.voters.map(shortName).join(" ")}`
        )
      }

      const view = yield* views(height)
      yield* noteChanges(report, view)
      const pending = new Set<string>()
      for (const v of validators) {
        for (const e of yield* v.run(Effect.flatMap(EventLog, (log) => log.list()))) pending.add(e.id)
      }
      const open = (yield* first.run(Effect.flatMap(VoteLedger, (l) => l.all))).length
      const s = yield* Ref.get(state)
      const status: BlockStatus = {
        report,
        ethHead: yield* anvil.blockNumber,
        pendingEvents: pending.size,
        openResolutions: open,
        credited: s.deposits.filter((d) => Option.isSome(d.resolvedAt)).length,
        sent: s.deposits.length,
        planned,
        validators: view
      }
      yield* progress.block(status)
      return status
    })

    const isDone = (status: BlockStatus, s: State): boolean => {
      if (config.follow || !s.sentAll || status.credited < status.sent) return false
      if (seatChange === undefined) return true
      const back = status.validators[seatChange.validator]!
      return status.report.height > seatChange.regainAt && back.listeners.every((l) => l.state === "running")
    }

    const timeout = (status: BlockStatus, s: State) =>
      new DevnetTimeout({
        blocks: config.maxBlocks,
        pending: s.deposits.filter((d) => Option.isNone(d.resolvedAt)),
        detail: `listeners: ${
          status.validators.map((v) =>
            `${v.identity} ${
              v.listeners.map((l) => `${l.name} ${l.state}${Option.match(l.lastError, { onNone: () => "", onSome: (e) => ` (${e})` })}`)
                .join(", ")
            }`
          ).join("; ")
        }${s.sentAll ? "" : `; only ${s.deposits.length} of ${planned} deposits were sent`}`
      })

    /** Every validator's listeners are up (they start asynchronously), so block 1 sees a settled network. */
    const ready = views(0n).pipe(
      Effect.repeat({
        schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo("10 seconds")),
        until: (vs) => vs.every((v) => v.listeners.every((l) => l.state === "running"))
      })
    )

    const loop = Effect.gen(function*() {
      yield* ready
      for (const v of yield* views(0n)) {
        ;(yield* Ref.get(state)).states.set(v.identity, new Map(v.listeners.map((l) => [l.name, l.state] as const)))
      }
      while (true) {
        const status = yield* step
        const s = yield* Ref.get(state)
        if (isDone(status, s)) return
        if (!config.follow && Number(s.height) >= config.maxBlocks) return yield* timeout(status, s)
        yield* Effect.sleep(config.blockTime)
      }
    })

    const checkBalances = Effect.gen(function*() {
      const result = yield* summary
      for (const v of validators) {
        const balances = yield* v.run(CreditAccount.balances)
        for (const b of result.balances) {
          const got = balances.find((x) => x.identifier === b.account)?.balance ?? 0n
          if (got !== b.deposited) {
            return yield* new BalanceMismatch({ identity: v.identity, account: b.account, balance: got, deposited: b.deposited })
          }
        }
      }
      return result
    })

    const run = Effect.scoped(Effect.gen(function*() {
      const sending = yield* Effect.forkScoped(generator)
      yield* Effect.raceFirst(loop, Effect.zipRight(Fiber.join(sending), Effect.never))
      return yield* checkBalances
    })).pipe(Effect.annotateLogs("devnet", "run"))

    return Devnet.of({
      config,
      anvil,
      deployment,
      validators,
      dataDir: parts.dataDir,
      run,
      summary
    })
  })
