/**
 * A node's listener side with `count` trivial listeners, for the manager and memory benchmarks:
 * each listener signals when it runs and when its scope closes, so a flip can be awaited
 * exactly (no polling, no sleeps).
 */
import { Context, Deferred, Effect, Layer, Logger, LogLevel, type Scope } from "effect"
import { EventStore } from "../src/events/EventStore.js"
import { ResolutionRegistry } from "../src/voting/ResolutionRegistry.js"
import * as Listener from "../src/listener/Listener.js"
import { ListenerManager } from "../src/listener/ListenerManager.js"
import { ListenerRegistry } from "../src/listener/ListenerRegistry.js"
import { NodeInfo } from "../src/listener/NodeInfo.js"
import { active, inactive, ValidatorStatus, ValidatorStatusControl } from "../src/listener/ValidatorStatus.js"

export interface Fleet {
  /** Flips the node to an active validator and waits until every listener runs. */
  readonly start: Effect.Effect<void>
  /** Flips it back and waits until every listener's scope has closed and its fiber has ended. */
  readonly stop: Effect.Effect<void>
  readonly fibers: Effect.Effect<number>
}

export const makeFleet = (count: number): Effect.Effect<Fleet, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    let running = 0
    let started = yield* Deferred.make<void>()
    let stopped = yield* Deferred.make<void>()
    const listeners = Array.from({ length: count }, (_, i) =>
      Listener.make(
        `bench-${i}`,
        Effect.zipRight(
          Effect.acquireRelease(
            Effect.suspend(() => ++running === count ? Deferred.succeed(started, undefined) : Effect.void),
            () => Effect.suspend(() => --running === 0 ? Deferred.succeed(stopped, undefined) : Effect.void)
          ),
          Effect.never
        )
      ))
    const context = yield* Layer.build(
      ListenerManager.layer.pipe(
        Layer.provideMerge(Layer.mergeAll(
          ListenerRegistry.layer(...listeners),
          ValidatorStatus.layerRef(),
          NodeInfo.layer({ identity: "bench", extensions: {} }),
          // The in-memory store: the manager only asks it for each listener's view.
          EventStore.layerMemory.pipe(Layer.provide(ResolutionRegistry.layer()))
        )),
        Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
      )
    )
    const control = Context.get(context, ValidatorStatusControl)
    const manager = Context.get(context, ListenerManager)
    const untilNoFibers: Effect.Effect<void> = Effect.flatMap(
      manager.fibers,
      (n) => n === 0 ? Effect.void : Effect.zipRight(Effect.yieldNow(), untilNoFibers)
    )
    return {
      start: Effect.suspend(() => {
        const wait = started
        return Effect.zipRight(control.set(active), Deferred.await(wait)).pipe(
          Effect.zipRight(Effect.suspend(() => Effect.map(Deferred.make<void>(), (d) => { started = d })))
        )
      }),
      stop: Effect.suspend(() => {
        const wait = stopped
        return Effect.zipRight(control.set(inactive), Deferred.await(wait)).pipe(
          // The last finalizer has run; the manager's fibers end just after (their bookkeeping).
          Effect.zipRight(untilNoFibers),
          Effect.zipRight(Effect.suspend(() => Effect.map(Deferred.make<void>(), (d) => { stopped = d })))
        )
      }),
      fibers: manager.fibers
    }
  })
