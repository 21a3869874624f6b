import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Layer, Option, Scope } from "effect"
import { EventStore } from "../../src/events/EventStore.js"
import * as Listener from "../../src/listener/Listener.js"
import { DuplicateListener, InvalidListenerName, ListenerRegistry } from "../../src/listener/ListenerRegistry.js"

class Greeting extends Context.Tag("test/Greeting")<Greeting, { readonly text: string }>() {}

const idle = (name: string) => Listener.make(name, Effect.void)

/** What the manager would give a run: a context, a store (unused here) and a fresh scope. */
const managerContext = (scope: Scope.Scope) =>
  Context.make(Listener.ListenerContext, { name: "x", identity: "node", config: {}, configured: false }).pipe(
    Context.add(Scope.Scope, scope),
    // The registry never touches the store; a bare object stands in for it.
    Context.add(EventStore, {} as EventStore["Type"])
  )

describe("ListenerRegistry", () => {
  it.effect.each([
    ["", "empty"],
    [" ", "white space"],
    ["eth deposits", "white space"],
    ["eth_deposits\t", "white space"],
    ["Eth_Deposits", "upper-case"],
    ["ETH", "upper-case"],
    ["eth/deposits", "\"/\""],
    ["dépôts", "\"é\""],
    ["a:b", "\":\""]
  ])("refuses the name %j (%s)", ([name, reason]) =>
    Effect.gen(function*() {
      const registry = yield* ListenerRegistry.make
      const error = yield* Effect.flip(registry.register(idle(name)))
      expect(error).toBeInstanceOf(InvalidListenerName)
      expect(error.message).toContain(reason)
      expect(error.message).toContain("lower-case ASCII letters")
      expect(yield* registry.all).toEqual([])
    }))

  it.effect("accepts lower-case letters, digits, _, - and .", () =>
    Effect.gen(function*() {
      const registry = yield* ListenerRegistry.make
      for (const name of ["eth_deposits", "a", "0", "x-1.y_2", "..."]) yield* registry.register(idle(name))
      expect((yield* registry.all).map((l) => l.name)).toEqual(["eth_deposits", "a", "0", "x-1.y_2", "..."])
    }))

  it.effect("refuses a duplicate and keeps the first", () =>
    Effect.gen(function*() {
      const registry = yield* ListenerRegistry.make
      const first = idle("dup")
      yield* registry.register(first)
      const error = yield* Effect.flip(registry.register(Listener.make("dup", Effect.never)))
      expect(error).toBeInstanceOf(DuplicateListener)
      expect(error.message).toContain(`"dup" is already registered`)
      expect((yield* registry.all).length).toBe(1)
      expect(Option.map(yield* registry.get("dup"), (l) => l.onFailure)).toEqual(Option.some(first.onFailure))
    }))

  it.effect("lists in registration order and gets by exact name only", () =>
    Effect.gen(function*() {
      const registry = yield* ListenerRegistry.make
      for (const name of ["zeta", "alpha", "mid"]) yield* registry.register(idle(name))
      expect((yield* registry.all).map((l) => l.name)).toEqual(["zeta", "alpha", "mid"])
      expect(Option.isSome(yield* registry.get("alpha"))).toBe(true)
      expect(Option.isNone(yield* registry.get("ALPHA"))).toBe(true)
      expect(Option.isNone(yield* registry.get("nope"))).toBe(true)
    }))

  it.scoped("resolves a listener's own requirements at registration", () =>
    Effect.gen(function*() {
      let seen = ""
      const greeter = Listener.make("greeter", Effect.map(Greeting, (g) => { seen = g.text }))
      const registry = yield* ListenerRegistry.make
      yield* registry.register(greeter).pipe(Effect.provideService(Greeting, { text: "hello" }))
      const stored = Option.getOrThrow(yield* registry.get("greeter"))
      // Only what the manager gives: no Greeting in sight.
      const scope = yield* Scope.make()
      yield* Effect.provide(stored.run, managerContext(scope))
      expect(seen).toBe("hello")
    }))

  it.scoped("what the manager provides wins over what was captured (the run's own Scope)", () =>
    Effect.gen(function*() {
      let released = 0
      const holder = Listener.make("holder", Effect.acquireRelease(Effect.void, () => Effect.sync(() => released++)))
      const registry = yield* ListenerRegistry.make
      // Registered where a Scope is in context (as in a scoped layer): it must not be the one used.
      yield* registry.register(holder)
      const stored = Option.getOrThrow(yield* registry.get("holder"))
      const runScope = yield* Scope.make()
      yield* Effect.provide(stored.run, managerContext(runScope))
      expect(released).toBe(0)
      yield* Scope.close(runScope, Exit.void)
      expect(released).toBe(1)
    }))

  it.effect("layer holds the listeners in order and requires what they require", () =>
    Effect.gen(function*() {
      const layer = ListenerRegistry.layer(
        idle("one"),
        Listener.make("two", Effect.asVoid(Greeting))
      )
      const names = yield* Effect.flatMap(ListenerRegistry, (r) => r.all).pipe(
        Effect.provide(layer),
        Effect.provideService(Greeting, { text: "hi" })
      )
      expect(names.map((l) => l.name)).toEqual(["one", "two"])
    }))

  it.effect("layer fails to build on a duplicate or a bad name", () =>
    Effect.gen(function*() {
      const dup = yield* Effect.flip(Effect.provide(ListenerRegistry, ListenerRegistry.layer(idle("a"), idle("a"))))
      expect(dup._tag).toBe("DuplicateListener")
      const bad = yield* Effect.flip(Effect.provide(ListenerRegistry, ListenerRegistry.layer(idle("A"))))
      expect(bad._tag).toBe("InvalidListenerName")
    }))

  it.effect("add layers extend an existing registry", () =>
    Effect.gen(function*() {
      const layer = Layer.mergeAll(ListenerRegistry.add(idle("ext-a")), ListenerRegistry.add(idle("ext-b"))).pipe(
        Layer.provideMerge(ListenerRegistry.layer(idle("base")))
      )
      const names = yield* Effect.flatMap(ListenerRegistry, (r) => r.all).pipe(Effect.provide(layer))
      expect(names.map((l) => l.name).sort()).toEqual(["base", "ext-a", "ext-b"])
    }))
})

describe("Listener.make", () => {
  const body = Effect.void
  it.each([
    ["a first delay of 0", { initial: Duration.zero }, "initial 0 must be finite and above 0 (at 0 a failing listener restarts in a busy loop)"],
    ["an infinite first delay", { initial: Duration.infinity }, "initial Infinity must be finite and above 0"],
    ["a cap below the first delay", { initial: Duration.seconds(2), max: Duration.seconds(1) }, "max 1s must be finite and at least initial 2s"],
    ["a cap of 0", { max: Duration.zero }, "max 0 must be finite and at least initial 1s"],
    ["a reset of 0", { resetAfter: Duration.zero }, "resetAfter 0 must be above 0"]
  ] as const)("refuses a backoff with %s (InvalidBackoff)", (_, backoff, says) => {
    expect(() => Listener.make("l", body, { backoff })).toThrow(Listener.InvalidBackoff)
    expect(() => Listener.make("l", body, { backoff })).toThrow(`listener "l" has an invalid backoff: ${says}`)
  })

  it("takes the default backoff and one that only sets some of it", () => {
    expect(Listener.make("l", body).backoff).toEqual(Listener.defaultBackoff)
    expect(Listener.make("l", body, { backoff: { initial: Duration.millis(5) } }).backoff.initial).toEqual(Duration.millis(5))
  })
})
