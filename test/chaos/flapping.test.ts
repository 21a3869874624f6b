/**
 * Chaos 4, validator flapping with failing listeners: the real ListenerManager over the in-memory
 * store, under `TestClock`, with listeners that run forever, fail, throw, return, and fail under
 * policy `stop`, each at random moments; the node's status flips at random (synced and validator
 * drawn separately) with random time between flips. Afterwards: no listener fiber is left, every
 * run's scope was released exactly once (acquires = releases), nothing runs, and the manager
 * still starts and stops every listener.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Data, Duration, Effect, Layer, Logger, LogLevel, TestClock } from "effect"
import * as Test from "../../layers/Test.js"
import * as Listener from "../../src/listener/Listener.js"
import { ListenerManager } from "../../src/listener/ListenerManager.js"
import { ListenerRegistry } from "../../src/listener/ListenerRegistry.js"
import { NodeInfo } from "../../src/listener/NodeInfo.js"
import { active, inactive, ValidatorStatus, ValidatorStatusControl } from "../../src/listener/ValidatorStatus.js"
import * as Chaos from "./support/Chaos.js"

class Boom extends Data.TaggedError("Boom")<{ readonly run: number }> {}

interface Counts {
  acquired: number
  released: number
  live: number
}

describe("chaos: validator flapping with failing listeners", () => {
  it.scoped("random flips while listeners fail, throw and return leave nothing behind; the manager still works", () =>
    Effect.gen(function*() {
      const r = yield* Chaos.seed("flapping")
      const counts = new Map<string, Counts>()
      /** A listener whose every run acquires a resource (released with its scope), then does `body`. */
      const tracked = (name: string, body: (run: number) => Effect.Effect<void, Boom>, options: Listener.Options = {}) => {
        const c: Counts = { acquired: 0, released: 0, live: 0 }
        counts.set(name, c)
        return Listener.make(
          name,
          Effect.acquireRelease(
            Effect.sync(() => {
              c.live++
              return ++c.acquired
            }),
            () =>
              Effect.sync(() => {
                c.live--
                c.released++
              })
          ).pipe(Effect.flatMap(body)),
          { backoff: { initial: Duration.millis(200), max: Duration.seconds(2), resetAfter: Duration.seconds(5) }, ...options }
        )
      }
      const later = (max: number) => Effect.sleep(`${r.int(0, max)} millis`)
      const listeners = [
        tracked("steady", () => Effect.never),
        tracked("failing", (run) => later(1_500).pipe(Effect.zipRight(Effect.fail(new Boom({ run }))))),
        tracked("throwing", (run) =>
          later(1_500).pipe(Effect.zipRight(Effect.sync(() => {
            throw new Error(`thrown in run ${run}`)
          })))),
        tracked("returning", () => later(1_500)),
        tracked("stopping", (run) => later(1_500).pipe(Effect.zipRight(Effect.fail(new Boom({ run })))), { onFailure: "stop" }),
        // A listener that fails at once, every time: its restarts are all backoff.
        tracked("hopeless", (run) => Effect.fail(new Boom({ run })))
      ]
      const context = yield* Layer.build(
        ListenerManager.layer.pipe(
          Layer.provideMerge(
            Layer.mergeAll(
              ListenerRegistry.layer(...listeners).pipe(Layer.orDie),
              ValidatorStatus.layerRef(),
              NodeInfo.layer({ identity: "chaos-node", extensions: {} }),
              Test.storage()
            )
          )
        )
      )
      const manager = Context.get(context, ListenerManager)
      const control = Context.get(context, ValidatorStatusControl)

      let flips = 0
      for (let i = 0; i < 300; i++) {
        yield* control.set({ synced: r.next() < 0.7, validator: r.next() < 0.7 })
        flips++
        // Mostly short gaps (flapping), sometimes long ones (runs fail and back off).
        yield* TestClock.adjust(`${r.next() < 0.8 ? r.int(0, 50) : r.int(100, 4_000)} millis`)
      }

      // Down: nothing left.
      yield* control.set(inactive)
      yield* TestClock.adjust("1 millis")
      expect(yield* manager.fibers).toBe(0)
      const snapshot = [...counts].map(([name, c]) => ({ name, ...c }))
      // eslint-disable-next-line no-console
      console.log(`[chaos] flapping: ${flips} flips; runs ${JSON.stringify(snapshot.map((c) => [c.name, c.acquired]))}`)
      for (const c of snapshot) {
        expect(c.live, `${c.name} live`).toBe(0)
        expect(c.released, `${c.name} released`).toBe(c.acquired)
      }
      expect(snapshot.every((c) => c.acquired > 0)).toBe(true)
      for (const s of yield* manager.status) {
        expect(["stopped", "failed"], s.name).toContain(s.state)
      }

      // Up again: every listener starts (a `stop`ped one too: a new start clears it).
      yield* control.set(active)
      yield* TestClock.adjust("1 millis")
      const up = yield* manager.status
      expect(up.find((s) => s.name === "steady")?.state).toBe("running")
      expect(up.find((s) => s.name === "stopping")?.state).toBe("running")
      for (const [name, c] of counts) {
        expect(c.acquired, name).toBeGreaterThan(snapshot.find((s) => s.name === name)!.acquired)
      }
      // And down once more: all stopped, everything released.
      yield* control.set({ synced: true, validator: false })
      yield* TestClock.adjust("1 millis")
      expect(yield* manager.fibers).toBe(0)
      for (const [name, c] of counts) {
        expect(c.live, name).toBe(0)
        expect(c.released, name).toBe(c.acquired)
      }
    }).pipe(Logger.withMinimumLogLevel(LogLevel.None)))
})
