import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import {
  active,
  inactive,
  isActive,
  ValidatorStatus,
  ValidatorStatusControl
} from "../../src/listener/ValidatorStatus.js"

describe("ValidatorStatus", () => {
  it("is active only when synced and a validator", () => {
    expect(isActive({ synced: true, validator: true })).toBe(true)
    expect(isActive({ synced: true, validator: false })).toBe(false)
    expect(isActive({ synced: false, validator: true })).toBe(false)
    expect(isActive(inactive)).toBe(false)
  })

  it.effect("layerRef starts inactive, or at the status given", () =>
    Effect.gen(function*() {
      expect(yield* Effect.flatMap(ValidatorStatus, (s) => s.current)).toEqual(inactive)
      expect(
        yield* Effect.flatMap(ValidatorStatus, (s) => s.current).pipe(Effect.provide(ValidatorStatus.layerRef(active)))
      ).toEqual(active)
    }).pipe(Effect.provide(ValidatorStatus.layerRef())))

  it.effect("changes emits the current status, then what the control sets", () =>
    Effect.gen(function*() {
      const status = yield* ValidatorStatus
      const control = yield* ValidatorStatusControl
      // Each change is made once the previous value was seen, so none can be missed.
      let step = 0
      const seen = yield* status.changes.pipe(
        Stream.tap(() =>
          ++step === 1
            ? control.set({ synced: true, validator: false })
            : step === 2
            ? control.update((s) => ({ ...s, validator: true }))
            : Effect.void
        ),
        Stream.take(3),
        Stream.runCollect
      )
      expect(Chunk.toArray(seen)).toEqual([
        inactive,
        { synced: true, validator: false },
        active
      ])
      expect(yield* status.current).toEqual(active)
    }).pipe(Effect.provide(ValidatorStatus.layerRef())))
})
