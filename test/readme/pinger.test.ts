// The sample listener and its test from the README, kept verbatim so the README stays true.
import { expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Test from "../../layers/Test.js"
import { EventStore, EventType, Listener } from "../../src/index.js"

export const Ping = EventType.make("ping", EventType.json(Schema.Struct({ n: Schema.Number })))

export const pinger = Listener.make("pinger", Effect.gen(function*() {
  const store = yield* EventStore
  yield* store.broadcast(Ping, { n: 1 })
}))

it.effect("pinger broadcasts one ping", () =>
  Effect.gen(function*() {
    const broadcasts = yield* Test.runListener(pinger, { eventTypes: [Ping] })
    expect(broadcasts.map((b) => b.payload)).toEqual([{ n: 1 }])
  }))

it.effect("a type without a resolution is refused, and nothing is stored", () =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Test.runListener(pinger, { eventTypes: [] }))
    expect(error._tag).toBe("UnknownEventType")
  }))
