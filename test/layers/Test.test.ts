import { expect, it } from "@effect/vitest"
import { Config, Effect, Fiber, Logger, Schema, TestClock } from "effect"
import * as Test from "../../layers/Test.js"
import { EventStore, EventType, Listener } from "../../src/index.js"

const Reading = EventType.make("reading", EventType.json(Schema.Struct({ n: Schema.Number })))

/** Broadcasts the `n` of its config section, as the manager would give it (`Config`). */
const configured = Listener.make("configured", Effect.gen(function*() {
  const n = yield* Config.number("n")
  yield* Effect.logInfo("read")
  yield* (yield* EventStore).broadcast(Reading, { n })
}))

it.effect("runListener gives the config section as the listener's ConfigProvider and annotates its logs", () =>
  Effect.gen(function*() {
    const annotations: Array<unknown> = []
    const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ annotations: a }) => annotations.push(Object.fromEntries(a))))
    const broadcasts = yield* Test.runListener(configured, { eventTypes: [Reading], config: { n: "7" } }).pipe(Effect.provide(capture))
    expect(broadcasts.map((b) => b.payload)).toEqual([{ n: 7 }])
    expect(annotations).toEqual([{ listener: "configured" }])
  }))

it.effect("a listener that polls is driven by hand: its run forked under layer, TestClock moved", () =>
  Effect.gen(function*() {
    const poller = Listener.make("poller", Effect.gen(function*() {
      const store = yield* EventStore
      for (let n = 1; ; n++) {
        yield* store.broadcast(Reading, { n })
        yield* Effect.sleep("1 minute")
      }
    }))
    const fiber = yield* Effect.fork(Effect.scoped(poller.run))
    yield* TestClock.adjust("2 minutes")
    expect((yield* Test.broadcasts([Reading])).map((b) => b.payload)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }])
    yield* Fiber.interrupt(fiber)
  }).pipe(Effect.provide(Test.layer({ name: "poller", eventTypes: [Reading] }))))
