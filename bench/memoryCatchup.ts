/**
 * Benchmark 5, memory across a catch-up: heap and RSS after a forced GC, sampled while the real
 * `eth_deposits` listener catches up over a chain of 1,000,000 `Credit` logs (1,000
 * `depositMany(1, 1,000)` transactions, 10 a block, spread over 100,000 blocks; `--quick`: 100,000
 * logs over 20,000 blocks). A sample is taken each time another tenth of the logs is stored.
 * Flat means the growth from the first sample after warm-up to the last does not scale with the
 * count. What is live at a sample includes the batch in flight: with 10,000 logs a deposit block
 * and ranges of up to 10,000 blocks, a batch holds up to ~100,000 logs, whatever the total.
 */
import { Effect, Metric } from "effect"
import * as EthDeposits from "../src/extensions/ethDeposits.js"
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
        const broadcast = () => Effect.runSync(Metric.value(EthDeposits.depositsBroadcast)).count
        const before = broadcast()
        const samples: Array<Sample> = [sample(0)]
        const step = built.logs / 10
        let next = step
        const started = Date.now()
        const file = dir.path("mem.db")
        await ours(file, target, () => {
          const stored = broadcast() - before
          if (stored >= next) {
            samples.push(sample(stored))
            while (next <= stored) next += step
          }
        })
        const seconds = (Date.now() - started) / 1000
        samples.push(sample(broadcast() - before))
        const n = storedEvents(file)
        if (n !== built.logs) throw new Error(`stored ${n} events, expected ${built.logs}`)
        const label = `${built.logs.toLocaleString("en")}-log catch-up`
        const warmIndex = samples.findIndex((s) => s.at > 0)
        return rows(label, samples, warmIndex, { heapMB: 16, rssMB: 64 }).map((r) => ({
          ...r,
          note: `${r.note}; sample at = logs stored; catch-up took ${seconds.toFixed(1)} s; chain built in ` +
            `${(built.buildMs / 1000).toFixed(1)} s (${spec.txs} txs x ${spec.logsPerTx} logs, ${spec.txsPerBlock} a block, ` +
            `${spec.blocks.toLocaleString("en")} blocks)`
        }))
      })
    })))
  } finally {
    dir.remove()
  }
}
