/**
 * Where the `eth_deposits` listener got to, as kept in its own KV space (never sent anywhere).
 *
 * - `checkpoint`: the last block whose logs are all broadcast, `{ height, hash }`, written in the
 *   same transaction as those broadcasts. UTF-8 JSON `{"height":"123","hash":"0x…"}` (the height
 *   a decimal string: JSON numbers lose precision past 2^53). Kwil kept only a height (`lh`); the
 *   hash lets the follower notice, after a restart, that the block it stopped at was reorged out.
 * - `history`: the last `historySize` batch checkpoints, oldest first, in the same JSON shape: the
 *   follower's `history` lookup for finding the common ancestor after a deep reorg that happened
 *   while the listener was stopped (its own in-memory window starts empty at each start).
 * - `source`: the chain (its id and the hash of its block 0) and escrow the two are of,
 *   `{"chainId":"1","contract":"0x…","genesis":"0x…"}` (the address lowercased), written when a
 *   run starts without one, or without a checkpoint (a run that stored nothing locks nothing). A
 *   checkpoint of another chain or contract would resume a scan that never covered this one (Kwil
 *   resumed `max(lh, starting_height)` whatever the contract): a run whose source differs from a
 *   checkpoint's fails with `CheckpointOfAnotherSource` instead. Stores from before this key (or
 *   before its genesis) have none, and adopt the first run's.
 *
 * Both are decoded with `Schema`: a value that does not decode is a `CorruptCheckpoint`, never a
 * silent rescan from zero.
 */
import { Data, Effect, Either, Option, ParseResult, Schema } from "effect"
import type { Hash } from "viem"
import type { EventStoreError, EventStoreService } from "../events/EventStore.js"
import * as EventType from "../events/EventType.js"
import { Hash32, hash32 } from "../ethereum/EthereumClient.js"
import type { Checkpoint } from "../ethereum/LogFollower.js"

/** The KV key of the checkpoint. */
export const checkpointKey = "checkpoint"
/** The KV key of the recent batch checkpoints. */
export const historyKey = "history"
/** How many batch checkpoints `history` keeps. */
export const historySize = 64

/** A checkpoint as JSON: the height as a decimal string, the hash when known. */
const CheckpointJson = Schema.Struct({
  height: Schema.BigInt,
  hash: Schema.optional(Hash32)
})

/**
 * `Uint8Array <-> Checkpoint`, through `EventType.json`'s UTF-8 JSON step: bytes that are not
 * UTF-8 fail the decode (a `CorruptCheckpoint`) rather than throw.
 */
export const CheckpointBytes = EventType.json(CheckpointJson)
/** `Uint8Array <-> ReadonlyArray<Checkpoint>`. */
export const HistoryBytes = EventType.json(Schema.Array(CheckpointJson))

/** The KV key of the chain and contract the checkpoint belongs to. */
export const sourceKey = "source"

/** What a checkpoint is a checkpoint of. */
export interface Source {
  readonly chainId: bigint
  /** Lowercased. */
  readonly contract: string
  /**
   * The hash of the chain's block 0, which tells two chains of one id apart (a dev chain
   * restarted, its escrow at the same address). Stores from before it was kept have none.
   */
  readonly genesis?: Hash
}

const SourceBytes = EventType.json(Schema.Struct({
  chainId: Schema.BigInt,
  contract: Schema.String,
  genesis: Schema.optional(Hash32)
}))

/** Whether `stored` and `configured` are of one chain and contract (a genesis missing on either side is not compared). */
const sameSource = (stored: Source, configured: Source): boolean =>
  stored.chainId === configured.chainId && stored.contract.toLowerCase() === configured.contract &&
  (stored.genesis === undefined || configured.genesis === undefined || stored.genesis === configured.genesis)

/** `chain 1 (genesis 0x…), contract 0x…`: the genesis only when the two sources differ there. */
const describeSource = (source: Source, other: Source): string =>
  `chain ${source.chainId}${
    source.genesis !== undefined && other.genesis !== undefined && source.genesis !== other.genesis
      ? ` (genesis ${source.genesis})`
      : ""
  }, contract ${source.contract}`

/** The stored checkpoint is of another chain or contract than this run's: resuming from it would skip blocks. */
export class CheckpointOfAnotherSource extends Data.TaggedError("CheckpointOfAnotherSource")<{
  readonly stored: Source
  readonly configured: Source
}> {
  override get message() {
    return `the eth_deposits listener's stored checkpoint is of ${describeSource(this.stored, this.configured)}, ` +
      `but this run follows ${describeSource(this.configured, this.stored)} ` +
      `(rpc_provider, contract_address): restore them, or delete the KV keys ` +
      `"${checkpointKey}", "${historyKey}" and "${sourceKey}" to scan from starting_height ` +
      `(already stored events are not duplicated)`
  }
}

/** A stored checkpoint that cannot be read: the listener will not guess where to resume. */
export class CorruptCheckpoint extends Data.TaggedError("CorruptCheckpoint")<{
  readonly key: string
  readonly detail: string
}> {
  override get message() {
    return `the eth_deposits listener's stored "${this.key}" cannot be decoded (${this.detail}); ` +
      `delete that KV key to resume from starting_height (already stored events are not duplicated)`
  }
}

const toCheckpoint = (c: typeof CheckpointJson.Type): Checkpoint =>
  c.hash === undefined ? { height: c.height } : { height: c.height, hash: c.hash as Hash }

const decodeWith = <A, I>(schema: Schema.Schema<A, I>, key: string) => (bytes: I) =>
  Either.mapLeft(Schema.decodeEither(schema)(bytes), (e) => {
    // One line: the first issue, where it is.
    const issue = ParseResult.ArrayFormatter.formatErrorSync(e)[0]
    const detail = issue === undefined ? "unreadable" : `${issue.path.length > 0 ? `at ${issue.path.join(".")}: ` : ""}${issue.message}`
    return new CorruptCheckpoint({ key, detail })
  })

/**
 * A checkpoint as its JSON object: the encoded side of `CheckpointJson`, key for key. A hash that
 * is not 32 bytes of hex throws, as the schema's encoder did: stored, it could not be read back.
 */
const toJson = (c: Checkpoint) => {
  if (c.hash === undefined) return { height: String(c.height) }
  if (!hash32.test(c.hash)) throw new Error(`checkpoint ${c.height}: its hash ${c.hash} is not 32 bytes of hex`)
  return { height: String(c.height), hash: c.hash }
}

/**
 * Encodes a checkpoint for the KV. By hand, as `CheckpointBytes` encodes it (a test holds the two
 * to the same bytes): every batch writes the history, and the schema's encoder cost about 0.2 ms
 * for 64 checkpoints, the hand-written one a sixth of that.
 */
export const encodeCheckpoint = (c: Checkpoint): Uint8Array => new TextEncoder().encode(JSON.stringify(toJson(c)))

/** Decodes a checkpoint read from the KV. */
export const decodeCheckpoint = (bytes: Uint8Array): Either.Either<Checkpoint, CorruptCheckpoint> =>
  Either.map(decodeWith(CheckpointBytes, checkpointKey)(bytes), toCheckpoint)

/** Encodes the history for the KV (by hand, as `HistoryBytes` does; see `encodeCheckpoint`). */
export const encodeHistory = (cs: ReadonlyArray<Checkpoint>): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(cs.map(toJson)))

/** Decodes the history read from the KV. */
export const decodeHistory = (bytes: Uint8Array): Either.Either<ReadonlyArray<Checkpoint>, CorruptCheckpoint> =>
  Either.map(decodeWith(HistoryBytes, historyKey)(bytes), (cs) => cs.map(toCheckpoint))

type Kv = EventStoreService["kv"]

/** The stored checkpoint, if any. */
export const readCheckpoint = (kv: Kv) =>
  Effect.flatMap(kv.get(checkpointKey), Option.match({
    onNone: () => Effect.succeed(Option.none<Checkpoint>()),
    onSome: (bytes) => Effect.map(decodeCheckpoint(bytes), Option.some)
  }))

/**
 * Where a run of `source` resumes: the stored checkpoint, if any, once it is known to be
 * `source`'s. A checkpoint of another chain or contract fails with `CheckpointOfAnotherSource`;
 * with no checkpoint stored, `source` is recorded (over another run's, which stored nothing to
 * resume from). One transaction, so a record that cannot be read (`CorruptCheckpoint`) leaves
 * the store as it was.
 */
export const resumePoint = (
  store: Pick<EventStoreService, "kv" | "transaction">,
  source: Source
): Effect.Effect<Option.Option<Checkpoint>, EventStoreError | CorruptCheckpoint | CheckpointOfAnotherSource> => {
  const configured: Source = { ...source, contract: source.contract.toLowerCase() }
  const storedSource = Effect.flatMap(store.kv.get(sourceKey), Option.match({
    onNone: () => Effect.succeedNone,
    onSome: (bytes) =>
      Effect.map(decodeWith(SourceBytes, sourceKey)(bytes), ({ chainId, contract, genesis }) =>
        Option.some<Source>(genesis === undefined ? { chainId, contract } : { chainId, contract, genesis: genesis as Hash }))
  }))
  return store.transaction(Effect.gen(function*() {
    const checkpoint = yield* readCheckpoint(store.kv)
    const stored = yield* storedSource
    if (Option.isSome(checkpoint) && Option.isSome(stored) && !sameSource(stored.value, configured)) {
      return yield* new CheckpointOfAnotherSource({ stored: stored.value, configured })
    }
    // Stores from before the source (or its genesis) was kept adopt this run's.
    const upToDate = Option.exists(stored, (s) =>
      sameSource(s, configured) && (s.genesis !== undefined || configured.genesis === undefined))
    if (!upToDate) yield* store.kv.set(sourceKey, Schema.encodeSync(SourceBytes)(configured))
    return checkpoint
  }))
}

/** The stored history (empty when none). */
export const readHistory = (kv: Kv) =>
  Effect.flatMap(kv.get(historyKey), Option.match({
    onNone: () => Effect.succeed<ReadonlyArray<Checkpoint>>([]),
    onSome: decodeHistory
  }))

/**
 * The checkpoint writes of one run of the listener: `write(checkpoint)` stores `checkpoint` and
 * appends it to the history (dropping entries at or above its height: after a rewind those came
 * from orphaned blocks). Run each inside its batch's transaction.
 *
 * The history is read once, when the writer is made (an unreadable one counts as empty), and then
 * kept here, so a batch does not read and decode it back before writing it. What is kept runs
 * ahead of the database only when a batch's transaction fails, and that ends the run, and this
 * writer with it: the next run reads the history again.
 */
export const makeWriter = (kv: Kv) =>
  Effect.map(
    readHistory(kv).pipe(Effect.orElseSucceed((): ReadonlyArray<Checkpoint> => [])),
    (stored) => {
      let history = stored
      return (checkpoint: Checkpoint) =>
        Effect.suspend(() => {
          history = [...history.filter((c) => c.height < checkpoint.height), checkpoint].slice(-historySize)
          return Effect.zipRight(
            kv.set(historyKey, encodeHistory(history)),
            kv.set(checkpointKey, encodeCheckpoint(checkpoint))
          )
        })
    }
  )

/** One `write` of a writer made for it (reads the history first): for a single checkpoint. */
export const writeCheckpoint = (kv: Kv, checkpoint: Checkpoint) =>
  Effect.flatMap(makeWriter(kv), (write) => write(checkpoint))
