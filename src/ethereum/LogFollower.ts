/**
 * A confirmed, reorg-aware stream of logs. From a checkpoint it emits `Batch`es of logs for
 * confirmed ranges only (N confirmations, or the `safe`/`finalized` tag), so a reorg within the
 * confirmation depth never reaches the consumer. With each batch it checks that the
 * checkpoint's hash is still canonical (after fetching the logs, on the node that served them);
 * if not, the reorg was deeper than the depth (a `FinalityViolation`): the batch is dropped, the
 * violation logged and counted, and the stream emits a `Rewind` to the common ancestor, then
 * re-scans from there. At the chain's tip that check comes with the next confirmed block.
 *
 * A consumer handles each element in one transaction, so its state and checkpoint never diverge:
 *
 * ```ts
 * LogFollower.follow({ filter, from, confirmations: 12 }).pipe(
 *   Stream.runForEach((event) => store.transaction(
 *     event._tag === "Batch"
 *       ? Effect.forEach(event.logs, broadcastLog).pipe(Effect.zipRight(saveCheckpoint(event.checkpoint)))
 *       : dropStateAbove(event.checkpoint.height).pipe(Effect.zipRight(saveCheckpoint(event.checkpoint)))
 *   ))
 * )
 * ```
 *
 * The stream is pull-based: a batch is fetched when the consumer asks for it (a consumer that wants
 * the next range fetched while it stores one adds `Stream.buffer`, as eth_deposits does), and a
 * consumer that stops (or crashes) before saving simply resumes from its last saved checkpoint.
 */
import { Data, Deferred, Duration, Effect, Metric, Option, Ref, Schedule, Stream, SubscriptionRef } from "effect"
import type { Hash } from "viem"
import { type BlockHeader, type EthLog, EthereumClient, type LogFilter } from "./EthereumClient.js"
import { InconsistentChain, isHealable, LogRangeIrreducible, type RpcError } from "./errors.js"
import * as LogRange from "./LogRange.js"
import * as Retry from "./Retry.js"

/**
 * How far a consumer got: every log up to and including block `height` is handled. `hash` is that
 * block's hash, checked against the chain before the next batch; without it (a fresh start) the
 * first batch cannot detect a reorg below it.
 */
export interface Checkpoint {
  readonly height: bigint
  readonly hash?: Hash
}

/** The checkpoint for "start scanning at block `height`" (nothing handled yet). */
export const startAt = (height: bigint): Checkpoint => ({ height: height - 1n })

/** What counts as confirmed: `head - n` for a number of confirmations, or the block of a tag. */
export type Confirmation = number | "safe" | "finalized"

/** The logs of the confirmed blocks `[from, to]`, all from the chain whose block `to` is `toHash`. */
export class Batch extends Data.TaggedClass("Batch")<{
  readonly from: bigint
  readonly to: bigint
  readonly toHash: Hash
  /** Sorted by block, then log index. */
  readonly logs: ReadonlyArray<EthLog>
  /** The confirmed height when the batch was made: `to < confirmed` means the follower is catching up. */
  readonly confirmed: bigint
}> {
  /** The checkpoint to store with this batch's effects (in the same transaction). */
  get checkpoint(): Checkpoint {
    return { height: this.to, hash: this.toHash }
  }
}

/** A block the follower had confirmed is no longer canonical: a reorg deeper than the confirmation depth. */
export class FinalityViolation extends Data.TaggedError("FinalityViolation")<{
  readonly height: bigint
  readonly expected: Hash
  readonly actual: Hash
}> {
  override get message() {
    return `finality violation: confirmed block ${this.height} was ${this.expected} and is now ${this.actual}; ` +
      `a reorg deeper than the confirmation depth (raise the confirmations or use the "finalized" tag)`
  }
}

/**
 * After a `FinalityViolation`: everything the consumer did above `checkpoint.height` came from
 * orphaned blocks. Drop or redo it and store `checkpoint`, in one transaction; the next batches
 * re-scan from `checkpoint.height + 1`.
 */
export class Rewind extends Data.TaggedClass("Rewind")<{
  /** The common ancestor: still canonical. */
  readonly checkpoint: Checkpoint
  readonly violation: FinalityViolation
}> {}

/** An element of the follower's stream. */
export type FollowerEvent = Batch | Rewind

/** No block the follower (or the consumer's `history`) knows is still canonical: it cannot tell where to resume. */
export class ReorgBeyondHistory extends Data.TaggedError("ReorgBeyondHistory")<{
  readonly violation: FinalityViolation
  /** The lowest height it compared. */
  readonly lowest: bigint
}> {
  get healable(): false {
    return false
  }
  override get message() {
    return `${this.violation.message}; no known block down to ${this.lowest} is canonical any more, so the ` +
      `common ancestor is unknown: restart from an older checkpoint (or pass \`history\`)`
  }
}

/** A new-heads subscription that said nothing for the reconnection interval. */
class HeadsSilent extends Data.TaggedError("HeadsSilent")<{ readonly after: Duration.Duration }> {
  get healable(): true {
    return true
  }
  override get message() {
    return `no new head for ${Duration.format(this.after)}; re-making the subscription`
  }
}

/** Every way the follower's stream can fail: only errors that cannot heal (the rest are retried). */
export type FollowerError = RpcError | InconsistentChain | LogRangeIrreducible | ReorgBeyondHistory

export interface Options {
  /** The logs to follow. */
  readonly filter: LogFilter
  /** Where the consumer is. */
  readonly from: Checkpoint
  /** Confirmations (e.g. 12) or a tag. */
  readonly confirmations: Confirmation
  /** The adaptive `eth_getLogs` range (start 1000 blocks; `max` is the chunk size). */
  readonly range?: Partial<LogRange.Policy>
  /** A new-heads source silent this long is re-made (Kwil's `reconnection_interval`; default 60 s). */
  readonly reconnectionInterval?: Duration.DurationInput
  /** How often to poll heads when the provider refuses subscriptions (default 4 s). */
  readonly pollInterval?: Duration.DurationInput
  /** Backoff for healable errors. */
  readonly retry?: Partial<Retry.Options>
  /**
   * The consumer's older checkpoints: the latest one strictly below `height`, if it keeps them.
   * Consulted after a finality violation when the follower's own window of recent batches has no
   * canonical block left, to find the common ancestor.
   */
  readonly history?: (height: bigint) => Effect.Effect<Option.Option<Checkpoint>>
  /** How many recent batch checkpoints the follower keeps for finding ancestors (default 256). */
  readonly historySize?: number
}

/** Deep reorgs seen (a health signal: it should stay 0). */
export const finalityViolations = Metric.counter("eth_follower_finality_violations_total", {
  description: "Reorgs deeper than the confirmation depth",
  incremental: true
})
/** Batches emitted. */
export const batchesEmitted = Metric.counter("eth_follower_batches_total", { incremental: true })
/** Logs emitted. */
export const logsEmitted = Metric.counter("eth_follower_logs_total", { incremental: true })

const compareLogs = (a: EthLog, b: EthLog) =>
  a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1

/**
 * Logs that cannot belong to the chain whose block `to` is `toHash`: outside the range, removed,
 * two hashes for one block, or a different hash at `to`.
 */
const inconsistency = (logs: ReadonlyArray<EthLog>, from: bigint, to: bigint, toHash: Hash): string | undefined => {
  const hashes = new Map<bigint, Hash>([[to, toHash]])
  for (const log of logs) {
    if (log.removed) return `log ${log.transactionHash}:${log.logIndex} is marked removed`
    if (log.blockNumber < from || log.blockNumber > to) {
      return `log in block ${log.blockNumber} outside the requested ${from}..${to}`
    }
    const known = hashes.get(log.blockNumber)
    if (known !== undefined && known !== log.blockHash) {
      return `block ${log.blockNumber} is ${known} but a log says ${log.blockHash}`
    }
    hashes.set(log.blockNumber, log.blockHash)
  }
  return undefined
}

/** The confirmed, reorg-aware stream of batches (and rewinds); see the module comment. */
export const follow = (options: Options): Stream.Stream<FollowerEvent, FollowerError, EthereumClient> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const client = yield* EthereumClient
    const policy = LogRange.policy(options.range)
    const retrySchedule = Retry.schedule(options.retry)
    const rpc = Retry.healable(options.retry)
    const historySize = Math.max(1, options.historySize ?? 256)
    const reconnection = Duration.decode(options.reconnectionInterval ?? Duration.seconds(60))
    const pollInterval = Duration.decode(options.pollInterval ?? Duration.seconds(4))
    const confirmations = options.confirmations

    const checkpoint = yield* Ref.make<Checkpoint>(options.from)
    /** Recent checkpoints, ascending: candidates for the common ancestor. */
    const known = yield* Ref.make<ReadonlyArray<Checkpoint>>([options.from])
    const range = yield* Ref.make(LogRange.initial(policy))
    /**
     * The next range's `to` block, fetched with this range's post check (see `fetchBatch`); taken,
     * whatever it holds, by the next attempt.
     */
    const carried = yield* Ref.make<BlockHeader | undefined>(undefined)
    const confirmedMax = yield* Ref.make(-1n)
    const tagCache = yield* Ref.make<{ readonly head: bigint; readonly confirmed: bigint } | undefined>(undefined)

    // Heads: the highest seen, fed by the client's subscription (or polling), re-made when silent.
    const head = yield* SubscriptionRef.make(yield* rpc(client.headNumber))
    const headsFailed = yield* Deferred.make<never, RpcError>()
    // Heads are re-made forever while the error heals (a quiet chain is silent, not broken).
    const headsRetry = Retry.schedule({ ...Retry.defaults, ...options.retry, maxRetries: Infinity })
    const watchdog = <E>(s: Stream.Stream<bigint, E>) =>
      s.pipe(Stream.timeoutFail(() => new HeadsSilent({ after: reconnection }), reconnection))
    const polling = Stream.repeatEffectWithSchedule(client.headNumber, Schedule.spaced(pollInterval))
    const heads = watchdog(client.newHeads).pipe(
      Stream.catchAll((e) =>
        isHealable(e) || !client.subscribes
          ? Stream.fail(e)
          : Stream.unwrap(
            Effect.logWarning("new-heads subscription refused; polling instead").pipe(
              Effect.annotateLogs({ error: e.message }),
              Effect.as(watchdog(polling))
            )
          )
      ),
      Stream.tapError((e) => Effect.logInfo(e.message)),
      Stream.retry(headsRetry),
      Stream.runForEach((n) => SubscriptionRef.update(head, (h) => (n > h ? n : h)))
    )
    yield* heads.pipe(
      Effect.catchAll((e) => e._tag === "HeadsSilent" ? Effect.die(e) : Deferred.fail(headsFailed, e)),
      Effect.forkScoped
    )

    /** Waits until the head moves past `seen` (or the heads source fails for good). */
    const awaitHead = (seen: bigint) =>
      Effect.raceFirst(
        head.changes.pipe(Stream.filter((h) => h > seen), Stream.take(1), Stream.runDrain),
        Deferred.await(headsFailed)
      )

    /** A block the chain must have (one we confirmed, or below the confirmed head); not retried. */
    const served = (height: bigint) =>
      client.block(height).pipe(
        Effect.flatMap(Option.match({
          onNone: () =>
            Effect.fail(new InconsistentChain({ detail: `block ${height} is not served (a lagging node?)` })),
          onSome: Effect.succeed
        }))
      )

    /** The confirmed height now, and the head it was computed from. Never goes backwards. */
    const target = Effect.gen(function*() {
      const h = yield* SubscriptionRef.get(head)
      let confirmed: bigint
      if (typeof confirmations === "number") {
        confirmed = h - BigInt(confirmations)
      } else {
        const cached = yield* Ref.get(tagCache)
        if (cached !== undefined && cached.head === h) {
          confirmed = cached.confirmed
        } else {
          const tagged = yield* rpc(client.block(confirmations))
          confirmed = Option.match(tagged, { onNone: () => -1n, onSome: (b) => b.number })
          yield* Ref.set(tagCache, { head: h, confirmed })
        }
      }
      const max = yield* Ref.updateAndGet(confirmedMax, (m) => (confirmed > m ? confirmed : m))
      return { confirmed: max, head: h }
    })

    /** After a violation: the highest known checkpoint that is still canonical. */
    const findAncestor = (violation: FinalityViolation) => Effect.gen(function*() {
      const isCanonical = (c: Checkpoint) =>
        c.hash === undefined
          ? Effect.succeed(true) // the unverifiable start: rescanning from it is always right
          : rpc(client.block(c.height)).pipe(Effect.map(Option.exists((b) => b.hash === c.hash)))
      const candidates = (yield* Ref.get(known)).filter((c) => c.height < violation.height).reverse()
      let lowest = violation.height
      for (const c of candidates) {
        lowest = c.height
        if (yield* isCanonical(c)) return c
      }
      if (options.history !== undefined) {
        for (;;) {
          const older = yield* options.history(lowest)
          if (Option.isNone(older) || older.value.height >= lowest) break
          lowest = older.value.height
          if (yield* isCanonical(older.value)) return older.value
        }
      }
      return yield* new ReorgBeyondHistory({ violation, lowest })
    })

    const rewind = (cp: Checkpoint, expected: Hash, actual: Hash) => Effect.gen(function*() {
      const violation = new FinalityViolation({ height: cp.height, expected, actual })
      yield* Metric.increment(finalityViolations)
      yield* Effect.logError(violation.message)
      const ancestor = yield* findAncestor(violation)
      yield* Ref.set(checkpoint, ancestor)
      yield* Ref.update(known, (ks) => ks.filter((k) => k.height <= ancestor.height))
      yield* Effect.logWarning("rewinding to the common ancestor and re-scanning").pipe(
        Effect.annotateLogs({ ancestor: String(ancestor.height) })
      )
      return new Rewind({ checkpoint: ancestor, violation })
    }).pipe(Effect.annotateLogs({ height: String(cp.height), expected, actual }))

    /**
     * The batch after `cp`: adapts the range to refusals and checks the logs against the `to`
     * hash. Or `Moved` when `cp`'s block is no longer canonical (a finality violation).
     */
    const fetchBatch = (cp: Checkpoint, confirmed: bigint) => Effect.gen(function*() {
      const from = cp.height + 1n
      // The start has no hash to check (and block -1 does not exist).
      const anchored = cp.hash !== undefined && cp.height >= 0n
      for (;;) {
        const state = yield* Ref.get(range)
        const to = LogRange.end(state, from, confirmed)
        let ahead = yield* Ref.getAndSet(carried, undefined)
        // The next range's end if this one succeeds (and it is confirmed already).
        const nextTo = to < confirmed ? LogRange.end(LogRange.succeeded(policy, state), to + 1n, confirmed) : undefined
        // Block `to`, its logs, then block `to` again and the checkpoint's block, together: one
        // unit on ONE node (a node without block `to` must not answer its logs), and a failed step
        // moves the whole unit to the next URL. The checkpoint is checked after the logs, so the
        // logs come from a chain that still held it. With the post check go the checkpoint's block
        // and the next range's `to` block (its pre check: fetched after these logs, so before its
        // own), at once: one round trip for the three, and the next range starts with its logs.
        // A carried pre check may come from another URL than the unit's: a node on another fork
        // or without the block then fails the post check, and the range is fetched again.
        const result = yield* rpc(
          client.sameNode(Effect.gen(function*() {
            // Used by the unit's first attempt only: a retry (after a failure it may have caused)
            // checks afresh.
            const pre = ahead !== undefined && ahead.number === to ? ahead : yield* served(to)
            ahead = undefined
            const logs = yield* client.getLogs({ ...options.filter, fromBlock: from, toBlock: to })
            const problem = inconsistency(logs, from, to, pre.hash)
            if (problem !== undefined) return yield* new InconsistentChain({ detail: problem })
            const [post, anchor, next] = yield* Effect.all(
              [
                served(to),
                anchored ? Effect.asSome(served(cp.height)) : Effect.succeedNone,
                // Only a help: a failure here leaves the next range to fetch its own.
                nextTo === undefined ? Effect.succeedNone : Effect.orElseSucceed(client.block(nextTo), Option.none)
              ],
              { concurrency: 3 }
            )
            if (post.hash !== pre.hash) {
              return yield* new InconsistentChain({ detail: `block ${to} changed from ${pre.hash} to ${post.hash}` })
            }
            if (Option.isSome(anchor) && anchor.value.hash !== cp.hash) {
              return { _tag: "Moved" as const, actual: anchor.value.hash }
            }
            return { _tag: "Logs" as const, logs, toHash: pre.hash, next }
          })).pipe(
            Effect.catchTag("RangeTooLarge", (refusal) => Effect.succeed({ _tag: "Refused" as const, refusal }))
          )
        )
        if (result._tag === "Moved") return result
        if (result._tag === "Refused") {
          const blocks = LogRange.span(from, to)
          const next = LogRange.refused(state, blocks, result.refusal.hint)
          if (Option.isNone(next)) return yield* new LogRangeIrreducible({ block: from, cause: result.refusal })
          yield* Ref.set(range, next.value)
          yield* Effect.logDebug("eth_getLogs range refused; shrinking").pipe(
            Effect.annotateLogs({ blocks, next: next.value.size, detail: result.refusal.detail })
          )
          continue
        }
        yield* Ref.update(range, (s) => LogRange.succeeded(policy, s))
        yield* Ref.set(carried, Option.getOrUndefined(result.next))
        const logs = [...result.logs].sort(compareLogs)
        return new Batch({ from, to, toHash: result.toHash, logs, confirmed })
      }
    }).pipe(
      // An inconsistent answer is retried as a whole (with backoff); the other errors already were.
      Effect.retry({ schedule: retrySchedule, while: (e) => e._tag === "InconsistentChain" })
    )

    const step: Effect.Effect<FollowerEvent, FollowerError> = Effect.gen(function*() {
      for (;;) {
        const cp = yield* Ref.get(checkpoint)
        const t = yield* target
        if (t.confirmed <= cp.height) {
          yield* awaitHead(t.head)
          continue
        }
        const fetched = yield* fetchBatch(cp, t.confirmed)
        if (fetched._tag === "Moved") return yield* rewind(cp, cp.hash!, fetched.actual)
        yield* Ref.set(checkpoint, fetched.checkpoint)
        yield* Ref.update(known, (ks) => [...ks, fetched.checkpoint].slice(-historySize))
        yield* Metric.increment(batchesEmitted)
        yield* Metric.incrementBy(logsEmitted, fetched.logs.length)
        return fetched
      }
    })

    return Stream.repeatEffect(step)
  }))
