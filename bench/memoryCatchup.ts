/**
 * Benchmark 5, memory across a catch-up: heap and RSS after a forced GC, sampled while the real
 * `eth_deposits` listener catches up over a chain of 1,000,000 `Credit` logs (1,000
 * `depositMany(1, 1,000)` transactions, 10 a block, spread over 100,000 blocks; `--quick`: 100,000
 * logs over 20,000 blocks). A sample is taken each time the stored checkpoint passes another
 * tenth of the chain's blocks (the logs are spread evenly over them), the last one as it reaches
 * the confirmed head, while the listener and its database are still open. Flat means the growth
 * from the first sample after warm-up to the last does not scale with the count. What is live at a sample includes the batch in flight: with 10,000 logs a deposit block
 * and ranges of up to 10,000 blocks, a batch holds up to ~100,000 logs, whatever the total.
 */
import { Effect } from "effect"
import { ours, storedEvents, targetOf } from "./catchup.js"
import * as CatchupChain from "./catchupChain.js"
import { type Options, type Result, tempDir } from "./harness.js"
import { rows, sample, type Sample } from "./memory.js"

export const run = async (options: Options): Promise<ReadonlyArray<Result>> => {
  const spec: CatchupChain.ChainSpec = options.quick
    ? { blocks: 20_000, txs: 100, logsPerTx: 1_000, txsPerBlock: 10 }
    : { blocks: 100_000, txs: 1_000, logsPerTx: 1_000, txsPerBlock: 10 }
  const dir = tempDir("memcatchup")
  try {
    return await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const built = yield* CatchupChain.build(spec)
      yield* built.chain.anvil.mine(12)
      const target = targetOf(built)
      return yield* Effect.promise(async () => {
        const first = target.startingHeight
        const blocks = Number(target.confirmed - first)
        const samples: Array<Sample> = [sample(0)]
        const step = blocks / 10
        let next = step
        const started = Date.now()
        const file = dir.path("mem.db")
        await ours(file, target, (checkpoint) => {
          const done = Number(checkpoint - first)
          if (done >= next || checkpoint >= target.confirmed) {
            samples.push(sample(done))
            while (next <= done) next += step
          }
        })
        const seconds = (Date.now() - started) / 1000
        const n = storedEvents(file)
        if (n !== built.logs) throw new Error(`stored ${n} events, expected ${built.logs}`)
        const label = `${built.logs.toLocaleString("en")}-log catch-up`
        const warmIndex = samples.findIndex((s) => s.at > 0)
        return rows(label, samples, warmIndex, { heapMB: 16, rssMB: 64 }).map((r) => ({
          ...r,
          note: `${r.note}; sample at = blocks stored (of ${blocks.toLocaleString("en")}, ${built.logs.toLocaleString("en")} logs); catch-up took ${seconds.toFixed(1)} s; chain built in ` +
            `${(built.buildMs / 1000).toFixed(1)} s (${spec.txs} txs x ${spec.logsPerTx} logs, ${spec.txsPerBlock} a block, ` +
            `${spec.blocks.toLocaleString("en")} blocks)`
        }))
      })
    })))
  } finally {
    dir.remove()
  }
}
