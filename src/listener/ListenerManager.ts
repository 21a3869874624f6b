/**
 * Runs every registered listener while the node is a synced validator, Kwil's listener manager.
 *
 * Each listener runs in its own fiber (kept by name, as a `FiberMap` would) with its own `Scope`,
 * `ListenerContext`, `EventStore`, config section (also its `ConfigProvider`) and logs annotated
 * `listener=<name>`. When the status stops holding, every fiber is interrupted and its
 * finalizers awaited. A failure (error or defect) goes through the listener's `FailurePolicy`;
 * it never reaches the manager or a sibling, except under `shutdown`, which is meant to.
 */
import {
  Array as Arr,
  Cause,
  Clock,
  ConfigProvider,
  Context,
  Data,
  DefaultServices,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  FiberRefs,
  HashMap,
  Layer,
  Metric,
  MetricLabel,
  Option,
  Runtime,
  Schedule,
  Scope,
  Stream
} from "effect"
import { EventLog } from "../events/EventLog.js"
import { EventStorage, EventStore } from "../events/EventStore.js"
import { type Backoff, ListenerContext, type NodeOnly } from "./Listener.js"
import { type RegisteredListener, ListenerRegistry } from "./ListenerRegistry.js"
import { NodeInfo } from "./NodeInfo.js"
import { isActive, ValidatorStatus, ValidatorStatusControl } from "./ValidatorStatus.js"

/**
 * The node's `ValidatorStatus` stream ended, or failed with a defect: the manager can no longer
 * tell whether the node holds its seat, so it stopped every listener and starts none again.
 */
export class ValidatorStatusEnded extends Data.TaggedError("ValidatorStatusEnded")<{
  readonly cause: Cause.Cause<unknown>
}> {
  override get message() {
    const how = Cause.isEmpty(this.cause) ? "ended" : `failed: ${Cause.pretty(this.cause).split("\n")[0]}`
    return `the node's ValidatorStatus stream ${how}, so every listener is stopped: it must last as long ` +
      `as the node (a stream that ends, like Stream.make(status), cannot say when the seat is lost); restart the node`
  }
}

/**
 * The node's services no listener is given, even where the node's context (or the one it was
 * registered in) holds them: with them, a listener could read and write other listeners' events
 * and keys, or start and stop its siblings and register new ones.
 */
const nodeOnly = [EventStorage, EventLog, ValidatorStatusControl, ListenerRegistry] as const
// The same services as the type `make` refuses listeners for: this fails to compile if they part.
const sameAsNodeOnly: [Context.Tag.Identifier<typeof nodeOnly[number]>] extends [NodeOnly]
  ? [NodeOnly] extends [Context.Tag.Identifier<typeof nodeOnly[number]>] ? true : never
  : never = true
void sameAsNodeOnly

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
   * failed and every other listener has been stopped, or with `ValidatorStatusEnded` once the
   * node's status stream ended (or died) and every listener has been stopped. The node awaits it (e.g.
   * `Effect.raceFirst(node, manager.join)`) and stops when it fails. Once it has failed, the
   * manager starts nothing again.
   */
  readonly join: Effect.Effect<never, ListenerShutdown | ValidatorStatusEnded>
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

/**
 * The backoff of `restart`: exponential from `initial`, capped at `max`, then jittered down by up
 * to a fifth, so no delay passes `max` and listeners failing together at the cap do not restart
 * in step.
 */
const backoffSchedule = (backoff: Backoff) =>
  Schedule.exponential(backoff.initial).pipe(
    Schedule.modifyDelay((delay) => Duration.min(delay, backoff.max)),
    Schedule.jitteredWith({ min: 0.8, max: 1 })
  )

interface Entry {
  state: ListenerState
  restarts: number
  lastError: Option.Option<string>
  since: number
}

/** What the manager gives every run (the `Scope` comes from the run itself). */
type Given = ListenerContext | EventStore

/**
 * What one listener needs to run, built once per listener when the manager starts (or, for one
 * registered later, on its first start), so that a start costs about one bare fork.
 *
 * Everything a listener sees (the context it captured at registration, its `ListenerContext` and
 * `EventStore`, its config section as its `ConfigProvider`, the log annotation `listener=<name>`)
 * is baked into `context` and `fiberRefs`, which its fiber is forked with: what the registry's
 * `run` wrapper, `Effect.provide`, `Effect.withConfigProvider` and `Effect.annotateLogs` around
 * each run would give it, without their cost (the first merges two contexts at every run; each of
 * the others sets a `FiberRef`, copying the fiber's refs, at every start and resets it at every
 * stop). Together with `FiberMap.run`, which rebuilds a runtime from its parent at every call,
 * those wrappers were most of a flip's time. The first run's `Scope` goes into the fork's context
 * the same way (see `startAll`).
 */
interface Prepared {
  readonly listener: RegisteredListener
  readonly context: Context.Context<Given>
  readonly fiberRefs: FiberRefs.FiberRefs
  /** The listener's effect, needing the run's `Scope`. */
  readonly body: Effect.Effect<void, unknown, Given | Scope.Scope>
  readonly entry: Entry
  /** The clock `since` is read from (the manager's: a `TestClock` under test). */
  readonly clock: Clock.Clock
  /**
   * The labels of this listener's counters: `listener=<name>` plus the manager's metric labels, as
   * `Metric.increment(Metric.tagged(counter, "listener", name))` would add them. One array for the
   * listener's life: the metric registry caches its hooks by that array, whereas
   * `Metric.tagged(...)` builds a new one, hence a new metric key to hash and look up, at every
   * update.
   */
  readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
  /** The manager's metric labels (those of the untagged `running` gauge). */
  readonly managerLabels: ReadonlyArray<MetricLabel.MetricLabel>
}

/** The labels of a listener's counters: `listener=<name>` plus the manager's. */
const labelsOf = (name: string, managerLabels: ReadonlyArray<MetricLabel.MetricLabel>) =>
  Arr.union([MetricLabel.make("listener", name)], managerLabels)

/** How one run ended, and when it started and ended (`Clock` milliseconds). */
interface Ran {
  readonly exit: Exit.Exit<void, unknown>
  readonly startedAt: number
  readonly endedAt: number
}

/**
 * Whether a run lasted at least `ms`. Compared as `endedAt >= startedAt + ms`, not by subtracting:
 * the `TestClock`'s times are fractional after jittered sleeps, and a run set to end exactly `ms`
 * after it started could come out a hair short by `endedAt - startedAt`.
 */
const lasted = (ran: Ran, ms: number): boolean => ran.endedAt >= ran.startedAt + ms

/** A listener's run ended without a failure: it returned, or it was stopped. */
export const endedCleanly = (exit: Exit.Exit<void, unknown>): boolean =>
  Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)

const make = Effect.gen(function*() {
  const registry = yield* ListenerRegistry
  const validatorStatus = yield* ValidatorStatus
  const node = yield* NodeInfo
  const storage = yield* EventStorage
  /** Failed by the first listener with policy `shutdown` that fails: the manager then stops everything. */
  const tripped = yield* Deferred.make<never, ListenerShutdown>()
  /** `join`'s: failed with `tripped`'s error once every listener has been stopped. */
  const shutdown = yield* Deferred.make<never, ListenerShutdown | ValidatorStatusEnded>()
  const createdAt = yield* Clock.currentTimeMillis
  const prepared = new Map<string, Prepared>()
  /** The status of listeners whose preparation threw at their last start (see `startAll`). */
  const unprepared = new Map<string, Entry>()
  /**
   * The listener fibers alive (running, backing off, or still releasing after a stop), by name:
   * a plain map rather than a `FiberMap`, whose `run` rebuilds a runtime per fork.
   */
  const live = new Map<string, Fiber.RuntimeFiber<void>>()
  /** Called, then forgotten, when `live` is empty: how a stop awaits every fiber at once. */
  const drained = new Set<() => void>()
  /** Set when the layer's scope closes: nothing starts after that. */
  let closed = false

  /**
   * Builds what a listener needs from the manager's fiber, and registers its counters at 0 (so a
   * dashboard sees every listener, and `rate()` works from its first run). May throw:
   * `forListener` is node code.
   */
  const prepare = (listener: RegisteredListener, parent: Fiber.RuntimeFiber<unknown, unknown>): Prepared => {
    const known = prepared.get(listener.name)
    if (known !== undefined) return known
    // Own keys only: a listener named `constructor` must not find `Object` as its section.
    const section = Object.hasOwn(node.extensions, listener.name) ? node.extensions[listener.name] : undefined
    const config = section ?? {}
    // The manager's fiber's services underneath, what the listener captured at registration over
    // them (its requirements were resolved then: a service of the node's own with the same tag
    // must not replace one), and what the manager gives on top (the run's own `Scope` goes on
    // top of all at each run): what the registry's self-contained `run` would merge at every
    // run, merged once here.
    const context = Context.merge(parent.currentContext, listener.context).pipe(
      Context.omit(...nodeOnly),
      Context.add(ListenerContext, {
        name: listener.name,
        identity: node.identity,
        config,
        configured: section !== undefined
      }),
      Context.add(EventStore, storage.forListener(listener.name))
    )
    const refs = parent.getFiberRefs()
    const services = Context.add(
      FiberRefs.getOrDefault(refs, DefaultServices.currentServices),
      ConfigProvider.ConfigProvider,
      ConfigProvider.fromMap(new Map(Object.entries(config)))
    )
    const annotations = HashMap.set(
      FiberRefs.getOrDefault(refs, FiberRef.currentLogAnnotations),
      "listener",
      listener.name as unknown
    )
    const managerLabels = FiberRefs.getOrDefault(refs, FiberRef.currentMetricLabels)
    const made: Prepared = {
      listener,
      // Forked as `FiberMap.run` forks: the parent's refs and context (see `startAll`).
      context,
      fiberRefs: FiberRefs.updateManyAs(refs, {
        entries: [
          [DefaultServices.currentServices, [[parent.id(), services]]],
          [FiberRef.currentLogAnnotations, [[parent.id(), annotations]]]
        ]
      }),
      // `body` needs `listener.context`, which `context` holds.
      body: listener.body as Effect.Effect<void, unknown, Given | Scope.Scope>,
      entry: { state: "stopped", restarts: 0, lastError: Option.none(), since: createdAt },
      clock: Context.get(services, Clock.Clock),
      labels: labelsOf(listener.name, managerLabels),
      managerLabels
    }
    for (const counter of [metrics.starts, metrics.stops, metrics.failures, metrics.restarts]) {
      counter.unsafeUpdate(0, made.labels)
    }
    prepared.set(listener.name, made)
    unprepared.delete(listener.name)
    return made
  }

  /** Moves the listener to `state` now; returns the time. */
  const enter = (p: Prepared, state: ListenerState): number => {
    const now = p.clock.unsafeCurrentTimeMillis()
    p.entry.state = state
    p.entry.since = now
    return now
  }

  /** The bookkeeping of a run's end (synchronous), then a log line where there is something to say. */
  const ended = (p: Prepared, startedAt: number, exit: Exit.Exit<void, unknown>): Effect.Effect<Ran> => {
    metrics.running.unsafeModify(-1, p.managerLabels)
    if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) {
      metrics.stops.unsafeUpdate(1, p.labels)
      const ran: Ran = { exit, startedAt, endedAt: enter(p, "stopped") }
      return Exit.isSuccess(exit)
        ? Effect.as(Effect.logInfo("listener returned; it stays stopped until the next start"), ran)
        : Effect.succeed(ran)
    }
    metrics.failures.unsafeUpdate(1, p.labels)
    p.entry.lastError = Option.some(describe(exit.cause))
    const endedAt = enter(p, p.listener.onFailure === "restart" ? "backing-off" : "failed")
    return Effect.as(
      Effect.logError(`listener failed (policy ${p.listener.onFailure})`, exit.cause),
      { exit, startedAt, endedAt }
    )
  }

  /**
   * One run in a `Scope` of its own, closed when the run ends, with its bookkeeping done whatever
   * ends it (uninterruptible but for the run itself). `scope` is the one already in the fiber's
   * context (a start's first run); a restart makes its own with `Effect.scoped`.
   */
  const runOnce = (p: Prepared, scope?: Scope.CloseableScope): Effect.Effect<Ran, never, Given> =>
    Effect.uninterruptibleMask((restore) => {
      const startedAt = enter(p, "running")
      metrics.starts.unsafeUpdate(1, p.labels)
      metrics.running.unsafeModify(1, p.managerLabels)
      const run = scope === undefined
        ? Effect.scoped(p.body)
        : Effect.onExit(p.body as Effect.Effect<void, unknown, Given>, (exit) => Scope.close(scope, exit))
      return Effect.flatMap(Effect.exit(restore(run)), (exit) => ended(p, startedAt, exit))
    })

  /** Trips the manager: `listener` failed under the `shutdown` policy. */
  const shutDown = (listener: string, cause: Cause.Cause<unknown>) =>
    Deferred.fail(tripped, new ListenerShutdown({ listener, error: describe(cause), cause }))

  /** Interrupts, and awaits, every fiber this fiber forked that is still running. */
  const interruptChildren = Effect.withFiberRuntime<void>((self) => Effect.flatMap(Fiber.children(self), Fiber.interruptAll))

  /** After a failed run: what the listener's policy says, run after run while it says restart. */
  const afterFailure = (p: Prepared, failed: Ran): Effect.Effect<void, never, Given> =>
    Effect.gen(function*() {
      // Made on the first failure only: most runs never need it.
      let backoff: Schedule.ScheduleDriver<Duration.Duration, unknown> | undefined
      let ran = failed
      while (!endedCleanly(ran.exit)) {
        const cause = (ran.exit as Exit.Failure<void, unknown>).cause
        switch (p.listener.onFailure) {
          case "stop":
            return
          case "shutdown":
            yield* shutDown(p.listener.name, cause)
            return
          case "restart":
            // What the failed run forked (`Effect.fork`: its fiber's children, not its scope's)
            // ends with it, as it would had the run's fiber ended: not kept through the backoff
            // and beside the next run.
            yield* interruptChildren
            backoff ??= yield* Schedule.driver(backoffSchedule(p.listener.backoff))
            if (lasted(ran, Duration.toMillis(p.listener.backoff.resetAfter))) yield* backoff.reset
            yield* backoff.next(undefined).pipe(
              Effect.onInterrupt(() => Effect.sync(() => enter(p, "stopped"))),
              // Fails only once the schedule is done, and an exponential schedule never is.
              Effect.orDie
            )
            p.entry.restarts++
            metrics.restarts.unsafeUpdate(1, p.labels)
            yield* Effect.logInfo(`restarting listener (restart ${p.entry.restarts})`)
            ran = yield* runOnce(p)
        }
      }
    })

  /** Runs a listener until it returns, is stopped, or fails in a way its policy does not retry. */
  const supervise = (p: Prepared, scope: Scope.CloseableScope): Effect.Effect<void, never, Given> =>
    Effect.flatMap(runOnce(p, scope), (ran) => endedCleanly(ran.exit) ? Effect.void : afterFailure(p, ran))

  /** Keeps `fiber` in `live` until it ends. */
  const track = (name: string, fiber: Fiber.RuntimeFiber<void>) => {
    live.set(name, fiber)
    fiber.addObserver(() => {
      if (live.get(name) === fiber) live.delete(name)
      if (live.size === 0 && drained.size > 0) {
        const waiting = Array.from(drained)
        drained.clear()
        for (const resume of waiting) resume()
      }
    })
  }

  /** What a listener whose preparation threw gets instead of a run (see `startAll`). */
  const unpreparable = (listener: RegisteredListener, cause: Cause.Cause<never>): Effect.Effect<void> =>
    Effect.flatMap(Effect.zip(Clock.currentTimeMillis, FiberRef.get(FiberRef.currentMetricLabels)), ([now, managerLabels]) => {
      const error = describe(cause)
      unprepared.set(listener.name, { state: "failed", restarts: 0, lastError: Option.some(error), since: now })
      const labels = labelsOf(listener.name, managerLabels)
      metrics.starts.unsafeUpdate(1, labels)
      metrics.failures.unsafeUpdate(1, labels)
      return Effect.logError(`listener could not be prepared (policy ${listener.onFailure})`, cause).pipe(
        Effect.zipRight(
          listener.onFailure === "shutdown" ? shutDown(listener.name, cause) : Effect.void
        ),
        Effect.asVoid,
        Effect.annotateLogs("listener", listener.name)
      )
    })

  /**
   * Forks every registered listener not already alive, in one synchronous loop on the manager's
   * fiber. Each fiber is forked with its first run's `Scope` already in its context: what
   * `Effect.scoped` would provide, without setting the context `FiberRef` at every start and
   * resetting it at every stop (each set copies the fiber's refs; a third of a flip's time).
   */
  const startAll = Effect.flatMap(registry.all, (listeners) =>
    Effect.withFiberRuntime<void>((parent) => {
      if (closed) return Effect.interrupt
      for (const listener of listeners) {
        if (live.has(listener.name)) continue
        let fiber: Fiber.RuntimeFiber<void>
        try {
          const p = prepare(listener, parent)
          const scope = Effect.runSync(Scope.make())
          fiber = Runtime.runFork(Runtime.make({
            context: Context.add(p.context, Scope.Scope, scope),
            fiberRefs: p.fiberRefs,
            runtimeFlags: Runtime.defaultRuntime.runtimeFlags
          }))(supervise(p, scope))
        } catch (defect) {
          // A node-side throw (e.g. in `forListener`) is a failure of this listener only, counted
          // as a run that failed at once: it stays `failed` until the next start, which prepares
          // it again, and under `shutdown` the node stops, as for any failure.
          fiber = Runtime.runFork(Runtime.make({
            context: parent.currentContext,
            fiberRefs: parent.getFiberRefs(),
            runtimeFlags: Runtime.defaultRuntime.runtimeFlags
          }))(unpreparable(listener, Cause.die(defect)))
        }
        track(listener.name, fiber)
      }
      return Effect.void
    }))

  /**
   * Interrupts every listener fiber at once, then awaits them all (finalizers included) as one
   * wait, woken when the last one ends, rather than one `Fiber.await` after another.
   */
  const stopAll = Effect.withFiberRuntime<void>((stopper) => {
    if (live.size === 0) return Effect.void
    for (const fiber of Array.from(live.values())) fiber.unsafeInterruptAsFork(stopper.id())
    return Effect.async<void>((resume) => {
      if (live.size === 0) return resume(Effect.void)
      const done = () => resume(Effect.void)
      drained.add(done)
      return Effect.sync(() => drained.delete(done))
    })
  })

  // Every listener registered by now is prepared here, while the node starts, rather than on the
  // first validator flip, which is the one a node waits on (the manager benchmark's first flip of
  // 1,000 listeners: 204 and 286 ms before, 138 and 157 ms after; the start-up about 105 ms
  // longer). A listener whose preparation throws is left to its start, which prepares it again
  // and, if it throws again, fails it by its policy (see `startAll`).
  yield* Effect.flatMap(registry.all, (listeners) =>
    Effect.withFiberRuntime<void>((parent) => {
      for (const listener of listeners) {
        try {
          prepare(listener, parent)
        } catch {
          // See above: its start reports it.
        }
      }
      return Effect.void
    }))

  // Runs last when the layer's scope closes (after the follower below has stopped): as a
  // `FiberMap`'s scope would, it interrupts and awaits whatever is left and refuses new starts.
  yield* Effect.addFinalizer(() => Effect.suspend(() => {
    closed = true
    return stopAll
  }))

  // The node's status for as long as it lasts: its end, or a defect in it, is `ValidatorStatusEnded`.
  const statuses = validatorStatus.changes.pipe(
    Stream.catchAllCause((cause) => Stream.fail(new ValidatorStatusEnded({ cause }))),
    Stream.concat(Stream.fail(new ValidatorStatusEnded({ cause: Cause.empty })))
  )
  const follow = statuses.pipe(
    Stream.map(isActive),
    Stream.changes,
    Stream.runForEach((active) =>
      active
        // A start whose turn comes after the node lost its seat again (the flips queued up behind
        // a slow stop) is stale: the stop after it is queued too, and would undo it.
        ? Effect.flatMap(validatorStatus.current, (now) =>
          isActive(now)
            ? Effect.zipRight(Effect.logInfo("node is a synced validator: starting listeners"), startAll)
            : Effect.void)
        : Effect.zipRight(Effect.logInfo("node is not a synced validator: stopping listeners"), stopAll)
    )
  )

  // After a shutdown, or the status's end, stop following the status and stop every other
  // listener; `join` fails only then, so a node that exits on it does not cut the others'
  // finalizers short (a defect of the manager's own reaches `join` as that defect).
  yield* follow.pipe(
    Effect.raceFirst(Deferred.await(tripped)),
    Effect.ensuring(stopAll),
    Effect.catchAllCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.void : Deferred.failCause(shutdown, cause)),
    Effect.forkScoped
  )

  return ListenerManager.of({
    status: Effect.map(registry.all, (listeners) =>
      listeners.map(({ name }) => {
        const entry = prepared.get(name)?.entry ?? unprepared.get(name)
        return entry === undefined
          ? { name, state: "stopped", restarts: 0, lastError: Option.none(), since: createdAt }
          : { name, ...entry }
      })),
    fibers: Effect.sync(() => live.size),
    join: Deferred.await(shutdown)
  })
}).pipe(Effect.annotateLogs("service", "ListenerManager"))
