import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Config,
  Context,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  HashMap,
  Layer,
  Logger,
  Metric,
  Option,
  Random,
  Scope,
  Stream,
  TestClock
} from "effect"
import * as Test from "../../layers/Test.js"
import { EventLog } from "../../src/events/EventLog.js"
import { EventStorage, EventStore } from "../../src/events/EventStore.js"
import * as Listener from "../../src/listener/Listener.js"
import { ListenerContext } from "../../src/listener/Listener.js"
import { ListenerManager, ListenerShutdown, type ListenerStatus } from "../../src/listener/ListenerManager.js"
import { ListenerRegistry } from "../../src/listener/ListenerRegistry.js"
import { NodeInfo } from "../../src/listener/NodeInfo.js"
import { active, inactive, ValidatorStatus, ValidatorStatusControl } from "../../src/listener/ValidatorStatus.js"

// ---- harness -------------------------------------------------------------------------------

/** Which listener each store handed out belongs to (the stores themselves are never used here). */
const storeOwners = new Map<object, string>()
const storage = Layer.succeed(
  EventStorage,
  EventStorage.of({
    forListener: (name) => {
      const store = {} as EventStore["Type"]
      storeOwners.set(store, name)
      return store
    }
  })
)

const harness = (
  registry: Layer.Layer<ListenerRegistry, unknown>,
  extensions: NodeInfo["Type"]["extensions"] = {},
  stores: Layer.Layer<EventStorage> = storage
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      ListenerManager.layer.pipe(
        Layer.provideMerge(
          Layer.mergeAll(
            registry,
            ValidatorStatus.layerRef(),
            NodeInfo.layer({ identity: "node-1", extensions }),
            stores
          )
        )
      )
    ).pipe(Effect.orDie)
    return { manager: Context.get(context, ListenerManager), control: Context.get(context, ValidatorStatusControl) }
  })

/** A storage recording which listener asked for a store, in order; `failing`'s request throws. */
const askedStores = (failing?: string) => {
  const asked: Array<string> = []
  const recording = Layer.succeed(
    EventStorage,
    EventStorage.of({
      forListener: (name) => {
        asked.push(name)
        if (name === failing) throw new Error(`no store for ${name}`)
        return {} as EventStore["Type"]
      }
    })
  )
  return { asked, recording }
}

const start = (...listeners: ReadonlyArray<Listener.Listener<unknown, never>>) =>
  harness(ListenerRegistry.layer(...listeners))

/** A listener that counts its runs and the releases of each run's scope, then does `body`. */
const counted = <E>(
  name: string,
  body: (run: number) => Effect.Effect<void, E, Listener.Provided>,
  options?: Listener.Options
) => {
  const counts = { runs: 0, released: [] as Array<number> }
  const listener = Listener.make(
    name,
    Effect.acquireRelease(
      Effect.sync(() => ++counts.runs),
      (run) => Effect.sync(() => counts.released.push(run))
    ).pipe(Effect.flatMap(body)),
    options
  )
  return { counts, listener }
}
const forever = () => Effect.never

class Boom extends Data.TaggedError("Boom")<{ readonly run: number }> {
  override get message() {
    return `boom ${this.run}`
  }
}

/** Lets every ready fiber run, with no time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
})

/** Waits (without time passing) until `check` holds. */
const eventually = (what: string, check: () => boolean | Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20_000; i++) {
      const result = check()
      if (typeof result === "boolean" ? result : yield* result) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage(`never happened: ${what}`)
  })

/**
 * Waits until a fiber sleeps on the `TestClock` (a backoff's delay): the delay is measured from the
 * clock's time then, so a test that moves the clock before it would move its end too. A failed
 * run is `backing-off` a few steps before its backoff sleeps; on a loaded machine the test's fiber
 * could get there first.
 */
const sleeping = eventually("a backoff sleeping", () => Effect.map(TestClock.sleeps(), Chunk.isNonEmpty))

const statusOf = (manager: ListenerManager["Type"], name: string) =>
  Effect.map(manager.status, (all) => all.find((s) => s.name === name) as ListenerStatus)

const counter = (metric: Metric.Metric.Counter<number>, name: string) =>
  Effect.map(Metric.value(Metric.tagged(metric, "listener", name)), (state) => state.count)

// ---- tests ---------------------------------------------------------------------------------

describe("ListenerManager", () => {
  it.scoped("runs listeners only while synced and a validator; every flip stops and starts them all", () =>
    Effect.gen(function*() {
      const a = counted("a", forever)
      const b = counted("b", forever)
      const { control, manager } = yield* start(a.listener, b.listener)

      yield* settle
      expect(yield* manager.status).toEqual([
        { name: "a", state: "stopped", restarts: 0, lastError: Option.none(), since: 0 },
        { name: "b", state: "stopped", restarts: 0, lastError: Option.none(), since: 0 }
      ])
      for (const half of [{ synced: true, validator: false }, { synced: false, validator: true }]) {
        yield* control.set(half)
        yield* settle
        expect([a.counts.runs, b.counts.runs, yield* manager.fibers]).toEqual([0, 0, 0])
      }

      for (let round = 1; round <= 3; round++) {
        yield* TestClock.adjust("1 second")
        yield* control.set(active)
        yield* eventually("both run", () => a.counts.runs === round && b.counts.runs === round)
        expect(yield* manager.fibers).toBe(2)
        expect((yield* Metric.value(ListenerManager.metrics.running)).value).toBe(2)
        const running = yield* manager.status
        expect(running.map((s) => [s.name, s.state, s.since])).toEqual([
          ["a", "running", round * 1000],
          ["b", "running", round * 1000]
        ])

        yield* control.update((s) => ({ ...s, validator: false }))
        yield* eventually("both stopped", () => Effect.map(manager.fibers, (n) => n === 0))
        expect(a.counts.released.length).toBe(round)
        expect(b.counts.released.length).toBe(round)
        expect((yield* manager.status).map((s) => s.state)).toEqual(["stopped", "stopped"])
        expect((yield* Metric.value(ListenerManager.metrics.running)).value).toBe(0)
      }
    }))

  it.scoped("awaits each run's finalizers, runs them exactly once, and starts again only after", () =>
    Effect.gen(function*() {
      const slow = counted("slow", forever)
      const finished: Array<number> = []
      const listener = Listener.make(
        "slow",
        Effect.zipRight(
          Effect.addFinalizer(() => Effect.sleep("5 seconds").pipe(Effect.zipRight(Effect.sync(() => finished.push(1))))),
          slow.listener.run
        )
      )
      const scope = yield* Scope.make()
      const { control, manager } = yield* start(listener).pipe(Scope.extend(scope))

      yield* control.set(active)
      yield* eventually("started", () => slow.counts.runs === 1)
      yield* control.set(inactive)
      yield* control.set(active)
      yield* settle
      // Still releasing: the fiber is alive and the next start waits for it.
      expect(yield* manager.fibers).toBe(1)
      expect(slow.counts.runs).toBe(1)
      expect(finished).toEqual([])

      yield* TestClock.adjust("5 seconds")
      yield* eventually("restarted", () => slow.counts.runs === 2)
      expect(finished).toEqual([1])
      expect(slow.counts.released).toEqual([1])

      // Closing the manager stops the last run and awaits its finalizers, once.
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(closing)
      expect(slow.counts.released).toEqual([1, 2])
      expect(finished).toEqual([1, 1])
    }))

  it.scoped("flips that queue up behind a slow stop are stale: only the latest is acted on", () =>
    Effect.gen(function*() {
      let nodeActive = false
      const ranWhileInactive: Array<number> = []
      const slow = counted("slow", (run) => {
        if (!nodeActive) ranWhileInactive.push(run)
        return Effect.never
      })
      const listener = Listener.make("slow", Effect.zipRight(Effect.addFinalizer(() => Effect.sleep("5 seconds")), slow.listener.run))
      const { control, manager } = yield* start(listener)
      const set = (on: boolean) => Effect.suspend(() => {
        nodeActive = on
        return control.set(on ? active : inactive)
      })

      yield* set(true)
      yield* eventually("started", () => slow.counts.runs === 1)
      // The seat flaps while the first stop is still releasing, and ends lost.
      yield* set(false)
      yield* settle
      for (let i = 0; i < 5; i++) {
        yield* set(true)
        yield* set(false)
      }
      yield* settle
      yield* TestClock.adjust("1 minute")
      yield* settle
      expect(ranWhileInactive).toEqual([])
      expect(slow.counts.runs).toBe(1)
      expect(yield* manager.fibers).toBe(0)
      // The next flip to active runs it again, once.
      yield* set(true)
      yield* eventually("started again", () => slow.counts.runs === 2)
      yield* set(false)
      yield* TestClock.adjust("5 seconds")
      yield* eventually("stopped", () => Effect.map(manager.fibers, (n) => n === 0))
      expect(slow.counts.runs).toBe(2)
      expect(ranWhileInactive).toEqual([])
    }))

  it.scoped("what a failed run forked ends with it: not kept through the backoff, nor beside the next run", () =>
    Effect.gen(function*() {
      let alive = 0
      // Each run forks a helper (plain `Effect.fork`: a child of the run's fiber, alive until it
      // is interrupted), then fails.
      const helper = Effect.zipRight(Effect.sync(() => alive++), Effect.ensuring(Effect.never, Effect.sync(() => alive--)))
      const forking = counted("forking", (run) =>
        Effect.zipRight(Effect.fork(helper), Effect.zipRight(Effect.sleep("10 millis"), new Boom({ run }))), {
        onFailure: "restart",
        backoff: { initial: Duration.seconds(1), max: Duration.seconds(1), resetAfter: Duration.minutes(1) }
      })
      const { control, manager } = yield* start(forking.listener)
      yield* control.set(active)
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust("2 seconds")
        yield* settle
        // At most the helper of the run going now; none while backing off.
        const state = (yield* statusOf(manager, "forking")).state
        expect(alive, state).toBeLessThanOrEqual(state === "backing-off" ? 0 : 1)
      }
      expect(forking.counts.runs).toBeGreaterThanOrEqual(5)
      yield* control.set(inactive)
      yield* eventually("stopped", () => Effect.map(manager.fibers, (n) => n === 0))
      expect(alive).toBe(0)
    }))

  it.scoped("restarts after a failure on a capped, jittered exponential backoff", () =>
    Effect.gen(function*() {
      const flaky = counted("flaky", (run) => new Boom({ run }), {
        onFailure: "restart",
        backoff: { initial: Duration.seconds(1), max: Duration.seconds(3), resetAfter: Duration.minutes(1) }
      })
      const { control, manager } = yield* start(flaky.listener)
      yield* control.set(active)

      const failedAt = (run: number) =>
        Effect.gen(function*() {
          yield* eventually(`run ${run} failed`, () =>
            Effect.map(statusOf(manager, "flaky"), (s) =>
              flaky.counts.runs === run && s.state === "backing-off"))
          yield* sleeping
          return (yield* statusOf(manager, "flaky")).since
        })
      const runsAt = (time: number) =>
        TestClock.setTime(time).pipe(Effect.zipRight(settle), Effect.map(() => flaky.counts.runs))

      // 1st delay: 1 s jittered down to [0.8, 1] s.
      const t1 = yield* failedAt(1)
      expect(yield* statusOf(manager, "flaky")).toMatchObject({
        state: "backing-off",
        restarts: 0,
        lastError: Option.some("Boom: boom 1")
      })
      expect(yield* runsAt(t1 + 790)).toBe(1)
      expect(yield* runsAt(t1 + 1000)).toBe(2)
      // 2nd delay: 2 s jittered down to [1.6, 2] s.
      const t2 = yield* failedAt(2)
      expect(yield* runsAt(t2 + 1590)).toBe(2)
      expect(yield* runsAt(t2 + 2000)).toBe(3)
      // 3rd to 5th delays: capped at 3 s, then jittered down to [2.4, 3] s: never past the cap,
      // and not all of them the cap (listeners failing together there do not restart in step).
      const early: Array<boolean> = []
      for (const run of [3, 4, 5]) {
        const t = yield* failedAt(run)
        expect(yield* runsAt(t + 2390)).toBe(run)
        early.push((yield* runsAt(t + 2999)) === run + 1)
        expect(yield* runsAt(t + 3000)).toBe(run + 1)
      }
      expect(early).toContain(true)

      const status = yield* statusOf(manager, "flaky")
      expect(status.restarts).toBe(5)
      expect(yield* counter(ListenerManager.metrics.restarts, "flaky")).toBe(5)
      expect(yield* counter(ListenerManager.metrics.failures, "flaky")).toBe(6)
      expect(flaky.counts.released.length).toBe(flaky.counts.runs)
    }))

  it.scoped("resets the backoff after a healthy run", () =>
    Effect.gen(function*() {
      const flaky = counted("healthy", (run) => run === 4 ? Effect.zipRight(Effect.sleep("10 seconds"), new Boom({ run })) : new Boom({ run }), {
        backoff: { initial: Duration.seconds(1), max: Duration.hours(1), resetAfter: Duration.seconds(10) }
      })
      // Seeded jitter: run 4 then starts at 6748.5456890000005 ms, a time t where t + 10,000 - t
      // comes out a hair under 10,000 in floating point (about one start in ten does): a run that
      // lasted exactly `resetAfter` must still reset the backoff.
      const { control, manager } = yield* start(flaky.listener).pipe(Effect.withRandom(Random.make(8)))
      yield* control.set(active)
      // Runs 1-3 fail at once: delays of about 1, 2 and 4 s.
      yield* TestClock.adjust("9 seconds")
      yield* eventually("run 4 started", () => flaky.counts.runs === 4)
      const started = (yield* statusOf(manager, "healthy")).since
      // Run 4 lasts 10 s (healthy), then fails: the next delay is about 1 s again, not about 8 s.
      yield* TestClock.setTime(started + 10_000)
      yield* eventually("run 4 failed", () => flaky.counts.released.length === 4)
      yield* sleeping
      yield* TestClock.setTime(started + 10_790)
      yield* settle
      expect(flaky.counts.runs).toBe(4)
      yield* TestClock.setTime(started + 11_210)
      yield* eventually("run 5 started", () => flaky.counts.runs === 5)
    }))

  it.scoped("policy stop leaves a failed listener down until the next start; its sibling runs on", () =>
    Effect.gen(function*() {
      const fragile = counted("fragile", (run) => new Boom({ run }), { onFailure: "stop" })
      const sibling = counted("sibling", forever)
      const { control, manager } = yield* start(fragile.listener, sibling.listener)
      yield* control.set(active)
      yield* eventually("fragile failed", () =>
        Effect.map(statusOf(manager, "fragile"), (s) => s.state === "failed"))
      yield* TestClock.adjust("1 hour")
      yield* settle
      expect(fragile.counts.runs).toBe(1)
      expect(yield* statusOf(manager, "fragile")).toMatchObject({ restarts: 0, lastError: Option.some("Boom: boom 1") })
      expect(sibling.counts).toEqual({ runs: 1, released: [] })
      expect(yield* manager.fibers).toBe(1)

      yield* control.set(inactive)
      yield* control.set(active)
      yield* eventually("started again", () => fragile.counts.runs === 2 && sibling.counts.runs === 2)
    }))

  it.scoped("policy shutdown fails join with ListenerShutdown and stops everything for good", () =>
    Effect.gen(function*() {
      const trigger = yield* Deferred.make<void>()
      const fatal = counted("fatal", (run) => Effect.zipRight(Deferred.await(trigger), new Boom({ run })), {
        onFailure: "shutdown"
      })
      const sibling = counted("sibling", forever)
      const { control, manager } = yield* start(fatal.listener, sibling.listener)
      const joined = yield* Effect.fork(manager.join)
      yield* control.set(active)
      yield* eventually("both run", () => fatal.counts.runs === 1 && sibling.counts.runs === 1)
      yield* settle
      expect(joined.unsafePoll()).toBeNull()

      yield* Deferred.succeed(trigger, undefined)
      const error = yield* Effect.flip(Fiber.join(joined))
      expect(error).toBeInstanceOf(ListenerShutdown)
      expect((error as ListenerShutdown).listener).toBe("fatal")
      expect(error.message).toContain(`listener "fatal" failed`)
      expect(error.message).toContain("boom 1")
      yield* eventually("all stopped", () => Effect.map(manager.fibers, (n) => n === 0))
      expect(sibling.counts.released).toEqual([1])
      expect((yield* manager.status).map((s) => s.state)).toEqual(["failed", "stopped"])

      yield* control.set(inactive)
      yield* control.set(active)
      yield* settle
      expect([fatal.counts.runs, sibling.counts.runs]).toEqual([1, 1])
    }))

  it.scoped("join fails only once every other listener has stopped, its finalizers run", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const fatal = Listener.make("fatal-late", Effect.fail(new Boom({ run: 1 })), { onFailure: "shutdown" })
      let released = false
      const slow = Listener.make(
        "slow-release",
        Effect.zipRight(
          Effect.acquireRelease(Effect.void, () =>
            Effect.zipRight(Deferred.await(gate), Effect.sync(() => {
              released = true
            }))),
          Effect.never
        )
      )
      const { control, manager } = yield* start(fatal, slow)
      const joined = yield* Effect.fork(manager.join)
      yield* control.set(active)
      yield* settle
      // The sibling is still releasing: join has not failed yet.
      expect(joined.unsafePoll()).toBeNull()
      expect(yield* manager.fibers).toBe(1)
      yield* Deferred.succeed(gate, undefined)
      const error = yield* Effect.flip(Fiber.join(joined))
      expect(error).toMatchObject({ _tag: "ListenerShutdown", listener: "fatal-late" })
      expect(released).toBe(true)
      expect(yield* manager.fibers).toBe(0)
    }))

  it.scoped("a listener whose preparation throws at its start fails by its policy, with its status and counters", () =>
    Effect.gen(function*() {
      const { asked, recording } = askedStores("broken-store")
      const broken = Listener.make("broken-store", Effect.never, { onFailure: "shutdown" })
      const { control, manager } = yield* harness(ListenerRegistry.layer(broken), {}, recording)
      const joined = yield* Effect.fork(manager.join)
      yield* control.set(active)
      const error = yield* Effect.flip(Fiber.join(joined))
      expect(error).toMatchObject({ _tag: "ListenerShutdown", listener: "broken-store" })
      expect(error.message).toContain("no store for broken-store")
      const [status] = yield* manager.status
      expect(status).toMatchObject({ name: "broken-store", state: "failed" })
      expect(Option.getOrThrow(status!.lastError)).toContain("no store for broken-store")
      expect(yield* counter(ListenerManager.metrics.failures, "broken-store")).toBe(1)
      expect(yield* counter(ListenerManager.metrics.starts, "broken-store")).toBe(1)
      expect(asked).toEqual(["broken-store", "broken-store"])
    }))

  it.scoped("a defect is a failure of that listener only", () =>
    Effect.gen(function*() {
      const thrower = counted("thrower", () =>
        Effect.sync(() => {
          throw new Error("kaboom")
        }))
      const sibling = counted("sibling", forever)
      const { control, manager } = yield* start(thrower.listener, sibling.listener)
      yield* control.set(active)
      yield* eventually("thrower failed", () =>
        Effect.map(statusOf(manager, "thrower"), (s) => s.state === "backing-off"))
      expect((yield* statusOf(manager, "thrower")).lastError).toEqual(Option.some("defect: kaboom"))
      expect(thrower.counts.released).toEqual([1])

      // It restarts under its policy (the default, restart), and the sibling never noticed.
      yield* TestClock.adjust("1210 millis")
      yield* eventually("thrower restarted", () => thrower.counts.runs === 2)
      expect(sibling.counts).toEqual({ runs: 1, released: [] })
      expect(yield* statusOf(manager, "sibling")).toMatchObject({ state: "running", restarts: 0 })
    }))

  it.scoped("a listener that returns stays stopped until the next start", () =>
    Effect.gen(function*() {
      const once = counted("once", () => Effect.void)
      const { control, manager } = yield* start(once.listener)
      yield* control.set(active)
      yield* eventually("returned", () => once.counts.released.length === 1)
      yield* TestClock.adjust("1 hour")
      yield* settle
      expect(once.counts.runs).toBe(1)
      expect(yield* statusOf(manager, "once")).toMatchObject({ state: "stopped", restarts: 0, lastError: Option.none() })
      expect(yield* manager.fibers).toBe(0)

      yield* control.set(inactive)
      yield* control.set(active)
      yield* eventually("ran again", () => once.counts.runs === 2)
      expect(yield* counter(ListenerManager.metrics.starts, "once")).toBe(2)
    }))

  it.scoped("1,000 flips leave no fiber, scope or timer behind", () =>
    Effect.gen(function*() {
      const a = counted("flip-a", forever)
      const b = counted("flip-b", forever)
      // Fails at once under restart: at each stop it is waiting on a backoff timer.
      const c = counted("flip-c", (run) => new Boom({ run }))
      const { control, manager } = yield* start(a.listener, b.listener, c.listener)
      for (let round = 1; round <= 1000; round++) {
        yield* control.set(active)
        yield* eventually("all started", () => a.counts.runs === round && b.counts.runs === round && c.counts.runs === round)
        yield* control.set(inactive)
        yield* eventually("all stopped", () => Effect.map(manager.fibers, (n) => n === 0))
      }
      for (const { counts } of [a, b, c]) {
        expect(counts.runs).toBe(1000)
        expect(new Set(counts.released).size).toBe(1000)
      }
      // No backoff timer survived a stop: a long wait restarts nothing.
      yield* TestClock.adjust("1 hour")
      yield* settle
      expect(c.counts.runs).toBe(1000)
      expect((yield* Metric.value(ListenerManager.metrics.running)).value).toBe(0)
      expect(yield* counter(ListenerManager.metrics.starts, "flip-a")).toBe(1000)
      expect(yield* counter(ListenerManager.metrics.stops, "flip-a")).toBe(1000)
      expect(yield* counter(ListenerManager.metrics.failures, "flip-c")).toBe(1000)
      expect(yield* counter(ListenerManager.metrics.restarts, "flip-c")).toBe(0)
      expect((yield* manager.status).map((s) => s.state)).toEqual(["stopped", "stopped", "stopped"])
    }), { timeout: 120_000 })

  it.scoped("gives each listener its context, config section (also as Config), event store and log annotation", () => {
    const logs: Array<[unknown, Option.Option<unknown>]> = []
    const capture = Logger.make(({ annotations, message }) => {
      logs.push([message, HashMap.get(annotations, "listener")])
    })
    return Effect.gen(function*() {
      const seen: Record<string, unknown> = {}
      const alpha = Listener.make("alpha", Effect.gen(function*() {
        seen.context = { ...(yield* ListenerContext) }
        seen.rpc = yield* Config.string("rpc_provider")
        seen.confirmations = yield* Config.integer("confirmations")
        seen.store = storeOwners.get(yield* EventStore)
        yield* Effect.log("hello from alpha")
      }))
      const beta = Listener.make("beta", Effect.gen(function*() {
        seen.beta = (yield* ListenerContext).configured
        seen.betaStore = storeOwners.get(yield* EventStore)
        yield* Config.string("rpc_provider")
      }), { onFailure: "stop" })
      // A name that is also a property of every object has no section either.
      const proto = Listener.make("constructor", Effect.map(ListenerContext, (ctx) => {
        seen.proto = [ctx.configured, ctx.config]
      }))
      const { control, manager } = yield* harness(ListenerRegistry.layer(alpha, beta, proto), {
        alpha: { rpc_provider: "ws://localhost:8545", confirmations: "12" }
      })
      yield* control.set(active)
      yield* eventually("beta failed", () => Effect.map(statusOf(manager, "beta"), (s) => s.state === "failed"))
      yield* eventually("alpha returned", () => seen.store !== undefined)
      yield* eventually("constructor returned", () => seen.proto !== undefined)
      expect(seen.proto).toEqual([false, {}])

      expect(seen.context).toEqual({
        name: "alpha",
        identity: "node-1",
        config: { rpc_provider: "ws://localhost:8545", confirmations: "12" },
        configured: true
      })
      expect([seen.rpc, seen.confirmations, seen.store]).toEqual(["ws://localhost:8545", 12, "alpha"])
      // No section: configured is false and Config finds nothing (not the node's environment).
      expect([seen.beta, seen.betaStore]).toEqual([false, "beta"])
      const betaError = Option.getOrThrow((yield* statusOf(manager, "beta")).lastError)
      expect(betaError).toContain("rpc_provider")
      expect(logs).toContainEqual([["hello from alpha"], Option.some("alpha")])
    }).pipe(Effect.provide(Logger.add(capture)))
  })

  it.scoped("a status stream that ends, or dies, stops every listener and fails join with ValidatorStatusEnded", () =>
    Effect.gen(function*() {
      for (const changes of [Stream.make(active), Stream.concat(Stream.make(active), Stream.dieMessage("status source broke"))]) {
        const probe = counted("probe", forever)
        const context = yield* Layer.build(
          ListenerManager.layer.pipe(
            Layer.provideMerge(Layer.mergeAll(
              ListenerRegistry.layer(probe.listener),
              Layer.succeed(ValidatorStatus, ValidatorStatus.of({ current: Effect.succeed(active), changes })),
              NodeInfo.layer({ identity: "node-1", extensions: {} }),
              storage
            ))
          )
        ).pipe(Effect.orDie)
        const manager = Context.get(context, ListenerManager)
        const error = yield* Effect.flip(manager.join)
        expect(error).toMatchObject({ _tag: "ValidatorStatusEnded" })
        expect(error.message).toContain("ValidatorStatus stream")
        expect(yield* manager.fibers).toBe(0)
        expect(probe.counts.released).toEqual(probe.counts.runs === 0 ? [] : [1])
      }
    }))

  it.scoped("keeps the node's own services from a listener: others' stores and keys, the log, the status control, the registry", () =>
    Effect.gen(function*() {
      const found: Array<string> = []
      const probe = counted("probe", () =>
        Effect.gen(function*() {
          for (const [name, tag] of [["EventStorage", EventStorage], ["EventLog", EventLog], ["ValidatorStatusControl", ValidatorStatusControl], ["ListenerRegistry", ListenerRegistry]] as const) {
            if (Option.isSome(yield* Effect.serviceOption(tag as Context.Tag<unknown, unknown>))) found.push(name)
          }
          yield* EventStore // what it is given, it has
          return yield* Effect.never
        }))
      const { control } = yield* harness(ListenerRegistry.layer(probe.listener), {}, Test.storage())
      yield* control.set(active)
      yield* eventually("probed", () => probe.counts.runs === 1)
      yield* settle
      expect(found).toEqual([])
      // Asking for one of them is a compile-time error, not a listener that dies at every run.
      // @ts-expect-error EventLog is one of the node's own services
      expect(Listener.make("asks-for-the-log", Effect.asVoid(EventLog)).name).toBe("asks-for-the-log")
      // @ts-expect-error so is ValidatorStatusControl
      expect(Listener.make("asks-for-control", Effect.asVoid(ValidatorStatusControl)).name).toBe("asks-for-control")
      expect(Listener.make("asks-for-status", Effect.asVoid(ValidatorStatus)).name).toBe("asks-for-status")
    }))

  it.scoped("prepares each listener and zeroes its counters when it starts, before any flip; a flip only forks", () =>
    Effect.gen(function*() {
      const { asked, recording } = askedStores()
      const a = counted("ready-a", forever)
      const b = counted("ready-b", forever)
      const { control, manager } = yield* harness(ListenerRegistry.layer(a.listener, b.listener), {}, recording)
      // Inactive, nothing runs, yet each has its store and its four counters, at 0.
      expect(asked).toEqual(["ready-a", "ready-b"])
      expect(yield* manager.fibers).toBe(0)
      const counters = (yield* Metric.snapshot).filter((pair) =>
        pair.metricKey.tags.some((tag) => tag.key === "listener" && tag.value.startsWith("ready-"))
      )
      expect(counters.map((pair) => `${pair.metricKey.name} ${pair.metricKey.tags.find((t) => t.key === "listener")!.value}`).sort())
        .toEqual([
          "listener_failures ready-a",
          "listener_failures ready-b",
          "listener_restarts ready-a",
          "listener_restarts ready-b",
          "listener_starts ready-a",
          "listener_starts ready-b",
          "listener_stops ready-a",
          "listener_stops ready-b"
        ])
      expect(counters.every((pair) => (pair.metricState as unknown as { readonly count: number }).count === 0)).toBe(true)
      // The flips reuse what was prepared.
      for (let round = 1; round <= 2; round++) {
        yield* control.set(active)
        yield* eventually("both run", () => a.counts.runs === round && b.counts.runs === round)
        yield* control.set(inactive)
        yield* eventually("both stopped", () => Effect.map(manager.fibers, (n) => n === 0))
      }
      expect(asked).toEqual(["ready-a", "ready-b"])
      expect(yield* counter(ListenerManager.metrics.starts, "ready-a")).toBe(2)
    }))

  it.scoped("a listener whose preparation throws at start-up is prepared again at its start and fails alone", () =>
    Effect.gen(function*() {
      const { asked, recording: throwing } = askedStores("unready")
      const good = counted("ready", forever)
      const bad = counted("unready", forever)
      const { control, manager } = yield* harness(ListenerRegistry.layer(bad.listener, good.listener), {}, throwing)
      expect(asked).toEqual(["unready", "ready"])
      yield* control.set(active)
      yield* eventually("the sibling runs", () => good.counts.runs === 1)
      yield* eventually("only the sibling's fiber is left", () => Effect.map(manager.fibers, (n) => n === 1))
      expect(asked).toEqual(["unready", "ready", "unready"])
      expect(bad.counts.runs).toBe(0)
    }))

  it.scoped("resolves requirements at registration: a listener needing a custom service gets it, over the node's own", () =>
    Effect.gen(function*() {
      class Greeting extends Context.Tag("test/Greeting")<Greeting, { readonly text: string }>() {}
      let heard = ""
      const greeter = Listener.make("greeter", Effect.map(Greeting, (g) => { heard = g.text }))
      const { control } = yield* harness(
        ListenerRegistry.layer(greeter).pipe(Layer.provide(Layer.succeed(Greeting, { text: "gm" }))),
        {},
        // The node holds a service of the same tag: the one captured at registration wins.
        Layer.merge(storage, Layer.succeed(Greeting, { text: "the node's" }))
      )
      yield* control.set(active)
      yield* eventually("greeted", () => heard !== "")
      expect(heard).toBe("gm")
    }))
})
