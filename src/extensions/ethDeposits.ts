/**
 * The `eth_deposits` listener: Kwil's deposit oracle. It watches one escrow contract for
 * `Credit(address _from, uint256 _amount)` logs (both not indexed) and broadcasts each as a
 * `credit_account` event `{ chainId, account, amount, txHash, logIndex }` for the network to vote on.
 *
 * - Config: the `[app.extensions.eth_deposits]` section (`EthDepositsConfig`). Without a section
 *   the listener logs and returns (idle, as Kwil). A bad value fails the start with
 *   `InvalidConfig` naming the key and the reason (see "Failures" below).
 * - Its own `EthereumClient`, built from the config inside the run's scope: the client and its
 *   websocket are released on every stop.
 * - Resumes from `max(checkpoint, starting_height)`, and follows confirmed ranges with
 *   `LogFollower` (`required_confirmations`, or the `safe`/`finalized` tag with `finality`).
 * - Each batch is ONE `EventStore.transaction`: every `credit_account` of the batch, the
 *   checkpoint and the checkpoint history (`ethDepositsCheckpoint.ts`) commit together, so a stop
 *   or a crash at any moment resumes with no gap and no duplicate. The next batch is made while
 *   a batch is stored, and the follower asks for the ranges after it meanwhile (held in memory
 *   only: the checkpoint stored is always that of the last batch stored).
 * - A reorg within the confirmation depth never reaches the listener. A deeper one (a
 *   `FinalityViolation`, counted by the follower's metric) arrives as a `Rewind` to the common
 *   ancestor: the listener stores the ancestor as its checkpoint and the follower re-scans from
 *   there, broadcasting the new chain's deposits. Events of orphaned blocks already broadcast stay
 *   in the local store: the listener API cannot delete them and need not. Their ids are content
 *   addressed (chain id, account, amount, tx hash, log index), so a deposit that is also on the new
 *   chain in the same transaction is the same event (nothing twice); one that is not there is never
 *   seen by the other validators, never reaches the confirmation threshold and expires.
 * - A malformed `Credit` log (wrong topic count, data not exactly two ABI words, an address word
 *   with non-zero padding, another emitter) is counted (`eth_deposits_malformed_logs_total`),
 *   logged as a warning and skipped; the checkpoint still moves past it.
 *
 * Failures: `max_retries` bounds how often a healable RPC failure (timeout, 429, dropped
 * connection, 5xx) is retried in a row; past it the run fails and the manager's policy applies
 * (`restart` by default: a new run with a fresh client, from the stored checkpoint). Errors that
 * cannot heal fail at once. A bad config is one of those: it fails every start with the same
 * `InvalidConfig`, which the manager shows as the listener's `lastError`; under `restart` it tries
 * again on its capped backoff (at most once a minute by default), a decode that touches neither the
 * network nor the store. We chose this over silently returning so the error stays visible in the
 * manager's status; a node that wants a bad config to stop the listener for good uses
 * `makeEthDeposits({ onFailure: "stop" })`, and the CLI validates the section before starting.
 */
import { Array as Arr, type Duration, Effect, Layer, Metric, Option, Scheduler, Stream } from "effect"
import { type Address, type Hex, toEventSelector } from "viem"
import { EventStore } from "../events/EventStore.js"
import { EthereumClient, type EthLog, hash32 } from "../ethereum/EthereumClient.js"
import type { InvalidRpcConfig, RpcError } from "../ethereum/errors.js"
import * as LogFollower from "../ethereum/LogFollower.js"
import * as Retry from "../ethereum/Retry.js"
import * as Listener from "../listener/Listener.js"
import { creditEvent } from "./contracts/index.js"
import { CreditAccount, type Payload } from "./creditAccount.js"
import { type EthDepositsConfig, load as loadConfig, section } from "./ethDepositsConfig.js"
import * as Checkpoints from "./ethDepositsCheckpoint.js"

export { CheckpointOfAnotherSource, CorruptCheckpoint } from "./ethDepositsCheckpoint.js"

/** The listener's name, its config section and its KV space. */
export const name = section

// --- metrics ----------------------------------------------------------------------------------

/** The highest head block seen by the listener's client. */
export const headGauge = Metric.gauge("eth_deposits_head", { description: "Ethereum head block seen" })
/** The stored checkpoint: every deposit up to this block is broadcast. */
export const checkpointGauge = Metric.gauge("eth_deposits_checkpoint", { description: "last block fully handled" })
/** Head minus checkpoint: how far behind the listener is (confirmation depth included). */
export const lagGauge = Metric.gauge("eth_deposits_lag_blocks", { description: "blocks between head and checkpoint" })
/** `credit_account` events broadcast (a re-broadcast after a restart or rewind counts again). */
export const depositsBroadcast = Metric.counter("eth_deposits_broadcast_total", {
  description: "credit_account events broadcast",
  incremental: true
})
/** `Credit` logs skipped because they could not be decoded. */
export const malformedLogs = Metric.counter("eth_deposits_malformed_logs_total", {
  description: "Credit logs skipped as malformed",
  incremental: true
})

// --- decoding ---------------------------------------------------------------------------------

const creditTopic: Hex = toEventSelector(creditEvent)

const addressPadding = "0x000000000000000000000000"
const creditData = /^0x[0-9a-fA-F]{128}$/

/**
 * Why a log is not a canonical `Credit` log of `contract`, or `undefined` when it is one. The
 * checker keeps the last address, topic and transaction hash that passed: the logs of a batch
 * repeat them (one contract, one event, many logs a transaction), so each is checked once, not
 * lowercased and matched again for every log. (A value that is not a string is never taken for
 * the last one: a hand-made log may hold anything.)
 */
export const creditChecker = (contract: Address) => {
  const expected = contract.toLowerCase()
  let lastAddress: string | undefined
  let lastTopic: string | undefined
  let lastTransaction: string | undefined
  return (log: EthLog): string | undefined => {
    if (typeof log.address !== "string" || log.address !== lastAddress) {
      if (log.address.toLowerCase() !== expected) return `emitted by ${log.address}, not the escrow`
      lastAddress = log.address
    }
    if (log.topics.length !== 1) return `has ${log.topics.length} topics; Credit has only its selector`
    const topic: unknown = log.topics[0]
    if (typeof topic !== "string" || topic !== lastTopic) {
      if (typeof topic !== "string" || topic.toLowerCase() !== creditTopic) return "is not a Credit(address,uint256) log"
      lastTopic = topic
    }
    // Exactly two words: viem accepts trailing bytes, but a canonical Credit has none.
    if (log.data.length !== 2 + 128) return `has ${(log.data.length - 2) / 2} data bytes; Credit has 64`
    if (!log.data.startsWith(addressPadding)) return "has non-zero padding in its address word"
    if (!creditData.test(log.data)) return "has data that is not hex"
    // What the client decodes always passes these; a hand-made log might not.
    if (typeof log.transactionHash !== "string" || log.transactionHash !== lastTransaction) {
      if (!hash32.test(log.transactionHash)) return "has a transaction hash that is not 32 bytes of hex"
      lastTransaction = log.transactionHash
    }
    if (!Number.isInteger(log.logIndex) || log.logIndex < 0 || log.logIndex > 0xffff_ffff) {
      return `has log index ${log.logIndex}, outside uint32`
    }
    return undefined
  }
}

/** A `Credit` log as a `credit_account` payload, or why it is not one. */
export const decodeCredit = (
  log: EthLog,
  chainId: bigint,
  contract: Address
): { readonly _tag: "Credit"; readonly payload: Payload } | { readonly _tag: "Malformed"; readonly reason: string } => {
  const reason = creditChecker(contract)(log)
  if (reason !== undefined) return { _tag: "Malformed", reason }
  // The two words, read directly: with the checks above this is exactly what a strict
  // `decodeEventLog` accepts, and viem's decoder was a visible share of a catch-up's CPU profile.
  return {
    _tag: "Credit",
    payload: {
      chainId,
      account: `0x${log.data.slice(26, 66).toLowerCase()}` as Payload["account"],
      amount: BigInt(`0x${log.data.slice(66)}`),
      txHash: log.transactionHash,
      logIndex: log.logIndex
    }
  }
}

/** A chain id as the first word of a `credit_account` body (64 hex digits). */
export const chainIdWord = (chainId: bigint): string => chainId.toString(16).padStart(64, "0")

/**
 * The `credit_account` body of a canonical `Credit` log (see `decodeCredit`), built from the log
 * itself: its data already is the ABI encoding of (account, amount), so the body is the chain id
 * word, those two words, the tx hash and the log index word. The same bytes as encoding
 * `decodeCredit`'s payload with `CreditAccount` (the tests check it), without the round trip
 * through a payload, which was a visible share of a catch-up's CPU profile.
 *
 * The words are written in place into a slice of Node's `Buffer` pool, and the body is a plain
 * `Uint8Array` view of it: a fresh `Uint8Array` seen through a `Buffer` (its `.buffer` must
 * then be materialized) cost twice as much.
 * Throws when `log` is not canonical (data not 64 bytes of hex, a hash not 32): a caller that
 * skipped `decodeCredit`'s checks gets a defect, never a body with bytes left unwritten.
 */
export const creditBody = (log: EthLog, chainWord: string): Uint8Array => {
  const body = Buffer.allocUnsafe(160)
  const written = body.write(chainWord, 0, 32, "hex") + body.write(log.data.slice(2), 32, 64, "hex") +
    body.write(log.transactionHash.slice(2), 96, 32, "hex")
  if (written !== 128 || log.data.length !== 130 || log.transactionHash.length !== 66) {
    throw new Error(`creditBody: log ${log.transactionHash}:${log.logIndex} is not a canonical Credit log`)
  }
  body.fill(0, 128, 156)
  body.writeUInt32BE(log.logIndex, 156)
  return new Uint8Array(body.buffer, body.byteOffset, 160)
}

// --- the listener -----------------------------------------------------------------------------

/** Knobs that are not Kwil config keys: for tests, benchmarks and nodes with special needs. */
export interface Options {
  /** The manager's failure policy (default `restart`). */
  readonly onFailure?: Listener.FailurePolicy
  readonly backoff?: Partial<Listener.Backoff>
  /**
   * The client to use, from the decoded config. Default: `EthereumClient.layer` over
   * `rpc_provider` with `timeout` and `pollInterval`. Tests pass a mock here.
   */
  readonly client?: (config: EthDepositsConfig) => Layer.Layer<EthereumClient, InvalidRpcConfig>
  /** The RPC request timeout (default 10 seconds). */
  readonly timeout?: Duration.DurationInput
  /** How often heads are polled over http (default 4 seconds). */
  readonly pollInterval?: Duration.DurationInput
  /** The retry backoff of healable RPC errors (default 1 s doubling to 10 s, as Kwil's; `max_retries` from the config). */
  readonly retry?: Partial<Pick<Retry.Options, "base" | "cap">>
  /**
   * `eth_getLogs` ranges fetched at once while catching up (default `LogFollower.defaultInFlight`,
   * 6); 1 for a provider that should see one request at a time.
   */
  readonly inFlight?: number
}

/** The listener's run, with its options; see the module comment. */
export const run = (options: Options = {}) =>
  Effect.gen(function*() {
    const ctx = yield* Listener.ListenerContext
    if (!ctx.configured) {
      yield* Effect.logInfo(`no [app.extensions.${section}] config section: the listener stays idle`)
      return
    }
    const config = yield* loadConfig
    const store = yield* EventStore
    const clientLayer = options.client?.(config) ??
      EthereumClient.layer({
        urls: config.rpcProviders,
        ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
        ...(options.pollInterval === undefined ? {} : { pollingInterval: options.pollInterval })
      })
    yield* follow(config, store, options).pipe(
      Effect.provide(meteredClient.pipe(Layer.provide(clientLayer))),
      Effect.withScheduler(cooperative),
      Effect.withMaxOpsBeforeYield(256)
    )
  }).pipe(Effect.annotateLogs("listener", name))

/**
 * The scheduler of the follow loop (and of the fibers it forks): a fiber yields every 256
 * operations (Effect's default is 2,048) and resumes through `setImmediate`, not a microtask.
 * Storing a batch of thousands of events is CPU work with no I/O in it; on the default scheduler
 * it holds the event loop until it ends, and the host node's own I/O waits for it. Measured on the
 * catch-up benchmark (6 catch-ups each, side by side), the event loop's delay with this: p99 15 to
 * 22 ms, max 36 to 53; on the default scheduler: p99 35 to 67 ms, max 63 to 168. That costs the
 * catch-up about a tenth (medians of 12: 695 vs 624 ms), a price we pay to keep the node
 * responsive. (Before the follower started the next range ahead, this was the faster one too:
 * 572 vs 694 ms.)
 */
const cooperative = Scheduler.makeBatched((run) => {
  setImmediate(run)
})

/** Bodies handed to the store between two yields to the event loop (see `handOver`). */
const handOverSlice = 64

/** The client, its heads feeding the head and lag gauges. */
const meteredClient = Layer.effect(
  EthereumClient,
  Effect.map(EthereumClient, (client) =>
    EthereumClient.of({
      ...client,
      headNumber: Effect.tap(client.headNumber, (h) => Metric.set(headGauge, Number(h))),
      newHeads: Stream.tap(client.newHeads, (h) => Metric.set(headGauge, Number(h)))
    }))
)

/**
 * What a run's checkpoint is of: the chain the client serves (its id and block 0's hash) and the
 * escrow `contract`. Healable RPC failures are retried on `retry`.
 */
export const sourceOf = (
  contract: Address,
  retry: Partial<Retry.Options>
): Effect.Effect<Checkpoints.Source, RpcError, EthereumClient> =>
  Effect.flatMap(EthereumClient, (client) =>
    Effect.all({ chainId: client.chainId, genesis: client.block(0n) }, { concurrency: 2 }).pipe(
      Retry.healable(retry),
      Effect.map(({ chainId, genesis }) => ({
        chainId: BigInt(chainId),
        contract,
        ...(Option.isSome(genesis) ? { genesis: genesis.value.hash } : {})
      }))
    ))

const follow = (config: EthDepositsConfig, store: EventStore["Type"], options: Options) =>
  Effect.gen(function*() {
    const retry = { ...options.retry, maxRetries: config.maxRetries }
    const source = yield* sourceOf(config.contractAddress, retry)
    const { chainId } = source

    const stored = yield* Checkpoints.resumePoint(store, source)
    const start = LogFollower.startAt(config.startingHeight)
    const from = Option.match(stored, {
      onNone: () => start,
      onSome: (c) => (c.height >= start.height ? c : start)
    })
    yield* Effect.logInfo("following deposits").pipe(
      Effect.annotateLogs({
        contract: config.contractAddress,
        chainId: String(chainId),
        from: String(from.height + 1n),
        resumed: Option.isSome(stored) && from === stored.value,
        finality: config.finality === "confirmations" ? `${config.requiredConfirmations} confirmations` : config.finality
      })
    )
    yield* Metric.set(checkpointGauge, Number(from.height))

    const history = (height: bigint) =>
      Checkpoints.readHistory(store.kv).pipe(
        Effect.map((cs) => Option.fromNullable(cs.filter((c) => c.height < height).at(-1))),
        Effect.tapError((e) => Effect.logWarning(`cannot read the checkpoint history: ${e.message}`)),
        Effect.orElseSucceed(() => Option.none<LogFollower.Checkpoint>())
      )

    const skip = (log: EthLog, reason: string) =>
      Metric.increment(malformedLogs).pipe(
        Effect.zipRight(Effect.logWarning(`skipping a malformed Credit log: it ${reason}`)),
        Effect.annotateLogs({ tx: log.transactionHash, logIndex: log.logIndex, block: String(log.blockNumber) })
      )

    /**
     * A batch's logs checked up front, synchronously: the `credit_account` bodies to broadcast
     * (in log order) and the effect that counts and logs the malformed ones (nothing when there are
     * none, the usual case). The bodies then go to the store through `broadcastRawAll` (which decodes
     * them with `CreditAccount` before storing any), a slice at a time: no Effect step per event.
     */
    const chainWord = chainIdWord(chainId)
    const creditProblem = creditChecker(config.contractAddress)
    const decodeBatch = (logs: ReadonlyArray<EthLog>) => {
      const bodies: Array<Uint8Array> = []
      const skips: Array<Effect.Effect<void>> = []
      for (const log of logs) {
        const reason = creditProblem(log)
        if (reason === undefined) bodies.push(creditBody(log, chainWord))
        else skips.push(skip(log, reason))
      }
      const skipped = skips.length === 0 ? Effect.void : Effect.all(skips, { discard: true })
      return { bodies, skipped }
    }

    /**
     * The bodies to the store in slices, yielding to the event loop after each: storing a range
     * is a long stretch of CPU work, and the prefetched range's round trips (its block check, then
     * its logs) only move on while this fiber yields. Against one `broadcastRaw` per body, 24
     * catch-ups each alternating: median wall 696 vs 727 ms, CPU 768 vs 844 ms; one call for
     * the whole range saved the CPU but not the wall time (the prefetch stalled behind it).
     */
    const handOver = (bodies: ReadonlyArray<Uint8Array>) =>
      Effect.forEach(
        Arr.chunksOf(bodies, handOverSlice),
        (slice) => Effect.zipRight(store.broadcastRawAll(CreditAccount.name, slice), Effect.yieldNow()),
        { discard: true }
      )

    const writeCheckpoint = yield* Checkpoints.makeWriter(store.kv)

    const handle = (event: LogFollower.FollowerEvent) =>
      Effect.gen(function*() {
        if (event._tag === "Batch") {
          const { bodies, skipped } = decodeBatch(event.logs)
          yield* store.transaction(
            skipped.pipe(
              Effect.zipRight(handOver(bodies)),
              Effect.zipRight(writeCheckpoint(event.checkpoint))
            )
          )
          // Counted once committed: a rolled-back batch is broadcast again by the next run.
          yield* Metric.incrementBy(depositsBroadcast, bodies.length)
          if (event.logs.length > 0) {
            yield* Effect.logDebug("batch stored").pipe(
              Effect.annotateLogs({ from: String(event.from), to: String(event.to), logs: event.logs.length })
            )
          }
        } else {
          yield* store.transaction(writeCheckpoint(event.checkpoint))
          yield* Effect.logWarning(
            "deep reorg: rewound to the common ancestor; deposits above it are re-scanned, and events already " +
              "broadcast from orphaned blocks will expire unconfirmed"
          ).pipe(Effect.annotateLogs({ ancestor: String(event.checkpoint.height) }))
        }
        yield* Metric.set(checkpointGauge, Number(event.checkpoint.height))
        const head = (yield* Metric.value(headGauge)).value
        yield* Metric.set(lagGauge, Math.max(0, head - Number(event.checkpoint.height)))
      })

    yield* LogFollower.follow({
      filter: { address: config.contractAddress, event: creditEvent },
      from,
      confirmations: config.finality === "confirmations" ? config.requiredConfirmations : config.finality,
      range: { initial: config.blockSyncChunkSize, max: Math.max(config.blockSyncChunkSize, 10_000) },
      reconnectionInterval: config.reconnectionInterval,
      ...(options.pollInterval === undefined ? {} : { pollInterval: options.pollInterval }),
      ...(options.inFlight === undefined ? {} : { inFlight: options.inFlight }),
      retry,
      history
    }).pipe(
      // The next batch is made (its logs and checks) while this one is stored: the node's answers
      // and our storing overlap (a catch-up is about RPC round trips plus CPU). One batch ahead,
      // plus the ranges the follower fetches ahead of it, only ever in memory: the checkpoint
      // stored is still that of the last batch stored.
      Stream.buffer({ capacity: 1 }),
      Stream.runForEach(handle)
    )
  })

/**
 * The listener with non-default options (the failure policy, a mock client, short intervals for
 * tests). `ethDeposits` is `makeEthDeposits()`.
 */
export const makeEthDeposits = (options: Options = {}) =>
  Listener.make(name, run(options), {
    onFailure: options.onFailure ?? "restart",
    ...(options.backoff === undefined ? {} : { backoff: options.backoff })
  })

/** The `eth_deposits` listener, restarted by the manager after a failure. */
export const ethDeposits = makeEthDeposits()
