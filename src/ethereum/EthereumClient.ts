/**
 * The Ethereum RPC as domain operations with tagged errors, over viem. One or several URLs,
 * http(s) or ws(s), tried in order: a call goes to the first URL that answers it (as viem's
 * `fallback`, not ranked, would send it; viem itself never retries: `Retry.ts` does, with a
 * `Schedule`). Responses are decoded with `Schema`, so a malformed answer is a typed
 * `RpcBadResponse`, never a crash.
 *
 * Calls that must agree with each other (a block, the logs up to it, the block again) run as one
 * unit on ONE node with `sameNode`: there is a client per URL, and a unit moves as a whole to the
 * next URL when any of its steps fails. Otherwise a node that is behind could answer the logs of
 * blocks it does not have (with none) while another node vouches for the block.
 *
 * With several URLs, each is asked its chain id before its first use, and one that serves
 * another chain than the first URL checked is never used (`ChainMismatch`, logged as an error):
 * its logs would be taken for this chain's. That includes the new-heads subscription (viem's,
 * on the first ws URL), which then fails with it (a follower polls instead).
 */
import {
  Array as Arr,
  Config,
  Context,
  Duration,
  Effect,
  FiberRef,
  Layer,
  Metric,
  MetricLabel,
  Option,
  Predicate,
  Redacted,
  Ref,
  Schedule,
  Schema,
  Stream
} from "effect"
import {
  type AbiEvent,
  type Address,
  createPublicClient,
  encodeEventTopics,
  fallback,
  type Hash,
  type Hex,
  type LogTopic,
  numberToHex,
  type Transport,
  webSocket
} from "viem"
import { watchBlockNumber } from "viem/actions"
import {
  BlockTagUnsupported,
  ChainMismatch,
  InvalidRpcConfig,
  type RpcBadRequest,
  RpcBadResponse,
  type RpcError,
  type RpcUnavailable
} from "./errors.js"
import * as JsonRpcHttp from "./JsonRpcHttp.js"
import { fromViemError, redactUrl } from "./ProviderErrors.js"

/** A block by number, or one of the tags the follower can confirm by. */
export type BlockRef = bigint | "latest" | "safe" | "finalized"

/** What the follower needs of a block: enough to chain and check hashes. */
export interface BlockHeader {
  readonly number: bigint
  readonly hash: Hash
  readonly parentHash: Hash
  readonly timestamp: bigint
}

/** A log as `eth_getLogs` returns it, numbers decoded. `topics` has viem's shape for `decodeEventLog`. */
export interface EthLog {
  readonly address: Address
  readonly topics: [] | [Hex, ...Array<Hex>]
  readonly data: Hex
  readonly blockNumber: bigint
  readonly blockHash: Hash
  readonly transactionHash: Hash
  readonly transactionIndex: number
  readonly logIndex: number
  /** `true` for a log of a block that was reorged out (only seen on subscriptions; refused by the follower). */
  readonly removed: boolean
}

/** Which logs: an address (or several) and either topics or an ABI event (its topic0). */
export interface LogFilter {
  readonly address?: Address | ReadonlyArray<Address>
  /** Filters by topic0 = the event's selector. Combined with `topics` when both are given (event wins topic0). */
  readonly event?: AbiEvent
  readonly topics?: ReadonlyArray<LogTopic>
}

/** An inclusive block range of a filter. */
export interface GetLogsParams extends LogFilter {
  readonly fromBlock: bigint
  readonly toBlock: bigint
}

// --- decoding ---------------------------------------------------------------------------------

const hexString = /^0x[0-9a-fA-F]*$/
/** 32 bytes of hex with its `0x`: a block or transaction hash, a topic (one pattern for every check of one). */
export const hash32 = /^0x[0-9a-fA-F]{64}$/
const address20 = /^0x[0-9a-fA-F]{40}$/
const quantity = /^0x[0-9a-fA-F]+$/

const HexString = Schema.String.pipe(Schema.pattern(hexString))
/** A `hash32` string, as a schema. */
export const Hash32 = Schema.String.pipe(Schema.pattern(hash32))
const Address20 = Schema.String.pipe(Schema.pattern(address20))
/** A JSON-RPC quantity: `0x`-prefixed hex, no leading zeros required. */
const Quantity = Schema.transform(Schema.String.pipe(Schema.pattern(quantity)), Schema.BigIntFromSelf, {
  strict: true,
  decode: (s) => BigInt(s),
  encode: (n) => `0x${n.toString(16)}`
})
/** A quantity that fits a JS number exactly (indexes). */
const maxSmall = 2n ** 53n
const SmallQuantity = Schema.compose(Quantity, Schema.BigIntFromSelf.pipe(Schema.lessThanOrEqualToBigInt(maxSmall)))

/** The `eth_getBlockByNumber` answer: the fields a `BlockHeader` keeps, or `null` for no block. */
export const BlockJson = Schema.NullOr(Schema.Struct({
  number: Quantity,
  hash: Hash32,
  parentHash: Hash32,
  timestamp: Quantity
}))
const LogJson = Schema.Struct({
  address: Address20,
  topics: Schema.Array(Hash32),
  data: HexString,
  blockNumber: Quantity,
  blockHash: Hash32,
  transactionHash: Hash32,
  transactionIndex: SmallQuantity,
  logIndex: SmallQuantity,
  removed: Schema.optional(Schema.Boolean)
})
/** The `eth_getLogs` answer as the schema decodes it. */
const LogsJson = Schema.Array(LogJson)

const EthLogFromSelf = Schema.declare(
  (u: unknown): u is EthLog => typeof u === "object" && u !== null,
  { identifier: "EthLog" }
)

/**
 * The `eth_getLogs` answer as `EthLog`s: `LogsJson`, each log then converted (the client's
 * checked path, and what `fastLogs` must agree with: the tests hold the two to one answer).
 */
export const EthLogs = Schema.transform(LogsJson, Schema.Array(EthLogFromSelf), {
  strict: true,
  decode: (logs) =>
    logs.map((l): EthLog => ({
      address: l.address as Address,
      topics: l.topics as EthLog["topics"],
      data: l.data as Hex,
      blockNumber: l.blockNumber,
      blockHash: l.blockHash as Hash,
      transactionHash: l.transactionHash as Hash,
      transactionIndex: Number(l.transactionIndex),
      logIndex: Number(l.logIndex),
      removed: l.removed ?? false
    })),
  encode: (logs) =>
    logs.map((l) => ({
      ...l,
      transactionIndex: BigInt(l.transactionIndex),
      logIndex: BigInt(l.logIndex)
    }))
})

const isHash = (u: unknown): u is Hash => typeof u === "string" && hash32.test(u)
const isQuantity = (u: unknown): u is string => typeof u === "string" && quantity.test(u)

/** A quantity that fits a JS number exactly, as a number (`Number` reads `0x` hex); `undefined` when it is not one. */
const smallQuantity = (u: unknown): number | undefined =>
  isQuantity(u) && (u.length <= 2 + 13 || BigInt(u) <= maxSmall) ? Number(u) : undefined

/**
 * The `eth_getBlockByNumber` answer checked by hand: what a `BlockJson` decode returns (`null`
 * for no block), or `undefined` when that decode would refuse it (it then runs and names the
 * problem). A follower reads four blocks a range, and the generic decode of one cost about as
 * much as the rest of the call's Effect work.
 */
export const fastBlock = (json: unknown): typeof BlockJson.Type | undefined => {
  if (json === null) return null
  if (typeof json !== "object" || Array.isArray(json)) return undefined
  const { hash, number, parentHash, timestamp } = json as Record<string, unknown>
  return isQuantity(number) && isHash(hash) && isHash(parentHash) && isQuantity(timestamp)
    ? { number: BigInt(number), hash, parentHash, timestamp: BigInt(timestamp) }
    : undefined
}

/**
 * `test` on strings, remembering the last one that passed: the same string again passes without
 * being tested again (anything not a string fails, and is never remembered).
 */
const passesOnceInARow = (test: RegExp) => {
  let last: string | undefined
  return (u: unknown): u is string => {
    if (typeof u !== "string") return false
    if (u === last) return true
    if (!test.test(u)) return false
    last = u
    return true
  }
}

/**
 * The `eth_getLogs` answer checked and converted by hand: the same value an `EthLogs` decode
 * returns, or `undefined` when that decode would refuse it (it then runs and names the problem).
 * A catch-up decodes every log, and the generic decode was the largest share of its CPU profile
 * after storage (about 9 µs a log); this takes well under 1 µs. The logs of one block, one
 * transaction and one contract repeat their strings (hashes, block number, address, topic): each
 * string is checked (and the block number parsed) when it differs from the last log's, not once
 * a log.
 */
export const fastLogs = (json: unknown): ReadonlyArray<EthLog> | undefined => {
  if (!Array.isArray(json)) return undefined
  const logs: Array<EthLog> = new Array(json.length)
  const isAddress = passesOnceInARow(address20)
  const isTopic0 = passesOnceInARow(hash32)
  const isBlockHash = passesOnceInARow(hash32)
  const isTransactionHash = passesOnceInARow(hash32)
  // The last block number, once checked and parsed (`undefined` before the first log: no string matches it).
  let lastBlockNumber: string | undefined
  let blockNumberValue = 0n
  for (let i = 0; i < json.length; i++) {
    const l: unknown = json[i]
    if (typeof l !== "object" || l === null || Array.isArray(l)) return undefined
    const { address, blockHash, blockNumber, data, logIndex, removed, topics, transactionHash, transactionIndex } =
      l as Record<string, unknown>
    if (!isAddress(address)) return undefined
    if (!Array.isArray(topics)) return undefined
    for (let t = 0; t < topics.length; t++) {
      if (!(t === 0 ? isTopic0(topics[t]) : isHash(topics[t]))) return undefined
    }
    if (typeof data !== "string" || !hexString.test(data)) return undefined
    if (typeof blockNumber !== "string") return undefined
    if (blockNumber !== lastBlockNumber) {
      if (!isQuantity(blockNumber)) return undefined
      blockNumberValue = BigInt(blockNumber)
      lastBlockNumber = blockNumber
    }
    if (!isBlockHash(blockHash) || !isTransactionHash(transactionHash)) return undefined
    const txIndex = smallQuantity(transactionIndex)
    const index = smallQuantity(logIndex)
    if (txIndex === undefined || index === undefined) return undefined
    if (removed !== undefined && typeof removed !== "boolean") return undefined
    logs[i] = {
      address: address as Address,
      topics: topics as EthLog["topics"],
      data: data as Hex,
      blockNumber: blockNumberValue,
      blockHash: blockHash as Hash,
      transactionHash: transactionHash as Hash,
      transactionIndex: txIndex,
      logIndex: index,
      removed: removed ?? false
    }
  }
  return logs
}

// --- metrics ----------------------------------------------------------------------------------

/** Every RPC call, tagged by `method` and `outcome` (`ok` or the error's tag). */
export const rpcCalls = Metric.counter("eth_rpc_calls_total", {
  description: "Ethereum JSON-RPC calls by method and outcome",
  incremental: true
})

/** The labels of `rpcCalls` for each method, then outcome, made once (see `count`). */
const callLabels = new Map<string, Map<string, ReadonlyArray<MetricLabel.MetricLabel>>>()

/**
 * Counts one call in `rpcCalls` tagged `method` and `outcome`, as
 * `Metric.increment(Metric.tagged(Metric.tagged(rpcCalls, "method", method), "outcome", outcome))`
 * does (the fiber's metric labels included), with one label array per pair. A metric caches its
 * registry entry by the array of labels it is updated with, and `Metric.tagged` makes a new array
 * at every update: a new metric key to build, hash (its description formatted as text) and look
 * up, at every call. Methods and outcomes (`ok` or an error's tag) are few, so the map stays small.
 */
const count = (method: string, outcome: string): Effect.Effect<void> =>
  FiberRef.getWith(FiberRef.currentMetricLabels, (fiberLabels) =>
    Effect.sync(() => {
      let byOutcome = callLabels.get(method)
      if (byOutcome === undefined) {
        byOutcome = new Map()
        callLabels.set(method, byOutcome)
      }
      let labels = byOutcome.get(outcome)
      if (labels === undefined) {
        labels = [MetricLabel.make("method", method), MetricLabel.make("outcome", outcome)]
        byOutcome.set(outcome, labels)
      }
      // A fiber with metric labels of its own (rare) gets a new array, hence no cached entry.
      rpcCalls.unsafeUpdate(1, fiberLabels.length === 0 ? labels : Arr.union(labels, fiberLabels))
    }))

// --- the service ------------------------------------------------------------------------------

/** The Ethereum chain as the listeners see it. */
export class EthereumClient extends Context.Tag("kwil-listeners/EthereumClient")<EthereumClient, {
  /** The chain id the provider serves (to check it is the chain the operator meant). */
  readonly chainId: Effect.Effect<number, RpcError>
  /**
   * The latest block number. Never goes backwards: it is the highest number seen, so a lagging
   * URL behind the fallback cannot move a follower back.
   */
  readonly headNumber: Effect.Effect<bigint, RpcError>
  /**
   * A block by number or tag. `none` when there is no such block (yet), or when nothing is
   * `safe`/`finalized` yet; fails with `BlockTagUnsupported` when the provider does not know the tag.
   */
  readonly block: (ref: BlockRef) => Effect.Effect<Option.Option<BlockHeader>, RpcError>
  /** The logs of `[fromBlock, toBlock]` (inclusive). A refused range is a `RangeTooLarge` with the provider's hint. */
  readonly getLogs: (params: GetLogsParams) => Effect.Effect<ReadonlyArray<EthLog>, RpcError>
  /**
   * New head numbers, increasing: an `eth_subscribe("newHeads")` when a URL is ws(s), otherwise a
   * poll of `headNumber` on a `Schedule`. May fall silent (a dead socket): callers re-make it on a
   * watchdog (the follower does).
   */
  readonly newHeads: Stream.Stream<bigint, RpcError>
  /** Whether `newHeads` is a push subscription (ws) rather than polling. */
  readonly subscribes: boolean
  /**
   * Runs `unit` on one node: every call of this client inside it (`block`, `getLogs`...) goes to
   * the same URL, so its answers are of one chain view. With several URLs they are tried in order
   * and a failure of any step moves the whole unit to the next URL; when every URL failed, it
   * fails with the first range refusal (`RangeTooLarge`, so the caller shrinks the range), else
   * the last error of a URL of this chain (not a `ChainMismatch`), else the last error. Inside a
   * unit already pinned, and with a single URL, it is `unit`.
   * The pin is a `FiberRef`: calls the unit forks and joins (`Effect.all` with concurrency) inherit it.
   */
  readonly sameNode: <A, E, R>(unit: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}>() {
  /** The viem-backed client; ws sockets are closed when the layer's scope closes. */
  static readonly layer = (options: Options): Layer.Layer<EthereumClient, InvalidRpcConfig> =>
    Layer.scoped(EthereumClient, make(options))

  /** `layer` with its options read from `Config` (e.g. a listener's section or the environment). */
  static readonly layerConfig = (config: Config.Config.Wrap<Options>): Layer.Layer<EthereumClient, InvalidRpcConfig | import("effect/ConfigError").ConfigError> =>
    Layer.scoped(EthereumClient, Effect.flatMap(Config.unwrap(config), make))
}

/** How to reach the chain. */
export interface Options {
  /** One or several RPC URLs, http(s) or ws(s), tried in this order. They may carry API keys: pass `Redacted`. */
  readonly urls: ReadonlyArray<string | Redacted.Redacted<string>>
  /** A request not answered within this fails with `RpcTimeout` (default 10 seconds). */
  readonly timeout?: Duration.DurationInput
  /** How often `newHeads` polls when no URL is a websocket (default 4 seconds). */
  readonly pollingInterval?: Duration.DurationInput
}

const isRangeTooLarge = Predicate.isTagged("RangeTooLarge")
const isChainMismatch = Predicate.isTagged("ChainMismatch")

/** Of an earlier URL's error and a later one's, the one a call that failed on every URL reports (see `onFirstNode`). */
const moreTelling = <E>(earlier: E, later: E): E => {
  if (isRangeTooLarge(earlier)) return earlier
  if (isRangeTooLarge(later)) return later
  return isChainMismatch(later) && !isChainMismatch(earlier) ? earlier : later
}

const schemeOf = (url: string) => /^([a-z]+):\/\//i.exec(url)?.[1]?.toLowerCase()

/** Builds the service (scoped: ws sockets are closed at the end). */
export const make = (options: Options) => Effect.gen(function*() {
  const urls = options.urls.map((u) => Redacted.isRedacted(u) ? Redacted.value(u) : u)
  if (urls.length === 0) return yield* new InvalidRpcConfig({ reason: "no RPC URL was given" })
  for (const url of urls) {
    const scheme = schemeOf(url)
    if (scheme === undefined || !["http", "https", "ws", "wss"].includes(scheme)) {
      return yield* new InvalidRpcConfig({ reason: `${redactUrl(url)} is not an http(s) or ws(s) URL` })
    }
  }
  const timeout = Duration.toMillis(Duration.decode(options.timeout ?? Duration.seconds(10)))
  const pollingInterval = Duration.decode(options.pollingInterval ?? Duration.seconds(4))
  const wsUrls = urls.filter((u) => schemeOf(u)!.startsWith("ws"))
  // A per-layer socket identity: viem caches sockets by (url, options), so a unique option keeps
  // this layer's sockets its own and closing them cannot break another client on the same URL.
  const socketKey = { attempts: 5, delay: 2_000, owner: Math.random().toString(36).slice(2) }
  const transports: Array<Transport> = urls.map((url) =>
    schemeOf(url)!.startsWith("ws")
      ? webSocket(url, { timeout, retryCount: 0, keepAlive: true, reconnect: socketKey })
      : JsonRpcHttp.transport(url, { timeout })
  )
  const transport = transports.length === 1 ? transports[0]! : fallback(transports, { rank: false, retryCount: 0 })
  const client = createPublicClient({ transport, cacheTime: 0 })
  type Raw = (
    args: { method: string; params?: ReadonlyArray<unknown> },
    options: { signal: AbortSignal }
  ) => Promise<unknown>
  const raw = client.request as unknown as Raw
  // One client per URL: with several URLs every call goes to one known URL (ws transports share
  // the fallback's cached sockets; the fallback itself only carries the new-heads subscription).
  const perNode: ReadonlyArray<Raw> = transports.length === 1
    ? [raw]
    : transports.map((t) => createPublicClient({ transport: t, cacheTime: 0 }).request as unknown as Raw)
  /** The URL (index) this fiber's calls are pinned to by `sameNode`, if any. */
  const pinned = yield* FiberRef.make<number | undefined>(undefined)

  yield* Effect.addFinalizer(() =>
    Effect.forEach(wsUrls, (url) =>
      Effect.tryPromise(() => {
        const created = webSocket(url, { timeout, retryCount: 0, keepAlive: true, reconnect: socketKey })({})
        return (created.value as { getRpcClient: () => Promise<{ close: () => void }> }).getRpcClient()
      }).pipe(
        Effect.timeout("2 seconds"),
        Effect.flatMap((c) => Effect.sync(() => c.close())),
        Effect.ignore
      ), { discard: true })
  )

  /**
   * `run` on the first URL where it succeeds, in order (what viem's `fallback` does, with the
   * URL known): when every URL failed, it fails with the first range refusal (`RangeTooLarge`,
   * so the caller shrinks the range), else the last error of a URL that serves this chain (a
   * good URL's outage heals; a misconfigured URL's `ChainMismatch` must not hide it), else the
   * last error.
   */
  const onFirstNode = <A, E, R>(run: (node: number) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    const attempt = (node: number, kept: Option.Option<E>): Effect.Effect<A, E, R> =>
      Effect.catchAll(run(node), (error) => {
        const worth = Option.match(kept, { onNone: () => error, onSome: (k) => moreTelling(k, error) })
        if (node + 1 >= perNode.length) return Effect.fail(worth)
        return Effect.logDebug("RPC call failed on one URL; moving it to the next").pipe(
          Effect.annotateLogs({ url: redactUrl(urls[node]!), error: error instanceof Error ? error.message : String(error) }),
          Effect.zipRight(attempt(node + 1, Option.some(worth)))
        )
      })
    return attempt(0, Option.none())
  }

  /**
   * One JSON-RPC call on `node` (or through the only URL): metered, errors mapped, result decoded
   * with `schema` (after `fast`, when given, which returns what the schema would, or `undefined`
   * to let the schema decide). Interrupting it aborts its HTTP request: a range a follower no
   * longer wants stops loading the provider.
   */
  const callOn = <A, I>(
    node: number | undefined,
    method: string,
    params: ReadonlyArray<unknown>,
    schema: Schema.Schema<A, I>,
    info: { readonly blocks?: number; readonly fast?: (json: unknown) => A | undefined } = {}
  ): Effect.Effect<A, RpcError> =>
    Effect.tryPromise({
      try: (signal) => (node === undefined ? raw : perNode[node]!)({ method, params }, { signal }),
      catch: (error) => fromViemError({ method, ...(info.blocks === undefined ? {} : { blocks: info.blocks }) }, error)
    }).pipe(
      Effect.flatMap((json): Effect.Effect<A, RpcBadResponse> => {
        const fast = info.fast?.(json)
        return fast !== undefined ? Effect.succeed(fast) : Schema.decodeUnknown(schema)(json).pipe(
          Effect.mapError((e) => new RpcBadResponse({ method, detail: e.message, cause: e }))
        )
      }),
      Effect.tapBoth({
        onFailure: (e) => count(method, e._tag),
        onSuccess: () => count(method, "ok")
      })
    )

  /**
   * With several URLs, what each one's chain id check found: not asked yet (`undefined`), its
   * chain id, or the `ChainMismatch` that keeps it out. The first chain id found is the client's;
   * a URL serving another chain is misconfigured, and its answers would be taken for this chain's.
   */
  const chains = yield* Ref.make<ReadonlyArray<number | ChainMismatch | undefined>>(urls.map(() => undefined))

  /** Succeeds once `node` is known to serve the client's chain (asks it the first time). */
  const admitted = (node: number): Effect.Effect<void, RpcError> =>
    Effect.flatMap(Ref.get(chains), (known) => {
      const seen = known[node]
      if (typeof seen === "number") return Effect.void
      if (seen !== undefined) return Effect.fail(seen)
      return callOn(node, "eth_chainId", [], SmallQuantity).pipe(
        Effect.flatMap((id) =>
          Ref.modify(chains, (now) => {
            const expected = now.findIndex((c) => typeof c === "number")
            const verdict = expected === -1 || now[expected] === Number(id) ? Number(id) : new ChainMismatch({
              url: redactUrl(urls[node]!),
              chainId: Number(id),
              expectedUrl: redactUrl(urls[expected]!),
              expected: now[expected] as number
            })
            return [verdict, now.map((c, i) => (i === node ? verdict : c))]
          })
        ),
        Effect.flatMap((verdict) =>
          typeof verdict === "number" ? Effect.void : Effect.zipRight(Effect.logError(verdict.message), Effect.fail(verdict))
        )
      )
    })

  /**
   * One JSON-RPC call (see `callOn`): through the only URL; with several, on the URL `sameNode`
   * pinned, else on the first URL that answers it; never on a URL before its chain id is checked
   * (once checked, that is a `Ref` read).
   */
  const call = <A, I>(
    method: string,
    params: ReadonlyArray<unknown>,
    schema: Schema.Schema<A, I>,
    info: { readonly blocks?: number; readonly fast?: (json: unknown) => A | undefined } = {}
  ): Effect.Effect<A, RpcError> => {
    if (perNode.length === 1) return callOn(undefined, method, params, schema, info)
    const on = (node: number) => Effect.zipRight(admitted(node), callOn(node, method, params, schema, info))
    return Effect.flatMap(FiberRef.get(pinned), (node) => node === undefined ? onFirstNode(on) : on(node))
  }

  const highest = yield* Ref.make(-1n)
  const headNumber = call("eth_blockNumber", [], Quantity).pipe(
    Effect.flatMap((n) => Ref.updateAndGet(highest, (h) => (n > h ? n : h)))
  )

  const block = (ref: BlockRef): Effect.Effect<Option.Option<BlockHeader>, RpcError> => {
    const param = typeof ref === "bigint" ? numberToHex(ref) : ref
    const fetched = call("eth_getBlockByNumber", [param, false], BlockJson, { fast: fastBlock }).pipe(
      Effect.map((b): Option.Option<BlockHeader> =>
        b === null ? Option.none() : Option.some({
          number: b.number,
          hash: b.hash as Hash,
          parentHash: b.parentHash as Hash,
          timestamp: b.timestamp
        })
      )
    )
    if (ref !== "safe" && ref !== "finalized") return fetched
    return fetched.pipe(
      Effect.catchIf(
        (e): e is RpcBadRequest | RpcUnavailable =>
          e._tag === "RpcBadRequest" || (e._tag === "RpcUnavailable" && /not found/i.test(e.detail)),
        (e): Effect.Effect<Option.Option<BlockHeader>, RpcError> =>
          /not found/i.test(e.detail) && !/tag/i.test(e.detail)
            ? Effect.succeed(Option.none()) // nothing finalized yet
            : Effect.fail(new BlockTagUnsupported({ tag: ref, detail: e.detail, cause: e }))
      )
    )
  }

  const getLogs = (params: GetLogsParams): Effect.Effect<ReadonlyArray<EthLog>, RpcError> => {
    const filter: Record<string, unknown> = {
      fromBlock: numberToHex(params.fromBlock),
      toBlock: numberToHex(params.toBlock)
    }
    if (params.address !== undefined) filter.address = params.address
    const topics: Array<LogTopic> = [...(params.topics ?? [])]
    if (params.event !== undefined) {
      topics[0] = encodeEventTopics({ abi: [params.event] })[0] as Hex
    }
    // Providers are fragile about trailing nulls (Ponder's finding): drop them.
    while (topics.length > 0 && topics[topics.length - 1] === null) topics.pop()
    if (topics.length > 0) filter.topics = topics
    const blocks = Number(params.toBlock - params.fromBlock + 1n)
    return call("eth_getLogs", [filter], EthLogs, { blocks, fast: fastLogs })
  }

  const subscribes = wsUrls.length > 0
  const raise = (n: bigint) => Ref.modify(highest, (h) => (n > h ? [true, n] as const : [false, h] as const))
  const subscription: Stream.Stream<bigint, RpcError> = Stream.asyncPush<bigint, RpcError>((emit) =>
    Effect.acquireRelease(
      Effect.sync(() =>
        // viem types `poll: false` only for a ws client type; ours is a (fallback) union.
        (watchBlockNumber as unknown as (c: typeof client, p: {
          readonly poll: false
          readonly onBlockNumber: (n: bigint) => void
          readonly onError: (e: Error) => void
        }) => () => void)(client, {
          poll: false,
          onBlockNumber: (n) => void emit.single(n),
          onError: (error) => void emit.fail(fromViemError({ method: "eth_subscribe" }, error))
        })
      ),
      (unwatch) => Effect.sync(unwatch)
    )
  ).pipe(Stream.filterEffect(raise))
  // viem subscribes on the first ws URL: with several URLs, only once that URL's chain is checked
  // (heads of another chain would raise `highest` for good).
  const checkedSubscription: Stream.Stream<bigint, RpcError> = perNode.length === 1
    ? subscription
    : Stream.unwrap(Effect.as(admitted(urls.findIndex((u) => schemeOf(u)!.startsWith("ws"))), subscription))
  const polling: Stream.Stream<bigint, RpcError> = Stream.repeatEffectWithSchedule(
    headNumber,
    Schedule.spaced(pollingInterval)
  ).pipe(Stream.changes)

  const sameNode = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    if (perNode.length === 1) return unit
    return Effect.flatMap(
      FiberRef.get(pinned),
      (node) => node === undefined ? onFirstNode((n) => Effect.locally(unit, pinned, n)) : unit
    )
  }

  // Every URL's chain is checked now, in order, so a misconfigured one is reported at the start,
  // not at the first outage of those before it (a URL down now is checked at its first use).
  if (perNode.length > 1) {
    yield* Effect.forkScoped(Effect.forEach(urls, (_, node) => Effect.ignore(admitted(node)), { discard: true }))
  }

  return EthereumClient.of({
    // With several URLs, the chain id is what the first URL that answers was checked to serve.
    chainId: perNode.length === 1
      ? call("eth_chainId", [], SmallQuantity).pipe(Effect.map(Number))
      : Effect.flatMap(FiberRef.get(pinned), (node) => {
        const checked = (n: number) =>
          Effect.zipRight(admitted(n), Effect.map(Ref.get(chains), (known) => known[n] as number))
        return node === undefined ? onFirstNode(checked) : checked(node)
      }),
    headNumber,
    block,
    getLogs,
    newHeads: subscribes ? checkedSubscription : polling,
    subscribes,
    sameNode
  })
})
