/**
 * A scripted chain behind a mock `EthereumClient`: blocks with hashes and logs, reorgs, lagging
 * heads, missing blocks, range refusals and injected failures. Heads are polled on a `Schedule`,
 * so `TestClock` drives everything.
 */
import { type Duration, Effect, Layer, Option, Schedule, Stream } from "effect"
import { type Address, type Hash, type Hex, keccak256, pad, toHex } from "viem"
import { type BlockHeader, EthereumClient, type EthLog, type GetLogsParams } from "../../src/ethereum/EthereumClient.js"
import { BlockTagUnsupported, RangeTooLarge, type RangeHint, type RpcError } from "../../src/ethereum/errors.js"

export const CONTRACT: Address = "0x00000000000000000000000000000000000000c0"
export const TOPIC: Hex = keccak256(toHex("Credit(address,uint256)"))

interface FakeBlock extends BlockHeader {
  readonly logs: ReadonlyArray<EthLog>
}

export class FakeChain {
  blocks: Array<FakeBlock> = []
  private fork = 0
  /** Heads returned by successive `headNumber` calls before the true head (a lagging source). */
  headScript: Array<bigint> = []
  /** `getLogs` refuses more blocks than this, with `hint`. */
  rangeLimit: { blocks: number; hint: RangeHint } | undefined
  /** Failures for the next calls of a method (consumed in order). */
  failures = new Map<string, Array<RpcError>>()
  /** Heights `block(n)` answers `none` for (a lagging node). */
  missing = new Set<bigint>()
  finalizedDepth = 10
  safeDepth = 5
  tagsSupported = true
  /** Every `getLogs` request: `[from, to]`. */
  requests: Array<readonly [bigint, bigint]> = []
  calls = new Map<string, number>()
  /** How long each call takes (on the `TestClock`); none by default. */
  latency: Duration.DurationInput | undefined
  /** Rewrites the next `getLogs` answer once (an inconsistent node). */
  tamperNext: ((logs: ReadonlyArray<EthLog>) => ReadonlyArray<EthLog>) | undefined

  constructor(blocks: number, logsAt: (n: bigint) => number = () => 1) {
    this.mine(blocks, logsAt)
  }

  get head(): bigint {
    return BigInt(this.blocks.length - 1)
  }

  /** Appends `count` blocks; `logsAt(n)` logs in block n. */
  mine(count: number, logsAt: (n: bigint) => number = () => 1): void {
    for (let i = 0; i < count; i++) {
      const number = BigInt(this.blocks.length)
      const parentHash = number === 0n ? pad("0x00") : this.blocks[this.blocks.length - 1]!.hash
      const hash = keccak256(toHex(`block ${number} fork ${this.fork}`))
      const logs = Array.from({ length: logsAt(number) }, (_, logIndex): EthLog => ({
        address: CONTRACT,
        topics: [TOPIC],
        data: pad(toHex(Number(number) * 100 + logIndex)),
        blockNumber: number,
        blockHash: hash,
        transactionHash: keccak256(toHex(`tx ${number} ${logIndex} fork ${this.fork}`)),
        transactionIndex: 0,
        logIndex,
        removed: false
      }))
      this.blocks.push({ number, hash, parentHash, timestamp: number * 12n, logs })
    }
  }

  /** Replaces the last `depth` blocks with a new fork of the same length (its own hashes and logs). */
  reorg(depth: number, logsAt: (n: bigint) => number = () => 1): void {
    this.fork++
    this.blocks.splice(this.blocks.length - depth, depth)
    this.mine(depth, logsAt)
  }

  failNext(method: string, ...errors: Array<RpcError>): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), ...errors])
  }

  private call<A>(method: string, f: () => A): Effect.Effect<A, RpcError> {
    return Effect.suspend(() => {
      this.calls.set(method, (this.calls.get(method) ?? 0) + 1)
      const next = this.failures.get(method)?.shift()
      const answer = next !== undefined ? Effect.fail(next) : Effect.sync(f)
      return this.latency === undefined ? answer : Effect.delay(answer, this.latency)
    })
  }

  allLogs(): ReadonlyArray<EthLog> {
    return this.blocks.flatMap((b) => b.logs)
  }

  private headNumber = this.call("eth_blockNumber", () => this.headScript.shift() ?? this.head)

  readonly client = EthereumClient.of({
    chainId: Effect.succeed(31337),
    headNumber: this.headNumber,
    block: (ref) =>
      this.call("eth_getBlockByNumber", (): Option.Option<BlockHeader> | "unsupported" => {
        const n = ref === "latest" ? this.head
          : ref === "finalized" ? this.head - BigInt(this.finalizedDepth)
          : ref === "safe" ? this.head - BigInt(this.safeDepth)
          : ref
        if (typeof ref === "string" && ref !== "latest" && !this.tagsSupported) return "unsupported"
        if (n < 0n || n > this.head || this.missing.has(n)) return Option.none()
        const { number, hash, parentHash, timestamp } = this.blocks[Number(n)]!
        return Option.some({ number, hash, parentHash, timestamp })
      }).pipe(Effect.flatMap((r) =>
        r === "unsupported"
          ? Effect.fail(new BlockTagUnsupported({ tag: ref as "safe" | "finalized", detail: "fake: unknown tag" }))
          : Effect.succeed(r)
      )),
    getLogs: (p: GetLogsParams) =>
      this.call("eth_getLogs", () => {
        this.requests.push([p.fromBlock, p.toBlock])
        const blocks = Number(p.toBlock - p.fromBlock + 1n)
        if (this.rangeLimit !== undefined && blocks > this.rangeLimit.blocks) {
          return new RangeTooLarge({
            method: "eth_getLogs",
            requested: blocks,
            hint: this.rangeLimit.hint,
            detail: `fake limit ${this.rangeLimit.blocks}`
          })
        }
        const logs = this.blocks
          .filter((b) => b.number >= p.fromBlock && b.number <= p.toBlock)
          .flatMap((b) => b.logs)
        const tamper = this.tamperNext
        this.tamperNext = undefined
        return tamper === undefined ? logs : tamper(logs)
      }).pipe(Effect.flatMap((r) => (r instanceof RangeTooLarge ? Effect.fail(r) : Effect.succeed(r)))),
    newHeads: Stream.repeatEffectWithSchedule(this.headNumber, Schedule.spaced("1 second")).pipe(Stream.changes),
    subscribes: false,
    // One node: every unit is served by it.
    sameNode: (unit) => unit
  })

  readonly layer = Layer.succeed(EthereumClient, this.client)

  /** The client with some members replaced (a scripted fault, a rewritten answer), as a layer. */
  layerWith(overrides: Partial<EthereumClient["Type"]>): Layer.Layer<EthereumClient> {
    return Layer.succeed(EthereumClient, EthereumClient.of({ ...this.client, ...overrides }))
  }

  /**
   * The client, with a count of the `getLogs` calls in flight: `starts` has each call's `from`
   * and how many were in flight once it started (itself included), `peak` the most at once.
   */
  countingInFlight(): { readonly layer: Layer.Layer<EthereumClient>; readonly starts: ReadonlyArray<readonly [bigint, number]>; readonly peak: () => number } {
    let now = 0
    const starts: Array<readonly [bigint, number]> = []
    const layer = this.layerWith({
      getLogs: (p) =>
        Effect.suspend(() => {
          starts.push([p.fromBlock, ++now])
          return this.client.getLogs(p)
        }).pipe(Effect.ensuring(Effect.sync(() => now--)))
    })
    return { layer, starts, peak: () => Math.max(0, ...starts.map(([, n]) => n)) }
  }
}

export const blockHash = (chain: FakeChain, n: bigint): Hash => chain.blocks[Number(n)]!.hash
