/**
 * Deposits for the devnet to credit: several anvil dev accounts, distinct amounts, and once two
 * equal deposits in ONE transaction (`depositMany`), the case Kwil v0.8 collapsed into one credit:
 * here they are two events, told apart by their log index.
 *
 * Each deposit is known by the `credit_account` event id the listeners will derive from it, so
 * the devnet can tell when every one was credited.
 */
import { Effect } from "effect"
import type { Address, Hash } from "viem"
import * as EventId from "../events/EventId.js"
import type { PayloadCodecError } from "../events/EventType.js"
import * as Contracts from "../extensions/contracts/index.js"
import { CreditAccount, type Payload } from "../extensions/creditAccount.js"
import type { AnvilInstance } from "./Anvil.js"

/** One transaction of the plan. */
export interface PlannedTx {
  /** The anvil dev account that signs it. */
  readonly account: number
  readonly amount: bigint
  /** How many equal `Credit` logs it emits (2 or more: `depositMany`). */
  readonly count: number
}

/** A deposit sent and mined. */
export interface SentDeposit {
  readonly id: EventId.EventId
  readonly account: Address
  readonly amount: bigint
  readonly txHash: Hash
  readonly logIndex: number
  /** The Ethereum block it was mined in. */
  readonly block: bigint
}

/** The dev accounts that deposit (account 0 deploys the contracts). */
export const depositors = [1, 2, 3, 4] as const

/** Tokens minted to each depositor up front. */
const funds = 10n ** 12n

/**
 * `deposits` deposits over the depositors in turn, amounts growing by 250 from 1000; the third
 * and fourth are two equal deposits in one tx.
 */
export const plan = (deposits: number): ReadonlyArray<PlannedTx> => {
  const txs: Array<PlannedTx> = []
  let made = 0
  while (made < deposits) {
    const account = depositors[txs.length % depositors.length]!
    const amount = 1000n + 250n * BigInt(made)
    const count = made === 2 && deposits - made >= 2 ? 2 : 1
    txs.push({ account, amount, count })
    made += count
  }
  return txs
}

/** The `n`th deposit sent after the plan, in `--follow` mode: small, distinct amounts. */
export const extra = (n: number): PlannedTx => ({
  account: depositors[n % depositors.length]!,
  amount: 100n + BigInt(n),
  count: 1
})

const clientsOf = (anvil: AnvilInstance, account: number): Contracts.Clients => ({
  wallet: anvil.walletClient(account),
  public: anvil.publicClient
})

/** Mints tokens to every depositor and approves the escrow (run once, before sending). */
export const fund = (anvil: AnvilInstance, deployment: Contracts.Deployment): Effect.Effect<void, Contracts.ContractError> =>
  Effect.forEach(depositors, (account) => Contracts.fund(clientsOf(anvil, account), deployment, funds), {
    concurrency: "unbounded",
    discard: true
  })

/** The `credit_account` event id a validator derives from `payload`. */
export const eventIdOf = (payload: Payload): Effect.Effect<EventId.EventId, PayloadCodecError> =>
  Effect.map(CreditAccount.encode(payload), (body) => EventId.make(CreditAccount.name, body))

/** Sends `tx`, waits for it to be mined, and returns its deposits. */
export const send = (
  anvil: AnvilInstance,
  deployment: Contracts.Deployment,
  tx: PlannedTx
): Effect.Effect<ReadonlyArray<SentDeposit>, Contracts.ContractError | PayloadCodecError> =>
  Effect.gen(function*() {
    const clients = clientsOf(anvil, tx.account)
    const receipt = tx.count > 1
      ? yield* Contracts.depositMany(clients, deployment, tx.amount, BigInt(tx.count))
      : yield* Contracts.deposit(clients, deployment, tx.amount)
    return yield* Effect.forEach(Contracts.decodeCredits(receipt.logs), (credit) =>
      Effect.map(
        eventIdOf({
          chainId: BigInt(anvil.chainId),
          account: credit.from.toLowerCase() as Payload["account"],
          amount: credit.amount,
          txHash: credit.transactionHash,
          logIndex: credit.logIndex
        }),
        (id): SentDeposit => ({
          id,
          account: credit.from,
          amount: credit.amount,
          txHash: credit.transactionHash,
          logIndex: credit.logIndex,
          block: credit.blockNumber
        })
      ))
  })
