/**
 * `EventType.checkAll`: how raw bodies are checked before they are stored. A type with an
 * `accepts` check is checked by it alone (its payloads are never made); one without is decoded.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as EventType from "../../src/events/EventType.js"

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
