/**
 * The chains of the catch-up benchmarks: an anvil holding `blocks` blocks with `txs` deposit
 * transactions spread evenly over them, each `depositMany(1, logsPerTx)` (so `logsPerTx` `Credit`
 * logs), `txsPerBlock` of them in a block.
 *
 * Built fast: anvil runs with `--hardfork cancun --prune-history` (on anvil 1.7.1 the default
 * prague hardfork and full history make each `anvil_mine`d block cost time growing with the
 * height; with both flags 100,000 empty blocks take seconds; shanghai is as fast but lacks
 * `MCOPY`, which the escrow's bytecode uses). `--prune-history` keeps blocks,
 * receipts and logs (only old states go): `verify` checks that old blocks still have hashes and
 * that `eth_getLogs` over the whole chain returns every log. Empty stretches are one `anvil_mine`
 * each; deposits are sent with mining off (`eth_sendTransaction` from the unlocked dev account,
 * fixed gas, no receipt waits) and mined with one `evm_mine`.
 */
import { Effect, type Scope } from "effect"
import { encodeFunctionData, type Hex, numberToHex } from "viem"
import type * as Anvil from "../src/devnet/Anvil.js"
import * as Contracts from "../src/extensions/contracts/index.js"
import * as EscrowChain from "../test/support/EscrowChain.js"

export interface ChainSpec {
  /** The chain's height when built (the head). */
  readonly blocks: number
  /** Deposit transactions. */
  readonly txs: number
  /** `Credit` logs per transaction (`depositMany`'s count). */
  readonly logsPerTx: number
  /** Deposit transactions per block (default 1). */
  readonly txsPerBlock?: number
}

export interface BuiltChain {
  readonly chain: EscrowChain.EscrowChain
  readonly spec: ChainSpec
  /** Every `Credit` log on the chain. */
  readonly logs: number
  readonly head: bigint
  /** Wall time of the build (anvil start to the last block), ms. */
  readonly buildMs: number
}

/** The anvil flags that make 100,000-block chains quick to build on anvil 1.7.1. */
export const fastAnvil: Anvil.AnvilOptions = {
  gasLimit: 1_000_000_000n,
  extraArgs: ["--hardfork", "cancun", "--prune-history"]
}

const hex = (n: number | bigint): Hex => numberToHex(n)

/** Builds the chain (anvil stops with the scope). */
export const build = (spec: ChainSpec): Effect.Effect<BuiltChain, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const started = Date.now()
    const perBlock = Math.max(1, spec.txsPerBlock ?? 1)
    const logs = spec.txs * spec.logsPerTx
    const chain = yield* EscrowChain.make(fastAnvil, BigInt(logs))
    const { anvil, deployment } = chain
    const from = anvil.accounts[0]!.address
    yield* anvil.request("evm_setAutomine", [false])
    const data = encodeFunctionData({
      abi: Contracts.escrowAbi,
      functionName: "depositMany",
      args: [1n, BigInt(spec.logsPerTx)]
    })
    // ~1,300 gas a log plus the token transfer, with room to spare.
    const gas = hex(100_000 + spec.logsPerTx * 2_000)
    const depositBlocks = Math.ceil(spec.txs / perBlock)
    let height = Number(yield* anvil.blockNumber)
    const gap = Math.max(0, Math.floor((spec.blocks - height - depositBlocks) / depositBlocks))
    let sent = 0
    for (let b = 0; b < depositBlocks; b++) {
      if (gap > 0) yield* anvil.request("anvil_mine", [hex(gap)])
      const n = Math.min(perBlock, spec.txs - sent)
      for (let i = 0; i < n; i++) {
        yield* anvil.request("eth_sendTransaction", [{ from, to: deployment.escrow, data, gas }])
      }
      sent += n
      yield* anvil.request("evm_mine", [])
      height += gap + 1
    }
    height = Number(yield* anvil.blockNumber)
    if (height < spec.blocks) yield* anvil.request("anvil_mine", [hex(spec.blocks - height)])
    const head = yield* anvil.blockNumber
    return { chain, spec, logs, head, buildMs: Date.now() - started }
  })

/**
 * Checks the chain holds what the benchmark needs: blocks by number (old ones too) have hashes,
 * and `eth_getLogs` over it in `chunk`-block ranges returns every `Credit` log, each receipt
 * succeeded (a reverted deposit would have no logs).
 */
export const verify = (built: BuiltChain, chunk = 10_000): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    const { anvil, deployment } = built.chain
    for (const n of [1n, deployment.escrowBlock + 1n, built.head / 2n, built.head]) {
      const block = (yield* anvil.request("eth_getBlockByNumber", [hex(n), false])) as { hash?: string } | null
      if (block === null || typeof block.hash !== "string") return yield* Effect.fail(new Error(`block ${n} has no hash`))
    }
    let count = 0
    for (let from = deployment.escrowBlock; from <= built.head; from += BigInt(chunk)) {
      const to = from + BigInt(chunk) - 1n < built.head ? from + BigInt(chunk) - 1n : built.head
      const logs = (yield* anvil.request("eth_getLogs", [{
        address: deployment.escrow,
        topics: [Contracts.creditTopic],
        fromBlock: hex(from),
        toBlock: hex(to)
      }])) as ReadonlyArray<unknown>
      count += logs.length
    }
    if (count !== built.logs) return yield* Effect.fail(new Error(`eth_getLogs returned ${count} Credit logs, expected ${built.logs}`))
  })
