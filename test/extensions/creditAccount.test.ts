import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, FastCheck as fc } from "effect"
import { bytesToHex, decodeAbiParameters, encodeAbiParameters, getAddress, hexToBytes } from "viem"
import * as EventId from "../../src/events/EventId.js"
import {
  abi,
  balanceOf,
  balances,
  credit,
  creditAccount,
  creditAll,
  CreditAccount,
  type Payload
} from "../../src/extensions/creditAccount.js"
import { VoteLedger } from "../../src/voting/VoteLedger.js"
import { makeNode, runBlock, type TestNode, validators } from "../voting/harness.js"

const alice = "0x00000000000000000000000000000000000a11ce"
const bob = "0x0000000000000000000000000000000000000b0b"
const txHash = (n: number) => `0x${n.toString(16).padStart(64, "0")}` as const

const deposit = (account: `0x${string}`, amount: bigint, n: number, logIndex = 0): Payload => ({
  chainId: 1n,
  account,
  amount,
  txHash: txHash(n),
  logIndex
})

const body = (payload: Payload) => Effect.map(CreditAccount.encode(payload), (bytes) => ({ type: CreditAccount.name, body: bytes }))

/** Proposes `bodies` at `height` (by A) and confirms them with B's and C's votes at `height + 1`. */
const confirm = (node: TestNode, height: bigint, bodies: ReadonlyArray<{ type: string; body: Uint8Array }>) =>
  Effect.gen(function*() {
    const ids = bodies.map((b) => EventId.make(b.type, b.body))
    yield* node.run(runBlock({ height, proposer: "A", validators: validators("A", "B", "C", "D"), bodies }))
    return yield* node.run(runBlock({
      height: height + 1n,
      proposer: "A",
      votes: [{ sender: "B", ids }, { sender: "C", ids }]
    }))
  })

/** `credit` of each, in order. */
const oneCreditAtATime = (credits: ReadonlyArray<{ readonly account: string; readonly amount: bigint }>) =>
  Effect.forEach(credits, (c) => credit(c.account, c.amount), { discard: true })

/**
 * The `accounts` rows of a fresh node, exactly as stored (SQLite's `quote` of each column), after
 * `credited` (one `credit` each) and then `apply` in one transaction.
 */
const accountsAfter = (
  credited: ReadonlyArray<{ readonly account: string; readonly amount: bigint }>,
  apply: Effect.Effect<void, unknown, SqlClient.SqlClient>
) =>
  Effect.scoped(Effect.gen(function*() {
    const node = yield* makeNode("A")
    return yield* node.run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* oneCreditAtATime(credited)
      yield* sql.withTransaction(apply)
      const rows = yield* sql<{ row: string }>`
        SELECT quote(identifier) || ',' || quote(balance) AS row FROM accounts ORDER BY identifier`
      return rows.map((r) => r.row)
    }))
  }))

describe("credit_account payload", () => {
  it.effect.prop(
    "round-trips through its ABI bytes",
    [fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }), fc.nat()],
    ([chainId, amount, logIndex]) =>
      Effect.gen(function*() {
        const payload: Payload = { chainId, account: alice, amount, txHash: txHash(7), logIndex }
        const bytes = yield* CreditAccount.encode(payload)
        expect(bytes.length).toBe(160)
        expect(yield* CreditAccount.decode(bytes)).toEqual(payload)
        // The fast decoder agrees with viem's.
        const [c, a, m, h, l] = decodeAbiParameters(abi, bytes)
        expect({ chainId: c, account: a.toLowerCase(), amount: m, txHash: h, logIndex: l }).toEqual(payload)
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect.prop(
    "encodes to exactly viem's encodeAbiParameters bytes",
    [
      fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }),
      fc.uint8Array({ minLength: 20, maxLength: 20 }),
      fc.constantFrom("lower", "checksummed"),
      fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.integer({ min: 0, max: 0xffff_ffff })
    ],
    ([chainId, address, casing, amount, hash, logIndex]) =>
      Effect.gen(function*() {
        const lower = bytesToHex(address)
        const account = casing === "lower" ? lower : getAddress(lower)
        const payload: Payload = { chainId, account, amount, txHash: bytesToHex(hash), logIndex }
        const bytes = yield* CreditAccount.encode(payload)
        expect(bytes).toEqual(hexToBytes(encodeAbiParameters(abi, [chainId, account, amount, payload.txHash, logIndex])))
      }),
    { fastCheck: { numRuns: 200 } }
  )

  it.effect.prop(
    "checkAll (its byte check, used for raw bodies) accepts a body exactly when decode does",
    [
      fc.oneof(
        // Near-canonical bodies: 159 to 161 bytes, the padding bytes mostly zero.
        fc.tuple(fc.integer({ min: 159, max: 161 }), fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 161, maxLength: 161 }), fc.array(fc.boolean(), { minLength: 161, maxLength: 161 }))
          .map(([length, values, dirty]) =>
            Uint8Array.from({ length }, (_, i) => (i >= 32 && i < 44) || (i >= 128 && i < 156) ? (dirty[i] && values[i]! % 7 === 0 ? values[i]! : 0) : values[i]!)),
        fc.uint8Array({ maxLength: 200 })
      )
    ],
    ([bytes]) =>
      Effect.gen(function*() {
        const decoded = yield* Effect.either(CreditAccount.decode(bytes))
        const checked = yield* Effect.either(CreditAccount.checkAll([bytes]))
        expect(checked._tag).toBe(decoded._tag)
        if (checked._tag === "Left" && decoded._tag === "Left") {
          expect(checked.left).toMatchObject({ _tag: "PayloadCodecError", type: "credit_account", direction: "decode", index: 0 })
          // The same reason as the decode's.
          expect(decoded.left.message).toContain(String(checked.left.cause))
        }
      }),
    { fastCheck: { numRuns: 500 } }
  )

  it.effect("refuses bytes that are not a canonical encoding, and amounts a uint256 cannot hold", () =>
    Effect.gen(function*() {
      const good = yield* CreditAccount.encode(deposit(alice, 5n, 1))
      const bad = [
        new Uint8Array([1, 2, 3]),
        new Uint8Array([...good, 0]), // trailing byte
        Uint8Array.from(good, (x, i) => (i === 32 ? 0xff : x)), // dirty address padding
        Uint8Array.from(good, (x, i) => (i === 128 ? 0x01 : x)) // logIndex beyond uint32
      ]
      for (const bytes of bad) {
        const error = yield* Effect.flip(CreditAccount.decode(bytes))
        expect(error._tag).toBe("PayloadCodecError")
        expect(error.direction).toBe("decode")
      }
      const negative = yield* Effect.flip(CreditAccount.encode(deposit(alice, -1n, 1)))
      expect(negative).toMatchObject({ _tag: "PayloadCodecError", direction: "encode" })
      const tooLarge = yield* Effect.flip(CreditAccount.encode(deposit(alice, 1n << 256n, 1)))
      expect(tooLarge).toMatchObject({ _tag: "PayloadCodecError", direction: "encode" })
      const negativeChain = yield* Effect.flip(CreditAccount.encode({ ...deposit(alice, 1n, 1), chainId: -1n }))
      expect(negativeChain).toMatchObject({ _tag: "PayloadCodecError", direction: "encode" })
      const notAnAddress = yield* Effect.flip(CreditAccount.encode(deposit("0x1234", 1n, 1)))
      expect(notAnAddress._tag).toBe("PayloadCodecError")
      // A mixed-case address with a wrong checksum is refused, as viem's encoder refuses it.
      const badChecksum = yield* Effect.flip(
        CreditAccount.encode(deposit("0x52908400098527886E0F7030069857D2E4169Ee7", 1n, 1))
      )
      expect(badChecksum).toMatchObject({ _tag: "PayloadCodecError", direction: "encode" })
      const badLogIndex = yield* Effect.flip(CreditAccount.encode(deposit(alice, 1n, 1, 2 ** 32)))
      expect(badLogIndex).toMatchObject({ _tag: "PayloadCodecError", direction: "encode" })
      // The same ABI shape with a checksummed address decodes to the lower-case one.
      const checksummed = hexToBytes(encodeAbiParameters(
        [{ type: "uint256" }, { type: "address" }, { type: "uint256" }, { type: "bytes32" }, { type: "uint32" }],
        [1n, "0x52908400098527886E0F7030069857D2E4169EE7", 5n, txHash(1), 0]
      ))
      expect((yield* CreditAccount.decode(checksummed)).account).toBe("0x52908400098527886e0f7030069857d2e4169ee7")
    }))
})

describe("credit_account resolution", () => {
  it.scoped("adds up several deposits to one account, beyond int64", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const big = 10n ** 30n
      const bodies = yield* Effect.all([
        body(deposit(alice, 5n, 1)),
        body(deposit(alice, big, 2)),
        body(deposit(bob, 7n, 3))
      ])
      const outcome = yield* confirm(node, 1n, bodies)
      expect(outcome.resolved.length).toBe(3)
      const more = yield* confirm(node, 3n, [yield* body(deposit(alice, 11n, 4))])
      expect(more.resolved.length).toBe(1)
      expect(yield* node.run(balanceOf(alice))).toBe(big + 16n)
      expect(yield* node.run(balanceOf(alice.toUpperCase().replace("0X", "0x")))).toBe(big + 16n)
      expect(yield* node.run(balances)).toEqual([
        { identifier: bob, balance: 7n },
        { identifier: alice, balance: big + 16n }
      ])
    }))

  it.scoped("credits two equal deposits of one transaction twice (different log index)", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const bodies = yield* Effect.all([body(deposit(alice, 5n, 1, 0)), body(deposit(alice, 5n, 1, 1))])
      expect(EventId.make(bodies[0]!.type, bodies[0]!.body)).not.toBe(EventId.make(bodies[1]!.type, bodies[1]!.body))
      const outcome = yield* confirm(node, 1n, bodies)
      expect(outcome.resolved.length).toBe(2)
      expect(yield* node.run(balanceOf(alice))).toBe(10n)
    }))

  it.scoped("refuses a zero amount, crediting nothing for it alone; undecodable bytes never become a resolution", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const zero = yield* body(deposit(alice, 0n, 1))
      const garbage = { type: CreditAccount.name, body: new Uint8Array([9, 9, 9]) }
      const fine = yield* body(deposit(bob, 3n, 2))
      const outcome = yield* confirm(node, 1n, [zero, garbage, fine])
      expect(outcome.resolved).toEqual([EventId.make(fine.type, fine.body)])
      const tags = new Map(outcome.failures.map((f) => [f.id, (f.error as { _tag: string })._tag]))
      expect(tags).toEqual(new Map([[EventId.make(zero.type, zero.body), "InvalidCreditAmount"]]))
      expect(yield* node.run(balances)).toEqual([{ identifier: bob, balance: 3n }])
    }))

  it.scoped("refuses a credit that would take a balance past 2^256-1, leaving the balance as it was", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const max = (1n << 256n) - 1n
      const first = yield* confirm(node, 1n, [yield* body(deposit(alice, max - 1n, 1))])
      expect(first.resolved).toHaveLength(1)
      const over = [yield* body(deposit(alice, 1n, 2)), yield* body(deposit(alice, 1n, 3)), yield* body(deposit(bob, 4n, 4))]
      const outcome = yield* confirm(node, 3n, over)
      // The first +1 fits (to exactly 2^256-1); the second would pass it, so it alone fails.
      expect(outcome.failures.map((f) => (f.error as { _tag: string })._tag)).toEqual(["BalanceOverflow"])
      expect(outcome.resolved).toHaveLength(2)
      expect(yield* node.run(balances)).toEqual([{ identifier: bob, balance: 4n }, { identifier: alice, balance: max }])
      // The helpers themselves, in a transaction: refused, nothing written.
      const sqlRun = <A, E>(e: Effect.Effect<A, E, SqlClient.SqlClient>) =>
        node.run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(e)))
      expect(yield* Effect.flip(sqlRun(credit(alice, 1n)))).toMatchObject({ _tag: "BalanceOverflow", balance: max, amount: 1n })
      expect(yield* Effect.flip(sqlRun(creditAll([{ account: bob, amount: 1n }, { account: alice, amount: 2n }]))))
        .toMatchObject({ _tag: "BalanceOverflow", balance: max, amount: 2n })
      expect(yield* node.run(balances)).toEqual([{ identifier: bob, balance: 4n }, { identifier: alice, balance: max }])
    }))

  it.effect.prop(
    "creditAll leaves the accounts exactly as credit one by one does",
    [
      // Accounts already credited, then a run of credits over them and new ones (mixed case: one key).
      fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.bigInt({ min: 1n, max: 1n << 200n })), { maxLength: 4 }),
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 5 }), fc.boolean(), fc.bigInt({ min: 1n, max: 1n << 200n })),
        { maxLength: 40 }
      )
    ],
    ([before, run]) =>
      Effect.gen(function*() {
        const account = (k: number, upper = false) => {
          const hex = `a11ce${k}`.padStart(40, "0")
          return `0x${upper ? hex.toUpperCase() : hex}`
        }
        const credited = before.map(([k, amount]) => ({ account: account(k), amount }))
        const credits = run.map(([k, upper, amount]) => ({ account: account(k, upper), amount }))
        const oneByOne = yield* accountsAfter(credited, oneCreditAtATime(credits))
        const atOnce = yield* accountsAfter(credited, creditAll(credits))
        expect(atOnce).toEqual(oneByOne)
      }),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect("creditAll credits a key that does not read back as itself (a lone surrogate) as credit does", () =>
    Effect.gen(function*() {
      const odd = "acct-\ud800"
      const credits = [{ account: odd, amount: 2n }, { account: "acct-1", amount: 3n }, { account: odd, amount: 5n }]
      const before = [{ account: odd, amount: 7n }]
      const atOnce = yield* accountsAfter(before, creditAll(credits))
      expect(atOnce).toEqual(yield* accountsAfter(before, oneCreditAtATime(credits)))
      expect(atOnce.length).toBe(2)
    }))

  it.scoped("credits a block of many deposits, one refused among them, as one by one would", () =>
    Effect.gen(function*() {
      expect(creditAccount.resolveAll).toBeDefined()
      const node = yield* makeNode("A")
      const accounts = [alice, bob] as const
      const payloads = Array.from({ length: 600 }, (_, n) => deposit(accounts[n % 2]!, n === 300 ? 0n : BigInt(n + 1), n + 1))
      const bodies = yield* Effect.forEach(payloads, body)
      const outcome = yield* confirm(node, 1n, bodies)
      const refused = EventId.make(bodies[300]!.type, bodies[300]!.body)
      expect(outcome.failures.map((f) => [f.id, (f.error as { _tag: string })._tag])).toEqual([[refused, "InvalidCreditAmount"]])
      expect(outcome.resolved.length).toBe(599)
      const sum = (parity: number) => payloads.filter((_, n) => n % 2 === parity).reduce((a, p) => a + p.amount, 0n)
      expect(yield* node.run(balanceOf(alice))).toBe(sum(0))
      expect(yield* node.run(balanceOf(bob))).toBe(sum(1))
    }))

  it.scoped("resolveAll leaves the same state, byte for byte, and outcome as resolve one by one", () =>
    Effect.gen(function*() {
      // The same blocks on two nodes: one credits runs with resolveAll, the other has none.
      const { resolveAll: _, ...withoutAll } = creditAccount
      const nodes = [yield* makeNode("A", {}, [creditAccount]), yield* makeNode("A", {}, [withoutAll])] as const
      const accounts = [alice, bob, "0x00000000000000000000000000000000000c4a71"] as const
      const first = yield* Effect.forEach(Array.from({ length: 40 }, (_, n) => n), (n) =>
        body(deposit(accounts[n % 2]!, BigInt(n + 1), n + 1)))
      const second = yield* Effect.forEach(Array.from({ length: 400 }, (_, n) => n), (n) =>
        body(deposit(accounts[n % 3]!, n === 123 ? 0n : (1n << 200n) + BigInt(n), 1_000 + n)))
      const digests = []
      const outcomes = []
      for (const node of nodes) {
        outcomes.push([yield* confirm(node, 1n, first), yield* confirm(node, 3n, second)])
        digests.push(yield* node.run(Effect.flatMap(VoteLedger, (ledger) => ledger.stateDigest)))
      }
      expect(outcomes[0]).toEqual(outcomes[1])
      expect(outcomes[0]![1]!.failures.length).toBe(1)
      expect(digests[0]).toBe(digests[1])
    }))

  it("uses Kwil's thresholds and expiry", async () => {
    const { creditAccount } = await import("../../src/extensions/creditAccount.js")
    expect(creditAccount.confirmationThreshold).toEqual({ numerator: 2n, denominator: 3n })
    expect(creditAccount.refundThreshold).toEqual({ numerator: 1n, denominator: 3n })
    expect(creditAccount.expirationPeriod).toBe(600n)
    expect(creditAccount.type.name).toBe("credit_account")
  })
})
