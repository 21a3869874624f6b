/**
 * Retrying RPC work: a capped, jittered exponential `Schedule` that only retries errors that can
 * heal (see `errors.ts`) and waits at least as long as a rate-limiting provider asked.
 */
import { Duration, Effect, Option, Schedule, ScheduleDecision } from "effect"
import { isHealable } from "./errors.js"

/** The backoff. */
export interface Options {
  /** The first delay (default 1 second, as Kwil's listener). */
  readonly base: Duration.DurationInput
  /** No delay is longer than this (default 10 seconds, as Kwil's listener: 10 retries take about 75 s). */
  readonly cap: Duration.DurationInput
  /** Give up after this many retries (default, or `Infinity`: never, while the error can heal). */
  readonly maxRetries?: number
}

export const defaults: Options = { base: Duration.seconds(1), cap: Duration.seconds(10) }

const retryAfterOf = (error: unknown): Duration.Duration | undefined => {
  if (typeof error === "object" && error !== null && "retryAfter" in error && Option.isOption(error.retryAfter)) {
    const value = Option.getOrUndefined(error.retryAfter)
    return Duration.isDuration(value) ? value : undefined
  }
  return undefined
}

/**
 * The schedule: exponential from `base`, jittered (80%..120%), capped at `cap`, stretched to a
 * provider's `Retry-After`, and continuing only while the input error is healable.
 */
export const schedule = (options: Partial<Options> = {}): Schedule.Schedule<unknown, unknown> => {
  const o = { ...defaults, ...options }
  const cap = Duration.decode(o.cap)
  const backoff = Schedule.exponential(o.base).pipe(
    Schedule.modifyDelay((d) => Duration.min(d, cap)),
    Schedule.jittered
  )
  const stretched = Schedule.intersect(Schedule.identity<unknown>(), backoff).pipe(
    Schedule.whileInput(isHealable),
    Schedule.modifyDelay(([error], d) => {
      const after = retryAfterOf(error)
      return after !== undefined && Duration.greaterThan(after, d) ? after : d
    })
  )
  return o.maxRetries === undefined || !Number.isFinite(o.maxRetries)
    ? stretched : Schedule.intersect(stretched, Schedule.recurs(o.maxRetries))
}

/**
 * Runs `effect`, retrying healable failures with `schedule(options)` and logging each retry with
 * the error's message, so an operator sees why events are delayed. A failure that is not retried
 * (it cannot heal, or the retries are spent) is not logged here: the caller gets it.
 *
 * What `Effect.retry` does, with its schedule's driver made at the first failure rather than
 * before every run. Nearly every call succeeds at once, and `Effect.retry` made a driver and
 * provided the schedule's `CurrentIterationMetadata` (a new copy of the fiber's context) before
 * each one: with the metric fix in `EthereumClient`, about a third of a block-hash call's CPU on
 * the follower's path. The one difference: an attempt is not given that metadata (nothing here
 * reads it).
 */
export const healable = (options: Partial<Options> = {}) => {
  // The failure beside the schedule's output, so the retry's warning can name it.
  const policy = Schedule.intersect(Schedule.identity<unknown>(), schedule(options)).pipe(
    Schedule.onDecision(([error], decision) =>
      ScheduleDecision.isContinue(decision)
        ? Effect.logWarning("RPC work failed, retrying with backoff").pipe(
          Effect.annotateLogs({ error: error instanceof Error ? error.message : String(error) })
        )
        : Effect.void
    )
  )
  return <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.catchAll(effect, (first) =>
      Effect.flatMap(Schedule.driver(policy), (driver) => {
        const retryAfter = (error: E): Effect.Effect<A, E, R> =>
          Effect.matchEffect(driver.next(error), {
            // The schedule is done: the last failure stands.
            onFailure: () => Effect.fail(error),
            onSuccess: () => Effect.catchAll(effect, retryAfter)
          })
        return retryAfter(first)
      }))
}
