/**
 * The hot loop of `VoteLedger.finalizeBlock`: applies confirmed resolutions in id order, each as
 * if in its own savepoint, with one optimistic savepoint per run of `RESOLVE_BATCH`.
 */
import { SqlClient } from "@effect/sql"
import { Cause, Effect, Exit, Option } from "effect"
import type * as EventId from "../events/EventId.js"
import type { AnyResolution, ResolveContext } from "./Resolution.js"

/** A resolution confirmed in this block, with what its `resolve` gets. */
export interface Confirmed {
  readonly id: EventId.EventId
  readonly resolution: AnyResolution
  readonly proposer: string
  readonly approved: bigint
  readonly body: Uint8Array
  /** The current validators that voted for it, sorted. */
  readonly voters: ReadonlyArray<string>
}

/** A confirmed resolution whose payload did not decode or whose `resolve` failed. */
export interface ResolveFailure {
  readonly id: EventId.EventId
  readonly type: string
  readonly error: unknown
}

/** Resolutions applied under one optimistic savepoint. */
export const RESOLVE_BATCH = 256

/**
 * Runs each confirmed resolution's `resolve` in id order, each as if in its own savepoint: a
 * failure undoes that resolution's writes only.
 *
 * This loop is the hot path of a block, so it is optimistic. A run of up to `RESOLVE_BATCH`
 * resolutions shares one savepoint, and within it each group of consecutive resolutions of a type
 * with `resolveAll` is applied by one `resolveAll` call. When a resolution (or a group) fails, the
 * run is rolled back and the resolutions before it are re-applied one savepoint each. Then:
 * - a single failing resolution is recorded (its writes are gone with the rollback);
 * - each resolution of a failing group is applied alone, in its own savepoint, which records the
 *   ones that fail.
 * The next run starts after it. This ends in the same state as a savepoint per resolution because
 * `resolve` is deterministic and `resolveAll` keeps its contract (the same writes as each
 * `resolve` in turn, and a failure when any one would fail). Only side effects outside the
 * database (logs, in-process caches) of a rolled-back `resolve` or `resolveAll` happen twice.
 */
export const resolveInOrder = (confirmed: ReadonlyArray<Confirmed>, height: bigint) =>
  Effect.gen(function*() {
    const open = yield* Effect.serviceOption(SqlClient.TransactionConnection)
    const connection = Option.getOrThrow(open)[0]
    const exec = (text: string) => connection.executeRaw(text, [])
    const resolved: Array<EventId.EventId> = []
    const failures: Array<ResolveFailure> = []

    const contextOf = ({ approved, id, proposer, voters }: Confirmed): ResolveContext => ({
      id,
      height,
      proposer,
      voters,
      approvedPower: approved
    })

    /**
     * The outcome of the effect `make` builds, built when it runs: whatever an event type of the
     * node's own does as it is called (even throw), it is the attempt's failure, not the block's.
     */
    const outcome = <A, E, R>(make: () => Effect.Effect<A, E, R>) => Effect.exit(Effect.suspend(make))

    const attempt = (item: Confirmed) =>
      outcome(() =>
        Effect.flatMap(item.resolution.type.decode(item.body), (payload) => item.resolution.resolve(payload, contextOf(item)))
      )

    /** `confirmed[from, to)`, all of one resolution with `resolveAll`, in one call. */
    const attemptAll = (from: number, to: number) =>
      outcome(() => {
        const items = confirmed.slice(from, to)
        const resolution = items[0]!.resolution
        return Effect.flatMap(
          resolution.type.decodeAll(items.map((item) => item.body)),
          (payloads) => resolution.resolveAll!(payloads.map((payload, k) => ({ payload, context: contextOf(items[k]!) })))
        )
      })

    /** Where consecutive resolutions that one `resolveAll` call can apply, from `from`, end (before `end`). */
    const groupEnd = (from: number, end: number): number => {
      const resolution = confirmed[from]!.resolution
      let to = from + 1
      if (resolution.resolveAll !== undefined) while (to < end && confirmed[to]!.resolution === resolution) to++
      return to
    }

    const fail = (item: Confirmed, cause: Cause.Cause<unknown>) => {
      failures.push({ id: item.id, type: item.resolution.type.name, error: Cause.squash(cause) })
      return Effect.logError("resolution failed; its writes are rolled back and it is consumed").pipe(
        Effect.annotateLogs({ id: item.id, type: item.resolution.type.name, height: height.toString() }),
        Effect.annotateLogs("cause", Cause.pretty(cause))
      )
    }

    /** One resolution in its own savepoint. */
    const alone = (item: Confirmed) =>
      Effect.gen(function*() {
        yield* exec("SAVEPOINT kwil_resolve")
        const exit = yield* attempt(item)
        if (Exit.isSuccess(exit)) {
          yield* exec("RELEASE SAVEPOINT kwil_resolve")
          resolved.push(item.id)
          return
        }
        if (Cause.isInterruptedOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
        yield* exec("ROLLBACK TO SAVEPOINT kwil_resolve")
        yield* exec("RELEASE SAVEPOINT kwil_resolve")
        yield* fail(item, exit.cause)
      })

    // Interruption aborts the block (below): the host's transaction rolls everything back.
    let start = 0
    while (start < confirmed.length) {
      const end = Math.min(start + RESOLVE_BATCH, confirmed.length)
      yield* exec("SAVEPOINT kwil_batch")
      /** The first failure of the run: `confirmed[from, to)`, one resolution or one `resolveAll` group. */
      let failed: { readonly from: number; readonly to: number; readonly cause: Cause.Cause<unknown> } | undefined
      for (let from = start; from < end && failed === undefined;) {
        const to = groupEnd(from, end)
        const exit = to - from === 1 ? yield* attempt(confirmed[from]!) : yield* attemptAll(from, to)
        if (Exit.isFailure(exit)) {
          if (Cause.isInterruptedOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
          failed = { from, to, cause: exit.cause }
        }
        from = to
      }
      if (failed === undefined) {
        yield* exec("RELEASE SAVEPOINT kwil_batch")
        for (let i = start; i < end; i++) resolved.push(confirmed[i]!.id)
        start = end
        continue
      }
      yield* exec("ROLLBACK TO SAVEPOINT kwil_batch")
      yield* exec("RELEASE SAVEPOINT kwil_batch")
      for (let i = start; i < failed.from; i++) yield* alone(confirmed[i]!)
      if (failed.to - failed.from === 1) {
        yield* fail(confirmed[failed.from]!, failed.cause)
      } else {
        // Which of the group failed is not known: each is applied alone, which records those that fail.
        for (let i = failed.from; i < failed.to; i++) yield* alone(confirmed[i]!)
      }
      start = failed.to
    }
    return { resolved, failures }
  })
