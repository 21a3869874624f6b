/**
 * The adaptive `eth_getLogs` range, as a pure policy: how many blocks the next request spans.
 * It starts at `initial` blocks; on a refusal it takes the provider's number (a hard `Limit` also
 * becomes a ceiling it never grows past) or halves, down to one block; after each success it grows
 * by `growth` up to `max`. Ranges are inclusive: `[from, from + size - 1]`, and the next one
 * starts at `to + 1`, so no block is fetched twice (and an N-block cap is never asked N+1 blocks).
 */
import { Option } from "effect"
import type { RangeHint } from "./errors.js"

/** The knobs of the policy. */
export interface Policy {
  /** Blocks in the first request (default 1000). */
  readonly initial: number
  /** Never more blocks than this in one request (the listener's chunk size; default 10,000). */
  readonly max: number
  /** The factor the size grows by after a success (default 1.25: slow, to avoid refusal loops). */
  readonly growth: number
}

export const defaultPolicy: Policy = { initial: 1000, max: 10_000, growth: 1.25 }

/** The policy's memory between requests. */
export interface State {
  /** Blocks in the next request. */
  readonly size: number
  /** The provider's stated hard cap, once it told us one. */
  readonly ceiling: number | undefined
}

/** Normalises a partial policy: integers, `1 <= initial <= max`, `growth > 1`. */
export const policy = (options: Partial<Policy> = {}): Policy => {
  const max = Math.max(1, Math.floor(options.max ?? defaultPolicy.max))
  const initial = Math.min(max, Math.max(1, Math.floor(options.initial ?? defaultPolicy.initial)))
  const growth = Math.max(1.01, options.growth ?? defaultPolicy.growth)
  return { initial, max, growth }
}

export const initial = (p: Policy): State => ({ size: p.initial, ceiling: undefined })

/** The inclusive end of the next request from `from`, never past `limit` (the confirmed head). */
export const end = (state: State, from: bigint, limit: bigint): bigint => {
  const to = from + BigInt(state.size) - 1n
  return to < limit ? to : limit
}

/** The inclusive count of blocks in `[from, to]`. */
export const span = (from: bigint, to: bigint): number => Number(to - from + 1n)

/** After a success: grow by the factor (at least one block), capped by `max` and the ceiling. */
export const succeeded = (p: Policy, state: State): State => {
  const cap = Math.min(p.max, state.ceiling ?? p.max)
  const grown = Math.max(state.size + 1, Math.floor(state.size * p.growth))
  return { ...state, size: Math.min(cap, grown) }
}

/**
 * After the provider refused a request of `requested` blocks: the state for the next try, or
 * `none` when the request was already a single block (nothing left to shrink).
 */
export const refused = (state: State, requested: number, hint: RangeHint): Option.Option<State> => {
  if (requested <= 1) return Option.none()
  const half = Math.max(1, Math.floor(requested / 2))
  switch (hint._tag) {
    case "Limit": {
      // A cap we already obeyed yet were refused: the cap is not the whole story, halve.
      const size = hint.blocks < requested ? hint.blocks : half
      const ceiling = Math.min(hint.blocks, state.ceiling ?? Infinity)
      return Option.some({ size, ceiling })
    }
    case "Suggested":
      return Option.some({ ...state, size: hint.blocks < requested ? hint.blocks : half })
    case "Shrink":
      return Option.some({ ...state, size: half })
  }
}
