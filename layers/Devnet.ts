/**
 * The live composition of the devnet: anvil, the deployed token and escrow, funded depositors, a
 * data directory, the shared mempool, and N validator nodes (layers/Node.ts) running the
 * `eth_deposits` listener against anvil and voting `credit_account`.
 *
 *   Anvil ── deploy + fund ─┐
 *   DataDir ────────────────┼─ Validator × N (Node.layer + ValidatorStatus.layerRef + mempool transport)
 *   Mempool ────────────────┘        └─ BlockProducer ── Devnet (run, summary) ── Progress (host)
 *
 * Releasing the layer stops every listener and closes every database, removes a temporary data
 * directory, then kills anvil: on success, failure and interruption (Ctrl-C under `runMain`) alike.
 */
import { Duration, Effect, Layer } from "effect"
import * as Anvil from "../src/devnet/Anvil.js"
import * as BlockProducer from "../src/devnet/BlockProducer.js"
import * as DataDir from "../src/devnet/DataDir.js"
import * as Deposits from "../src/devnet/DepositGenerator.js"
import * as Devnet from "../src/devnet/Devnet.js"
import { type DevnetConfig, type InvalidDevnetConfig, seatChangeOf, validate } from "../src/devnet/DevnetConfig.js"
import { Mempool } from "../src/devnet/InProcessTransport.js"
import { Progress } from "../src/devnet/Progress.js"
import * as Validator from "../src/devnet/Validator.js"
import * as Contracts from "../src/extensions/contracts/index.js"
import { creditAccount } from "../src/extensions/creditAccount.js"
import * as EthDeposits from "../src/extensions/ethDeposits.js"
import type { NodeStartError } from "./Node.js"

/** Why the devnet could not start. */
export type DevnetStartError =
  | InvalidDevnetConfig
  | Anvil.AnvilStartError
  | Contracts.ContractError
  | DataDir.DataDirError
  | NodeStartError

/** The validators' listener: `eth_deposits`, polling and retrying at the devnet's pace. */
const listener = (config: DevnetConfig) =>
  EthDeposits.makeEthDeposits({
    pollInterval: Duration.max(Duration.millis(100), Duration.min(config.blockTime, Duration.seconds(2))),
    timeout: "5 seconds",
    retry: { base: "100 millis", cap: "2 seconds" },
    backoff: { initial: Duration.millis(500), max: Duration.seconds(5) }
  })

const make = (config: DevnetConfig) =>
  Effect.gen(function*() {
    const progress = yield* Progress
    // Acquired first in this scope, so released last: after every listener stopped and every database closed.
    const anvil = yield* Anvil.make({ accounts: 10 })
    const deployment = yield* Contracts.deploy({ wallet: anvil.walletClient(0), public: anvil.publicClient })
    yield* Deposits.fund(anvil, deployment)
    const dataDir = yield* DataDir.acquire(config.dataDir)
    const mempool = yield* Mempool
    const section = {
      rpc_provider: anvil.wsUrl,
      contract_address: deployment.escrow,
      starting_height: String(deployment.escrowBlock),
      required_confirmations: String(config.confirmations)
    }
    const validators = yield* Effect.forEach(
      Array.from({ length: config.validators }, (_, i) => i),
      (i) =>
        Validator.make(i, {
          filename: `${dataDir}/${DataDir.databaseFile(Validator.identityOf(i))}`,
          extensions: { [EthDeposits.name]: section },
          listeners: [listener(config)],
          resolutions: [creditAccount]
        }, mempool)
    )
    yield* progress.note(
      `devnet: anvil ${anvil.httpUrl} (pid ${anvil.pid}), token ${deployment.token}, escrow ${deployment.escrow}\n` +
        `        ${config.validators} validators (${validators.map((v) => v.identity).join(", ")}), ` +
        `block time ${Duration.format(config.blockTime)}, ${config.confirmations} confirmations, data in ${dataDir}` +
        `${config.dataDir === undefined ? " (removed at exit)" : ""}`
    )
    return yield* Devnet.make({
      config,
      seatChange: seatChangeOf(config),
      anvil,
      deployment,
      validators,
      producer: BlockProducer.make(validators, mempool),
      dataDir
    })
  })

/** The devnet for `config` (its anvil is `Devnet.anvil`). Needs a `Progress` to show itself on. */
export const layer = (config: DevnetConfig): Layer.Layer<Devnet.Devnet, DevnetStartError, Progress> => {
  // Checked before anything starts: a bad flag never costs an anvil.
  const invalid = validate(config)
  if (invalid !== undefined) return Layer.fail(invalid)
  return Layer.scoped(Devnet.Devnet, make(config)).pipe(Layer.provide(Mempool.layer))
}
