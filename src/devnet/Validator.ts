/**
 * One devnet validator: a whole node (layers/Node.ts) in this process, with its own SQLite file,
 * its own identity, a manual `ValidatorStatus` the devnet flips when the validator set changes,
 * and a `VoteTransport` into the shared in-process mempool.
 */
import { Effect, Layer, type Scope } from "effect"
import * as Node from "../../layers/Node.js"
import type { ListenerStatus } from "../listener/ListenerManager.js"
import { ListenerManager } from "../listener/ListenerManager.js"
import { ValidatorStatus, ValidatorStatusControl } from "../listener/ValidatorStatus.js"
import { type Mempool, transport } from "./InProcessTransport.js"

/** What a devnet validator's code may use: the node's services and its status. */
export type ValidatorServices = Node.NodeServices | ValidatorStatus | ValidatorStatusControl

/** A running validator node. */
export interface Validator {
  /** Its position in the devnet (0-based); the proposer of height h is found from h % N. */
  readonly index: number
  /** Its identity in the validator set, e.g. `validator-0`. */
  readonly identity: string
  /** Its SQLite file. */
  readonly filename: string
  /** Runs `effect` against this node's services. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, ValidatorServices>) => Effect.Effect<A, E>
  /** Tells the node whether it holds a seat: its listeners run exactly while it does. */
  readonly setSeat: (validator: boolean) => Effect.Effect<void>
  /** Its listeners' states, in registration order. */
  readonly listeners: Effect.Effect<ReadonlyArray<ListenerStatus>>
}

/** The short name used in progress lines: `validator-3` is `v3`. */
export const shortName = (identity: string): string => identity.replace(/^validator-/, "v")

/** The identity of validator `index`. */
export const identityOf = (index: number): string => `validator-${index}`

/**
 * Starts validator `index` over `options.filename`, synced and holding a seat. Its database and
 * listeners live as long as the scope; closing it stops the listeners and closes the file.
 */
export const make = (
  index: number,
  options: Omit<Node.NodeOptions, "identity">,
  mempool: Mempool["Type"]
): Effect.Effect<Validator, Node.NodeStartError, Scope.Scope> =>
  Effect.gen(function*() {
    const identity = identityOf(index)
    const node = Node.layer({ ...options, identity }).pipe(
      Layer.provideMerge(ValidatorStatus.layerRef({ synced: true, validator: true })),
      Layer.provide(transport(mempool))
    )
    // Its metrics carry `validator=<identity>`: those of the fibers its node forks (listeners,
    // manager), which take the labels of the fiber that builds it, and those of what it runs.
    const labelled = Effect.tagMetrics("validator", identity)
    const context = yield* labelled(Layer.build(node))
    const run = <A, E>(effect: Effect.Effect<A, E, ValidatorServices>) => labelled(Effect.provide(effect, context))
    return {
      index,
      identity,
      filename: options.filename,
      run,
      setSeat: (validator) => run(Effect.flatMap(ValidatorStatusControl, (c) => c.update((s) => ({ ...s, validator })))),
      listeners: run(Effect.flatMap(ListenerManager, (m) => m.status))
    } satisfies Validator
  }).pipe(Effect.annotateLogs("validator", identityOf(index)))
