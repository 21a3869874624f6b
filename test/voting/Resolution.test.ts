import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Schema } from "effect"
import * as EventType from "../../src/events/EventType.js"
import * as Resolution from "../../src/voting/Resolution.js"
import { fraction, requiredPower } from "../../src/voting/Resolution.js"

describe("requiredPower", () => {
  it("is ceil(total * num / den), exactly, in bigint", () => {
    expect(requiredPower(10n, fraction(2, 3))).toBe(7n)
    expect(requiredPower(1n, fraction(1, 2))).toBe(1n)
    expect(requiredPower(3n, fraction(2, 5))).toBe(2n)
    const max = (1n << 63n) - 1n
    expect(requiredPower(max, fraction(1n, max))).toBe(1n)
    expect(requiredPower(max, fraction(2, 3))).toBe((max * 2n + 2n) / 3n)
    expect(requiredPower(9n, fraction(2, 3))).toBe(6n)
    expect(requiredPower(0n, fraction(2, 3))).toBe(0n)
  })

  const thresholds = fc.bigInt({ min: 1n, max: 1n << 70n }).chain((denominator) =>
    fc.tuple(fc.bigInt({ min: 0n, max: denominator }), fc.constant(denominator))
  )

  it.prop(
    "is the least power p with p * den >= total * num",
    [fc.bigInt({ min: 0n, max: 1n << 70n }), thresholds],
    ([total, [numerator, denominator]]) => {
      const required = requiredPower(total, fraction(numerator, denominator))
      return required * denominator >= total * numerator && (required - 1n) * denominator < total * numerator
    }
  )

  it("refuses thresholds that are not fractions of at most 1", () => {
    expect(() => fraction(1, 0)).toThrow(RangeError)
    expect(() => fraction(-1, 2)).toThrow(RangeError)
    expect(() => fraction(3, 2)).toThrow(RangeError)
  })
})

describe("Resolution.make", () => {
  const type = EventType.make("t", EventType.json(Schema.Struct({ n: Schema.Number })))
  const make = (options: {
    readonly confirmationThreshold?: Resolution.Fraction
    readonly refundThreshold?: Resolution.Fraction
    readonly expirationPeriod?: bigint | number
  }) => () =>
    Resolution.make({ type, resolve: () => Effect.void, ...options })

  it("takes Kwil's defaults and the bounds themselves", () => {
    const r = make({})()
    expect([r.confirmationThreshold, r.refundThreshold, r.expirationPeriod]).toEqual([fraction(2, 3), fraction(1, 1), 14_400n])
    expect(make({ expirationPeriod: Resolution.maxExpirationPeriod, confirmationThreshold: fraction(0, 1) })).not.toThrow()
    expect(make({ expirationPeriod: 1 })().expirationPeriod).toBe(1n)
  })

  it.each([
    ["a zero denominator", { confirmationThreshold: { numerator: 1n, denominator: 0n } }, "confirmation threshold 1/0: the denominator must be positive"],
    ["a negative numerator", { confirmationThreshold: { numerator: -1n, denominator: 3n } }, "confirmation threshold -1/3: the numerator must not be negative"],
    ["a threshold over 1", { refundThreshold: { numerator: 4n, denominator: 3n } }, "refund threshold 4/3: a threshold cannot exceed 1"],
    ["numbers, not bigints", { refundThreshold: { numerator: 1, denominator: 2 } as unknown as Resolution.Fraction }, "refund threshold its numerator and denominator must be bigints"],
    ["a fractional period", { expirationPeriod: 1.5 }, "expiration period 1.5 must be a whole number of blocks"],
    ["a period of 0", { expirationPeriod: 0n }, "expiration period 0 must be from 1 to"],
    ["a period past 2^62", { expirationPeriod: Resolution.maxExpirationPeriod + 1n }, "expiration period 4611686018427387905 must be from 1 to"]
  ] as const)("refuses %s with InvalidResolution", (_, options, reason) => {
    let thrown: unknown
    try {
      make(options)()
    } catch (e) {
      thrown = e
    }
    expect(thrown).toBeInstanceOf(Resolution.InvalidResolution)
    expect((thrown as Resolution.InvalidResolution).message).toContain(`resolution "t" is invalid: ${reason}`)
  })
})
