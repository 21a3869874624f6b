/**
 * The devnet's settings, as the `devnet` command's flags give them, with their defaults and the
 * checks that turn a bad value into one clear line.
 */
import { Data, Duration } from "effect"

/** One validator leaving the validator set and coming back, to show listeners stopping and resuming. */
export interface SeatChange {
  /** Index of the validator that loses its seat. */
  readonly validator: number
  /** The block that removes it from the validator set. */
  readonly loseAt: bigint
  /** The block that puts it back. */
  readonly regainAt: bigint
}

export interface DevnetConfig {
  /** Validators in the network (each its own node and database). Default 4. */
  readonly validators: number
  /** Deposits to send and see credited. Default 10. */
  readonly deposits: number
  /** Time between devnet blocks; an Ethereum block is mined with each. Default 500 ms. */
  readonly blockTime: Duration.Duration
  /** `required_confirmations` of the validators' `eth_deposits` listeners. Default 2. */
  readonly confirmations: number
  /** Keep the databases here (default: a temp dir removed at exit). */
  readonly dataDir?: string
  /** Keep producing blocks (and a deposit now and then) until interrupted. */
  readonly follow: boolean
  /** Without `follow`: fail if not every deposit is credited within this many blocks. Default 200. */
  readonly maxBlocks: number
  /** The seat change to show; `undefined` for the default one, `false` for none. */
  readonly seatChange?: SeatChange | false
}

export const defaults: DevnetConfig = {
  validators: 4,
  deposits: 10,
  blockTime: Duration.millis(500),
  confirmations: 2,
  follow: false,
  maxBlocks: 200
}

/** A devnet setting that cannot work. */
export class InvalidDevnetConfig extends Data.TaggedError("InvalidDevnetConfig")<{
  /** The setting, as the `devnet` command spells it (`--validators`), or `seatChange`. */
  readonly setting: string
  readonly reason: string
}> {
  override get message() {
    return `${this.setting}: ${this.reason}`
  }
}

/**
 * The default seat change: the last validator loses its seat at block 4 and regains it at block
 * 12 (none with a single validator: the network would have nobody left to propose).
 */
export const seatChangeOf = (config: DevnetConfig): SeatChange | undefined => {
  if (config.seatChange === false) return undefined
  if (config.seatChange !== undefined) return config.seatChange
  return config.validators < 2 ? undefined : { validator: config.validators - 1, loseAt: 4n, regainAt: 12n }
}

/** Checks `config`; the first bad value is the error. */
export const validate = (config: DevnetConfig): InvalidDevnetConfig | undefined => {
  const whole = (n: number) => Number.isInteger(n)
  if (!whole(config.validators) || config.validators < 1 || config.validators > 32) {
    return new InvalidDevnetConfig({ setting: "--validators", reason: `${config.validators} must be a whole number from 1 to 32` })
  }
  if (!whole(config.deposits) || config.deposits < 0 || config.deposits > 1000) {
    return new InvalidDevnetConfig({ setting: "--deposits", reason: `${config.deposits} must be a whole number from 0 to 1000` })
  }
  if (Duration.lessThan(config.blockTime, Duration.millis(20))) {
    return new InvalidDevnetConfig({ setting: "--block-time", reason: `${Duration.format(config.blockTime)} is below 20ms` })
  }
  if (!whole(config.confirmations) || config.confirmations < 0 || config.confirmations > 64) {
    return new InvalidDevnetConfig({
      setting: "--confirmations",
      reason: `${config.confirmations} must be a whole number from 0 to 64`
    })
  }
  if (!whole(config.maxBlocks) || config.maxBlocks < 1) {
    return new InvalidDevnetConfig({ setting: "--max-blocks", reason: `${config.maxBlocks} must be a whole number of at least 1` })
  }
  const seat = seatChangeOf(config)
  if (
    seat !== undefined &&
    (seat.validator < 0 || seat.validator >= config.validators || seat.regainAt <= seat.loseAt || config.validators < 2)
  ) {
    return new InvalidDevnetConfig({
      setting: "seatChange",
      reason: `validator ${seat.validator} losing its seat at ${seat.loseAt} and regaining it at ${seat.regainAt} is not possible` +
        (config.validators < 2 ? " (nobody would be left to propose)" : "")
    })
  }
  if (!config.follow) {
    // Each block mines one Ethereum block: a deposit is credited no sooner than its confirmations
    // in blocks (however fast the deposits were sent), and the run also waits for the seat to come
    // back. Fewer blocks than that can only end in `DevnetTimeout`.
    const needs: Array<{ readonly blocks: number; readonly why: string }> = []
    if (config.deposits > 0) {
      needs.push({ blocks: config.confirmations, why: `a deposit's ${config.confirmations} confirmations` })
    }
    if (seat !== undefined) {
      needs.push({ blocks: Number(seat.regainAt) + 1, why: `the seat given back at block ${seat.regainAt}` })
    }
    const most = needs.reduce((a, b) => (b.blocks > a.blocks ? b : a), { blocks: 1, why: "" })
    if (config.maxBlocks < most.blocks) {
      return new InvalidDevnetConfig({
        setting: "--max-blocks",
        reason: `${config.maxBlocks} is too few: at least ${most.blocks} blocks are needed for ${most.why}`
      })
    }
  }
  return undefined
}

/**
 * Parses a block time like `500ms`, `1s`, `1.5s` or `250 millis`; a bare number is milliseconds.
 */
export const parseBlockTime = (text: string): Duration.Duration | undefined => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|millis|milliseconds?|s|secs?|seconds?)?\s*$/i.exec(text)
  if (match === null) return undefined
  const value = Number(match[1])
  const unit = (match[2] ?? "ms").toLowerCase()
  return unit.startsWith("s") ? Duration.millis(Math.round(value * 1000)) : Duration.millis(Math.round(value))
}
