import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
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
