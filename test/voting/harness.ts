/**
 * Test nodes for the voting tests: each one a fresh `:memory:` SQLite database, migrated, with the
 * real event store, a vote ledger and a broadcaster over a recording transport.
 */
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Data, Effect, Layer, Ref, Schema, type Scope } from "effect"
import { EventLog } from "../../src/events/EventLog.js"
import { EventStorage, EventStore } from "../../src/events/EventStore.js"
import * as EventType from "../../src/events/EventType.js"
import { credit, creditAccount, creditAll } from "../../src/extensions/creditAccount.js"
import { NodeInfo } from "../../src/listener/NodeInfo.js"
import * as Migrations from "../../src/storage/migrations.js"
import { Broadcaster, type BroadcasterConfig } from "../../src/voting/Broadcaster.js"
import * as Resolution from "../../src/voting/Resolution.js"
import { ResolutionRegistry } from "../../src/voting/ResolutionRegistry.js"
import { type BlockInfo, type Validator, VoteLedger } from "../../src/voting/VoteLedger.js"
import { VoteTransport, type VoteBody, type VoteTx } from "../../src/voting/VoteTransport.js"

/** The payload of `Note` and `Tally`. */
const NotePayload = Schema.Struct({ n: Schema.Number, account: Schema.String, fail: Schema.Boolean })

/** A test payload: `resolve` credits `account` with 1, then fails when `fail` is set (the credit must roll back). */
export const Note = EventType.make("note", EventType.json(NotePayload))

export class NoteFailed extends Data.TaggedError("NoteFailed")<{ readonly n: number }> {}

/** Short expiry (5 blocks), refund at 1/2, confirm at 2/3. */
export const noteResolution = Resolution.make({
  type: Note,
  confirmationThreshold: Resolution.fraction(2, 3),
  refundThreshold: Resolution.fraction(1, 2),
  expirationPeriod: 5,
  resolve: (payload) =>
    Effect.zipRight(
      credit(payload.account, 1n),
      payload.fail ? Effect.fail(new NoteFailed({ n: payload.n })) : Effect.void
    )
})

/** How many times `flaky` resolved each `n`: it credits, then fails from the second call on. */
export const flakyCalls = new Map<number, number>()

/** A resolution that breaks the determinism contract on purpose: it fails when re-applied. */
export const Flaky = EventType.make("flaky", EventType.json(Schema.Struct({ n: Schema.Number })))
export const flakyResolution = Resolution.make({
  type: Flaky,
  resolve: ({ n }) => {
    const calls = (flakyCalls.get(n) ?? 0) + 1
    flakyCalls.set(n, calls)
    return Effect.zipRight(credit(`flaky-${n}`, 1n), calls > 1 ? Effect.fail(new NoteFailed({ n })) : Effect.void)
  }
})

/**
 * How `Tally` was applied: the size of every `resolveAll` call, how many single `resolve` calls,
 * and the id of each item's context that `resolveAll` got.
 */
export const tallyCalls = { all: [] as Array<number>, one: 0, ids: [] as Array<string> }

/**
 * A `Note` alike (same thresholds and expiry) with `resolveAll`: each credits `account` with 1,
 * then fails when `fail` is set. `resolveAll` credits the whole run with `creditAll`, then fails
 * if any one is set to fail.
 */
export const Tally = EventType.make("tally", EventType.json(NotePayload))
export const tallyResolution = Resolution.make({
  type: Tally,
  confirmationThreshold: noteResolution.confirmationThreshold,
  refundThreshold: noteResolution.refundThreshold,
  expirationPeriod: noteResolution.expirationPeriod,
  resolve: (payload, context) => {
    tallyCalls.one++
    return noteResolution.resolve(payload, context)
  },
  resolveAll: (items) => {
    tallyCalls.all.push(items.length)
    for (const { context } of items) tallyCalls.ids.push(context.id)
    const failing = items.find(({ payload }) => payload.fail)
    return Effect.zipRight(
      creditAll(items.map(({ payload }) => ({ account: payload.account, amount: 1n }))),
      failing === undefined ? Effect.void : Effect.fail(new NoteFailed({ n: failing.payload.n }))
    )
  }
})

/** A body of `type` (`Note` or `Tally`) for `n`, crediting `acct-<n>` unless told another account. */
const noteBody = (type: typeof Note) => (n: number, options: { account?: string; fail?: boolean } = {}) =>
  Effect.map(type.encode({ n, account: options.account ?? `acct-${n}`, fail: options.fail ?? false }), (body) => ({
    type: type.name,
    body
  } satisfies VoteBody))

export const tally = noteBody(Tally)

/**
 * A resolution whose `resolve` credits `account` with 1, and whose `resolveAll` dies (a defect)
 * or is interrupted, as the first of its items says.
 */
export const Wayward = EventType.make(
  "wayward",
  EventType.json(Schema.Struct({ n: Schema.Number, account: Schema.String, mode: Schema.Literal("die", "interrupt") }))
)
export const waywardResolution = Resolution.make({
  type: Wayward,
  resolve: (payload) => credit(payload.account, 1n),
  resolveAll: (items) => items[0]!.payload.mode === "die" ? Effect.dieMessage("wayward resolveAll") : Effect.interrupt
})

export const wayward = (n: number, mode: "die" | "interrupt") =>
  Effect.map(Wayward.encode({ n, account: `acct-${n}`, mode }), (body) => ({ type: Wayward.name, body } satisfies VoteBody))

export const note = noteBody(Note)

/** The resolution types every test node knows, unless it is given others. */
export const defaultResolutions: ReadonlyArray<Resolution.AnyResolution> = [
  creditAccount,
  noteResolution,
  flakyResolution,
  tallyResolution,
  waywardResolution
]

export type NodeServices =
  | VoteLedger
  | Broadcaster
  | EventLog
  | EventStorage
  | SqlClient.SqlClient
  | ResolutionRegistry

/** The layers of one node named `identity`, in its own fresh database. */
export const nodeLayer = (
  identity: string,
  submitted: Ref.Ref<ReadonlyArray<VoteTx>>,
  config: BroadcasterConfig = {},
  resolutions: ReadonlyArray<Resolution.AnyResolution> = defaultResolutions
) => {
  const db = Migrations.layer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })))
  const registry = ResolutionRegistry.layer(...resolutions)
  const events = EventStore.layerSql.pipe(Layer.provideMerge(registry), Layer.provideMerge(db))
  const ledger = VoteLedger.layer.pipe(Layer.provideMerge(events))
  return Broadcaster.layer(config).pipe(
    Layer.provideMerge(ledger),
    Layer.provide(VoteTransport.layerRef(submitted)),
    Layer.provide(NodeInfo.layer({ identity, extensions: {} }))
  )
}

export interface TestNode {
  readonly identity: string
  /** Every tx this node's broadcaster submitted. */
  readonly submitted: Ref.Ref<ReadonlyArray<VoteTx>>
  /** Runs `effect` against this node's services. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, NodeServices>) => Effect.Effect<A, E>
}

/** A node living as long as the enclosing scope. */
export const makeNode = (
  identity: string,
  config: BroadcasterConfig = {},
  resolutions: ReadonlyArray<Resolution.AnyResolution> = defaultResolutions
): Effect.Effect<TestNode, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const submitted = yield* Ref.make<ReadonlyArray<VoteTx>>([])
    const context = yield* Layer.build(nodeLayer(identity, submitted, config, resolutions))
    return { identity, submitted, run: (effect) => Effect.provide(effect, context) }
  })

export const validators = (...identities: ReadonlyArray<string>): ReadonlyArray<Validator> =>
  identities.map((identity) => ({ identity, power: 1n }))

/** One block as every node executes it. */
export interface Block {
  readonly height: bigint
  readonly proposer: string
  readonly validators?: ReadonlyArray<Validator>
  readonly bodies?: ReadonlyArray<VoteBody>
  readonly votes?: ReadonlyArray<{ readonly sender: string; readonly ids: ReadonlyArray<string> }>
}

/** Executes `block` in one transaction, as a host would, and returns what finalizing it did. */
export const runBlock = (block: Block) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const ledger = yield* VoteLedger
    return yield* Effect.gen(function*() {
      if (block.validators !== undefined) yield* ledger.setValidators(block.validators)
      const info: BlockInfo = { height: block.height, proposer: block.proposer }
      if (block.bodies !== undefined) yield* ledger.applyVoteBodies(block.proposer, block.bodies, info)
      for (const vote of block.votes ?? []) {
        yield* ledger.applyVoteIds(vote.sender, vote.ids as ReadonlyArray<never>)
      }
      return yield* ledger.finalizeBlock(block.height)
    }).pipe(sql.withTransaction)
  })

/** The `accounts` balance of `account` (0 when absent). */
export { balanceOf } from "../../src/extensions/creditAccount.js"

/** Broadcasts `body` of `type` through the node's store for listener "test". */
export const observe = (event: VoteBody) =>
  Effect.flatMap(EventStorage, (storage) => storage.forListener("test").broadcastRaw(event.type, event.body))
