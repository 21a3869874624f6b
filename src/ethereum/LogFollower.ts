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
 * The stream is pull-based, with one range fetched ahead: while a batch is fetched, the next
 * range's logs are already asked for (see `fetchBatch`), and that range waits, in memory only,
 * for the next pull. A consumer that wants whole batches made while it stores one adds
 * `Stream.buffer`, as eth_deposits does. A consumer that stops (or crashes) before saving simply
 * resumes from its last saved checkpoint.
 */
import { Data, Deferred, Duration, Effect, Exit, Fiber, Metric, Option, Ref, Schedule, Stream, SubscriptionRef } from "effect"
import type { Hash } from "viem"
import { type EthLog, EthereumClient, type LogFilter } from "./EthereumClient.js"
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
    /** The stream's scope: a unit started ahead (see `fetchBatch`) is interrupted when it closes. */
    const scope = yield* Effect.scope
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
     * One range's unit, on ONE node (a node without block `to` must not answer its logs; a failed
     * step moves the whole unit to the next URL): block `to` (the pre check), the logs, then block
     * `to` again (the post check) and the checkpoint's block (the anchor), together. The anchor is
     * checked after the logs, so the logs come from a chain that still held it. `preChecked` is
     * completed with block `to`'s hash as soon as the pre check has it: the next range may start
     * then (see `fetchBatch`); `launch` completes it with none if the unit ends without one.
     */
    const unit = (cp: Checkpoint, to: bigint, preChecked: Deferred.Deferred<Option.Option<Hash>>) => {
      const from = cp.height + 1n
      // The start has no hash to check (and block -1 does not exist).
      const anchored = cp.hash !== undefined && cp.height >= 0n
      return rpc(
        client.sameNode(Effect.gen(function*() {
          const pre = yield* served(to)
          yield* Deferred.succeed(preChecked, Option.some(pre.hash))
          const logs = yield* client.getLogs({ ...options.filter, fromBlock: from, toBlock: to })
          const problem = inconsistency(logs, from, to, pre.hash)
          if (problem !== undefined) return yield* new InconsistentChain({ detail: problem })
          const [post, anchor] = yield* Effect.all(
            [served(to), anchored ? Effect.asSome(served(cp.height)) : Effect.succeedNone],
            { concurrency: 2 }
          )
          if (post.hash !== pre.hash) {
            return yield* new InconsistentChain({ detail: `block ${to} changed from ${pre.hash} to ${post.hash}` })
          }
          if (Option.isSome(anchor) && anchor.value.hash !== cp.hash) {
            return { _tag: "Moved" as const, actual: anchor.value.hash }
          }
          return { _tag: "Logs" as const, logs, toHash: pre.hash }
        })).pipe(
          Effect.catchTag("RangeTooLarge", (refusal) => Effect.succeed({ _tag: "Refused" as const, refusal }))
        )
      )
    }

    /** The unit of `(cp.height, to]` running in its own fiber (in the stream's scope). */
    const launch = (cp: Checkpoint, to: bigint) =>
      Effect.gen(function*() {
        const preChecked = yield* Deferred.make<Option.Option<Hash>>()
        const fiber = yield* Effect.forkIn(
          Effect.ensuring(unit(cp, to, preChecked), Deferred.succeed(preChecked, Option.none())),
          scope
        )
        return { cp, to, preChecked, fiber }
      })
    type Launched = Effect.Effect.Success<ReturnType<typeof launch>>

    /** The next range's unit, started while this one's checks ran; dropped when the plan changed. */
    const ahead = yield* Ref.make<Launched | undefined>(undefined)
    const dropAhead = Effect.flatMap(
      Ref.getAndSet(ahead, undefined),
      (a) => (a === undefined ? Effect.void : Fiber.interrupt(a.fiber))
    )
    /** The unit of `(cp.height, to]`: the one started ahead if it is that very unit, else a new one. */
    const unitFor = (cp: Checkpoint, to: bigint) =>
      Effect.flatMap(Ref.get(ahead), (a) =>
        a !== undefined && a.to === to && a.cp.height === cp.height && a.cp.hash === cp.hash
          ? Effect.as(Ref.set(ahead, undefined), a)
          : Effect.zipRight(dropAhead, launch(cp, to)))

    /**
     * The batch after `cp`: adapts the range to refusals and checks the logs against the `to`
     * hash. Or `Moved` when `cp`'s block is no longer canonical (a finality violation).
     *
     * Pipelined: once this range's pre check has block `to`'s hash, the next range's unit starts
     * with that block as its checkpoint, as if this range succeeded, so two `eth_getLogs` are in
     * flight: the node works on the next logs while we read and check these (one at a time, the
     * node idled while we parsed each answer). That unit checks itself in full, and it is used
     * only if this range then succeeds with that very hash and the next plan is unchanged (else it
     * is interrupted and the range fetched afresh). At most two ranges are ever in flight: the
     * one after the next starts only once this one is done.
     */
    const fetchBatch = (cp: Checkpoint, confirmed: bigint) => Effect.gen(function*() {
      const from = cp.height + 1n
      for (;;) {
        const state = yield* Ref.get(range)
        const to = LogRange.end(state, from, confirmed)
        const current = yield* unitFor(cp, to)
        if (to < confirmed) {
          const nextTo = LogRange.end(LogRange.succeeded(policy, state), to + 1n, confirmed)
          const toHash = yield* Deferred.await(current.preChecked)
          if (Option.isSome(toHash)) yield* Ref.set(ahead, yield* launch({ height: to, hash: toHash.value }, nextTo))
        }
        const result = yield* Fiber.join(current.fiber)
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
        const logs = [...result.logs].sort(compareLogs)
        // The range the unit covered (the plan's, as `unitFor` checks), so a batch cannot name another.
        return new Batch({ from: current.cp.height + 1n, to: current.to, toHash: result.toHash, logs, confirmed })
      }
    }).pipe(
      // Whatever ran ahead was planned on this range succeeding: drop it on any other outcome (a
      // refusal's new plan drops it in `unitFor`).
      Effect.onExit((exit) => (Exit.isSuccess(exit) && exit.value._tag === "Batch" ? Effect.void : dropAhead)),
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
