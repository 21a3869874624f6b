/**
 * `EventType.checkAll`: how raw bodies are checked before they are stored. A type with an
 * `accepts` check is checked by it alone (its payloads are never made); one without is decoded.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as EventType from "../../src/events/EventType.js"
import * as Resolution from "../../src/voting/Resolution.js"
import { ResolutionRegistry } from "../../src/voting/ResolutionRegistry.js"

/** A type of one-byte bodies whose schema counts its decodes. */
const counted = (options?: EventType.Options) => {
  let decodes = 0
  const schema = Schema.transform(Schema.Uint8ArrayFromSelf.pipe(Schema.filter((b) => b.length === 1 || "one byte")), Schema.Number, {
    strict: true,
    decode: (b) => {
      decodes++
      return b[0]!
    },
    encode: (n) => Uint8Array.of(n)
  })
  return { type: EventType.make("one_byte", schema, options), decodes: () => decodes }
}

const bodies = [Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3, 4), Uint8Array.of(5)]

describe("EventType.checkAll", () => {
  it.effect("without accepts: every body decoded, the first that fails named by its index", () =>
    Effect.gen(function*() {
      const { type, decodes } = counted()
      yield* type.checkAll(bodies.slice(0, 2))
      expect(decodes()).toBe(2)
      const error = yield* Effect.flip(type.checkAll(bodies))
      expect(error).toMatchObject({ _tag: "PayloadCodecError", type: "one_byte", direction: "decode", index: 2 })
    }))

  it.effect("with accepts: checked by it alone, no payload made; its reason is the cause", () =>
    Effect.gen(function*() {
      const { type, decodes } = counted({ accepts: (b) => (b.length === 1 ? undefined : `expected 1 byte, got ${b.length}`) })
      yield* type.checkAll(bodies.slice(0, 2))
      const error = yield* Effect.flip(type.checkAll(bodies))
      expect(error).toMatchObject({ _tag: "PayloadCodecError", direction: "decode", index: 2, cause: "expected 1 byte, got 2" })
      expect(error.message).toContain("(item 2): expected 1 byte, got 2")
      expect(decodes()).toBe(0)
      // decode itself is unchanged.
      expect(yield* type.decode(Uint8Array.of(7))).toBe(7)
    }))
})

describe("event type names", () => {
  const schema = Schema.Uint8ArrayFromSelf
  // An id hashes `utf8(name) || 0x00 || body`: "a\0b" with body "c" and "a" with body "b\0c"
  // would share one; two lone surrogates share the UTF-8 bytes of U+FFFD.
  const bad = [
    ["", "empty"],
    ["credit account", "white space"],
    ["a\0b", "control character"],
    ["a\uD800", "lone surrogate"]
  ] as const

  it.each(bad)("EventType.make refuses %j (%s) with InvalidEventTypeName", (name, says) => {
    let thrown: unknown
    try {
      EventType.make(name, schema)
    } catch (e) {
      thrown = e
    }
    expect(thrown).toBeInstanceOf(EventType.InvalidEventTypeName)
    expect((thrown as EventType.InvalidEventTypeName).message).toContain(says)
  })

  it.effect("the registry refuses a type made by hand with such a name, as the node starts", () =>
    Effect.gen(function*() {
      const good = EventType.make("credit_account", schema)
      for (const [name, says] of bad) {
        const byHand = Resolution.make({ type: { ...good, name }, resolve: () => Effect.void })
        const error = yield* Effect.flip(ResolutionRegistry.make([byHand]))
        expect(error).toMatchObject({ _tag: "InvalidEventTypeName", name })
        expect(error.message).toContain(says)
      }
      // Names in use stay valid, Unicode letters and punctuation included.
      for (const name of ["credit_account", "eth.deposit-v2", "dépôt", "x:y/z"]) EventType.make(name, schema)
    }))
})
