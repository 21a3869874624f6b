/**
 * A listener: a long-running Effect that watches something outside the network and broadcasts
 * what it sees through its `EventStore`. The manager runs it while the node is a synced
 * validator and interrupts it (Kwil's cancelled context) when that stops.
 */
import { Context, Data, Duration, type Effect, type Scope } from "effect"
import type { EventLog } from "../events/EventLog.js"
import type { EventStorage, EventStore } from "../events/EventStore.js"
import type { ListenerRegistry } from "./ListenerRegistry.js"
import type { ValidatorStatusControl } from "./ValidatorStatus.js"

/** What the manager tells a running listener about itself and its node. */
export class ListenerContext extends Context.Tag("kwil-listeners/ListenerContext")<ListenerContext, {
  /** The listener's registered name. */
  readonly name: string
  /** The node's identity (its validator key, as the node spells it). */
  readonly identity: string
  /**
   * The listener's own config section (`[app.extensions.<name>]`), string to string as in Kwil.
   * The same section is also the listener's `ConfigProvider`, so `Config.string("key")` reads it.
   */
  readonly config: Readonly<Record<string, string>>
  /** Whether the node had a config section for this listener at all (Kwil's listeners idle without one). */
  readonly configured: boolean
}>() {}

/**
 * What the manager does when a listener fails (an error or a defect):
 * - `restart`: run it again after a capped, jittered exponential backoff, reset after a healthy run;
 * - `stop`: leave it stopped (and failed) until the next start;
 * - `shutdown`: fail the manager, so the node stops (Kwil v0.8's only behaviour).
 */
export type FailurePolicy = "restart" | "stop" | "shutdown"

/** Backoff for the `restart` policy. */
export interface Backoff {
  /** The first delay (each delay is jittered down by up to a fifth). */
  readonly initial: Duration.Duration
  /** No delay is longer than this. */
  readonly max: Duration.Duration
  /** A run that lasted this long counts as healthy: the next failure starts from `initial` again. */
  readonly resetAfter: Duration.Duration
}

export const defaultBackoff: Backoff = {
  initial: Duration.seconds(1),
  max: Duration.minutes(1),
  resetAfter: Duration.minutes(1)
}

export interface Options {
  readonly onFailure?: FailurePolicy
  readonly backoff?: Partial<Backoff>
}

/** What a listener's run may require: what the manager gives it, plus `R`. */
export type Provided = ListenerContext | EventStore | Scope.Scope

/**
 * The node's own services, which the manager never gives a listener (with them it could reach
 * other listeners' events and keys, or start and stop its siblings): `make` refuses, at compile
 * time, a `run` that asks for one.
 */
export type NodeOnly = EventStorage | EventLog | ValidatorStatusControl | ListenerRegistry

/** What a listener needs beyond what the manager gives it: its `R`, which `ListenerRegistry.register` resolves. */
export type Requirements<L extends Listener<unknown, unknown>> = Exclude<Effect.Effect.Context<L["run"]>, Provided>

/** A listener definition, as written by its author. `R` is what it needs beyond what the manager gives. */
export interface Listener<E = unknown, R = never> {
  readonly name: string
  readonly run: Effect.Effect<void, E, Provided | R>
  readonly onFailure: FailurePolicy
  readonly backoff: Backoff
}

/** A restart backoff the manager cannot use. */
export class InvalidBackoff extends Data.TaggedError("InvalidBackoff")<{
  readonly listener: string
  readonly reason: string
}> {
  override get message() {
    return `listener "${this.listener}" has an invalid backoff: ${this.reason}`
  }
}

/** Why `backoff` cannot be used, or `undefined`. */
const backoffProblem = ({ initial, max, resetAfter }: Backoff): string | undefined => {
  if (!Duration.isFinite(initial) || Duration.toMillis(initial) <= 0) {
    return `initial ${Duration.format(initial)} must be finite and above 0 (at 0 a failing listener restarts in a busy loop)`
  }
  if (!Duration.isFinite(max) || Duration.lessThan(max, initial)) {
    return `max ${Duration.format(max)} must be finite and at least initial ${Duration.format(initial)}`
  }
  if (Duration.toMillis(resetAfter) <= 0) return `resetAfter ${Duration.format(resetAfter)} must be above 0`
  return undefined
}

/** A type error naming the node-only services `R` asks for (see `NodeOnly`), else nothing. */
type NoNodeOnly<R> = [Extract<R, NodeOnly>] extends [never] ? unknown
  : { readonly "a listener is never given the node's own services": Extract<R, NodeOnly> }

/**
 * Defines a listener. `run` is interrupted when the node stops being a synced validator; its
 * `Scope` closes on every stop, so resources acquired in it are always released. Throws
 * `InvalidBackoff` for a backoff whose first delay is not above 0, or whose cap is below it.
 */
export const make = <E, R>(
  name: string,
  run: Effect.Effect<void, E, R> & NoNodeOnly<R>,
  options: Options = {}
): Listener<E, Exclude<R, Provided>> => {
  const backoff = { ...defaultBackoff, ...options.backoff }
  const problem = backoffProblem(backoff)
  if (problem !== undefined) throw new InvalidBackoff({ listener: name, reason: problem })
  return {
    name,
    run: run as Effect.Effect<void, E, Provided | Exclude<R, Provided>>,
    onFailure: options.onFailure ?? "restart",
    backoff
  }
}
