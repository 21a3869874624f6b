/**
 * Whether this node is caught up with its network and holds a validator seat. The node provides
 * it; the `ListenerManager` runs the listeners exactly while both hold.
 *
 * Reading and writing are two tags on purpose: everything on the listener side only reads
 * (`ValidatorStatus`), and only the node (or the devnet, or a test) can change the status
 * (`ValidatorStatusControl`), so a listener can never start or stop its siblings.
 */
import { Context, Effect, Layer, type Stream, SubscriptionRef } from "effect"

/** The node's status as the listener side sees it. */
export interface Status {
  /** The node has caught up with the network (Kwil waits for this before starting listeners). */
  readonly synced: boolean
  /** The node is in the current validator set. */
  readonly validator: boolean
}

/** Neither synced nor a validator: what a node is when it starts. */
export const inactive: Status = { synced: false, validator: false }

/** Synced and a validator: the listeners run. */
export const active: Status = { synced: true, validator: true }

/** Whether listeners should run under `status` (Kwil: caught up and in the validator set). */
export const isActive = (status: Status): boolean => status.synced && status.validator

/** The read side, provided by the node. */
export class ValidatorStatus extends Context.Tag("kwil-listeners/ValidatorStatus")<ValidatorStatus, {
  /** The status now. */
  readonly current: Effect.Effect<Status>
  /**
   * The status now, then each later value (like `SubscriptionRef.changes`). Repeats are allowed;
   * the manager only acts when `isActive` changes.
   */
  readonly changes: Stream.Stream<Status>
}>() {
  /** The read side of a `SubscriptionRef` the caller keeps for writing. */
  static readonly fromRef = (ref: SubscriptionRef.SubscriptionRef<Status>): ValidatorStatus["Type"] =>
    ValidatorStatus.of({ current: SubscriptionRef.get(ref), changes: ref.changes })

  /**
   * A manual status for tests and the devnet: both tags over one `SubscriptionRef`, starting at
   * `initial` (default: not synced, not a validator).
   */
  static readonly layerRef = (
    initial: Status = inactive
  ): Layer.Layer<ValidatorStatus | ValidatorStatusControl> =>
    Layer.effectContext(
      Effect.map(SubscriptionRef.make(initial), (ref) =>
        Context.make(ValidatorStatus, ValidatorStatus.fromRef(ref)).pipe(
          Context.add(ValidatorStatusControl, ValidatorStatusControl.fromRef(ref))
        ))
    )
}

/** The write side of a manual status (`ValidatorStatus.layerRef`): what the node or a test changes. */
export class ValidatorStatusControl extends Context.Tag("kwil-listeners/ValidatorStatusControl")<
  ValidatorStatusControl,
  {
    /** Replaces the status. */
    readonly set: (status: Status) => Effect.Effect<void>
    /** Changes part of the status, e.g. `update((s) => ({ ...s, validator: false }))` when the seat is lost. */
    readonly update: (f: (status: Status) => Status) => Effect.Effect<void>
  }
>() {
  /** The write side of a `SubscriptionRef`. */
  static readonly fromRef = (ref: SubscriptionRef.SubscriptionRef<Status>): ValidatorStatusControl["Type"] =>
    ValidatorStatusControl.of({
      set: (status) => SubscriptionRef.set(ref, status),
      update: (f) => SubscriptionRef.update(ref, f)
    })
}
