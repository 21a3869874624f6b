/**
 * A shared test fixture: an anvil with the test token and escrow deployed and dev account 0
 * funded and approved, ready to deposit. For the contract, Ethereum, CLI and end-to-end tests.
 */
import { Effect, type Scope } from "effect"
import * as Anvil from "../../src/devnet/Anvil.js"
import * as Contracts from "../../src/extensions/contracts/index.js"

export interface EscrowChain {
  readonly anvil: Anvil.AnvilInstance
  /** Dev account 0 signing, reading through the anvil's public client. */
  readonly clients: Contracts.Clients
  readonly deployment: Contracts.Deployment
}

/** Starts anvil (stopped when the scope closes), deploys, and funds account 0 with `funds` tokens. */
export const make = (
  options: Anvil.AnvilOptions = {},
  funds = 1_000_000n
): Effect.Effect<EscrowChain, Anvil.AnvilStartError | Contracts.ContractError, Scope.Scope> =>
  Effect.gen(function*() {
    const anvil = yield* Anvil.make(options)
    const clients: Contracts.Clients = { wallet: anvil.walletClient(0), public: anvil.publicClient }
    const deployment = yield* Contracts.deploy(clients)
    yield* Contracts.fund(clients, deployment, funds)
    return { anvil, clients, deployment }
  })
