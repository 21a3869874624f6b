import { describe, expect, it } from "@effect/vitest"
import { Option } from "effect"
import type { Hash } from "viem"
import type { EthLog } from "../../src/ethereum/EthereumClient.js"
import { makeLogBlocks } from "../../src/cli/listen.js"

const log = (tx: number, logIndex: number, blockNumber: bigint): EthLog => ({
  address: "0x0000000000000000000000000000000000000001",
  topics: [],
  data: "0x",
  blockNumber,
  blockHash: `0x${"00".repeat(32)}` as Hash,
  transactionHash: `0x${tx.toString(16).padStart(64, "0")}` as Hash,
  transactionIndex: 0,
  logIndex,
  removed: false
})

describe("listen's blocks of fetched logs", () => {
  it("gives each printed log its block once, and forgets logs never stored once a checkpoint read after them passes them", () => {
    const blocks = makeLogBlocks()
    blocks.record([log(0xab, 0, 5n), log(2, 3, 6n), log(3, 1, 7n)])
    // Looked up by the payload's hash, which may be cased otherwise; once.
    expect(blocks.take(`0x${"AB".padStart(64, "0")}`, 0)).toEqual(Option.some(5n))
    expect(blocks.take(`0x${"ab".padStart(64, "0")}`, 0)).toEqual(Option.none())
    // Block 6's log was fetched but never stored (skipped as malformed, say): the checkpoint at 6,
    // read after it was fetched, drops it.
    const mark = blocks.mark()
    // Fetched after the mark (a re-scan after a rewind below 6, not stored yet): kept.
    blocks.record([log(4, 0, 6n)])
    blocks.forgetUpTo(6n, mark)
    expect(blocks.size()).toBe(2)
    expect(blocks.take(`0x${"4".padStart(64, "0")}`, 0)).toEqual(Option.some(6n))
    expect(blocks.take(`0x${"3".padStart(64, "0")}`, 1)).toEqual(Option.some(7n))
    expect(blocks.size()).toBe(0)
  })
})
