import { describe, expect, it } from "@effect/vitest"
import { Option, Schema } from "effect"
import type { RangeHint } from "../../src/ethereum/errors.js"
import * as LogRange from "../../src/ethereum/LogRange.js"

const p = LogRange.policy()
const shrink: RangeHint = { _tag: "Shrink" }

describe("LogRange", () => {
  it("starts at 1000 blocks, inclusive: [from, from + 999], never past the limit", () => {
    const s = LogRange.initial(p)
    expect(LogRange.end(s, 5000n, 100_000n)).toBe(5999n)
    expect(LogRange.span(5000n, 5999n)).toBe(1000)
    expect(LogRange.end(s, 5000n, 5100n)).toBe(5100n)
  })

  it("halves on a refusal without a number, down to one block, then gives up", () => {
    let s: LogRange.State = LogRange.initial(p)
    const sizes: Array<number> = []
    for (;;) {
      const next = LogRange.refused(s, s.size, shrink)
      if (Option.isNone(next)) break
      s = next.value
      sizes.push(s.size)
    }
    expect(sizes).toEqual([500, 250, 125, 62, 31, 15, 7, 3, 1])
  })

  it("takes the provider's number: a limit becomes a ceiling, a suggestion does not", () => {
    const limited = Option.getOrThrow(LogRange.refused(LogRange.initial(p), 1000, { _tag: "Limit", blocks: 300 }))
    expect(limited).toEqual({ size: 300, ceiling: 300 })
    expect(LogRange.succeeded(p, limited).size).toBe(300)

    const suggested = Option.getOrThrow(LogRange.refused(LogRange.initial(p), 1000, { _tag: "Suggested", blocks: 200 }))
    expect(suggested.size).toBe(200)
    expect(LogRange.succeeded(p, suggested).size).toBe(250)

    // A number no smaller than what was refused cannot be right: halve instead.
    expect(Option.getOrThrow(LogRange.refused(LogRange.initial(p), 1000, { _tag: "Suggested", blocks: 5000 })).size)
      .toBe(500)
  })

  it("grows back slowly (x1.25, at least one block) up to the max", () => {
    let s: LogRange.State = { size: 1, ceiling: undefined }
    const sizes: Array<number> = []
    for (let i = 0; i < 6; i++) {
      s = LogRange.succeeded(p, s)
      sizes.push(s.size)
    }
    expect(sizes).toEqual([2, 3, 4, 5, 6, 7])
    expect(LogRange.succeeded(p, { size: 1000, ceiling: undefined }).size).toBe(1250)
    expect(LogRange.succeeded(p, { size: 9000, ceiling: undefined }).size).toBe(10_000)
    expect(LogRange.succeeded(LogRange.policy({ max: 1500 }), { size: 1400, ceiling: undefined }).size).toBe(1500)
  })

  it("normalises the policy", () => {
    expect(LogRange.policy({ initial: 0, max: 50, growth: 0.5 })).toEqual({ initial: 1, max: 50, growth: 1.01 })
    expect(LogRange.policy({ initial: 5000, max: 2000 }).initial).toBe(2000)
  })

  it.prop(
    "a walk with refusals covers every block of [from, head] exactly once",
    [Schema.Int.pipe(Schema.between(0, 5000)), Schema.Int.pipe(Schema.between(1, 3000)), Schema.Int.pipe(Schema.between(1, 2000))],
    ([start, length, cap]) => {
      const from0 = BigInt(start)
      const head = from0 + BigInt(length) - 1n
      let s = LogRange.initial(p)
      let from = from0
      const fetched: Array<bigint> = []
      for (let guard = 0; from <= head && guard < 100_000; guard++) {
        const to = LogRange.end(s, from, head)
        const blocks = LogRange.span(from, to)
        if (blocks > cap) {
          s = Option.getOrThrow(LogRange.refused(s, blocks, guard % 2 === 0 ? shrink : { _tag: "Limit", blocks: cap }))
          continue
        }
        for (let b = from; b <= to; b++) fetched.push(b)
        s = LogRange.succeeded(p, s)
        from = to + 1n
      }
      expect(fetched).toEqual(Array.from({ length }, (_, i) => from0 + BigInt(i)))
    }
  )
})
