/**
 * The test token and Kwil's test escrow: typed ABIs (from the generated `artifacts.ts`), the
 * `Credit` event, and Effect helpers to deploy them and make deposits with viem clients. Used by
 * the devnet, the end-to-end tests and the benchmarks.
 *
 * The helpers wait for receipts, so the chain must mine (automine or interval mining); on a
 * chain with mining off, mine from another fiber while they wait.
 */
import { Data, Effect } from "effect"
import {
  type Account,
  type Address,
  type Chain,
  type ContractFunctionArgs,
  type Hash,
  type Log,
  type PublicClient,
  type TransactionReceipt,
  type Transport,
  type WalletClient,
  type WriteContractParameters,
  getAbiItem,
  parseEventLogs,
  toEventSelector
} from "viem"
import { escrowAbi, escrowBytecode, testTokenAbi, testTokenBytecode } from "./artifacts.js"

export { escrowAbi, escrowBytecode, testTokenAbi, testTokenBytecode }

/** `event Credit(address _from, uint256 _amount)`, both not indexed, as in Kwil's escrow. */
export const creditEvent = getAbiItem({ abi: escrowAbi, name: "Credit" })

/** topic0 of `Credit(address,uint256)`: the only topic a Credit log has. */
export const creditTopic: Hash = toEventSelector(creditEvent)

/** A wallet client with a chain and an account bound, so every write knows who signs where. */
export type Signer = WalletClient<Transport, Chain, Account>

/** The clients the helpers use: one to sign and send, one to read and wait for receipts. */
export interface Clients {
  readonly wallet: Signer
  readonly public: PublicClient
}

/** A deployed token and escrow. */
export interface Deployment {
  readonly token: Address
  readonly escrow: Address
  /** The block the escrow was deployed in: a listener's natural `starting_height`. */
  readonly escrowBlock: bigint
}

/** A contract call or deployment failed or reverted. */
export class ContractError extends Data.TaggedError("ContractError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  override get message() {
    const cause = this.cause instanceof Error ? (this.cause as { shortMessage?: string }).shortMessage ?? this.cause.message : String(this.cause)
    return `${this.operation} failed: ${cause} (is the RPC up, the chain mining, and the account funded?)`
  }
}

const attempt = <A>(operation: string, f: () => Promise<A>): Effect.Effect<A, ContractError> =>
  Effect.tryPromise({ try: f, catch: (cause) => new ContractError({ operation, cause }) })

/** Waits for a transaction's receipt and fails if it reverted. */
export const waitForSuccess = (
  client: PublicClient,
  hash: Hash,
  operation: string
): Effect.Effect<TransactionReceipt, ContractError> =>
  attempt(operation, () => client.waitForTransactionReceipt({ hash, pollingInterval: 50 })).pipe(
    Effect.filterOrFail(
      (receipt) => receipt.status === "success",
      () => new ContractError({ operation, cause: new Error(`transaction ${hash} reverted`) })
    )
  )

const deployed = (
  clients: Clients,
  hash: Hash,
  operation: string
): Effect.Effect<{ readonly address: Address; readonly block: bigint }, ContractError> =>
  waitForSuccess(clients.public, hash, operation).pipe(
    Effect.flatMap((receipt) =>
      receipt.contractAddress
        ? Effect.succeed({ address: receipt.contractAddress, block: receipt.blockNumber })
        : Effect.fail(new ContractError({ operation, cause: new Error("receipt has no contract address") }))
    )
  )

/** Deploys a `TestToken`. */
export const deployToken = (
  clients: Clients,
  options: { readonly name?: string; readonly symbol?: string } = {}
): Effect.Effect<Address, ContractError> =>
  attempt("deploy TestToken", () =>
    clients.wallet.deployContract({
      abi: testTokenAbi,
      bytecode: testTokenBytecode,
      args: [options.name ?? "Test Token", options.symbol ?? "TT"]
    })
  ).pipe(
    Effect.flatMap((hash) => deployed(clients, hash, "deploy TestToken")),
    Effect.map((d) => d.address)
  )

/** Deploys an `Escrow` over `token`. */
export const deployEscrow = (
  clients: Clients,
  token: Address
): Effect.Effect<{ readonly address: Address; readonly block: bigint }, ContractError> =>
  attempt("deploy Escrow", () =>
    clients.wallet.deployContract({ abi: escrowAbi, bytecode: escrowBytecode, args: [token] })
  ).pipe(Effect.flatMap((hash) => deployed(clients, hash, "deploy Escrow")))

/** Deploys a token and an escrow over it. */
export const deploy = (clients: Clients): Effect.Effect<Deployment, ContractError> =>
  Effect.gen(function*() {
    const token = yield* deployToken(clients)
    const escrow = yield* deployEscrow(clients, token)
    yield* Effect.logDebug("deployed test token and escrow").pipe(
      Effect.annotateLogs({ token, escrow: escrow.address, block: String(escrow.block) })
    )
    return { token, escrow: escrow.address, escrowBlock: escrow.block }
  })

const write = (
  clients: Clients,
  operation: string,
  send: () => Promise<Hash>
): Effect.Effect<TransactionReceipt, ContractError> =>
  attempt(operation, send).pipe(Effect.flatMap((hash) => waitForSuccess(clients.public, hash, operation)))

/** Mints `amount` test tokens to `to` (the signer's own account by default). */
export const mint = (
  clients: Clients,
  token: Address,
  amount: bigint,
  to: Address = clients.wallet.account.address
): Effect.Effect<TransactionReceipt, ContractError> =>
  write(clients, "TestToken.mint", () =>
    clients.wallet.writeContract({ address: token, abi: testTokenAbi, functionName: "mint", args: [to, amount] }))

/** Approves `spender` for `amount` (unlimited by default) of the signer's tokens. */
export const approve = (
  clients: Clients,
  token: Address,
  spender: Address,
  amount: bigint = 2n ** 256n - 1n
): Effect.Effect<TransactionReceipt, ContractError> =>
  write(clients, "TestToken.approve", () =>
    clients.wallet.writeContract({
      address: token,
      abi: testTokenAbi,
      functionName: "approve",
      args: [spender, amount]
    }))

/** Mints `amount` to the signer and approves the escrow for all of it: one call before depositing. */
export const fund = (
  clients: Clients,
  deployment: Deployment,
  amount: bigint
): Effect.Effect<void, ContractError> =>
  Effect.zipRight(mint(clients, deployment.token, amount), approve(clients, deployment.token, deployment.escrow))

type EscrowWrite = "deposit" | "depositMany" | "depositBatch"

const callEscrow = <F extends EscrowWrite>(
  clients: Clients,
  deployment: Deployment,
  functionName: F,
  args: ContractFunctionArgs<typeof escrowAbi, "nonpayable", F>
): Effect.Effect<TransactionReceipt, ContractError> =>
  write(clients, `Escrow.${functionName}`, () =>
    clients.wallet.writeContract({
      address: deployment.escrow,
      abi: escrowAbi,
      functionName: functionName as EscrowWrite,
      args: args as ContractFunctionArgs<typeof escrowAbi, "nonpayable", EscrowWrite>
    } as WriteContractParameters<typeof escrowAbi, EscrowWrite, ContractFunctionArgs<typeof escrowAbi, "nonpayable", EscrowWrite>, Chain, Account>))

/** Kwil's deposit: one `Credit(signer, amount)`. The signer must be funded (see `fund`). */
export const deposit = (
  clients: Clients,
  deployment: Deployment,
  amount: bigint
): Effect.Effect<TransactionReceipt, ContractError> => callEscrow(clients, deployment, "deposit", [amount])

/** `count` equal `Credit(signer, amount)` logs in one transaction. */
export const depositMany = (
  clients: Clients,
  deployment: Deployment,
  amount: bigint,
  count: bigint
): Effect.Effect<TransactionReceipt, ContractError> => callEscrow(clients, deployment, "depositMany", [amount, count])

/** One `Credit` per entry of `amounts`, in order, in one transaction. */
export const depositBatch = (
  clients: Clients,
  deployment: Deployment,
  amounts: ReadonlyArray<bigint>
): Effect.Effect<TransactionReceipt, ContractError> => callEscrow(clients, deployment, "depositBatch", [amounts])

/** A decoded `Credit` log. */
export interface Credit {
  readonly from: Address
  readonly amount: bigint
  readonly blockNumber: bigint
  readonly blockHash: Hash
  readonly transactionHash: Hash
  readonly logIndex: number
}

/** Decodes the `Credit` logs among `logs` (others are skipped), e.g. from a receipt or `eth_getLogs`. */
export const decodeCredits = (logs: ReadonlyArray<Log>): ReadonlyArray<Credit> =>
  parseEventLogs({ abi: escrowAbi, eventName: "Credit", logs: [...logs] }).flatMap((log) =>
    log.blockNumber === null || log.blockHash === null || log.transactionHash === null || log.logIndex === null
      ? []
      : [{
        from: log.args._from,
        amount: log.args._amount,
        blockNumber: log.blockNumber,
        blockHash: log.blockHash,
        transactionHash: log.transactionHash,
        logIndex: log.logIndex
      }]
  )
