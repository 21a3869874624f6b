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
 * The stream is pull-based, with ranges fetched ahead: while catching up, the `inFlight - 1`
 * ranges after the one fetched are fetched too (see `fetchBatch`), and wait, in memory only, for
 * the next pulls (a slow consumer holds up to that many finished ranges). A consumer that wants
 * whole batches made while it stores one adds `Stream.buffer`, as eth_deposits does. A consumer
 * that stops (or crashes) before saving simply resumes from its last saved checkpoint.
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
  /**
   * Ranges fetched at once while catching up (default 6; not a finite number: the default): a
   * provider sees up to this many `eth_getLogs` at once (one a range no longer wanted is
   * aborted). 1 fetches one range at a time.
   */
  readonly inFlight?: number
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

/**
 * Ranges fetched at once by default (see `Options.inFlight`). 6 rather than 4: on the catch-up
 * benchmark's local anvil, where the node's own CPU is the bottleneck, 6 took 445 ms against 469
 * (14 catch-ups each, alternating) and 471 against 514 (10 each); 12 was no faster than 4. Each
 * range in flight may hold one answer in memory (up to 10 MiB, viem's cap) until it is used.
 */
export const defaultInFlight = 6

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
    const inFlight = options.inFlight !== undefined && Number.isFinite(options.inFlight)
      ? Math.max(1, Math.floor(options.inFlight))
      : defaultInFlight

    // In the metrics at 0 from the start, so that `increase()` sees the first violation.
    yield* Metric.incrementBy(finalityViolations, 0)
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

    /**
     * Block `to` is `tag` (`safe`/`finalized`) on the node asked (the tag check: the confirmed
     * height came from whichever node answered the tag, and a node behind it, on a fork, must not
     * serve the range's logs). A node whose tag is below `to` fails the unit, as a lagging one.
     */
    const tagged = (tag: "safe" | "finalized", to: bigint) =>
      Effect.flatMap(client.block(tag), (block) =>
        Option.isSome(block) && block.value.number >= to
          ? Effect.void
          : Effect.fail(new InconsistentChain({ detail: `block ${to} is not ${tag} on the node serving it` })))

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
          const tagBlock = yield* rpc(client.block(confirmations))
          confirmed = Option.match(tagBlock, { onNone: () => -1n, onSome: (b) => b.number })
          yield* Ref.set(tagCache, { head: h, confirmed })
        }
      }
      const max = yield* Ref.updateAndGet(confirmedMax, (m) => (confirmed > m ? confirmed : m))
      return { confirmed: max, head: h }
    })

    /** After a violation: the highest known checkpoint that is still canonical. */
    const findAncestor = (violation: FinalityViolation) => Effect.gen(function*() {
      // Read as the units read: on one node that serves the block (a node that lacks it, behind
      // the others, moves the read to the next URL), never taking "not served" for "orphaned".
      const isCanonical = (c: Checkpoint) =>
        c.hash === undefined
          ? Effect.succeed(true) // the unverifiable start: rescanning from it is always right
          : rpc(client.sameNode(served(c.height))).pipe(Effect.map((b) => b.hash === c.hash))
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
     * The unit of the range `[from, to]`, on ONE node (a node without block `to` must not answer
     * its logs; a failed step moves the whole unit to the next URL): block `to` (the pre check),
     * the logs, then block `to` again (the post check), with a number of confirmations block
     * `to + N` (the depth check) and, when `anchored`, block `from - 1` (the anchor), together.
     * The anchor is read after the logs, so the logs come from a chain that still held it;
     * whether it is the checkpoint's block is decided by whoever uses the unit (`fetchBatch`), so
     * a unit needs nothing from the range before it and any number can run at once. The depth
     * check proves `to` has its confirmations on the chain that served the logs: the confirmed
     * height is the highest head seen less N (a lagging URL never moves it back), and after a
     * reorg to a shorter chain that head is above the chain's, so without it a block could be
     * emitted with fewer confirmations and then orphaned by a reorg within the depth. A node
     * without block `to + N` fails the unit (retried, as a lagging node is) until it has it.
     * Under a `safe`/`finalized` tag the tag check (`tagged`) stands in for the depth check.
     */
    const unit = (from: bigint, to: bigint, anchored: boolean) =>
      rpc(
        client.sameNode(Effect.gen(function*() {
          const pre = yield* served(to)
          const logs = yield* client.getLogs({ ...options.filter, fromBlock: from, toBlock: to })
          const problem = inconsistency(logs, from, to, pre.hash)
          if (problem !== undefined) return yield* new InconsistentChain({ detail: problem })
          const [post, anchor] = yield* Effect.all(
            [
              served(to),
              anchored ? Effect.asSome(served(from - 1n)) : Effect.succeedNone,
              typeof confirmations === "number" ? served(to + BigInt(confirmations)) : tagged(confirmations, to)
            ],
            { concurrency: 3 }
          )
          if (post.hash !== pre.hash) {
            return yield* new InconsistentChain({ detail: `block ${to} changed from ${pre.hash} to ${post.hash}` })
          }
          return { _tag: "Logs" as const, logs, toHash: pre.hash, anchor: Option.map(anchor, (b) => b.hash) }
        })).pipe(
          Effect.catchTag("RangeTooLarge", (refusal) => Effect.succeed({ _tag: "Refused" as const, refusal }))
        )
      )

    /**
     * The unit of `[from, to]` running in its own fiber, in the stream's scope (closing it
     * interrupts the unit). `ahead`: started before the checkpoint it continues was known.
     */
    const launch = (from: bigint, to: bigint, anchored: boolean, ahead: boolean) =>
      Effect.map(Effect.forkIn(unit(from, to, anchored), scope), (fiber) => ({ from, to, ahead, fiber }))
    type Launched = Effect.Effect.Success<ReturnType<typeof launch>>

    /** The units started for the ranges after the one being fetched, in order. */
    const ahead = yield* Ref.make<ReadonlyArray<Launched>>([])
    const dropAhead = Effect.flatMap(Ref.getAndSet(ahead, []), (units) => Fiber.interruptAll(units.map((u) => u.fiber)))
    /**
     * Whether ranges are fetched ahead: from the start, and after a refusal only once a range
     * succeeded again, so a provider's range limit is probed one request at a time.
     */
    const sizeAccepted = yield* Ref.make(true)

    /**
     * The units of the next `inFlight` ranges from `cp`, the first being the range to fetch now:
     * those already started if they cover these ranges (any end: a shorter range than the plan
     * is still a whole range), the rest started now, each range sized as if all before it
     * succeed. A started unit that does not continue these ranges (the plan changed after a
     * refusal) is interrupted. After a refusal, just the first range until a size is accepted
     * (see `sizeAccepted`).
     */
    const window = (cp: Checkpoint, state: LogRange.State, confirmed: bigint) =>
      Effect.gen(function*() {
        const width = (yield* Ref.get(sizeAccepted)) ? inFlight : 1
        const started = yield* Ref.getAndSet(ahead, [])
        const units: Array<Launched> = []
        let from = cp.height + 1n
        for (const u of started) {
          if (u.from !== from) {
            yield* Fiber.interrupt(u.fiber)
            continue
          }
          units.push(u)
          from = u.to + 1n
        }
        let sized = state
        for (let i = 0; i < units.length; i++) sized = LogRange.succeeded(policy, sized)
        while (units.length < width && from <= confirmed) {
          // A range's anchor is block `from - 1`; the first range's is the checkpoint, which has
          // no hash to compare on a fresh start (nothing to read then).
          const startsAhead = units.length > 0
          const anchored = startsAhead ? from > 0n : cp.hash !== undefined && cp.height >= 0n
          const to = LogRange.end(sized, from, confirmed)
          units.push(yield* launch(from, to, anchored, startsAhead))
          sized = LogRange.succeeded(policy, sized)
          from = to + 1n
        }
        yield* Ref.set(ahead, units.slice(1))
        return units[0]!
      })

    /**
     * The batch after `cp`: adapts the range to refusals and checks the logs against the `to`
     * hash and the checkpoint. Or `Moved` when `cp`'s block is no longer canonical (a finality
     * violation).
     *
     * Pipelined: while this range is fetched, the next `inFlight - 1` ranges' units run too, so
     * a catch-up costs about `3 / inFlight` round trips a range rather than three (block check,
     * logs, post check), and the node works on the next logs while we read these. A unit started ahead
     * checks itself in full; it is used only if the range before it succeeded and its anchor is
     * that range's end (else the range is fetched again), and is interrupted on any other outcome.
     */
    const fetchBatch = (cp: Checkpoint, confirmed: bigint) => Effect.gen(function*() {
      for (;;) {
        const state = yield* Ref.get(range)
        const current = yield* window(cp, state, confirmed)
        const result = yield* Fiber.join(current.fiber)
        if (result._tag === "Refused") {
          const blocks = LogRange.span(current.from, current.to)
          const next = LogRange.refused(state, blocks, result.refusal.hint)
          if (Option.isNone(next)) return yield* new LogRangeIrreducible({ block: current.from, cause: result.refusal })
          yield* Ref.set(range, next.value)
          yield* Ref.set(sizeAccepted, false)
          yield* Effect.logDebug("eth_getLogs range refused; shrinking").pipe(
            Effect.annotateLogs({ blocks, next: next.value.size, detail: result.refusal.detail })
          )
          continue
        }
        if (cp.hash !== undefined && Option.isSome(result.anchor) && result.anchor.value !== cp.hash) {
          // Started ahead, it may have read the chain before the range before it did (that one's
          // unit retried after a reorg, say): fetch it again rather than call a finality violation
          // (the window interrupts the units started after it, which no longer continue `cp`).
          if (current.ahead) continue
          return { _tag: "Moved" as const, actual: result.anchor.value }
        }
        yield* Ref.update(range, (s) => LogRange.succeeded(policy, s))
        yield* Ref.set(sizeAccepted, true)
        const logs = [...result.logs].sort(compareLogs)
        return new Batch({ from: current.from, to: current.to, toHash: result.toHash, logs, confirmed })
      }
    }).pipe(
      // What runs ahead was planned on this range succeeding: drop it on any other outcome.
      Effect.onExit((exit) => (Exit.isSuccess(exit) && exit.value._tag === "Batch" ? Effect.void : dropAhead)),
      // An inconsistent answer is retried as a whole (with backoff); the other errors already were.
      Effect.retry({ schedule: retrySchedule, while: (e) => e._tag === "InconsistentChain" })
    )

    /** The checkpoint height whose head-below-it case was already checked and logged (see `belowCheckpoint`). */
    const checkedBelow = yield* Ref.make(-1n)

    /**
     * The chain's head is below the checkpoint `cp`: a node still syncing, or a chain reset or
     * reorganised to fewer blocks (same genesis). The newest checkpoint known at or below the
     * confirmed height tells them apart when it is no longer canonical: then it is a finality
     * violation, rewound now rather than once the chain grows past `cp`. Otherwise the follower
     * waits, and says why once a checkpoint (a silent wait looks like a hang).
     */
    const belowCheckpoint = (cp: Checkpoint, t: { readonly head: bigint; readonly confirmed: bigint }) =>
      Effect.gen(function*() {
        if ((yield* Ref.get(checkedBelow)) === cp.height) return Option.none<Rewind>()
        yield* Ref.set(checkedBelow, cp.height)
        const recent = (yield* Ref.get(known)).filter((c) => c.height <= t.confirmed && c.hash !== undefined).at(-1)
        const settled = recent !== undefined || options.history === undefined
          ? Option.fromNullable(recent)
          : Option.filter(yield* options.history(t.confirmed + 1n), (c) => c.hash !== undefined && c.height <= t.confirmed)
        if (Option.isSome(settled)) {
          const block = yield* rpc(client.block(settled.value.height))
          if (Option.isSome(block) && block.value.hash !== settled.value.hash) {
            return Option.some(yield* rewind(settled.value, settled.value.hash!, block.value.hash))
          }
        }
        yield* (cp.hash === undefined ? Effect.logInfo : Effect.logWarning)(
          cp.hash === undefined
            ? "the chain's head is below the starting block: waiting for it"
            : "the chain's head is below the checkpoint: a node still syncing, or a chain reset or reorganised " +
              "to fewer blocks; waiting until it passes the checkpoint, whose hash is checked then"
        ).pipe(Effect.annotateLogs({ head: String(t.head), checkpoint: String(cp.height) }))
        return Option.none<Rewind>()
      })

    const step: Effect.Effect<FollowerEvent, FollowerError> = Effect.gen(function*() {
      for (;;) {
        const cp = yield* Ref.get(checkpoint)
        const t = yield* target
        if (t.confirmed <= cp.height) {
          if (t.head < cp.height) {
            const rewound = yield* belowCheckpoint(cp, t)
            if (Option.isSome(rewound)) return rewound.value
          }
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
