import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { getAddress } from "viem"
import * as Contracts from "../../src/extensions/contracts/index.js"
import * as EscrowChain from "../support/EscrowChain.js"

const setup = EscrowChain.make()

describe("TestToken and Escrow", () => {
  it.scopedLive("deposit pulls the tokens and emits one Credit(from, amount), topic0 only", () =>
    Effect.gen(function*() {
      const { anvil, clients, deployment } = yield* setup
      const from = anvil.accounts[0]!.address
      const receipt = yield* Contracts.deposit(clients, deployment, 250n)

      const credits = Contracts.decodeCredits(receipt.logs)
      expect(credits).toHaveLength(1)
      expect(credits[0]).toMatchObject({ from: getAddress(from), amount: 250n, transactionHash: receipt.transactionHash })

      const logs = yield* Effect.promise(() =>
        anvil.publicClient.getLogs({ address: deployment.escrow, event: Contracts.creditEvent, fromBlock: 0n })
      )
      expect(logs).toHaveLength(1)
      expect(logs[0]!.topics).toEqual([Contracts.creditTopic])
      expect(logs[0]!.args).toEqual({ _from: getAddress(from), _amount: 250n })

      const escrowBalance = yield* Effect.promise(() =>
        anvil.publicClient.readContract({
          address: deployment.token,
          abi: Contracts.testTokenAbi,
          functionName: "balanceOf",
          args: [deployment.escrow]
        })
      )
      expect(escrowBalance).toBe(250n)
    }))

  it.scopedLive("depositMany: equal credits in one transaction are distinct logs (log index)", () =>
    Effect.gen(function*() {
      const { clients, deployment } = yield* setup
      const receipt = yield* Contracts.depositMany(clients, deployment, 7n, 2n)
      const credits = Contracts.decodeCredits(receipt.logs)
      expect(credits.map((c) => c.amount)).toEqual([7n, 7n])
      expect(new Set(credits.map((c) => c.transactionHash)).size).toBe(1)
      expect(credits[0]!.logIndex).not.toBe(credits[1]!.logIndex)
    }))

  it.scopedLive("depositBatch emits one Credit per amount, in order; an unfunded deposit fails with ContractError", () =>
    Effect.gen(function*() {
      const { anvil, clients, deployment } = yield* setup
      const receipt = yield* Contracts.depositBatch(clients, deployment, [1n, 2n, 3n])
      expect(Contracts.decodeCredits(receipt.logs).map((c) => c.amount)).toEqual([1n, 2n, 3n])

      const poor: Contracts.Clients = { wallet: anvil.walletClient(1), public: anvil.publicClient }
      const error = yield* Effect.flip(Contracts.deposit(poor, deployment, 1n))
      expect(error._tag).toBe("ContractError")
      expect(error.message).toContain("Escrow.deposit")
    }))
})
