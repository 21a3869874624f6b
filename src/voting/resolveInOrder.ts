/**
 * The hot loop of `VoteLedger.finalizeBlock`: applies confirmed resolutions in id order, each as
 * if in its own savepoint, with one optimistic savepoint per run of `RESOLVE_BATCH`.
 */
import { SqlClient } from "@effect/sql"
import { Cause, Effect, Exit, Option } from "effect"
import type * as EventId from "../events/EventId.js"
import type { AnyResolution } from "./Resolution.js"

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
 * This loop is the hot path of a block, so it is optimistic: a run of up to `RESOLVE_BATCH`
 * resolutions shares one savepoint. When one fails, the run is rolled back, the resolutions
 * before the failing one are re-applied one savepoint each, the failing one is recorded (its
 * writes are gone with the rollback), and the next run starts after it. Since `resolve` is
 * deterministic this ends in the same state as a savepoint per resolution, at a third of the
 * statements; only side effects outside the database (logs) of a re-applied `resolve` repeat.
 */
export const resolveInOrder = (confirmed: ReadonlyArray<Confirmed>, height: bigint) =>
  Effect.gen(function*() {
    const open = yield* Effect.serviceOption(SqlClient.TransactionConnection)
    const connection = Option.getOrThrow(open)[0]
    const exec = (text: string) => connection.executeRaw(text, [])
    const resolved: Array<EventId.EventId> = []
    const failures: Array<ResolveFailure> = []

    const attempt = ({ approved, body, id, proposer, resolution, voters }: Confirmed) =>
      Effect.exit(
        Effect.flatMap(
          resolution.type.decode(body),
          (payload) => resolution.resolve(payload, { id, height, proposer, voters, approvedPower: approved })
        )
      )

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
      let failed: { readonly at: number; readonly cause: Cause.Cause<unknown> } | undefined
      for (let i = start; i < end && failed === undefined; i++) {
        const exit = yield* attempt(confirmed[i]!)
        if (Exit.isFailure(exit)) {
          if (Cause.isInterruptedOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
          failed = { at: i, cause: exit.cause }
        }
      }
      if (failed === undefined) {
        yield* exec("RELEASE SAVEPOINT kwil_batch")
        for (let i = start; i < end; i++) resolved.push(confirmed[i]!.id)
        start = end
        continue
      }
      yield* exec("ROLLBACK TO SAVEPOINT kwil_batch")
      yield* exec("RELEASE SAVEPOINT kwil_batch")
      for (let i = start; i < failed.at; i++) yield* alone(confirmed[i]!)
      yield* fail(confirmed[failed.at]!, failed.cause)
      start = failed.at + 1
    }
    return { resolved, failures }
  })

