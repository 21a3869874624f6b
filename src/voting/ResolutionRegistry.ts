/**
 * The resolution types this node knows. The event store refuses broadcasts of any other type
 * (`UnknownEventType`), and the vote ledger looks up thresholds and `resolve` here.
 */
import { Context, Data, Effect, Layer, Option } from "effect"
import { InvalidEventTypeName, nameProblem } from "../events/EventType.js"
import type { AnyResolution } from "./Resolution.js"

export class DuplicateResolution extends Data.TaggedError("DuplicateResolution")<{ readonly type: string }> {
  override get message() {
    return `a resolution for event type "${this.type}" is already registered; each type has exactly one`
  }
}

export class ResolutionRegistry extends Context.Tag("kwil-listeners/ResolutionRegistry")<ResolutionRegistry, {
  /** The resolution for an event type name. */
  readonly get: (type: string) => Option.Option<AnyResolution>
  /** Every registered type name, sorted. */
  readonly types: ReadonlyArray<string>
}>() {
  /** A registry holding exactly `resolutions`; fails on two for one type, or a type name that cannot be one. */
  static readonly layer = (...resolutions: ReadonlyArray<AnyResolution>) =>
    Layer.effect(ResolutionRegistry, ResolutionRegistry.make(resolutions))

  static readonly make = (resolutions: ReadonlyArray<AnyResolution>) =>
    Effect.gen(function*() {
      const byType = new Map<string, AnyResolution>()
      for (const resolution of resolutions) {
        // An event type made by hand (not with `EventType.make`) is checked here.
        const problem = nameProblem(resolution.type.name)
        if (problem !== undefined) return yield* new InvalidEventTypeName({ name: resolution.type.name, reason: problem })
        if (byType.has(resolution.type.name)) {
          return yield* new DuplicateResolution({ type: resolution.type.name })
        }
        byType.set(resolution.type.name, resolution)
      }
      const types = [...byType.keys()].sort()
      return ResolutionRegistry.of({
        get: (type) => Option.fromNullable(byType.get(type)),
        types
      })
    })
}
