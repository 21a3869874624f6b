/**
 * Benchmark 5, memory: heap and RSS after a forced GC, sampled across many validator flips
 * (10 listeners started and stopped each flip) and across a 1,000,000-log catch-up (see
 * `memoryCatchup.ts`). Flat means the growth from the first sample after warm-up to the last is
 * small and does not scale with the count: a leak of 100 bytes a flip would be 1 MB over 10,000.
 * A row's ratio is that growth over the warm-up sample.
 */
import { Effect } from "effect"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { makeFleet } from "./fleet.js"
import type { Options, Result } from "./harness.js"

/** `gc()` without `--expose-gc` on the command line. */
export const gc: () => void = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (exposed !== undefined) return exposed
  setFlagsFromString("--expose-gc")
  return runInNewContext("gc") as () => void
})()

export interface Sample {
  readonly at: number
  readonly heapMB: number
  readonly rssMB: number
}

export const sample = (at: number): Sample => {
  gc()
  gc()
  const { heapUsed, rss } = process.memoryUsage()
  return { at, heapMB: heapUsed / 2 ** 20, rssMB: rss / 2 ** 20 }
}

const mb = (n: number) => Math.round(n * 100) / 100

/** Two rows (heap, RSS): growth between the warm-up sample and the last one. */
export const rows = (
  label: string,
  samples: ReadonlyArray<Sample>,
  warmIndex: number,
  bars: { readonly heapMB: number; readonly rssMB: number }
): Array<Result> => {
  const warm = samples[warmIndex]!
  const last = samples[samples.length - 1]!
  const kinds = [["heap", "heapMB", "heap after gc"], ["RSS", "rssMB", "RSS"]] as const
  return kinds.map(([kind, key, what]) => ({
    name: `memory: ${label}, ${kind} growth`,
    ours: mb(last[key] - warm[key]),
    baseline: mb(warm[key]),
    unit: "MB",
    ratio: (last[key] - warm[key]) / warm[key],
    bar: `< ${bars[key]} MB growth after warm-up`,
    pass: last[key] - warm[key] < bars[key],
    note: `baseline = ${what} after warm-up (at ${warm.at}); samples: ${samples.map((s) => `${s.at}:${mb(s[key])}`).join(" ")}`
  }))
}

export const flips = async (options: Options): Promise<ReadonlyArray<Result>> => {
  const total = options.quick ? 2_000 : 10_000
  const every = total / 10
  const samples = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const fleet = yield* makeFleet(10)
    const samples: Array<Sample> = [sample(0)]
    for (let i = 1; i <= total; i++) {
      yield* fleet.start
      yield* fleet.stop
      if (i % every === 0) samples.push(sample(i))
    }
    return samples
  })))
  // The heap's bar is set for the full run: a leak of about 100 bytes a flip (1 MB over 10,000)
  // fails it. A `--quick` run's 2,000 flips only smoke-test it: the heap still settles over its
  // first thousands of flips (0.28 MB over 1,800 flips in one quick run; 0.24 over 9,000 in a full one).
  return rows(`${total.toLocaleString("en")} validator flips`, samples, 1, { heapMB: 1, rssMB: 16 })
}

export const run = flips
