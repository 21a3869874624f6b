/**
 * `Retry.healable`: what `Effect.retry` with `Retry.schedule` did (its driver is now made at the
 * first failure): healable failures retried with the backoff, at least a provider's
 * `Retry-After`, others and the last one after `maxRetries` returned as they are.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, HashMap, Logger, LogLevel, Option, TestClock } from "effect"
import { RpcBadRequest, RpcRateLimited, RpcUnavailable } from "../../src/ethereum/errors.js"
import * as Retry from "../../src/ethereum/Retry.js"

const unavailable = new RpcUnavailable({ method: "eth_getLogs", detail: "502 Bad Gateway" })
const refused = new RpcBadRequest({ method: "eth_getLogs", detail: "invalid params" })

/** An effect failing with `failures` in turn, then succeeding with the number of attempts; `attempts` counts them. */
const scripted = (failures: ReadonlyArray<RpcUnavailable | RpcBadRequest | RpcRateLimited>) => {
  let attempts = 0
  const effect = Effect.suspend(() => {
    attempts++
    return attempts <= failures.length ? Effect.fail(failures[attempts - 1]!) : Effect.succeed(attempts)
  })
  return { effect, attempts: () => attempts }
}

describe("Retry.healable", () => {
  it.effect("a success runs once", () =>
    Effect.gen(function*() {
      const s = scripted([])
      expect(yield* Retry.healable()(s.effect)).toBe(1)
      expect(s.attempts()).toBe(1)
    }))

  it.effect("healable failures are retried after the backoff (1 s, then 2 s, jittered 80%..120%)", () =>
    Effect.gen(function*() {
      const s = scripted([unavailable, unavailable])
      const fiber = yield* Effect.fork(Retry.healable()(s.effect))
      yield* TestClock.adjust(Duration.millis(790))
      expect(s.attempts()).toBe(1)
      yield* TestClock.adjust(Duration.millis(420)) // 1.21 s: past the first delay's jitter
      expect(s.attempts()).toBe(2)
      yield* TestClock.adjust(Duration.millis(2410))
      expect(yield* Fiber.join(fiber)).toBe(3)
    }))

  it.effect("a failure that cannot heal is not retried", () =>
    Effect.gen(function*() {
      const s = scripted([refused])
      expect(yield* Effect.flip(Retry.healable()(s.effect))).toBe(refused)
      expect(s.attempts()).toBe(1)
    }))

  it.effect("a healable failure, then one that cannot heal: that one stands", () =>
    Effect.gen(function*() {
      const s = scripted([unavailable, refused])
      const fiber = yield* Effect.fork(Effect.flip(Retry.healable()(s.effect)))
      yield* TestClock.adjust(Duration.seconds(2))
      expect(yield* Fiber.join(fiber)).toBe(refused)
      expect(s.attempts()).toBe(2)
    }))

  it.effect("after maxRetries the last failure stands", () =>
    Effect.gen(function*() {
      const last = new RpcUnavailable({ method: "eth_getLogs", detail: "the third" })
      const s = scripted([unavailable, unavailable, last, unavailable])
      const fiber = yield* Effect.fork(Effect.flip(Retry.healable({ maxRetries: 2 })(s.effect)))
      yield* TestClock.adjust(Duration.seconds(10))
      expect(yield* Fiber.join(fiber)).toBe(last)
      expect(s.attempts()).toBe(3)
    }))

  it.effect("by default, delays stop growing at 10 s as Kwil's: 10 retries end within 1+2+4+8+6x10 s, jittered", () =>
    Effect.gen(function*() {
      const s = scripted(Array.from({ length: 11 }, () => unavailable))
      const fiber = yield* Effect.fork(Effect.flip(Retry.healable({ maxRetries: 10 })(s.effect)))
      yield* TestClock.adjust(Duration.seconds(0.8 * 75 - 1))
      expect(s.attempts()).toBeLessThan(11)
      yield* TestClock.adjust(Duration.seconds(0.4 * 75 + 1)) // 1.2 x 75 s in all
      expect(yield* Fiber.join(fiber)).toBe(unavailable)
      expect(s.attempts()).toBe(11)
      expect(unavailable.message).toContain("retried with backoff, up to max_retries times")
    }))

  it.effect("waits at least as long as a provider's Retry-After", () =>
    Effect.gen(function*() {
      const limited = new RpcRateLimited({
        method: "eth_getLogs",
        retryAfter: Option.some(Duration.seconds(5)),
        detail: "429 Too Many Requests"
      })
      const s = scripted([limited])
      const fiber = yield* Effect.fork(Retry.healable()(s.effect))
      yield* TestClock.adjust(Duration.millis(4990))
      expect(s.attempts()).toBe(1)
      yield* TestClock.adjust(Duration.millis(20))
      expect(yield* Fiber.join(fiber)).toBe(2)
    }))

  /** The log lines of the effects it is given. */
  const logCapture = () => {
    const lines: Array<{ readonly level: string; readonly message: unknown; readonly error: unknown }> = []
    const capture = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, logLevel, message }) =>
        lines.push({
          level: logLevel.label,
          message: Array.isArray(message) ? message[0] : message,
          error: Option.getOrUndefined(HashMap.get(annotations, "error"))
        })
      )
    )
    return { lines, capture }
  }

  it.effect("each healable failure is logged as a warning with its message; one that cannot heal is not", () =>
    Effect.gen(function*() {
      const { capture, lines } = logCapture()
      const s = scripted([unavailable, unavailable, refused])
      const fiber = yield* Effect.fork(Effect.flip(Retry.healable()(s.effect)).pipe(Effect.provide(capture)))
      yield* TestClock.adjust(Duration.seconds(5))
      expect(yield* Fiber.join(fiber)).toBe(refused)
      expect(lines).toEqual([
        { level: LogLevel.Warning.label, message: "RPC work failed, retrying with backoff", error: unavailable.message },
        { level: LogLevel.Warning.label, message: "RPC work failed, retrying with backoff", error: unavailable.message }
      ])
    }))

  it.effect("the failure that spends the last retry is not logged as retried: the caller gets it", () =>
    Effect.gen(function*() {
      const { capture, lines } = logCapture()
      const s = scripted([unavailable, unavailable])
      const fiber = yield* Effect.fork(Effect.flip(Retry.healable({ maxRetries: 1 })(s.effect)).pipe(Effect.provide(capture)))
      yield* TestClock.adjust(Duration.seconds(5))
      expect(yield* Fiber.join(fiber)).toBe(unavailable)
      expect(s.attempts()).toBe(2)
      expect(lines).toEqual([
        { level: LogLevel.Warning.label, message: "RPC work failed, retrying with backoff", error: unavailable.message }
      ])
    }))

  it.effect("each run of the wrapped effect starts the backoff afresh", () =>
    Effect.gen(function*() {
      const s = scripted([unavailable, unavailable, unavailable, unavailable])
      const rpc = Retry.healable({ maxRetries: 1 })
      // The first run: two failures (one retry), the last stands.
      const first = yield* Effect.fork(Effect.flip(rpc(s.effect)))
      yield* TestClock.adjust(Duration.seconds(2))
      expect(yield* Fiber.join(first)).toBe(unavailable)
      expect(s.attempts()).toBe(2)
      // The second: again one retry, after the first delay (not the second's).
      const second = yield* Effect.fork(Effect.flip(rpc(s.effect)))
      yield* TestClock.adjust(Duration.millis(1210))
      expect(s.attempts()).toBe(4)
      yield* Fiber.join(second)
    }))
})
