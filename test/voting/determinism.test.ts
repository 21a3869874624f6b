/**
 * Nodes fed the same blocks end in the same consensus state, whatever their local events, and
 * that state is the one a plain model of Kwil's voting rules (with the defects fixed) predicts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Ref } from "effect"
import * as EventId from "../../src/events/EventId.js"
import { Broadcaster } from "../../src/voting/Broadcaster.js"
import { requiredPower, fraction } from "../../src/voting/Resolution.js"
import { type Validator, VoteLedger } from "../../src/voting/VoteLedger.js"
import type { VoteBody } from "../../src/voting/VoteTransport.js"
import { balanceOf, type Block, makeNode, note, observe, runBlock, tally, type TestNode, validators } from "./harness.js"

const idOf = (event: VoteBody) => EventId.make(event.type, event.body)
const digest = (node: TestNode) => node.run(Effect.flatMap(VoteLedger, (l) => l.stateDigest))

describe("VoteLedger determinism", () => {
  it.scoped("two nodes with different local events agree after every block of a voting round", () =>
    Effect.gen(function*() {
      const nodes = [yield* makeNode("A"), yield* makeNode("B")] as const
      const events = yield* Effect.all([1, 2, 3, 4, 5, 6].map((n) => note(n, { fail: n === 4 })))
      for (const e of events) yield* nodes[0].run(observe(e))
      for (const e of [...events].reverse().slice(0, 4)) yield* nodes[1].run(observe(e))

      let pending: Array<{ sender: string; ids: ReadonlyArray<string> }> = []
      let previous = yield* digest(nodes[0])
      const digests = new Set([previous])
      const resolved: Array<string> = []
      const expired: Array<string> = []
      for (let height = 1n; height <= 8n; height++) {
        const proposer = nodes[Number(height % 2n)]
        const bodies = yield* proposer.run(Effect.flatMap(Broadcaster, (b) => b.proposal({ maxVotes: 2, maxBytes: 10_000 })))
        const block: Block = {
          height,
          proposer: proposer.identity,
          ...(height === 1n ? { validators: validators("A", "B", "C") } : {}),
          bodies: bodies.events,
          votes: pending
        }
        const outcomes = [yield* nodes[0].run(runBlock(block)), yield* nodes[1].run(runBlock(block))]
        expect(outcomes[1]).toEqual(outcomes[0])
        resolved.push(...outcomes[0]!.resolved, ...outcomes[0]!.failures.map((f) => f.id))
        expired.push(...outcomes[0]!.expired)
        const [d0, d1] = [yield* digest(nodes[0]), yield* digest(nodes[1])]
        expect(d1).toBe(d0)
        digests.add(d0)
        previous = d0
        pending = []
        for (const node of nodes) {
          const before = (yield* Ref.get(node.submitted)).length
          yield* node.run(Effect.flatMap(Broadcaster, (b) => b.afterBlock({ height, proposer: proposer.identity, isValidator: true })))
          for (const tx of (yield* Ref.get(node.submitted)).slice(before)) {
            if (tx._tag === "VoteIds") pending.push({ sender: tx.sender, ids: tx.ids })
          }
        }
      }
      // Only B saw 3-6: they got A's and B's votes (2 of 3) and were resolved (4 fails). Only A saw
      // 1 and 2: one vote each, so they expired at 2 + 5. The digest moved along the way.
      const ids = events.map(idOf)
      expect(resolved.sort()).toEqual(ids.slice(2).sort())
      expect(expired.sort()).toEqual(ids.slice(0, 2).sort())
      expect(yield* nodes[0].run(Effect.flatMap(VoteLedger, (l) => l.all))).toEqual([])
      expect(digests.size).toBeGreaterThan(4)
      for (const node of nodes) {
        for (const [account, balance] of [["acct-1", 0n], ["acct-3", 1n], ["acct-4", 0n], ["acct-6", 1n]] as const) {
          expect(yield* node.run(balanceOf(account))).toBe(balance)
        }
      }
      expect(previous).toBe(yield* digest(nodes[1]))
    }))

  it.scoped("the digest covers consensus tables only", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const empty = yield* digest(node)
      yield* node.run(observe(yield* note(1)))
      expect(yield* digest(node)).toBe(empty)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A") }))
      const withValidators = yield* digest(node)
      expect(withValidators).not.toBe(empty)
      yield* node.run(runBlock({ height: 2n, proposer: "A", bodies: [yield* note(2)] }))
      expect(yield* digest(node)).not.toBe(withValidators)
    }))
})

// ---- the property: random blocks against a model ----

const pool = 6
const identities = ["A", "B", "C", "D", "E"] as const

interface RandomBlock {
  readonly gap: number
  readonly proposer: number
  readonly bodies: ReadonlyArray<number>
  readonly votes: ReadonlyArray<{ readonly sender: number; readonly ids: ReadonlyArray<number> }>
  readonly validators: ReadonlyArray<{ readonly who: number; readonly power: number }> | null
}

const randomBlock: fc.Arbitrary<RandomBlock> = fc.record({
  gap: fc.integer({ min: 1, max: 3 }),
  proposer: fc.integer({ min: 0, max: 4 }),
  bodies: fc.array(fc.integer({ min: 0, max: pool }), { maxLength: 4 }), // `pool` is an unknown type
  votes: fc.array(
    fc.record({
      sender: fc.integer({ min: 0, max: 5 }), // 5 is never a validator
      ids: fc.array(fc.integer({ min: 0, max: pool }), { maxLength: 4 })
    }),
    { maxLength: 4 }
  ),
  validators: fc.option(
    fc.uniqueArray(fc.record({ who: fc.integer({ min: 0, max: 4 }), power: fc.integer({ min: 0, max: 3 }) }), {
      selector: (v) => v.who,
      maxLength: 5
    }),
    { freq: 4 }
  )
})

/** Kwil's rules, fixed, over plain maps. */
const model = () => {
  let power = new Map<string, bigint>()
  const open = new Map<string, { expiry: bigint; voters: Set<string>; fail: boolean; account: string }>()
  const processed = new Set<string>()
  /** Each account's balance: 1 for each of its resolutions resolved without failing. */
  const balances = new Map<string, bigint>()
  return {
    balance: (account: string) => balances.get(account) ?? 0n,
    setValidators: (list: ReadonlyArray<Validator>) => {
      power = new Map(list.filter((v) => v.power > 0n).map((v) => [v.identity, v.power]))
    },
    bodies: (sender: string, bodies: ReadonlyArray<{ id: string; known: boolean; fail: boolean; account: string }>, height: bigint) => {
      for (const b of bodies) {
        if (processed.has(b.id) || !b.known) continue
        const r = open.get(b.id)
        if (r !== undefined) r.voters.add(sender)
        else open.set(b.id, { expiry: height + 5n, voters: new Set([sender]), fail: b.fail, account: b.account })
      }
    },
    ids: (sender: string, ids: ReadonlyArray<string>) => {
      if ((power.get(sender) ?? 0n) <= 0n) return false
      for (const id of ids) open.get(id)?.voters.add(sender)
      return true
    },
    finalize: (height: bigint) => {
      const total = [...power.values()].reduce((a, b) => a + b, 0n)
      const need = requiredPower(total, fraction(2, 3))
      const refundNeed = requiredPower(total, fraction(1, 2))
      const resolved: Array<string> = []
      const failed: Array<string> = []
      const expired: Array<string> = []
      const refunds = new Map<string, Array<string>>()
      for (const id of [...open.keys()].sort()) {
        const r = open.get(id)!
        const counted = [...r.voters].filter((v) => (power.get(v) ?? 0n) > 0n).sort()
        const approved = counted.reduce((a, v) => a + power.get(v)!, 0n)
        if (approved > 0n && approved >= need) {
          ;(r.fail ? failed : resolved).push(id)
          if (!r.fail) balances.set(r.account, (balances.get(r.account) ?? 0n) + 1n)
        } else if (r.expiry <= height) {
          expired.push(id)
          if (approved > 0n && approved >= refundNeed) {
            for (const v of counted) refunds.set(v, [...(refunds.get(v) ?? []), id])
          }
        } else continue
        open.delete(id)
        processed.add(id)
      }
      return {
        resolved,
        failed,
        expired,
        refunds: [...refunds.keys()].sort().map((identity) => ({ identity, ids: refunds.get(identity)! }))
      }
    }
  }
}

describe("VoteLedger against a model", () => {
  it.effect.prop(
    "random blocks: both nodes agree with each other and with the model after every block",
    [fc.array(randomBlock, { minLength: 1, maxLength: 10 }), fc.shuffledSubarray([0, 1, 2, 3, 4, 5])],
    ([blocks, localOrder]) =>
      Effect.scoped(Effect.gen(function*() {
        // Two resolution types alike but for `resolveAll`: most are tally (which has it), so runs
        // of tally are applied at once, and a run holding the failing tally (3) one by one.
        const events = yield* Effect.all(
          Array.from({ length: pool }, (_, n) => (n % 3 === 1 ? note : tally)(n, { fail: n % 4 === 3, account: `acct-${n % 2}` }))
        )
        const unknown = { type: "stranger", body: new Uint8Array([1]) }
        const all = [...events, unknown]
        const ids = all.map(idOf)
        const nodes = [yield* makeNode("A"), yield* makeNode("B")] as const
        for (const e of events) yield* nodes[0].run(observe(e))
        for (const i of localOrder) yield* nodes[1].run(observe(events[i]!))

        const reference = model()
        const initial = validators("A", "B", "C", "D")
        reference.setValidators(initial)
        for (const node of nodes) yield* node.run(Effect.flatMap(VoteLedger, (l) => l.setValidators(initial)))

        let height = 0n
        for (const block of blocks) {
          height += BigInt(block.gap)
          const proposer = identities[block.proposer]!
          const set = block.validators?.map((v) => ({ identity: identities[v.who]!, power: BigInt(v.power) }))
          const bodies = block.bodies.map((i) => all[i]!)
          const votes = block.votes.map((v) => ({ sender: v.sender === 5 ? "Z" : identities[v.sender]!, ids: v.ids.map((i) => ids[i]!) }))

          if (set !== undefined) reference.setValidators(set)
          reference.bodies(proposer, block.bodies.map((i) => ({
            id: ids[i]!,
            known: i < pool,
            fail: i % 4 === 3,
            account: `acct-${i % 2}`
          })), height)
          const accepted = votes.map((v) => reference.ids(v.sender, v.ids))
          const expected = reference.finalize(height)

          const results = []
          for (const node of nodes) {
            results.push(yield* node.run(Effect.gen(function*() {
              const ledger = yield* VoteLedger
              if (set !== undefined) yield* ledger.setValidators(set)
              yield* ledger.applyVoteBodies(proposer, bodies, { height, proposer })
              const refused = []
              for (const vote of votes) {
                const outcome = yield* Effect.either(ledger.applyVoteIds(vote.sender, vote.ids))
                refused.push(outcome._tag === "Left")
              }
              const outcome = yield* ledger.finalizeBlock(height)
              return { refused, outcome, digest: yield* ledger.stateDigest }
            })))
          }
          const [first, second] = results as [typeof results[0], typeof results[0]]
          expect(second).toEqual(first)
          expect(first.refused).toEqual(accepted.map((ok) => !ok))
          expect({
            resolved: first.outcome.resolved,
            failed: first.outcome.failures.map((f) => f.id),
            expired: first.outcome.expired,
            refunds: first.outcome.refunds
          }).toEqual(expected)
          for (const account of ["acct-0", "acct-1"]) {
            expect(yield* nodes[0].run(balanceOf(account))).toBe(reference.balance(account))
          }
        }
      })),
    { fastCheck: { numRuns: 40 } }
  )
})
