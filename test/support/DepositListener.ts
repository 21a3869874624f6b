/**
 * The eth_deposits listener run directly over a SQLite file, without a manager: the shared
 * harness of the end-to-end and chaos tests.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Exit, Layer, Scope } from "effect"
import { EventStore } from "../../src/events/EventStore.js"
import { creditAccount } from "../../src/extensions/creditAccount.js"
import * as EthDeposits from "../../src/extensions/ethDeposits.js"
import { ListenerContext } from "../../src/listener/Listener.js"
import * as Migrations from "../../src/storage/migrations.js"
import { ResolutionRegistry } from "../../src/voting/ResolutionRegistry.js"

/** Short intervals: anvil answers in a millisecond, and CI has two cores. */
export const fast: EthDeposits.Options = {
  pollInterval: "100 millis",
  timeout: "2 seconds",
  retry: { base: "20 millis", cap: "300 millis" }
}

/** The node database at `filename`: migrated, with the event store and the credit_account resolution. */
export const database = (filename: string) =>
  EventStore.layerSql.pipe(
    Layer.provideMerge(ResolutionRegistry.layer(creditAccount)),
    Layer.provideMerge(Migrations.layer.pipe(Layer.provideMerge(SqliteClient.layer({ filename })))),
    Layer.orDie
  )

/**
 * A running listener over `filename` with config section `config`: stop it with `stop`, or let
 * the caller's scope close.
 */
export const start = (
  filename: string,
  config: Record<string, string>,
  options: EthDeposits.Options = {},
  identity = "node-0"
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(
      Layer.mergeAll(
        EventStore.layerFor(EthDeposits.name),
        Layer.succeed(ListenerContext, { name: EthDeposits.name, identity, config, configured: true })
      ).pipe(Layer.provide(database(filename))),
      scope
    )
    const listener = EthDeposits.makeEthDeposits({ ...fast, ...options })
    const fiber = yield* listener.run.pipe(Effect.scoped, Effect.provide(context), Effect.forkIn(scope))
    return { fiber, stop: Scope.close(scope, Exit.void) }
  })
