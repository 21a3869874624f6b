/**
 * Runs every registered listener while the node is a synced validator, Kwil's listener manager.
 *
 * Each listener runs in its own fiber (a `FiberMap` keyed by name) with its own `Scope`,
 * `ListenerContext`, `EventStore`, config section (also its `ConfigProvider`) and logs annotated
 * `listener=<name>`. When the status stops holding, every fiber is interrupted and its
 * finalizers awaited. A failure (error or defect) goes through the listener's `FailurePolicy`;
 * it never reaches the manager or a sibling, except under `shutdown`, which is meant to.
 */
import {
  Cause,
  Clock,
  ConfigProvider,
  Context,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberMap,
  Layer,
  Metric,
  Option,
  Schedule,
  Stream
} from "effect"
import { EventStorage, EventStore } from "../events/EventStore.js"
import { type Backoff, ListenerContext } from "./Listener.js"
import { type RegisteredListener, ListenerRegistry } from "./ListenerRegistry.js"
import { NodeInfo } from "./NodeInfo.js"
import { isActive, ValidatorStatus } from "./ValidatorStatus.js"

/** A listener with policy `shutdown` failed: the node must stop (Kwil v0.8's behaviour). */
export class ListenerShutdown extends Data.TaggedError("ListenerShutdown")<{
  readonly listener: string
  /** The failure, as `ListenerStatus.lastError` shows it. */
  readonly error: string
  readonly cause: Cause.Cause<unknown>
}> {
  override get message() {
    return `listener "${this.listener}" failed and its failure policy is "shutdown", so the node stops: ` +
      `${this.error} (give it onFailure "restart" or "stop" to keep the node running)`
  }
}

/**
 * Where a listener is:
 * - `running`: its fiber runs it;
 * - `backing-off`: it failed under `restart` and waits for its next try;
 * - `stopped`: not running (never started, the node is not an active validator, or it returned);
 * - `failed`: it failed under `stop` or `shutdown` and stays down until the next start.
 */
export type ListenerState = "running" | "backing-off" | "stopped" | "failed"

/** What `ListenerManager.status` reports about one listener. */
export interface ListenerStatus {
  readonly name: string
  readonly state: ListenerState
  /** How often it was run again after a failure, over the manager's life. */
  readonly restarts: number
  /** Its last failure, in one line. Kept after it recovers, until a newer one. */
  readonly lastError: Option.Option<string>
  /** When it entered `state`, epoch milliseconds from the `Clock`. */
  readonly since: number
}

/** Counters per listener (tagged `listener=<name>`): starts = stops + failures + those running now. */
export const metrics = {
  /** Runs begun. */
  starts: Metric.counter("listener_starts", { description: "listener runs begun", incremental: true }),
  /** Runs that ended without a failure: returned, or interrupted by a stop. */
  stops: Metric.counter("listener_stops", { description: "listener runs ended without failure", incremental: true }),
  /** Runs that ended in an error or a defect. */
  failures: Metric.counter("listener_failures", { description: "listener runs that failed", incremental: true }),
  /** Runs begun again after a failure, under `restart`. */
  restarts: Metric.counter("listener_restarts", { description: "listener restarts after failure", incremental: true }),
  /** Listeners running now, all names together. */
  running: Metric.gauge("listener_running", { description: "listeners running now" })
}

export class ListenerManager extends Context.Tag("kwil-listeners/ListenerManager")<ListenerManager, {
  /** Every registered listener's status, in registration order. */
  readonly status: Effect.Effect<ReadonlyArray<ListenerStatus>>
  /** How many listener fibers are alive (running or backing off): 0 whenever the node is not active. */
  readonly fibers: Effect.Effect<number>
  /**
   * Never succeeds; fails with `ListenerShutdown` once a listener with policy `shutdown` has
   * failed and every other listener has been stopped. The node awaits it (e.g.
   * `Effect.raceFirst(node, manager.join)`) and stops when it fails. Once it has failed, the
   * manager starts nothing again.
   */
  readonly join: Effect.Effect<never, ListenerShutdown>
}>() {
  /**
   * The manager, following `ValidatorStatus` for as long as the layer's scope is open. Closing
   * the scope stops every listener and awaits its finalizers.
   */
  static readonly layer: Layer.Layer<
    ListenerManager,
    never,
    ListenerRegistry | ValidatorStatus | NodeInfo | EventStorage
  > = Layer.scoped(ListenerManager, Effect.suspend(() => make))

  /** The manager's metrics, for dashboards and tests. */
  static readonly metrics = metrics
}

/** One line for a failure: the error's tag and message, or the defect's. */
const describe = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.squash(cause)
  const tag = typeof failure === "object" && failure !== null && "_tag" in failure ? String(failure._tag) : undefined
  const text = failure instanceof Error ? failure.message : String(failure)
  const what = Cause.isDie(cause) ? "defect" : tag
  return what === undefined || text.startsWith(what) ? text : `${what}: ${text}`
}

/** The backoff of `restart`: exponential from `initial`, jittered, each delay capped at `max`. */
const backoffSchedule = (backoff: Backoff) =>
  Schedule.exponential(backoff.initial).pipe(
    Schedule.jittered,
    Schedule.modifyDelay((delay) => Duration.min(delay, backoff.max))
  )

interface Entry {
  state: ListenerState
  restarts: number
  lastError: Option.Option<string>
  since: number
}

/** What one listener needs to run, built once per listener (not per start: starting must be cheap). */
interface Prepared {
  readonly listener: RegisteredListener
  readonly run: Effect.Effect<void, unknown>
  readonly entry: Entry
  readonly starts: Metric.Metric.Counter<number>
  readonly stops: Metric.Metric.Counter<number>
  readonly failures: Metric.Metric.Counter<number>
  readonly restarts: Metric.Metric.Counter<number>
}

const make = Effect.gen(function*() {
  const registry = yield* ListenerRegistry
  const validatorStatus = yield* ValidatorStatus
  const node = yield* NodeInfo
  const storage = yield* EventStorage
  const fibers = yield* FiberMap.make<string>()
  const shutdown = yield* Deferred.make<never, ListenerShutdown>()
  const createdAt = yield* Clock.currentTimeMillis
  const prepared = new Map<string, Prepared>()

  const prepare = (listener: RegisteredListener): Prepared => {
    const known = prepared.get(listener.name)
    if (known !== undefined) return known
    const section = node.extensions[listener.name]
    const config = section ?? {}
    const context = Context.make(ListenerContext, {
      name: listener.name,
      identity: node.identity,
      config,
      configured: section !== undefined
    }).pipe(Context.add(EventStore, storage.forListener(listener.name)))
    const run = listener.run.pipe(
      Effect.scoped,
      Effect.provide(context),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(config))))
    )
    const tag = <M extends Metric.Metric.Counter<number>>(metric: M) => Metric.tagged(metric, "listener", listener.name)
    const entry: Entry = { state: "stopped", restarts: 0, lastError: Option.none(), since: createdAt }
    const made: Prepared = {
      listener,
      run,
      entry,
      starts: tag(metrics.starts),
      stops: tag(metrics.stops),
      failures: tag(metrics.failures),
      restarts: tag(metrics.restarts)
    }
    prepared.set(listener.name, made)
    return made
  }

  /** Moves `entry` to `state` now; returns the time. */
  const enter = (entry: Entry, state: ListenerState) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      entry.state = state
      entry.since = now
      return now
    })

  /** One run, with its bookkeeping done whatever ends it (uninterruptible but for the run itself). */
  const runOnce = (p: Prepared) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const startedAt = yield* enter(p.entry, "running")
        yield* Metric.increment(p.starts)
        yield* Metric.increment(metrics.running)
        const exit = yield* Effect.exit(restore(p.run))
        yield* Metric.incrementBy(metrics.running, -1)
        if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) {
          yield* Metric.increment(p.stops)
          const endedAt = yield* enter(p.entry, "stopped")
          if (Exit.isSuccess(exit)) yield* Effect.logInfo("listener returned; it stays stopped until the next start")
          return { exit, ranFor: endedAt - startedAt }
        }
        yield* Metric.increment(p.failures)
        p.entry.lastError = Option.some(describe(exit.cause))
        const endedAt = yield* enter(p.entry, p.listener.onFailure === "restart" ? "backing-off" : "failed")
        yield* Effect.logError(`listener failed (policy ${p.listener.onFailure})`, exit.cause)
        return { exit, ranFor: endedAt - startedAt }
      })
    )

  /** Runs a listener until it returns, is stopped, or fails in a way its policy does not retry. */
  const supervise = (p: Prepared) =>
    Effect.gen(function*() {
      // Made on the first failure only: most runs never need it, and starting must stay cheap.
      let backoff: Schedule.ScheduleDriver<Duration.Duration, unknown> | undefined
      while (true) {
        const { exit, ranFor } = yield* runOnce(p)
        if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return
        switch (p.listener.onFailure) {
          case "stop":
            return
          case "shutdown":
            yield* Deferred.fail(
              shutdown,
              new ListenerShutdown({ listener: p.listener.name, error: describe(exit.cause), cause: exit.cause })
            )
            return
          case "restart":
            backoff ??= yield* Schedule.driver(backoffSchedule(p.listener.backoff))
            if (ranFor >= Duration.toMillis(p.listener.backoff.resetAfter)) yield* backoff.reset
            yield* backoff.next(undefined).pipe(
              Effect.onInterrupt(() => enter(p.entry, "stopped"))
            )
            p.entry.restarts++
            yield* Metric.increment(p.restarts)
            yield* Effect.logInfo(`restarting listener (restart ${p.entry.restarts})`)
        }
      }
    }).pipe(Effect.annotateLogs("listener", p.listener.name))

  const startAll = Effect.flatMap(registry.all, (listeners) =>
    Effect.forEach(
      listeners,
      // Prepared inside the fiber: a node-side throw (e.g. in `forListener`) hits this listener only.
      (listener) =>
        FiberMap.run(fibers, listener.name, Effect.suspend(() => supervise(prepare(listener))), { onlyIfMissing: true }),
      { discard: true }
    ))

  /** Interrupts every listener fiber at once, then awaits them all (finalizers included). */
  const stopAll = Effect.suspend(() => Fiber.interruptAll(Array.from(fibers, ([, fiber]) => fiber)))

  const follow = validatorStatus.changes.pipe(
    Stream.map(isActive),
    Stream.changes,
    Stream.runForEach((active) =>
      active
        ? Effect.zipRight(Effect.logInfo("node is a synced validator: starting listeners"), startAll)
        : Effect.zipRight(Effect.logInfo("node is not a synced validator: stopping listeners"), stopAll)
    )
  )

  // After a shutdown, stop following the status and stop every other listener.
  yield* follow.pipe(
    Effect.raceFirst(Deferred.await(shutdown)),
    Effect.ensuring(stopAll),
    Effect.ignore,
    Effect.forkScoped
  )

  return ListenerManager.of({
    status: Effect.map(registry.all, (listeners) =>
      listeners.map(({ name }) => {
        const entry = prepared.get(name)?.entry
        return entry === undefined
          ? { name, state: "stopped", restarts: 0, lastError: Option.none(), since: createdAt }
          : { name, ...entry }
      })),
    fibers: FiberMap.size(fibers),
    join: Deferred.await(shutdown)
  })
}).pipe(Effect.annotateLogs("service", "ListenerManager"))
