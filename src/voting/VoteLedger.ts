/**
 * The vote ledger: the deterministic state machine every node runs inside its block transaction,
 * on the same SQLite database as its event store. Same blocks in, same consensus tables out: the
 * host compares nodes with `stateDigest`.
 *
 * A block is driven as: `setValidators` (when the set changes), `applyVoteBodies` (the proposer's
 * tx, at most one), `applyVoteIds` (each validator's tx), then `finalizeBlock(height)`, all in one
 * `sql.withTransaction`. Every operation is also atomic on its own (a savepoint when nested).
 *
 * Differences from Kwil, on purpose:
 * - an expired resolution refunds its voters only if its OWN approved power reached its OWN type's
 *   refund threshold (the original compared the first expired resolution of each type with 0);
 * - a resolution confirmed in the block in which it expires is resolved, once, and never refunded;
 * - resolutions resolve in id order, each in its own savepoint;
 * - approved power is always recomputed from the current validator set: a removed validator's
 *   votes stop counting (and count again if it comes back);
 * - nothing confirms while the approved power is 0, whatever the threshold;
 * - `ResolveContext.voters` and refunds list only voters that hold power now (the ones counted).
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { createHash } from "node:crypto"
import { Context, Data, Effect, Exit, Layer, Metric, Option } from "effect"
import * as EventId from "../events/EventId.js"
import { EventLog } from "../events/EventLog.js"
import type { EventStoreError } from "../events/EventStore.js"
import { defaults, maxExpirationPeriod, requiredPower } from "./Resolution.js"
import { ResolutionRegistry } from "./ResolutionRegistry.js"
import { type Confirmed, resolveInOrder } from "./resolveInOrder.js"
import { withSavepoint } from "./TxSql.js"
import type { VoteBody } from "./VoteTransport.js"

/** A validator and its voting power (0 means "not a validator"). */
export interface Validator {
  readonly identity: string
  readonly power: bigint
}

/** The block a vote transaction is executed in, as the host knows it. */
export interface BlockInfo {
  readonly height: bigint
  /** The identity of the validator that proposed this block. */
  readonly proposer: string
}

/** What `applyVoteBodies` did with each body, ids in the order of the bodies. */
export interface BodiesOutcome {
  /** New resolutions, created with the proposer's vote. */
  readonly created: ReadonlyArray<EventId.EventId>
  /** Resolutions that already existed: only the proposer's vote was added (if missing). */
  readonly existing: ReadonlyArray<EventId.EventId>
  /**
   * Bodies ignored: already processed, of a type this node has no resolution for, or bytes their
   * type cannot decode (a faulty proposer's: stored, it would hold its bytes until expiry and could
   * refund the proposer's vote for it).
   */
  readonly skipped: ReadonlyArray<{ readonly id: EventId.EventId; readonly reason: "processed" | "unknown-type" | "invalid-body" }>
}

/** What `applyVoteIds` did, ids in the order given. */
export interface IdsOutcome {
  /** Votes newly recorded. */
  readonly voted: ReadonlyArray<EventId.EventId>
  /** Ids the sender had already voted for. */
  readonly duplicate: ReadonlyArray<EventId.EventId>
  /** Ids with no open resolution (unknown, or already processed): ignored. */
  readonly skipped: ReadonlyArray<EventId.EventId>
}

/** What `finalizeBlock` did; every list is sorted (ids, then identities), so it is the same on every node. */
export interface FinalizeOutcome {
  readonly height: bigint
  /** Confirmed resolutions whose `resolve` succeeded. */
  readonly resolved: ReadonlyArray<EventId.EventId>
  /** Resolutions dropped at their expiration height without being confirmed. */
  readonly expired: ReadonlyArray<EventId.EventId>
  /** Voters to refund, with the expired ids they voted for (only ids that reached their refund threshold). */
  readonly refunds: ReadonlyArray<{ readonly identity: string; readonly ids: ReadonlyArray<EventId.EventId> }>
  /** Confirmed resolutions whose payload did not decode or whose `resolve` failed: rolled back, still consumed. */
  readonly failures: ReadonlyArray<{ readonly id: EventId.EventId; readonly type: string; readonly error: unknown }>
}

/** An open (not yet processed) resolution, as stored. */
export interface ResolutionInfo {
  readonly id: EventId.EventId
  readonly type: string
  readonly body: Uint8Array
  readonly proposer: string
  readonly createdHeight: bigint
  readonly expirationHeight: bigint
  /** Power of the current validators that voted for it. */
  readonly approvedPower: bigint
  /** Every identity with a vote row, sorted (including ones that no longer hold power). */
  readonly voters: ReadonlyArray<string>
}

/** Where a node's vote for an id stands in the ledger. */
export type VoteStatus = "no-resolution" | "open" | "voted"

/** VoteBodies sent by someone other than the block's proposer: the whole tx is refused. */
export class NotBlockProposer extends Data.TaggedError("NotBlockProposer")<{
  readonly sender: string
  readonly proposer: string
  readonly height: bigint
}> {
  override get message() {
    return `VoteBodies from "${this.sender}" refused at height ${this.height}: only the block proposer ` +
      `("${this.proposer}") may create resolutions; other validators vote with VoteIds`
  }
}

/** A block height the ledger cannot hold: below 0, or from 2^62 (an expiry height must stay within 64 bits). */
export class InvalidBlockHeight extends Data.TaggedError("InvalidBlockHeight")<{ readonly height: bigint }> {
  override get message() {
    return `block height ${this.height} refused: heights run from 0 to 2^62-1 (the host's block height, as a bigint)`
  }
}

/** `height` when the ledger can hold it (see `InvalidBlockHeight`). */
const checkHeight = (height: bigint) =>
  height >= 0n && height < maxExpirationPeriod ? Effect.void : Effect.fail(new InvalidBlockHeight({ height }))

/** VoteIds from an identity holding no power: the whole tx is refused. */
export class NotAValidator extends Data.TaggedError("NotAValidator")<{ readonly sender: string }> {
  override get message() {
    return `VoteIds from "${this.sender}" refused: it holds no voting power in the current validator set; ` +
      `only validators vote`
  }
}

/** A validator set the ledger cannot use. */
export class InvalidValidatorSet extends Data.TaggedError("InvalidValidatorSet")<{ readonly reason: string }> {
  override get message() {
    return `invalid validator set: ${this.reason}`
  }
}

const MAX_INT64 = (1n << 63n) - 1n

/** Consensus tables hashed by `stateDigest`, in this order; local tables (events, kv) are not. */
export const consensusTables: ReadonlyArray<string> = ["validators", "resolutions", "votes", "processed", "accounts"]

const resolvedCount = Metric.counter("kwil_resolutions_resolved", {
  description: "resolutions confirmed and applied",
  incremental: true
})
const expiredCount = Metric.counter("kwil_resolutions_expired", {
  description: "resolutions dropped at expiry without confirmation",
  incremental: true
})
const failedCount = Metric.counter("kwil_resolutions_failed", {
  description: "confirmed resolutions whose resolve failed (rolled back, consumed)",
  incremental: true
})

export class VoteLedger extends Context.Tag("kwil-listeners/VoteLedger")<VoteLedger, {
  /**
   * Replaces the validator set. Entries with power 0 are dropped (not validators); a negative
   * power, an empty or repeated identity, or a total over 2^63-1 is refused.
   */
  readonly setValidators: (
    validators: ReadonlyArray<Validator>
  ) => Effect.Effect<void, InvalidValidatorSet | SqlError>
  /** The current validators with power > 0, sorted by identity. */
  readonly validators: Effect.Effect<ReadonlyArray<Validator>, SqlError>
  /**
   * Executes the proposer's VoteBodies tx in `block`: refused unless `sender` is `block.proposer`.
   * Creates a resolution per new body (expiry = height + its type's period) with the proposer's
   * vote; for an existing one only adds that vote; skips processed ids, unknown types and bodies
   * their type cannot decode. A height below 0 or from 2^62 is refused.
   */
  readonly applyVoteBodies: (
    sender: string,
    events: ReadonlyArray<VoteBody>,
    block: BlockInfo
  ) => Effect.Effect<BodiesOutcome, NotBlockProposer | InvalidBlockHeight | SqlError>
  /**
   * Executes a VoteIds tx: refused unless `sender` holds power. Unknown and processed ids are
   * skipped; they never fail the tx.
   */
  readonly applyVoteIds: (
    sender: string,
    ids: ReadonlyArray<EventId.EventId>
  ) => Effect.Effect<IdsOutcome, NotAValidator | SqlError>
  /**
   * Ends block `height`: resolves every resolution at or over its confirmation threshold (id
   * order, one savepoint each), drops the expired ones (expiration height <= height), computes
   * refunds, moves all of them to `processed` and deletes their local event rows. A height below
   * 0 or from 2^62 is refused.
   */
  readonly finalizeBlock: (
    height: bigint
  ) => Effect.Effect<FinalizeOutcome, InvalidBlockHeight | SqlError | EventStoreError>
  /** sha256 (hex) over the consensus tables in canonical order: equal on nodes fed the same blocks. */
  readonly stateDigest: Effect.Effect<string, SqlError>
  /** The open resolutions among `ids`, sorted by id. */
  readonly get: (ids: ReadonlyArray<EventId.EventId>) => Effect.Effect<ReadonlyArray<ResolutionInfo>, SqlError>
  /** Every open resolution, sorted by id (for inspection; reads all rows). */
  readonly all: Effect.Effect<ReadonlyArray<ResolutionInfo>, SqlError>
  /** For each of `ids`: no open resolution, open without a vote from `voter`, or voted by `voter`. */
  readonly voteStatus: (
    voter: string,
    ids: ReadonlyArray<EventId.EventId>
  ) => Effect.Effect<ReadonlyMap<EventId.EventId, VoteStatus>, SqlError>
}>() {
  /** The ledger over the node's SQL database (migrated with `storage/migrations`). */
  static readonly layer: Layer.Layer<VoteLedger, never, SqlClient.SqlClient | ResolutionRegistry | EventLog> = Layer
    .effect(VoteLedger, Effect.suspend(() => make))
}

/** A JSON array of strings, bound as one parameter and read with `json_each`: one statement for any count. */
const jsonList = (values: ReadonlyArray<string>): string => JSON.stringify(values)

const sortedUnique = <A extends string>(values: ReadonlyArray<A>): Array<A> =>
  [...new Set(values)].sort(compare)

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const CHUNK = 500

const chunks = <A>(values: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < values.length; i += size) out.push(values.slice(i, i + size))
  return out
}

/** `(id, voter)` rows, sorted, grouped by id. */
const votersById = (rows: ReadonlyArray<{ readonly id: string; readonly voter: string }>) => {
  const byId = new Map<string, Array<string>>()
  for (const row of rows) {
    const list = byId.get(row.id)
    if (list === undefined) byId.set(row.id, [row.voter])
    else list.push(row.voter)
  }
  return byId
}

/** A resolution `finalizeBlock` may confirm or expire; `voters` is a JSON array, sorted. */
interface CandidateRow {
  readonly id: string
  readonly type: string
  readonly proposer: string
  readonly body: Uint8Array
  readonly expiration_height: string
  readonly approved: string
  readonly voters: string
}

interface ResolutionRow {
  readonly id: string
  readonly type: string
  readonly body: Uint8Array
  readonly proposer: string
  readonly created_height: string
  readonly expiration_height: string
  readonly approved: string
}

const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const registry = yield* ResolutionRegistry
  const eventLog = yield* EventLog
  /** Each operation is atomic on its own; nested in the host's block transaction it is a savepoint. */
  const atomic = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    withSavepoint("kwil_ledger")(effect).pipe(Effect.provideService(SqlClient.SqlClient, sql))

  const totalPower = sql<{ total: string }>`SELECT CAST(COALESCE(SUM(power), 0) AS TEXT) AS total FROM validators`.pipe(
    Effect.map((rows) => BigInt(rows[0]?.total ?? "0"))
  )

  const powerOf = (identity: string) =>
    sql<{ power: string }>`SELECT CAST(power AS TEXT) AS power FROM validators WHERE identity = ${identity}`.pipe(
      Effect.map((rows) => (rows[0] === undefined ? 0n : BigInt(rows[0].power)))
    )

  const setValidators = Effect.fn("VoteLedger.setValidators")(function*(validators: ReadonlyArray<Validator>) {
    const seen = new Set<string>()
    let total = 0n
    for (const { identity, power } of validators) {
      if (identity.length === 0) return yield* new InvalidValidatorSet({ reason: "an identity is empty" })
      if (seen.has(identity)) {
        return yield* new InvalidValidatorSet({ reason: `"${identity}" appears twice; give each validator one entry` })
      }
      if (power < 0n) return yield* new InvalidValidatorSet({ reason: `"${identity}" has negative power ${power}` })
      seen.add(identity)
      total += power
    }
    if (total > MAX_INT64) {
      return yield* new InvalidValidatorSet({ reason: `total power ${total} exceeds 2^63-1` })
    }
    const rows = validators.filter((v) => v.power > 0n).map((v) => ({ identity: v.identity, power: v.power }))
    yield* sql`DELETE FROM validators`
    for (const chunk of chunks(rows, CHUNK)) {
      yield* sql`INSERT INTO validators ${sql.insert(chunk as Array<{ identity: string; power: bigint }>)}`
    }
    yield* Effect.logDebug("validator set replaced").pipe(
      Effect.annotateLogs({ validators: rows.length, totalPower: total.toString() })
    )
  }, atomic)

  const validatorsList = sql<{ identity: string; power: string }>`
    SELECT identity, CAST(power AS TEXT) AS power FROM validators ORDER BY identity`.pipe(
    Effect.map((rows) => rows.map((r): Validator => ({ identity: r.identity, power: BigInt(r.power) })))
  )

  const applyVoteBodies = Effect.fn("VoteLedger.applyVoteBodies")(
    function*(sender: string, events: ReadonlyArray<VoteBody>, block: BlockInfo) {
      yield* checkHeight(block.height)
      if (sender !== block.proposer) {
        return yield* new NotBlockProposer({ sender, proposer: block.proposer, height: block.height })
      }
      // Ids are recomputed from type and body: a proposer cannot attach a body to someone else's id.
      const bodies = new Map<EventId.EventId, VoteBody>()
      for (const event of events) {
        const id = EventId.make(event.type, event.body)
        if (!bodies.has(id)) bodies.set(id, event)
      }
      const ids = [...bodies.keys()]
      const processed = new Set(
        (yield* sql<{ id: string }>`
          SELECT id FROM processed WHERE id IN (SELECT value FROM json_each(${jsonList(ids)}))`).map((r) => r.id)
      )
      const existing = new Set(
        (yield* sql<{ id: string }>`
          SELECT id FROM resolutions WHERE id IN (SELECT value FROM json_each(${jsonList(ids)}))`).map((r) => r.id)
      )
      const created: Array<EventId.EventId> = []
      const existed: Array<EventId.EventId> = []
      const skipped: Array<BodiesOutcome["skipped"][number]> = []
      const rows: Array<{
        id: string
        type: string
        body: Uint8Array
        proposer: string
        created_height: bigint
        expiration_height: bigint
      }> = []
      for (const [id, event] of bodies) {
        if (processed.has(id)) {
          skipped.push({ id, reason: "processed" })
        } else if (existing.has(id)) {
          existed.push(id)
        } else {
          const resolution = registry.get(event.type)
          if (Option.isNone(resolution)) {
            skipped.push({ id, reason: "unknown-type" })
            continue
          }
          // As the event store checks a broadcast body (the type's `accepts`, else its decoder).
          if (Exit.isFailure(yield* Effect.exit(Effect.suspend(() => resolution.value.type.checkAll([event.body]))))) {
            skipped.push({ id, reason: "invalid-body" })
            continue
          }
          created.push(id)
          rows.push({
            id,
            type: event.type,
            body: event.body,
            proposer: sender,
            created_height: block.height,
            expiration_height: block.height + resolution.value.expirationPeriod
          })
        }
      }
      for (const chunk of chunks(rows, CHUNK)) {
        yield* sql`INSERT INTO resolutions ${sql.insert(chunk as Array<(typeof rows)[number]>)}`
      }
      const votedFor = [...created, ...existed]
      if (votedFor.length > 0) {
        yield* sql`
          INSERT OR IGNORE INTO votes (resolution_id, voter)
          SELECT value, ${sender} FROM json_each(${jsonList(votedFor)})`
      }
      if (skipped.length > 0) {
        yield* Effect.logWarning("VoteBodies entries skipped").pipe(
          Effect.annotateLogs({
            height: block.height.toString(),
            skipped: skipped.map((s) => `${s.id}:${s.reason}`).join(",")
          })
        )
      }
      return { created, existing: existed, skipped } satisfies BodiesOutcome
    },
    atomic
  )

  const applyVoteIds = Effect.fn("VoteLedger.applyVoteIds")(
    function*(sender: string, ids: ReadonlyArray<EventId.EventId>) {
      if ((yield* powerOf(sender)) <= 0n) return yield* new NotAValidator({ sender })
      const unique = [...new Set(ids)]
      // One pass in the common case: insert the votes of every open id; only the ids that got no
      // new vote (duplicates, unknown or processed) are looked up again.
      const inserted = new Set(
        (yield* sql<{ id: string }>`
          INSERT OR IGNORE INTO votes (resolution_id, voter)
          SELECT id, ${sender} FROM resolutions WHERE id IN (SELECT value FROM json_each(${jsonList(unique)}))
          RETURNING resolution_id AS id`).map((r) => r.id)
      )
      const rest = inserted.size === unique.length ? [] : unique.filter((id) => !inserted.has(id))
      const open = rest.length === 0 ? new Set<string>() : new Set(
        (yield* sql<{ id: string }>`
          SELECT id FROM resolutions WHERE id IN (SELECT value FROM json_each(${jsonList(rest)}))`).map((r) => r.id)
      )
      const outcome: IdsOutcome = {
        voted: rest.length === 0 ? unique : unique.filter((id) => inserted.has(id)),
        duplicate: rest.filter((id) => open.has(id)),
        skipped: rest.filter((id) => !open.has(id))
      }
      if (outcome.skipped.length > 0) {
        yield* Effect.logDebug("VoteIds entries skipped (unknown or processed)").pipe(
          Effect.annotateLogs({ sender, skipped: outcome.skipped.length })
        )
      }
      return outcome
    },
    atomic
  )

  /** The power each registered type needs to confirm, and the smallest of them (undefined: no type). */
  const confirmationNeeds = (total: bigint) => {
    const needs = new Map<string, bigint>()
    let least: bigint | undefined
    for (const type of registry.types) {
      const resolution = Option.getOrThrow(registry.get(type))
      const need = max(requiredPower(total, resolution.confirmationThreshold), 1n)
      needs.set(type, need)
      if (least === undefined || need < least) least = need
    }
    return { needs, least }
  }

  const finalizeBlock = Effect.fn("VoteLedger.finalizeBlock")(function*(height: bigint) {
    yield* checkHeight(height)
    const total = yield* totalPower
    const { least, needs } = confirmationNeeds(total)
    // Approved power from the CURRENT validators, with their identities (sorted) and the body, in
    // two passes: every resolution whose power reaches the smallest need (one streaming
    // aggregate over `votes` in key order, then a key lookup each), and every one that expires
    // now (by the expiration index). The exact filter is applied below.
    const reaching = least === undefined ? [] : yield* sql<CandidateRow>`
      SELECT r.id AS id, r.type AS type, r.proposer AS proposer, r.body AS body,
             CAST(r.expiration_height AS TEXT) AS expiration_height,
             CAST(a.power AS TEXT) AS approved, a.voters AS voters
      FROM (
        SELECT v.resolution_id AS id, SUM(p.power) AS power, json_group_array(v.voter ORDER BY v.voter) AS voters
        FROM votes v JOIN validators p ON p.identity = v.voter
        GROUP BY v.resolution_id
        HAVING SUM(p.power) >= ${least}
      ) a
      CROSS JOIN resolutions r ON r.id = a.id`
    const expiring = yield* sql<CandidateRow>`
      SELECT r.id AS id, r.type AS type, r.proposer AS proposer, r.body AS body,
             CAST(r.expiration_height AS TEXT) AS expiration_height,
             CAST(COALESCE(a.power, 0) AS TEXT) AS approved, COALESCE(a.voters, '[]') AS voters
      FROM resolutions r
      LEFT JOIN (
        SELECT v.resolution_id AS id, SUM(p.power) AS power, json_group_array(v.voter ORDER BY v.voter) AS voters
        FROM votes v JOIN validators p ON p.identity = v.voter
        WHERE v.resolution_id IN (SELECT id FROM resolutions WHERE expiration_height <= ${height})
        GROUP BY v.resolution_id
      ) a ON a.id = r.id
      WHERE r.expiration_height <= ${height}`
    const candidates: Array<CandidateRow> = [...reaching]
    if (expiring.length > 0) {
      const seen = new Set(reaching.map((r) => r.id))
      for (const row of expiring) if (!seen.has(row.id)) candidates.push(row)
    }
    candidates.sort((a, b) => compare(a.id, b.id))

    const confirmed: Array<Confirmed> = []
    const expired: Array<EventId.EventId> = []
    const refundable: Array<CandidateRow> = []
    for (const row of candidates) {
      const id = EventId.EventId(row.id)
      const approved = BigInt(row.approved)
      const resolution = registry.get(row.type)
      if (Option.isSome(resolution) && approved >= needs.get(row.type)!) {
        // Confirmation wins over expiry in the same block: resolved once, never refunded.
        confirmed.push({
          id,
          resolution: resolution.value,
          proposer: row.proposer,
          approved,
          body: row.body,
          voters: JSON.parse(row.voters) as Array<string>
        })
      } else if (BigInt(row.expiration_height) <= height) {
        expired.push(id)
        // Each resolution against its own type's refund threshold (the original's defect compared
        // the first expired resolution of a type with 0).
        const refundThreshold = Option.match(resolution, {
          onNone: () => defaults.refundThreshold,
          onSome: (r) => r.refundThreshold
        })
        if (approved > 0n && approved >= requiredPower(total, refundThreshold)) refundable.push(row)
      }
    }

    const resolved: Array<EventId.EventId> = []
    const failures: Array<FinalizeOutcome["failures"][number]> = []
    if (confirmed.length > 0) {
      const outcome = yield* resolveInOrder(confirmed, height).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      resolved.push(...outcome.resolved)
      failures.push(...outcome.failures)
    }

    const refunds: Array<FinalizeOutcome["refunds"][number]> = []
    if (refundable.length > 0) {
      const byVoter = new Map<string, Array<EventId.EventId>>()
      for (const row of refundable) {
        for (const voter of JSON.parse(row.voters) as Array<string>) {
          const list = byVoter.get(voter)
          if (list === undefined) byVoter.set(voter, [EventId.EventId(row.id)])
          else list.push(EventId.EventId(row.id))
        }
      }
      for (const identity of [...byVoter.keys()].sort(compare)) {
        refunds.push({ identity, ids: byVoter.get(identity)!.sort(compare) })
      }
    }

    const done = [...confirmed.map((c) => c.id), ...expired].sort(compare)
    if (done.length > 0) {
      const list = jsonList(done)
      yield* sql`DELETE FROM votes WHERE resolution_id IN (SELECT value FROM json_each(${list}))`
      yield* sql`DELETE FROM resolutions WHERE id IN (SELECT value FROM json_each(${list}))`
      yield* sql`INSERT OR IGNORE INTO processed (id) SELECT value FROM json_each(${list})`
      yield* eventLog.markProcessed(done)
    }

    yield* Metric.incrementBy(resolvedCount, resolved.length)
    yield* Metric.incrementBy(failedCount, failures.length)
    yield* Metric.incrementBy(expiredCount, expired.length)
    if (done.length > 0) {
      yield* Effect.logInfo("block finalized").pipe(
        Effect.annotateLogs({
          height: height.toString(),
          resolved: resolved.length,
          failed: failures.length,
          expired: expired.length,
          refunded: refundable.length
        })
      )
    }
    return { height, resolved, expired, refunds, failures } satisfies FinalizeOutcome
  }, atomic)

  const tableColumns = (table: string) =>
    sql<{ name: string }>`SELECT name FROM pragma_table_info(${table}) ORDER BY cid`.pipe(
      Effect.map((rows) => rows.map((r) => r.name))
    )

  const quoteIdent = (name: string) => `"${name.replaceAll("\"", "\"\"")}"`

  const stateDigest = Effect.gen(function*() {
    const hash = createHash("sha256")
    for (const table of consensusTables) {
      const columns = yield* tableColumns(table)
      hash.update(`table ${table} ${columns.length}\n`)
      if (columns.length === 0) continue
      // quote() renders every SQLite value exactly (integers of any size, blobs as X'..') but
      // text, which it cuts at a NUL: text goes as the hex of its bytes. Ordering by every column
      // makes the row order canonical.
      const value = (c: string) =>
        `CASE typeof(${c}) WHEN 'text' THEN 'T' || hex(${c}) ELSE quote(${c}) END`
      const row = columns.map((c) => value(quoteIdent(c))).join(` || ',' || `)
      const order = columns.map(quoteIdent).join(", ")
      const rows = yield* sql.unsafe<{ row: string }>(
        `SELECT ${row} AS row FROM ${quoteIdent(table)} ORDER BY ${order}`
      )
      for (const { row } of rows) hash.update(`${row.length}:${row}\n`)
    }
    return hash.digest("hex")
  }).pipe(atomic, Effect.withSpan("VoteLedger.stateDigest"))

  const selectResolutions = (ids: Option.Option<ReadonlyArray<string>>) =>
    Effect.gen(function*() {
      const rows = yield* sql<ResolutionRow>`
        WITH approved(id, power) AS (
          SELECT v.resolution_id, SUM(p.power)
          FROM votes v JOIN validators p ON p.identity = v.voter
          GROUP BY v.resolution_id
        )
        SELECT r.id AS id, r.type AS type, r.body AS body, r.proposer AS proposer,
               CAST(r.created_height AS TEXT) AS created_height,
               CAST(r.expiration_height AS TEXT) AS expiration_height,
               CAST(COALESCE(a.power, 0) AS TEXT) AS approved
        FROM resolutions r LEFT JOIN approved a ON a.id = r.id
        ${
        Option.match(ids, {
          onNone: () => sql``,
          onSome: (list) => sql`WHERE r.id IN (SELECT value FROM json_each(${jsonList(list)}))`
        })
      }
        ORDER BY r.id`
      const voters = yield* sql<{ id: string; voter: string }>`
        SELECT resolution_id AS id, voter FROM votes
        ${
        Option.match(ids, {
          onNone: () => sql``,
          onSome: (list) => sql`WHERE resolution_id IN (SELECT value FROM json_each(${jsonList(list)}))`
        })
      }
        ORDER BY resolution_id, voter`
      const byId = votersById(voters)
      return rows.map((r): ResolutionInfo => ({
        id: EventId.EventId(r.id),
        type: r.type,
        body: r.body,
        proposer: r.proposer,
        createdHeight: BigInt(r.created_height),
        expirationHeight: BigInt(r.expiration_height),
        approvedPower: BigInt(r.approved),
        voters: byId.get(r.id) ?? []
      }))
    }).pipe(atomic)

  const voteStatus = (voter: string, ids: ReadonlyArray<EventId.EventId>) =>
    sql<{ id: string; voted: number }>`
      SELECT r.id AS id, EXISTS (SELECT 1 FROM votes v WHERE v.resolution_id = r.id AND v.voter = ${voter}) AS voted
      FROM resolutions r WHERE r.id IN (SELECT value FROM json_each(${jsonList(ids)}))`.pipe(
      Effect.map((rows) => {
        const status = new Map<EventId.EventId, VoteStatus>(ids.map((id) => [id, "no-resolution"]))
        for (const row of rows) status.set(EventId.EventId(row.id), row.voted ? "voted" : "open")
        return status as ReadonlyMap<EventId.EventId, VoteStatus>
      })
    )

  return VoteLedger.of({
    setValidators,
    validators: validatorsList,
    applyVoteBodies,
    applyVoteIds,
    finalizeBlock,
    stateDigest,
    get: (ids) => selectResolutions(Option.some(sortedUnique(ids))),
    all: selectResolutions(Option.none()),
    voteStatus
  })
})

const max = (a: bigint, b: bigint): bigint => (a > b ? a : b)
