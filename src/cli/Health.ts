/**
 * Health checks for `/health`: small effects that each say what is wrong (nothing, when healthy)
 * and a few facts worth showing, combined with `Health.all`.
 *
 * - `listenerHealth`: every registered listener runs (none failed, backing off or stopped);
 * - `progressCheck`: a value that should keep moving (the follower's head or checkpoint, batches
 *   emitted) has moved within `maxAge`, on the Effect `Clock` so tests can use `TestClock`.
 *
 * A check never fails: a check that cannot tell is itself a problem, reported as one.
 */
import { Clock, Duration, Effect, Metric, Option } from "effect"
import { ListenerManager, type ListenerStatus } from "../listener/ListenerManager.js"

/** A JSON value, for the facts `/health` shows. */
export type HealthDetail =
  | string
  | number
  | boolean
  | null
  | ReadonlyArray<HealthDetail>
  | { readonly [key: string]: HealthDetail }

/** What a health check found. */
export interface HealthReport {
  /** Why the node is not healthy, one line each; empty when it is healthy. */
  readonly problems: ReadonlyArray<string>
  /** Facts shown in the `/health` body either way (listener states, seconds since progress). */
  readonly details: { readonly [key: string]: HealthDetail }
}

/** A health check: it reports, it never fails. */
export type HealthCheck<R = never> = Effect.Effect<HealthReport, never, R>

export const healthy = (details: HealthReport["details"] = {}): HealthReport => ({ problems: [], details })

export const unhealthy = (problems: ReadonlyArray<string>, details: HealthReport["details"] = {}): HealthReport => ({
  problems,
  details
})

export const isHealthy = (report: HealthReport): boolean => report.problems.length === 0

/** Every check's problems and details together (details merged by key, later checks win); checks run concurrently. */
export const all = <const Checks extends ReadonlyArray<Effect.Effect<HealthReport, never, unknown>>>(
  ...checks: Checks
): HealthCheck<Effect.Effect.Context<Checks[number]>> =>
  Effect.map(
    Effect.all(checks as ReadonlyArray<HealthCheck<Effect.Effect.Context<Checks[number]>>>, {
      concurrency: "unbounded"
    }),
    (reports) => ({
      problems: reports.flatMap((report) => report.problems),
      details: Object.assign({}, ...reports.map((report) => report.details))
    })
  )

const describeListener = (status: ListenerStatus): string | undefined => {
  const error = Option.match(status.lastError, { onNone: () => "", onSome: (error) => `: ${error}` })
  switch (status.state) {
    case "running":
      return undefined
    case "failed":
      return `listener "${status.name}" failed and stays down until the node restarts it${error}`
    case "backing-off":
      return `listener "${status.name}" is backing off after a failure (restart ${status.restarts + 1} pending)${error}`
    case "stopped":
      return `listener "${status.name}" is not running (is the node a synced validator?)`
  }
}

/**
 * Healthy while every registered listener runs. Details: `listeners`, each listener's state and
 * restarts. `allowStopped: true` accepts `stopped` listeners (a node that is not a validator
 * runs none by design); `failed` and `backing-off` are always problems, and so is a manager with
 * no listener at all (nothing is being watched).
 */
export const listenerHealth = (options?: { readonly allowStopped?: boolean }): HealthCheck<ListenerManager> =>
  Effect.flatMap(ListenerManager, (manager) => manager.status).pipe(
    Effect.map((statuses) => {
      const problems = statuses.flatMap((status) => {
        if (status.state === "stopped" && options?.allowStopped === true) return []
        const problem = describeListener(status)
        return problem === undefined ? [] : [problem]
      })
      if (statuses.length === 0) problems.push("no listener is registered")
      const listeners: Record<string, HealthDetail> = {}
      for (const status of statuses) listeners[status.name] = { state: status.state, restarts: status.restarts }
      return { problems, details: { listeners } }
    })
  )

/** Options of `progressCheck`. */
export interface ProgressOptions<R> {
  /** The name in problems and details, e.g. `"follower"`. */
  readonly name: string
  /** The value that should move: a block height, a count. Any change counts as progress. */
  readonly progress: Effect.Effect<number | bigint, never, R>
  /** How long it may stand still before the check reports a stall. */
  readonly maxAge: Duration.DurationInput
  /**
   * Whether progress is expected now (e.g. the lag is above the confirmation depth). While it
   * says `false`, standing still is fine and the stall clock restarts. Default: always expected.
   */
  readonly expected?: Effect.Effect<boolean, never, R>
}

/**
 * A check that remembers when `progress` last changed and reports a stall once it has stood
 * still, while expected to move, for longer than `maxAge`. Made in an effect because it keeps
 * that memory; the clock starts when it is made, so a fresh node gets `maxAge` to show progress.
 * Details: `{ [name]: { value, secondsSinceProgress } }`.
 */
export const progressCheck = <R>(options: ProgressOptions<R>): Effect.Effect<HealthCheck<R>, never, R> =>
  Effect.gen(function*() {
    const maxAge = Duration.toMillis(options.maxAge)
    let last = yield* options.progress
    let movedAt = yield* Clock.currentTimeMillis
    const expected = options.expected ?? Effect.succeed(true)
    return Effect.gen(function*() {
      const value = yield* options.progress
      const busy = yield* expected
      const now = yield* Clock.currentTimeMillis
      if (value !== last || !busy) {
        last = value
        movedAt = now
      }
      const age = now - movedAt
      const details = { [options.name]: { value: String(value), secondsSinceProgress: Math.floor(age / 1000) } }
      return age > maxAge
        ? unhealthy(
          [`${options.name} stalled: no progress for ${Duration.format(Duration.millis(age))} (limit ${Duration.format(Duration.millis(maxAge))}), still at ${value}`],
          details
        )
        : healthy(details)
    })
  })

/** A gauge's value now, as `progressCheck` wants it (e.g. `eth_deposits_head`). */
export const gaugeValue = <A extends number | bigint>(gauge: Metric.Metric.Gauge<A>): Effect.Effect<A> =>
  Effect.map(Metric.value(gauge), (state) => state.value)

/** A counter's count now, as `progressCheck` wants it (e.g. `eth_follower_batches_total`). */
export const counterValue = <A extends number | bigint>(counter: Metric.Metric.Counter<A>): Effect.Effect<A> =>
  Effect.map(Metric.value(counter), (state) => state.count)
