import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as Progress from "../../src/cli/Progress.js"

const recorder = () => {
  const lines: Array<string> = []
  const statuses: Array<string> = []
  return {
    lines,
    statuses,
    out: {
      write: (line: string) => void lines.push(line),
      status: (text: string) => void statuses.push(text),
      clearStatus: () => void statuses.push("")
    }
  }
}

describe("Progress", () => {
  it("formats durations, rate and ETA", () => {
    expect(Progress.formatDuration(42_000)).toBe("42s")
    expect(Progress.formatDuration(185_000)).toBe("3m05s")
    expect(Progress.formatDuration(3_720_000)).toBe("1h02m")
    expect(Progress.formatDuration(Number.POSITIVE_INFINITY)).toBe("?")
    const s = { done: 500n, total: 1000n, elapsedMs: 2000 }
    expect(Progress.rate(s)).toBe(250)
    expect(Progress.eta(s)).toBe(2000)
    expect(Progress.renderBar(s, 10)).toBe("catching up [#####-----]  50% 500/1000 blocks, 250 blocks/s, ETA 2s")
    expect(Progress.renderLine(s)).toBe("catching up: 50% (500/1000 blocks, 250 blocks/s, ETA 2s)")
    expect(Progress.eta({ done: 0n, total: 10n, elapsedMs: 0 })).toBe(Number.POSITIVE_INFINITY)
  })

  it.effect("on a terminal redraws the bar on every update; the done count is clamped to the range", () =>
    Effect.gen(function*() {
      const r = recorder()
      const p = yield* Progress.make({ from: 99n, target: 199n, tty: true, out: r.out })
      yield* TestClock.adjust("1 second")
      yield* p.update(149n)
      yield* p.update(500n)
      yield* p.finish("done")
      expect(r.statuses[0]).toContain("50/100 blocks, 50 blocks/s, ETA 1s")
      expect(r.statuses[1]).toContain("100/100 blocks")
      expect(r.statuses.at(-1)).toBe("")
      expect(r.lines).toEqual(["done"])
    }))

  it.effect("elsewhere writes a plain line at most every plainEveryMs, and only when it moved", () =>
    Effect.gen(function*() {
      const r = recorder()
      const p = yield* Progress.make({ from: 0n, target: 100n, tty: false, plainEveryMs: 2000, out: r.out })
      yield* TestClock.adjust("1 second")
      yield* p.update(10n) // too soon
      yield* TestClock.adjust("1 second")
      yield* p.update(20n)
      yield* TestClock.adjust("3 seconds")
      yield* p.update(20n) // did not move
      yield* p.update(60n)
      expect(r.statuses).toEqual([])
      expect(r.lines).toEqual([
        "catching up: 20% (20/100 blocks, 10 blocks/s, ETA 8s)",
        "catching up: 60% (60/100 blocks, 12 blocks/s, ETA 3s)"
      ])
    }))
})
