import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as Anvil from "../../src/devnet/Anvil.js"
import * as Contracts from "../../src/extensions/contracts/index.js"
import * as EscrowChain from "../support/EscrowChain.js"

describe("Anvil", () => {
  it.live("starts on a free loopback port, answers, and is gone once its scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const anvil = yield* Anvil.make({ chainId: 1337, noMining: true }).pipe(Scope.extend(scope))
      expect(anvil.httpUrl).toBe(`http://127.0.0.1:${anvil.port}`)
      expect(Anvil.isAlive(anvil.pid)).toBe(true)
      expect(yield* Effect.promise(() => anvil.publicClient.getChainId())).toBe(1337)

      expect(yield* anvil.blockNumber).toBe(0n)
      yield* anvil.mine(5)
      expect(yield* anvil.blockNumber).toBe(5n)

      yield* Scope.close(scope, Exit.void)
      expect(() => process.kill(anvil.pid, 0)).toThrow()
    }))

  it.live("two instances get different ports; a missing binary is an AnvilStartError", () =>
    Effect.gen(function*() {
      const [a, b] = yield* Effect.all([Anvil.make(), Anvil.make()], { concurrency: 2 })
      expect(a.port).not.toBe(b.port)
      const error = yield* Effect.flip(Anvil.make({ binary: "/nonexistent/anvil" }))
      expect(error._tag).toBe("AnvilStartError")
      expect(error.message).toContain("/nonexistent/anvil")
    }).pipe(Effect.scoped))

  it.live("the finalizer runs when the using effect fails", () =>
    Effect.gen(function*() {
      let pid = -1
      const exit = yield* Effect.exit(
        Effect.scoped(Anvil.make().pipe(Effect.tap((a) => (pid = a.pid)), Effect.zipRight(Effect.fail("boom"))))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(Anvil.isAlive(pid)).toBe(false)
    }))

  it.scopedLive("snapshot and revert; rollback moves the head back", () =>
    Effect.gen(function*() {
      const anvil = yield* Anvil.make({ noMining: true })
      yield* anvil.mine(3)
      const id = yield* anvil.snapshot
      yield* anvil.mine(4)
      expect(yield* anvil.blockNumber).toBe(7n)
      yield* anvil.revert(id)
      expect(yield* anvil.blockNumber).toBe(3n)
      yield* anvil.rollback(2)
      expect(yield* anvil.blockNumber).toBe(1n)
    }))

  it.scopedLive("reorg replaces the deposit's block: the log leaves the canonical chain, hashes change", () =>
    Effect.gen(function*() {
      const { anvil, clients, deployment } = yield* EscrowChain.make()
      const receipt = yield* Contracts.deposit(clients, deployment, 42n)
      yield* anvil.mine(2)
      const head = yield* anvil.blockNumber
      expect(head).toBe(receipt.blockNumber + 2n)

      const client = anvil.publicClient
      const getBlock = (n: bigint) => Effect.promise(() => client.getBlock({ blockNumber: n }))
      const credits = () =>
        Effect.promise(() => client.getLogs({ address: deployment.escrow, event: Contracts.creditEvent, fromBlock: 0n }))
      const parent = yield* getBlock(receipt.blockNumber - 1n)
      const before = yield* getBlock(receipt.blockNumber)
      expect(yield* credits()).toHaveLength(1)

      // Replace the deposit's block and the two after it with three blocks holding one plain transfer.
      yield* anvil.reorg(3, [{ tx: { from: anvil.accounts[1]!.address, to: anvil.accounts[2]!.address, value: 1n }, block: 1 }])

      expect(yield* anvil.blockNumber).toBe(head)
      const after = yield* getBlock(receipt.blockNumber)
      expect(after.hash).not.toBe(before.hash)
      expect(after.parentHash).toBe(parent.hash)
      expect(after.transactions).not.toContain(receipt.transactionHash)
      expect((yield* getBlock(receipt.blockNumber + 1n)).transactions).toHaveLength(1)
      expect(yield* credits()).toHaveLength(0)
      const gone = yield* Effect.exit(Effect.promise(() => client.getTransactionReceipt({ hash: receipt.transactionHash })))
      expect(Exit.isFailure(gone)).toBe(true)
      // The orphaned deposit does not come back in later blocks (anvil does not re-queue it).
      yield* anvil.mine(2)
      expect(yield* credits()).toHaveLength(0)
    }))
})

describe("Anvil.layer", () => {
  it.live("provides the instance; with slotsInAnEpoch the safe and finalized tags trail latest", () =>
    Effect.gen(function*() {
      const anvil = yield* Anvil.Anvil
      yield* anvil.mine(10)
      const tag = (blockTag: "latest" | "safe" | "finalized") =>
        Effect.promise(() => anvil.publicClient.getBlock({ blockTag })).pipe(Effect.map((b) => b.number))
      expect(yield* tag("latest")).toBe(10n)
      expect(yield* tag("safe")).toBe(8n)
      expect(yield* tag("finalized")).toBe(6n)
    }).pipe(Effect.provide(Anvil.Anvil.layer({ noMining: true, slotsInAnEpoch: 2 }))))
})
