/**
 * The client and the follower against a real anvil (node_modules/.bin/anvil), over http and ws.
 * Each test spawns its own anvil on a free loopback port; a finalizer kills it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Either, Layer, Option, Schedule, Stream } from "effect"
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createServer } from "node:net"
import { concat, type Hex, keccak256, toHex } from "viem"
import { EthereumClient } from "../../src/ethereum/EthereumClient.js"
import * as LogFollower from "../../src/ethereum/LogFollower.js"

const TOPIC = keccak256(toHex("Test(uint256)"))
/** Init code whose constructor emits LOG1(TOPIC) with no data and deploys nothing. */
const EMIT_LOG: Hex = concat(["0x7f", TOPIC, "0x6000", "0x6000", "0xa1", "0x00"])

/** The platform binary itself when it is installed (no wrapper process to orphan it), else the npm wrapper. */
const platformBinary = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
const binary = process.platform === "linux" && process.arch === "x64" && existsSync(platformBinary)
  ? platformBinary
  : "node_modules/.bin/anvil"

const freePort = Effect.async<number>((resume) => {
  const s = createServer()
  s.listen(0, "127.0.0.1", () => {
    const { port } = s.address() as { port: number }
    s.close(() => resume(Effect.succeed(port)))
  })
})

const rpc = (url: string, method: string, params: ReadonlyArray<unknown> = []) =>
  Effect.tryPromise(async () => {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params })
    })
    const json = (await res.json()) as { result?: unknown; error?: { message: string } }
    if (json.error !== undefined) throw new Error(json.error.message)
    return json.result
  })

/** A fresh anvil (with `args`): its http and ws URLs. */
const anvil = (args: ReadonlyArray<string> = []) => Effect.gen(function*() {
  const port = yield* freePort
  yield* Effect.acquireRelease(
    Effect.sync(() => spawn(binary, ["--port", String(port), "--host", "127.0.0.1", ...args], { stdio: "ignore" })),
    (child) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGTERM") // the npm wrapper forwards SIGTERM to the binary, not SIGKILL
      }).pipe(Effect.timeout("5 seconds"), Effect.ignore)
  )
  const http = `http://127.0.0.1:${port}`
  yield* rpc(http, "eth_chainId").pipe(Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("20 seconds"))))
  return { http, ws: `ws://127.0.0.1:${port}` }
})

/** Three blocks with one log each, then `mine` empty blocks. */
const seed = (url: string, mine: number) =>
  Effect.gen(function*() {
    const [from] = (yield* rpc(url, "eth_accounts")) as Array<string>
    for (let i = 0; i < 3; i++) yield* rpc(url, "eth_sendTransaction", [{ from, data: EMIT_LOG }])
    if (mine > 0) yield* rpc(url, "anvil_mine", [toHex(mine)])
  })

describe("EthereumClient and LogFollower on anvil", () => {
  for (const transport of ["http", "ws"] as const) {
    it.scopedLive(`head, blocks by tag and getLogs over ${transport}`, () =>
      Effect.gen(function*() {
        const node = yield* anvil()
        yield* seed(node.http, 10)
        const client = yield* Effect.provide(EthereumClient, EthereumClient.layer({ urls: [node[transport]] }))
        expect(yield* client.chainId).toBe(31337)
        const head = yield* client.headNumber
        expect(head).toBe(13n)
        const latest = Option.getOrThrow(yield* client.block("latest"))
        expect(latest.number).toBe(head)
        for (const tag of ["safe", "finalized"] as const) {
          const tagged = yield* client.block(tag)
          expect(Option.isSome(tagged) && tagged.value.number <= head).toBe(true)
        }
        expect(yield* client.block(head + 100n)).toEqual(Option.none())
        const logs = yield* client.getLogs({ topics: [TOPIC], fromBlock: 0n, toBlock: head })
        expect(logs.map((l) => l.blockNumber)).toEqual([1n, 2n, 3n])
        for (const log of logs) {
          expect(log.blockHash).toBe(Option.getOrThrow(yield* client.block(log.blockNumber)).hash)
        }
        expect(yield* client.getLogs({ topics: [TOPIC], fromBlock: 2n, toBlock: 2n })).toHaveLength(1)
        expect(client.subscribes).toBe(transport === "ws")
      }))
  }

  it.scopedLive("the follower over ws: confirmed batches, then new heads by subscription", () =>
    Effect.gen(function*() {
      const node = yield* anvil()
      yield* seed(node.http, 2) // head 5
      const layer = EthereumClient.layer({ urls: [node.ws] })
      const follower = LogFollower.follow({
        filter: { topics: [TOPIC] },
        from: LogFollower.startAt(0n),
        confirmations: 2,
        pollInterval: "60 seconds" // only the subscription can wake it in time
      }).pipe(Stream.provideLayer(layer))
      const events = yield* follower.pipe(
        Stream.filter((e): e is LogFollower.Batch => e._tag === "Batch"),
        Stream.tap((b) => (b.to === 3n ? seed(node.http, 0) : Effect.void)), // head 8 -> confirmed 6
        Stream.takeUntil((b) => b.to >= 6n),
        Stream.runCollect,
        Effect.timeout("20 seconds")
      )
      const batches = Chunk.toReadonlyArray(events)
      expect(batches[0]).toMatchObject({ from: 0n, to: 3n })
      expect(batches.flatMap((b) => b.logs.map((l) => l.blockNumber))).toEqual([1n, 2n, 3n, 6n])
      expect(batches.at(-1)!.to).toBe(6n)
    }))

  it.scopedLive("heads never come from a ws URL of another chain: with several URLs, its subscription fails with ChainMismatch", () =>
    Effect.gen(function*() {
      const good = yield* anvil()
      const other = yield* anvil(["--chain-id", "5"])
      yield* seed(good.http, 10)
      yield* rpc(other.http, "anvil_mine", [toHex(500)])
      const context = yield* Layer.build(EthereumClient.layer({ urls: [good.http, other.ws] }))
      const client = Context.get(context, EthereumClient)
      expect(client.subscribes).toBe(true)
      // The other chain mines while a subscription could be listening.
      yield* rpc(other.http, "anvil_mine", ["0x1"]).pipe(Effect.delay("500 millis"), Effect.forkScoped)
      const heads = yield* client.newHeads.pipe(Stream.take(1), Stream.runCollect, Effect.timeout("5 seconds"), Effect.either)
      expect(Either.isLeft(heads) && heads.left._tag).toBe("ChainMismatch")
      yield* Effect.sleep("1 second")
      expect(yield* client.headNumber).toBe(13n)
    }))
})
