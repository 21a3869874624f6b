/** The memory benchmark's rows: growth from the warm-up sample to the last, and its ratio to that sample. */
import { describe, expect, it } from "@effect/vitest"
import { rows } from "../../bench/memory.js"

describe("memory rows", () => {
  it("measure growth from the warm-up sample to the last one, and fail it past the bar", () => {
    const samples = [
      { at: 0, heapMB: 30, rssMB: 300 },
      { at: 100, heapMB: 40, rssMB: 400 },
      { at: 200, heapMB: 45, rssMB: 390 },
      { at: 300, heapMB: 42, rssMB: 380 }
    ]
    const [heap, rss] = rows("test", samples, 1, { heapMB: 1, rssMB: 16 })
    expect(heap).toMatchObject({ name: "memory: test, heap growth", ours: 2, baseline: 40, ratio: 2 / 40, pass: false })
    expect(rss).toMatchObject({ name: "memory: test, RSS growth", ours: -20, baseline: 400, ratio: -20 / 400, pass: true })
  })
})
