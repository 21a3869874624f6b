/**
 * The listeners this node knows, by name. Registering resolves a listener's own requirements
 * (`R`, e.g. an `EthereumClient`) from the context at that moment, so every stored listener
 * needs only what the manager gives it: `ListenerContext | EventStore | Scope`.
 */
import { Context, Data, Effect, Layer, Option } from "effect"
import type { Listener, Provided, Requirements } from "./Listener.js"

/**
 * A listener as stored: its requirements are resolved, its error type erased.
 *
 * `run` is self-contained: given what the manager gives (`ListenerContext | EventStore | Scope`),
 * it runs with the context captured at registration underneath, the given services winning. It
 * pays for that with a `Context.merge` at every run, so the manager instead merges `context` once
 * into the runtime it forks runs from and runs `body`.
 */
export interface RegisteredListener extends Listener<unknown, never> {
  /** The context captured at registration: the listener's own requirements `R` (and whatever else was there). */
  readonly context: Context.Context<never>
  /**
   * The run as written, without `context`: it needs `context` and what the manager gives, the
   * latter on top (so the run's own `Scope`, `ListenerContext` and `EventStore` win over any
   * captured ones). Its requirements are `unknown` because no type says that; use `run` unless
   * you provide `context` yourself.
   */
  readonly body: Effect.Effect<void, unknown, unknown>
}

/** A name the registry refuses. Names key a listener's config section, KV space, logs and metrics. */
export class InvalidListenerName extends Data.TaggedError("InvalidListenerName")<{
  readonly name: string
  readonly reason: string
}> {
  override get message() {
    return `invalid listener name ${JSON.stringify(this.name)}: ${this.reason}; ` +
      `use lower-case ASCII letters, digits, "_", "-" and "." (e.g. "eth_deposits")`
  }
}

/** A second listener under a name already taken. */
export class DuplicateListener extends Data.TaggedError("DuplicateListener")<{ readonly name: string }> {
  override get message() {
    return `a listener named "${this.name}" is already registered; each listener needs its own name ` +
      `(it keys the listener's config section and stored state)`
  }
}

const validName = /^[a-z0-9_.-]+$/

/** Why `name` is not a listener name, or `undefined` when it is one. */
const invalidReason = (name: string): string | undefined => {
  if (name.length === 0) return "it is empty"
  if (validName.test(name)) return undefined
  if (/\s/.test(name)) return "it contains white space"
  if (name.toLowerCase() !== name && validName.test(name.toLowerCase())) {
    return `it has upper-case letters (did you mean "${name.toLowerCase()}"?)`
  }
  const odd = [...name].find((c) => !validName.test(c))
  return `it contains ${JSON.stringify(odd)}`
}

export class ListenerRegistry extends Context.Tag("kwil-listeners/ListenerRegistry")<ListenerRegistry, {
  /**
   * Adds a listener, resolving its requirements `R` from the caller's context now. Fails on a
   * bad name or one already taken; nothing is stored then. A listener registered while the
   * listeners run starts at the next start.
   */
  readonly register: <E, R>(
    listener: Listener<E, R>
  ) => Effect.Effect<void, InvalidListenerName | DuplicateListener, R>
  /** The listener registered under `name` (exactly that name: no case folding). */
  readonly get: (name: string) => Effect.Effect<Option.Option<RegisteredListener>>
  /** Every listener, in registration order. */
  readonly all: Effect.Effect<ReadonlyArray<RegisteredListener>>
}>() {
  /** A new, empty registry. */
  static readonly make: Effect.Effect<ListenerRegistry["Type"]> = Effect.sync(() => {
    const byName = new Map<string, RegisteredListener>()
    return ListenerRegistry.of({
      register: <E, R>(listener: Listener<E, R>) =>
        Effect.flatMap(Effect.context<R>(), (captured): Effect.Effect<void, InvalidListenerName | DuplicateListener> => {
          const reason = invalidReason(listener.name)
          if (reason !== undefined) return Effect.fail(new InvalidListenerName({ name: listener.name, reason }))
          if (byName.has(listener.name)) return Effect.fail(new DuplicateListener({ name: listener.name }))
          byName.set(listener.name, {
            ...listener,
            // What the manager provides wins over what was captured (a layer's Scope, above all).
            run: Effect.mapInputContext(
              listener.run,
              (given: Context.Context<Provided>) => Context.merge(captured, given)
            ),
            context: captured as Context.Context<never>,
            body: listener.run
          })
          return Effect.void
        }),
      get: (name) => Effect.sync(() => Option.fromNullable(byName.get(name))),
      all: Effect.sync(() => [...byName.values()])
    })
  })

  /** An empty registry, for layers that add listeners with `ListenerRegistry.add`. */
  static readonly layerEmpty: Layer.Layer<ListenerRegistry> = Layer.effect(ListenerRegistry, ListenerRegistry.make)

  /**
   * A registry holding `listeners`, in this order: the Effect counterpart of Go's `init()`.
   * Their requirements become the layer's.
   */
  static readonly layer = <const Ls extends ReadonlyArray<Listener<unknown, unknown>>>(
    ...listeners: Ls
  ): Layer.Layer<ListenerRegistry, InvalidListenerName | DuplicateListener, Requirements<Ls[number]>> =>
    Layer.effect(
      ListenerRegistry,
      Effect.tap(ListenerRegistry.make, (registry) => registerAll(registry, listeners))
    )

  /** A layer that adds `listeners` to the registry it is given (for extensions composed separately). */
  static readonly add = <const Ls extends ReadonlyArray<Listener<unknown, unknown>>>(
    ...listeners: Ls
  ): Layer.Layer<never, InvalidListenerName | DuplicateListener, ListenerRegistry | Requirements<Ls[number]>> =>
    Layer.effectDiscard(Effect.flatMap(ListenerRegistry, (registry) => registerAll(registry, listeners)))
}

const registerAll = <Ls extends ReadonlyArray<Listener<unknown, unknown>>>(
  registry: ListenerRegistry["Type"],
  listeners: Ls
): Effect.Effect<void, InvalidListenerName | DuplicateListener, Requirements<Ls[number]>> =>
  Effect.forEach(listeners, (listener) => registry.register(listener), { discard: true }) as Effect.Effect<
    void,
    InvalidListenerName | DuplicateListener,
    Requirements<Ls[number]>
  >
