/**
 * Mock layers for listener authors' own tests: no chain, no database, no manager.
 *
 * `runListener` runs one listener to its end against an in-memory event store and returns what it
 * broadcast, decoded with the event types it was given. A listener that never ends (one that polls
 * on a schedule) is driven by hand instead: fork its `run` under `layer` and move `TestClock`.
 * `layer` gives the pieces the manager gives a run (its context, store and config section as its
 * `ConfigProvider`), and `validatorStatus` is a manual `ValidatorStatus` for tests of code that
 * follows the node's seat.
 */
import { ConfigProvider, Effect, Layer, type Scope } from "effect"
import { EventLog } from "../src/events/EventLog.js"
import { EventStorage, EventStore } from "../src/events/EventStore.js"
import type { AnyEventType } from "../src/events/EventType.js"
import { type Listener, ListenerContext } from "../src/listener/Listener.js"
import { ValidatorStatus } from "../src/listener/ValidatorStatus.js"
import * as Resolution from "../src/voting/Resolution.js"
import { ResolutionRegistry } from "../src/voting/ResolutionRegistry.js"

export interface TestOptions {
  /** The event types the listener may broadcast: each gets a resolution that does nothing. */
  readonly eventTypes?: ReadonlyArray<AnyEventType>
  /** The listener's name as its context reports it (default `test`). */
  readonly name?: string
  /** The node identity the context reports (default `test-node`). */
  readonly identity?: string
  /** The listener's config section; omit it to test the listener's behaviour without one. */
  readonly config?: Readonly<Record<string, string>>
}

/** One event the listener broadcast, in the order it was stored. */
export interface Broadcast {
  readonly id: string
  readonly type: string
  readonly body: Uint8Array
  /** The payload decoded with its event type, or `undefined` for a type not in `eventTypes`. */
  readonly payload: unknown
}

/**
 * What a listener's run needs, in memory: its `ListenerContext`, an `EventStore` scoped to it
 * (with `EventLog` to read what it stored) and a `ResolutionRegistry` that knows `eventTypes`;
 * its config section is also its `ConfigProvider`, as under the manager.
 */
export const layer = (options: TestOptions = {}): Layer.Layer<ListenerContext | EventStore | EventLog> => {
  const name = options.name ?? "test"
  const context = Layer.succeed(ListenerContext, {
    name,
    identity: options.identity ?? "test-node",
    config: options.config ?? {},
    configured: options.config !== undefined
  })
  const store = EventStore.layerFor(name).pipe(Layer.provideMerge(storage(options.eventTypes)))
  const config = Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(options.config ?? {}))))
  return Layer.mergeAll(context, store, config)
}

/**
 * The node-side storage in memory, knowing `eventTypes` (each with a resolution that does
 * nothing): for tests that run a `ListenerManager` without a database.
 */
export const storage = (eventTypes: ReadonlyArray<AnyEventType> = []): Layer.Layer<EventStorage | EventLog> => {
  const resolutions = eventTypes.map((type) => Resolution.make({ type, resolve: () => Effect.void }))
  return EventStore.layerMemory.pipe(Layer.provide(Layer.orDie(ResolutionRegistry.layer(...resolutions))))
}

/** Everything stored so far, decoded with `eventTypes`. */
export const broadcasts = (eventTypes: ReadonlyArray<AnyEventType> = []) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const events = yield* Effect.orDie(log.list())
    const byName = new Map(eventTypes.map((type) => [type.name, type] as const))
    return yield* Effect.forEach(events, (event) => {
      const type = byName.get(event.type)
      const payload = type === undefined ? Effect.succeed(undefined) : Effect.orDie(type.decode(event.body))
      return Effect.map(payload, (payload): Broadcast => ({ id: event.id, type: event.type, body: event.body, payload }))
    })
  })

/**
 * Runs `listener` to its end in a scope of its own (its finalizers run before this returns) and
 * returns its broadcasts. Its errors are this effect's errors.
 */
export const runListener = <E, R>(
  listener: Listener<E, R>,
  options: TestOptions = {}
): Effect.Effect<ReadonlyArray<Broadcast>, E, Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    yield* Effect.scoped(listener.run).pipe(Effect.annotateLogs("listener", options.name ?? listener.name))
    return yield* broadcasts(options.eventTypes)
  }).pipe(Effect.provide(layer({ ...options, name: options.name ?? listener.name }))) as Effect.Effect<
    ReadonlyArray<Broadcast>,
    E,
    Exclude<R, Scope.Scope>
  >

/** A manual validator status: `ValidatorStatus` to read, `ValidatorStatusControl` to set. */
export const validatorStatus = ValidatorStatus.layerRef

