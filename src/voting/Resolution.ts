/**
 * A resolution type: how the network votes on, and applies, events of one `EventType`.
 * Every node runs `resolve` in its block transaction, so it must be deterministic.
 */
import type { SqlClient } from "@effect/sql"
import { Data, type Effect } from "effect"
import type { EventId } from "../events/EventId.js"
import type { EventType } from "../events/EventType.js"

/** An exact, non-negative fraction of the total validator power (bigint, no rounding until `requiredPower`). */
export interface Fraction {
  readonly numerator: bigint
  readonly denominator: bigint
}

/** A threshold or period that cannot be used. */
export class InvalidResolution extends Data.TaggedError("InvalidResolution")<{
  readonly type: string
  readonly reason: string
}> {
  override get message() {
    return `resolution "${this.type}" is invalid: ${this.reason}`
  }
}

/** Why `threshold` is not a fraction of at most 1, or `undefined`. */
const thresholdProblem = (threshold: Fraction): string | undefined => {
  const { denominator: d, numerator: n } = threshold
  if (typeof n !== "bigint" || typeof d !== "bigint") return "its numerator and denominator must be bigints"
  if (d <= 0n) return `${n}/${d}: the denominator must be positive`
  if (n < 0n) return `${n}/${d}: the numerator must not be negative`
  if (n > d) return `${n}/${d}: a threshold cannot exceed 1`
  return undefined
}

/** `numerator / denominator`; throws on a zero denominator, a negative part or a value over 1. */
export const fraction = (numerator: bigint | number, denominator: bigint | number): Fraction => {
  const threshold = { numerator: BigInt(numerator), denominator: BigInt(denominator) }
  const problem = thresholdProblem(threshold)
  if (problem !== undefined) throw new RangeError(`fraction ${problem}`)
  return threshold
}

/** The power needed to reach `threshold` of `total`: `ceil(total * numerator / denominator)`. */
export const requiredPower = (total: bigint, threshold: Fraction): bigint => {
  const product = total * threshold.numerator
  const quotient = product / threshold.denominator
  return product % threshold.denominator === 0n ? quotient : quotient + 1n
}

/** What `resolve` learns about the resolution it applies. */
export interface ResolveContext {
  readonly id: EventId
  /** The block height being finalized. */
  readonly height: bigint
  /** The validator that proposed the event's body. */
  readonly proposer: string
  /** The identities that voted for it, in a stable order. */
  readonly voters: ReadonlyArray<string>
  readonly approvedPower: bigint
}

/** One confirmed resolution of a run, as `resolveAll` gets it. */
export interface Resolving<A> {
  readonly payload: A
  readonly context: ResolveContext
}

export interface Resolution<A, E = unknown> {
  readonly type: EventType<A, any>
  /** Power needed to confirm, as a fraction of the total (default 2/3). */
  readonly confirmationThreshold: Fraction
  /** Power an expired resolution needed for its voters to be refunded (default 1/1). */
  readonly refundThreshold: Fraction
  /** Blocks from creation to expiry (default 14,400). */
  readonly expirationPeriod: bigint
  /** Applies a confirmed resolution inside the node's SQL transaction; must be deterministic. */
  readonly resolve: (payload: A, context: ResolveContext) => Effect.Effect<void, E, SqlClient.SqlClient>
  /**
   * Optional, for types confirmed by the thousand in a block, where one `resolve` per resolution
   * costs a few statements and Effect steps each: applies several confirmed resolutions of this
   * type at once, in id order. The vote ledger calls it for each group of two or more of them
   * that are consecutive in id order within one optimistic run of 256 (a group ends at another
   * type and at a run's end; a lone one goes to `resolve`).
   *
   * Contract: when every one of them would succeed, it leaves the database exactly as `resolve`
   * on each in turn would; when any one would fail, it fails. Its error (or defect) is then
   * dropped: the ledger rolls back what it wrote and applies that group one `resolve` and one
   * savepoint at a time, which finds the failing ones, records their own errors and undoes only
   * their writes. Being interrupted aborts the block, as for `resolve`. Must be deterministic.
   */
  readonly resolveAll?: (items: ReadonlyArray<Resolving<A>>) => Effect.Effect<void, E, SqlClient.SqlClient>
}

/** Any resolution, whatever its payload. */
export type AnyResolution = Resolution<any, any>

export const defaults = {
  confirmationThreshold: fraction(2, 3),
  refundThreshold: fraction(1, 1),
  expirationPeriod: 14_400n
} as const

/**
 * The longest expiration period: a resolution's expiry height (`height + period`) is stored as a
 * SQLite integer, and stays within its 64 bits for every height below 2^62.
 */
export const maxExpirationPeriod = 1n << 62n

/**
 * Defines a resolution type; omitted thresholds and period take Kwil's defaults. Throws
 * `InvalidResolution` for a threshold that is not a fraction of at most 1 (one built by hand,
 * not by `fraction`) or a period that is not a whole number of blocks from 1 to
 * `maxExpirationPeriod`: every node would otherwise fail (or confirm wrongly) at its first block.
 */
export const make = <A, E>(options: {
  readonly type: EventType<A, any>
  readonly confirmationThreshold?: Fraction
  readonly refundThreshold?: Fraction
  readonly expirationPeriod?: bigint | number
  readonly resolve: (payload: A, context: ResolveContext) => Effect.Effect<void, E, SqlClient.SqlClient>
  readonly resolveAll?: (items: ReadonlyArray<Resolving<A>>) => Effect.Effect<void, E, SqlClient.SqlClient>
}): Resolution<A, E> => {
  const invalid = (reason: string) => new InvalidResolution({ type: options.type.name, reason })
  const period = options.expirationPeriod ?? defaults.expirationPeriod
  if (typeof period === "number" && !Number.isSafeInteger(period)) {
    throw invalid(`expiration period ${period} must be a whole number of blocks`)
  }
  const expirationPeriod = BigInt(period)
  if (expirationPeriod <= 0n || expirationPeriod > maxExpirationPeriod) {
    throw invalid(`expiration period ${expirationPeriod} must be from 1 to ${maxExpirationPeriod} blocks`)
  }
  const confirmationThreshold = options.confirmationThreshold ?? defaults.confirmationThreshold
  const refundThreshold = options.refundThreshold ?? defaults.refundThreshold
  for (const [name, threshold] of [["confirmation", confirmationThreshold], ["refund", refundThreshold]] as const) {
    const problem = thresholdProblem(threshold)
    if (problem !== undefined) throw invalid(`${name} threshold ${problem} (build it with \`fraction\`)`)
  }
  return {
    type: options.type,
    confirmationThreshold,
    refundThreshold,
    expirationPeriod,
    resolve: options.resolve,
    ...(options.resolveAll === undefined ? {} : { resolveAll: options.resolveAll })
  }
}
