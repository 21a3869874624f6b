/**
 * `credit_account`: a deposit seen on an outside chain, credited to an account once the network
 * confirms it. The `eth_deposits` listener broadcasts it; its resolution writes `accounts`.
 *
 * The body is the ABI encoding (viem's `encodeAbiParameters`, written by hand here) of
 * `(uint256 chainId, address account, uint256 amount, bytes32 txHash, uint32 logIndex)`. The log
 * index is part of the body (the original left it out, so two equal `Credit` logs in one
 * transaction collapsed into one credit), and so is the chain id.
 * Decoding accepts only the canonical 160-byte encoding: two different bodies never decode to the
 * same deposit, so one deposit cannot be credited twice under two ids.
 *
 * Accounts are keyed by the lower-case hex address (whatever the chain); balances are uint256
 * decimal strings.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import { encodeAbiParameters, hexToBytes, isAddress } from "viem"
import * as EventType from "../events/EventType.js"
import * as Resolution from "../voting/Resolution.js"
import * as TxSql from "../voting/TxSql.js"

const Address = Schema.TemplateLiteral("0x", Schema.String).pipe(
  Schema.filter((s) => isAddress(s, { strict: false }) || "expected a 20-byte hex address")
)
const Hash = Schema.TemplateLiteral("0x", Schema.String).pipe(
  Schema.filter((s) => /^0x[0-9a-fA-F]{64}$/.test(s) || "expected a 32-byte hex hash")
)

/** A deposit: `amount` (base units) credited to `account`, observed in log `logIndex` of `txHash` on `chainId`. */
export const Payload = Schema.Struct({
  chainId: Schema.BigIntFromSelf,
  account: Address,
  amount: Schema.BigIntFromSelf,
  txHash: Hash,
  logIndex: Schema.Int.pipe(Schema.between(0, 0xffff_ffff))
})
export type Payload = typeof Payload.Type

/** The ABI parameters of a body, in order. */
export const abi = [
  { name: "chainId", type: "uint256" },
  { name: "account", type: "address" },
  { name: "amount", type: "uint256" },
  { name: "txHash", type: "bytes32" },
  { name: "logIndex", type: "uint32" }
] as const

const validatePayload = Schema.validateEither(Payload)

/**
 * Why `bytes` is not a canonical body, or `undefined` when it is one: any 160 bytes with zero
 * padding in the address and log index words decode (every uint256, bytes32 and uint32 value is
 * valid).
 */
const bodyProblem = (bytes: Uint8Array): string | undefined => {
  if (bytes.length !== 160) return `expected 160 bytes, got ${bytes.length}`
  for (let i = 32; i < 44; i++) if (bytes[i] !== 0) return "the account word has non-zero padding"
  for (let i = 128; i < 156; i++) if (bytes[i] !== 0) return "the logIndex word exceeds uint32"
  return undefined
}

/** The decode failure's text for a body that is not canonical. */
const notCanonical = (problem: string) => `not a canonical credit_account body: ${problem}`

/**
 * Decodes the five static words of the ABI encoding directly. Same result as viem's
 * `decodeAbiParameters(abi, bytes)` (the tests check it), but strict (exactly 160 bytes, zero
 * padding: one deposit has one body) and about 50x faster, which matters when a block resolves
 * thousands of deposits.
 */
const decodeWords = (bytes: Uint8Array): Payload | string => {
  const problem = bodyProblem(bytes)
  if (problem !== undefined) return problem
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex")
  // Word n is hex[64n, 64n + 64). No helper closure: under tsx every closure made on a hot path
  // costs a `defineProperty` (esbuild's keepNames), a visible share of a catch-up's profile.
  return {
    chainId: BigInt(`0x${hex.slice(0, 64)}`),
    account: `0x${hex.slice(64 + 24, 128)}`,
    amount: BigInt(`0x${hex.slice(128, 192)}`),
    txHash: `0x${hex.slice(192, 256)}`,
    logIndex: Number.parseInt(hex.slice(256 + 56, 320), 16)
  }
}

const UINT256_MAX = (1n << 256n) - 1n
const lowerAddress = /^0x[0-9a-f]{40}$/
const mixedAddress = /^0x[0-9a-fA-F]{40}$/
const hash32 = /^0x[0-9a-fA-F]{64}$/

/** A uint256 as 64 hex digits, or `undefined` outside `[0, 2^256 - 1]`. */
const uintWord = (n: unknown): string | undefined =>
  typeof n === "bigint" && n >= 0n && n <= UINT256_MAX ? n.toString(16).padStart(64, "0") : undefined

/**
 * The ABI encoding of a payload written directly: five static words (chainId, the address
 * left-padded, amount, txHash, logIndex). Same bytes as viem's `encodeAbiParameters(abi, ...)`
 * (the tests check it), about 20x faster. `undefined` when the payload is not plainly valid
 * (out-of-range numbers, a bad address or hash, a wrong-checksum mixed-case address): the caller
 * then takes the full path (Schema validation and viem), which names the problem as before.
 */
const encodeWords = (payload: Payload): Uint8Array | undefined => {
  const chainId = uintWord(payload.chainId)
  const amount = uintWord(payload.amount)
  const { account, txHash, logIndex } = payload
  if (chainId === undefined || amount === undefined) return undefined
  if (typeof account !== "string" || typeof txHash !== "string" || !hash32.test(txHash)) return undefined
  if (!Number.isInteger(logIndex) || logIndex < 0 || logIndex > 0xffff_ffff) return undefined
  // viem's encoder checks the checksum of a mixed-case address (strict `isAddress`).
  if (!lowerAddress.test(account) && !(mixedAddress.test(account) && isAddress(account))) return undefined
  const hex = chainId + "000000000000000000000000" + account.slice(2) + amount + txHash.slice(2) +
    logIndex.toString(16).padStart(64, "0")
  // Written into a slice of Node's Buffer pool and returned as a plain view of it: a fresh
  // `Uint8Array` seen through a `Buffer` must materialize its `.buffer`, which cost twice as much.
  const bytes = Buffer.allocUnsafe(160)
  if (bytes.write(hex, "hex") !== 160) return undefined
  return new Uint8Array(bytes.buffer, bytes.byteOffset, 160)
}

/** `Uint8Array <-> Payload` through the canonical ABI encoding. */
export const PayloadFromBytes: Schema.Schema<Payload, Uint8Array> = Schema.transformOrFail(
  Schema.Uint8ArrayFromSelf,
  // A plain shape check on this side: `decodeWords` builds only valid payloads, and `encode`
  // validates against `Payload` in full (it is the slow part of a decode).
  Schema.declare(
    (u: unknown): u is Payload =>
      typeof u === "object" && u !== null && "chainId" in u && "account" in u && "amount" in u &&
      "txHash" in u && "logIndex" in u,
    { identifier: "CreditAccountPayload" }
  ),
  {
    strict: true,
    decode: (bytes, _, ast) => {
      const payload = decodeWords(bytes)
      return typeof payload === "string"
        ? ParseResult.fail(new ParseResult.Type(ast, bytes, notCanonical(payload)))
        : ParseResult.succeed(payload)
    },
    encode: (payload, _, ast) => {
      const fast = encodeWords(payload)
      if (fast !== undefined) return ParseResult.succeed(fast)
      // Not a plainly valid payload: the full validation and viem name the problem.
      const valid = validatePayload(payload)
      if (Either.isLeft(valid)) return ParseResult.fail(valid.left.issue)
      try {
        return ParseResult.succeed(
          hexToBytes(
            encodeAbiParameters(abi, [payload.chainId, payload.account, payload.amount, payload.txHash, payload.logIndex])
          )
        )
      } catch (cause) {
        return ParseResult.fail(
          new ParseResult.Type(ast, payload, `cannot ABI-encode a credit_account payload: ${errorText(cause)}`)
        )
      }
    }
  }
)

/**
 * The `credit_account` event type, shared by the listener that broadcasts and the resolution.
 * Raw bodies are checked by their bytes (`accepts`), not decoded: a catch-up stores thousands,
 * and decoding them only to check them cost a 10,000-deposit catch-up about a tenth (12 catch-ups
 * each, side by side: 543 vs 613 ms, CPU 638 vs 702 ms).
 */
export const CreditAccount = EventType.make("credit_account", PayloadFromBytes, {
  accepts: (body) => {
    const problem = bodyProblem(body)
    return problem === undefined ? undefined : notCanonical(problem)
  }
})

/** A confirmed deposit whose amount is zero or negative: nothing is credited. */
export class InvalidCreditAmount extends Data.TaggedError("InvalidCreditAmount")<{
  readonly account: string
  readonly amount: bigint
  readonly txHash: string
  readonly logIndex: number
}> {
  override get message() {
    return `credit_account for ${this.account} (tx ${this.txHash}, log ${this.logIndex}) refused: ` +
      `amount ${this.amount} must be positive`
  }
}

/** A credit that would take a balance past 2^256-1: refused, the balance left as it was. */
export class BalanceOverflow extends Data.TaggedError("BalanceOverflow")<{
  readonly account: string
  readonly balance: bigint
  readonly amount: bigint
}> {
  override get message() {
    return `credit of ${this.amount} to ${this.account} refused: its balance ${this.balance} would pass 2^256-1 ` +
      `(balances are uint256, as on the chain the deposits come from)`
  }
}

const MAX_UINT256 = (1n << 256n) - 1n

/** `balance + amount` as stored text, or `BalanceOverflow` past 2^256-1. */
const credited = (key: string, balance: bigint, amount: bigint): Effect.Effect<string, BalanceOverflow> =>
  balance + amount > MAX_UINT256
    ? Effect.fail(new BalanceOverflow({ account: key, balance, amount }))
    : Effect.succeed((balance + amount).toString())

/** The key of an address in `accounts`. */
export const accountKey = (account: string): string => account.toLowerCase()

/**
 * The balance this process last wrote for each account key: a hint, never trusted. A credit with a
 * hint is one compare-and-set `UPDATE ... WHERE balance = hint`; it changes a row only if the
 * stored balance is the hint, so the result is always stored + amount, whatever the hint (stale
 * after a rollback, or from another database in this process). Without a hint, or when the
 * compare fails, the balance is read. In a block crediting the same accounts many times this
 * saves most reads. Cleared when it grows past `HINTS_MAX` entries.
 */
const hints = new Map<string, string>()
const HINTS_MAX = 100_000

const remember = (key: string, balance: string): void => {
  if (hints.size >= HINTS_MAX && !hints.has(key)) hints.clear()
  hints.set(key, balance)
}

const compareAndSet = "UPDATE accounts SET balance = ? WHERE identifier = ? AND balance = ?"
const selectBalance = "SELECT balance FROM accounts WHERE identifier = ?"
const upsertBalance =
  "INSERT INTO accounts (identifier, balance) VALUES (?, ?) ON CONFLICT (identifier) DO UPDATE SET balance = excluded.balance"

/** Reads the stored balance and writes balance + amount (an account never credited holds 0). */
const readAndCredit = (key: string, amount: bigint): Effect.Effect<void, SqlError | BalanceOverflow, SqlClient.SqlClient> =>
  Effect.flatMap(TxSql.query<{ balance: string }>(selectBalance, [key]), (rows) =>
    Effect.flatMap(credited(key, rows[0] === undefined ? 0n : BigInt(rows[0].balance), amount), (balance) =>
      Effect.map(TxSql.run(upsertBalance, [key, balance]), () => remember(key, balance))))

/**
 * Adds `amount` to `account`'s balance, creating the account; runs in the caller's transaction.
 * A balance past 2^256-1 is refused (`BalanceOverflow`), nothing written.
 */
export const credit = (
  account: string,
  amount: bigint
): Effect.Effect<void, SqlError | BalanceOverflow, SqlClient.SqlClient> => {
  const key = accountKey(account)
  const hint = hints.get(key)
  // Past the cap, the stored balance decides (the hint may be stale).
  if (hint === undefined || BigInt(hint) + amount > MAX_UINT256) return readAndCredit(key, amount)
  const balance = (BigInt(hint) + amount).toString()
  return Effect.flatMap(
    TxSql.changes(compareAndSet, [balance, key, hint]),
    (changed) => changed === 1 ? Effect.sync(() => remember(key, balance)) : readAndCredit(key, amount)
  )
}

/** The stored balance of each key of a JSON array, by its position in the array. */
const selectBalances =
  "SELECT j.key AS position, a.balance AS balance FROM json_each(?) j JOIN accounts a ON a.identifier = j.value"
// `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a join.
const upsertBalances = "INSERT INTO accounts (identifier, balance) " +
  "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?) WHERE true " +
  "ON CONFLICT (identifier) DO UPDATE SET balance = excluded.balance"

/**
 * Adds each amount to its account, as `credit` on each pair in turn would (creating accounts
 * never credited), and refreshes the balance hints. Any number of credits costs two statements
 * (none for no credits): one read of the accounts' balances and one upsert of their sums, the
 * keys going as JSON text. Stored balances are matched to keys by their position in that text, not
 * by the identifier read back, which for a key that is not well-formed Unicode (a lone surrogate)
 * is not the same JavaScript string. Runs in the caller's transaction. A balance past 2^256-1 fails
 * the whole call (`BalanceOverflow`), nothing written.
 */
export const creditAll = (
  credits: ReadonlyArray<{ readonly account: string; readonly amount: bigint }>
): Effect.Effect<void, SqlError | BalanceOverflow, SqlClient.SqlClient> => {
  const sums = new Map<string, bigint>()
  for (const { account, amount } of credits) {
    const key = accountKey(account)
    sums.set(key, (sums.get(key) ?? 0n) + amount)
  }
  if (sums.size === 0) return Effect.void
  const keys = [...sums.keys()]
  return Effect.flatMap(
    TxSql.query<{ position: number; balance: string }>(selectBalances, [JSON.stringify(keys)]),
    (rows): Effect.Effect<void, SqlError | BalanceOverflow, SqlClient.SqlClient> => {
      for (const row of rows) {
        const key = keys[row.position]!
        sums.set(key, sums.get(key)! + BigInt(row.balance))
      }
      for (const [key, sum] of sums) {
        if (sum > MAX_UINT256) {
          const stored = rows.find((r) => keys[r.position] === key)
          const balance = stored === undefined ? 0n : BigInt(stored.balance)
          return Effect.fail(new BalanceOverflow({ account: key, balance, amount: sum - balance }))
        }
      }
      const balances = Array.from(sums, ([key, sum]) => [key, sum.toString()] as const)
      return Effect.map(TxSql.run(upsertBalances, [JSON.stringify(balances)]), () => {
        for (const [key, balance] of balances) remember(key, balance)
      })
    }
  )
}

/** A deposit of zero or less, refused. */
const invalidAmount = (payload: Payload) =>
  new InvalidCreditAmount({
    account: payload.account,
    amount: payload.amount,
    txHash: payload.txHash,
    logIndex: payload.logIndex
  })

/**
 * The resolution: 2/3 to confirm, 1/3 to refund, expiry after 600 blocks (Kwil's values). A group
 * of deposits confirmed together is credited by `creditAll` (two statements), and fails as a whole
 * on the first refused amount, which the vote ledger then finds by crediting the group one by one.
 */
export const creditAccount = Resolution.make({
  type: CreditAccount,
  confirmationThreshold: Resolution.fraction(2, 3),
  refundThreshold: Resolution.fraction(1, 3),
  expirationPeriod: 600,
  resolve: (payload: Payload): Effect.Effect<void, InvalidCreditAmount | BalanceOverflow | SqlError, SqlClient.SqlClient> =>
    payload.amount <= 0n ? invalidAmount(payload) : credit(payload.account, payload.amount),
  resolveAll: (items): Effect.Effect<void, InvalidCreditAmount | BalanceOverflow | SqlError, SqlClient.SqlClient> => {
    const refused = items.find(({ payload }) => payload.amount <= 0n)
    return refused === undefined ? creditAll(items.map(({ payload }) => payload)) : invalidAmount(refused.payload)
  }
})

/** `account`'s balance; 0 for an account never credited. */
export const balanceOf = (account: string): Effect.Effect<bigint, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ balance: string }>`SELECT balance FROM accounts WHERE identifier = ${accountKey(account)}`).pipe(
      Effect.map((rows) => (rows[0] === undefined ? 0n : BigInt(rows[0].balance)))
    )

/** Every account and its balance, sorted by identifier. */
export const balances: Effect.Effect<
  ReadonlyArray<{ readonly identifier: string; readonly balance: bigint }>,
  SqlError,
  SqlClient.SqlClient
> = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ identifier: string; balance: string }>`SELECT identifier, balance FROM accounts ORDER BY identifier`).pipe(
    Effect.map((rows) => rows.map((r) => ({ identifier: r.identifier, balance: BigInt(r.balance) })))
  )

const errorText = (cause: unknown): string => (cause instanceof Error ? cause.message.split("\n")[0]! : String(cause))
