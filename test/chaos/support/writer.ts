/**
 * A child process for the storage-fault test: writes batches to the node database at argv[2]
 * the way the eth_deposits listener does (each batch's credit_account events and its checkpoint
 * in ONE EventStore transaction), forever, until it is killed. The checkpoint height is the
 * number of events stored so far, so "events and checkpoint agree" is `count(events) = height`.
 *
 * On stdout: `begin <n>` when a transaction has written its events and is about to write the
 * checkpoint (the parent kills it there, inside the transaction), `commit <n>` after each commit.
 * argv[3] is the seed of the batch sizes.
 */
import { Effect, Layer, Option } from "effect"
import { pad } from "viem"
import { EventStore } from "../../../src/events/EventStore.js"
import { CreditAccount, type Payload } from "../../../src/extensions/creditAccount.js"
import * as EthDeposits from "../../../src/extensions/ethDeposits.js"
import * as Checkpoints from "../../../src/extensions/ethDepositsCheckpoint.js"
import * as Chaos from "./Chaos.js"

const db = process.argv[2]!
const r = Chaos.rng(Number(process.argv[3] ?? "1"))

const program = Effect.gen(function*() {
  const store = yield* EventStore
  let total = Option.match(yield* Checkpoints.readCheckpoint(store.kv), { onNone: () => 0, onSome: (c) => Number(c.height) })
  for (;;) {
    const size = r.int(20, 400)
    const next = total + size
    yield* store.transaction(Effect.gen(function*() {
      for (let i = total + 1; i <= next; i++) {
        yield* store.broadcast(CreditAccount, {
          chainId: 31337n,
          account: "0x00000000000000000000000000000000000000aa",
          amount: BigInt(i),
          txHash: pad(`0x${i.toString(16)}`, { size: 32 }),
          logIndex: 0
        } as Payload)
      }
      process.stdout.write(`begin ${next}\n`)
      // A moment inside the transaction, events written, checkpoint not yet: the parent kills here.
      yield* Effect.sleep(`${r.int(0, 30)} millis`)
      yield* Checkpoints.writeCheckpoint(store.kv, { height: BigInt(next) })
    }))
    total = next
    process.stdout.write(`commit ${total}\n`)
  }
})

Effect.runFork(program.pipe(
  Effect.provide(EventStore.layerFor(EthDeposits.name).pipe(Layer.provideMerge(Chaos.database(db))))
))
