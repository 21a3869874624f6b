import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as EventId from "../../src/events/EventId.js"
import { EventLog } from "../../src/events/EventLog.js"
import { VoteLedger } from "../../src/voting/VoteLedger.js"
import type { VoteBody } from "../../src/voting/VoteTransport.js"
import * as Resolution from "../../src/voting/Resolution.js"
import {
  balanceOf,
  defaultResolutions,
  Flaky,
  flakyCalls,
  makeNode,
  Note,
  note,
  observe,
  runBlock,
  tally,
  Tally,
  tallyCalls,
  tallyResolution,
  validators,
  wayward
} from "./harness.js"

const resetTallyCalls = () => {
  tallyCalls.all = []
  tallyCalls.one = 0
  tallyCalls.ids = []
}

const idOf = (event: { type: string; body: Uint8Array }) => EventId.make(event.type, event.body)
const ABCD = validators("A", "B", "C", "D")

describe("VoteLedger rules", () => {
  it.scoped("refuses VoteBodies from anyone but the block proposer, and changes nothing", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const e = yield* note(1)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABCD }))
      const error = yield* node.run(
        Effect.flatMap(VoteLedger, (l) => l.applyVoteBodies("B", [e], { height: 2n, proposer: "A" }))
      ).pipe(Effect.flip)
      expect(error._tag).toBe("NotBlockProposer")
      expect(error.message).toContain("only the block proposer")
      expect(yield* node.run(Effect.flatMap(VoteLedger, (l) => l.all))).toEqual([])
      const ok = yield* node.run(
        Effect.flatMap(VoteLedger, (l) => l.applyVoteBodies("A", [e], { height: 2n, proposer: "A" }))
      )
      expect(ok.created).toEqual([idOf(e)])
    }))

  it.scoped("refuses VoteIds from an identity without power, and skips unknown ids", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const e = yield* note(1)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABCD, bodies: [e] }))
      const ledger = (f: (l: VoteLedger["Type"]) => Effect.Effect<any, any>) => node.run(Effect.flatMap(VoteLedger, f))
      const error = yield* ledger((l) => l.applyVoteIds("Z", [idOf(e)])).pipe(Effect.flip)
      expect(error._tag).toBe("NotAValidator")
      const unknown = EventId.make("note", new Uint8Array([1, 2, 3]))
      const outcome = yield* ledger((l) => l.applyVoteIds("B", [unknown, idOf(e), idOf(e)]))
      expect(outcome).toEqual({ voted: [idOf(e)], duplicate: [], skipped: [unknown] })
      const again = yield* ledger((l) => l.applyVoteIds("B", [idOf(e)]))
      expect(again).toEqual({ voted: [], duplicate: [idOf(e)], skipped: [] })
      const [info] = yield* ledger((l) => l.get([idOf(e)]))
      expect(info.voters).toEqual(["A", "B"])
      expect(info.approvedPower).toBe(2n)
    }))

  it.scoped("ignores votes and bodies for processed ids", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const e = yield* note(1)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABCD, bodies: [e] }))
      const done = yield* node.run(runBlock({
        height: 2n,
        proposer: "B",
        votes: [{ sender: "B", ids: [idOf(e)] }, { sender: "C", ids: [idOf(e)] }]
      }))
      expect(done.resolved).toEqual([idOf(e)])
      const after = yield* node.run(Effect.gen(function*() {
        const ledger = yield* VoteLedger
        const ids = yield* ledger.applyVoteIds("D", [idOf(e)])
        const bodies = yield* ledger.applyVoteBodies("A", [e], { height: 3n, proposer: "A" })
        const finalized = yield* ledger.finalizeBlock(3n)
        return { ids, bodies, finalized, open: yield* ledger.all, balance: yield* balanceOf("acct-1") }
      }))
      expect(after.ids.skipped).toEqual([idOf(e)])
      expect(after.bodies).toEqual({ created: [], existing: [], skipped: [{ id: idOf(e), reason: "processed" }] })
      expect(after.finalized.resolved).toEqual([])
      expect(after.open).toEqual([])
      expect(after.balance).toBe(1n)
    }))

  it.scoped("skips bodies of types without a resolution", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const stranger = { type: "stranger", body: new Uint8Array([7]) }
      const e = yield* note(1)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABCD }))
      const outcome = yield* node.run(
        Effect.flatMap(VoteLedger, (l) => l.applyVoteBodies("A", [stranger, e], { height: 2n, proposer: "A" }))
      )
      expect(outcome.created).toEqual([idOf(e)])
      expect(outcome.skipped).toEqual([{ id: idOf(stranger), reason: "unknown-type" }])
    }))

  it.scoped("counts only the votes of current validators", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const e = yield* note(1)
      const id = idOf(e)
      // 2 of 4: below 2/3 (needs 3).
      const b1 = yield* node.run(runBlock({
        height: 1n,
        proposer: "A",
        validators: ABCD,
        bodies: [e],
        votes: [{ sender: "B", ids: [id] }]
      }))
      expect(b1.resolved).toEqual([])
      // B leaves, E joins: A + C = 2 of 4; with B's stale vote it would be 3.
      const b2 = yield* node.run(runBlock({
        height: 2n,
        proposer: "A",
        validators: validators("A", "C", "D", "E"),
        votes: [{ sender: "C", ids: [id] }]
      }))
      expect(b2.resolved).toEqual([])
      const [info] = yield* node.run(Effect.flatMap(VoteLedger, (l) => l.get([id])))
      expect(info!.approvedPower).toBe(2n)
      const error = yield* node.run(Effect.flatMap(VoteLedger, (l) => l.applyVoteIds("B", [id]))).pipe(Effect.flip)
      expect(error._tag).toBe("NotAValidator")
      const b3 = yield* node.run(runBlock({ height: 3n, proposer: "A", votes: [{ sender: "D", ids: [id] }] }))
      expect(b3.resolved).toEqual([id])
    }))

  it.scoped("refuses unusable validator sets", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const set = (list: Parameters<VoteLedger["Type"]["setValidators"]>[0]) =>
        node.run(Effect.flatMap(VoteLedger, (l) => l.setValidators(list))).pipe(Effect.flip)
      expect((yield* set([{ identity: "A", power: -1n }]))._tag).toBe("InvalidValidatorSet")
      expect((yield* set([{ identity: "A", power: 1n }, { identity: "A", power: 2n }])).message).toContain("twice")
      expect((yield* set([{ identity: "A", power: 1n << 62n }, { identity: "B", power: 1n << 62n }])).message)
        .toContain("2^63-1")
      yield* node.run(Effect.flatMap(VoteLedger, (l) =>
        l.setValidators([{ identity: "A", power: (1n << 63n) - 2n }, { identity: "B", power: 1n }, {
          identity: "C",
          power: 0n
        }])))
      expect(yield* node.run(Effect.flatMap(VoteLedger, (l) => l.validators))).toEqual([
        { identity: "A", power: (1n << 63n) - 2n },
        { identity: "B", power: 1n }
      ])
    }))
})

describe("VoteLedger lifecycle", () => {
  it.scoped("creates, votes, confirms, resolves, marks processed and deletes the local event", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("B")
      const e = yield* note(1)
      const id = idOf(e)
      yield* node.run(observe(e))
      const b1 = yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B", "C"), bodies: [e] }))
      expect(b1).toEqual({ height: 1n, resolved: [], expired: [], refunds: [], failures: [] })
      const [created] = yield* node.run(Effect.flatMap(VoteLedger, (l) => l.get([id])))
      expect(created).toMatchObject({ id, type: "note", proposer: "A", createdHeight: 1n, expirationHeight: 6n })
      expect(created!.voters).toEqual(["A"])
      const b2 = yield* node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids: [id] }] }))
      expect(b2).toEqual({ height: 2n, resolved: [id], expired: [], refunds: [], failures: [] })
      const state = yield* node.run(Effect.gen(function*() {
        const log = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        return {
          open: yield* Effect.flatMap(VoteLedger, (l) => l.all),
          local: yield* log.list(),
          processed: yield* log.isProcessed(id),
          rows: yield* sql<{ id: string }>`SELECT id FROM processed`,
          balance: yield* balanceOf("acct-1")
        }
      }))
      expect(state).toEqual({ open: [], local: [], processed: true, rows: [{ id }], balance: 1n })
    }))

  it.scoped("expires at exactly the expiration height", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const e = yield* note(1)
      const id = idOf(e)
      yield* node.run(observe(e))
      yield* node.run(runBlock({ height: 10n, proposer: "A", validators: ABCD, bodies: [e] }))
      for (const height of [11n, 12n, 13n, 14n]) {
        expect((yield* node.run(runBlock({ height, proposer: "A" }))).expired).toEqual([])
      }
      const b15 = yield* node.run(runBlock({ height: 15n, proposer: "A" }))
      expect(b15.expired).toEqual([id])
      expect(b15.refunds).toEqual([]) // 1 of 4 is below the 1/2 refund threshold
      expect(yield* node.run(Effect.flatMap(EventLog, (l) => l.list()))).toEqual([])
      expect(yield* node.run(Effect.flatMap(EventLog, (l) => l.isProcessed(id)))).toBe(true)
      expect(yield* node.run(balanceOf("acct-1"))).toBe(0n)
    }))

  it.scoped("refunds each expired resolution against its own refund threshold", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      // Of one type, expiring in one block: refund needs 2 of 4 (1/2), confirmation 3 of 4.
      const events = yield* Effect.all([note(1), note(2), note(3)])
      const [low1, high, low2] = events.map(idOf) as [EventId.EventId, EventId.EventId, EventId.EventId]
      yield* node.run(runBlock({
        height: 1n,
        proposer: "A",
        validators: ABCD,
        bodies: events,
        votes: [{ sender: "C", ids: [high] }]
      }))
      const b6 = yield* node.run(runBlock({ height: 6n, proposer: "A" }))
      expect(b6.expired).toEqual([low1, high, low2].sort())
      expect(b6.resolved).toEqual([])
      expect(b6.refunds).toEqual([{ identity: "A", ids: [high] }, { identity: "C", ids: [high] }])
    }))

  it.scoped("resolves, once, a resolution confirmed in the block it expires", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const e = yield* note(1)
      const id = idOf(e)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABCD, bodies: [e] }))
      const b6 = yield* node.run(runBlock({
        height: 6n,
        proposer: "A",
        votes: [{ sender: "B", ids: [id] }, { sender: "C", ids: [id] }]
      }))
      expect(b6).toEqual({ height: 6n, resolved: [id], expired: [], refunds: [], failures: [] })
      expect((yield* node.run(runBlock({ height: 7n, proposer: "A" }))).resolved).toEqual([])
      expect(yield* node.run(balanceOf("acct-1"))).toBe(1n)
    }))

  it.scoped("rolls back a failing resolve alone and still consumes it", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const events = yield* Effect.all([
        note(1, { account: "shared" }),
        note(2, { account: "shared", fail: true }),
        note(3, { account: "shared" })
      ])
      const ids = events.map(idOf)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B"), bodies: events }))
      const b2 = yield* node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids }] }))
      expect(b2.resolved).toEqual([ids[0], ids[2]].sort())
      expect(b2.failures.map((f) => f.id)).toEqual([ids[1]])
      expect(b2.failures[0]!.error).toMatchObject({ _tag: "NoteFailed", n: 2 })
      // The failing resolve's own credit was rolled back; the other two stand.
      expect(yield* node.run(balanceOf("shared"))).toBe(2n)
      expect(yield* node.run(Effect.flatMap(VoteLedger, (l) => l.all))).toEqual([])
      expect(yield* node.run(Effect.flatMap(EventLog, (l) => l.isProcessed(ids[1]!)))).toBe(true)
    }))

  it.scoped("a VoteBody its type cannot decode (not even UTF-8) is skipped: no resolution, no refund for it", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const good = yield* note(1)
      // A faulty proposer's bodies: never stored by an honest node (its broadcast fails).
      const bad = { type: Note.name, body: Uint8Array.of(0xff, 0xfe) }
      const huge = { type: "credit_account", body: new Uint8Array(1_000_000) }
      const ids = [good, bad, huge].map(idOf)
      const before = yield* node.run(Effect.flatMap(VoteLedger, (l) => l.stateDigest))
      const out = yield* node.run(Effect.flatMap(VoteLedger, (l) => l.applyVoteBodies("A", [bad, huge], { height: 1n, proposer: "A" })))
      expect(out).toEqual({ created: [], existing: [], skipped: [{ id: ids[1], reason: "invalid-body" }, { id: ids[2], reason: "invalid-body" }] })
      expect(yield* node.run(Effect.flatMap(VoteLedger, (l) => l.stateDigest))).toBe(before)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B"), bodies: [good, bad] }))
      const b2 = yield* node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids }] }))
      expect(b2.resolved).toEqual([ids[0]])
      expect(b2.failures).toEqual([])
      expect(yield* node.run(balanceOf("acct-1"))).toBe(1n)
      expect(yield* node.run(Effect.flatMap(VoteLedger, (l) => l.all))).toEqual([])
    }))

  it.scoped("stateDigest tells apart text that differs after a NUL (quote() would cut it there)", () =>
    Effect.gen(function*() {
      const x = yield* makeNode("X")
      const y = yield* makeNode("Y")
      yield* x.run(Effect.flatMap(VoteLedger, (l) => l.setValidators([{ identity: "v\u0000one", power: 1n }])))
      yield* y.run(Effect.flatMap(VoteLedger, (l) => l.setValidators([{ identity: "v\u0000two", power: 1n }])))
      const digest = (n: typeof x) => n.run(Effect.flatMap(VoteLedger, (l) => l.stateDigest))
      expect(yield* digest(x)).not.toBe(yield* digest(y))
    }))

  it.scoped("a block height below 0 or from 2^62 is refused with InvalidBlockHeight, nothing stored", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B") }))
      const e = yield* note(1)
      const before = yield* node.run(Effect.flatMap(VoteLedger, (l) => l.stateDigest))
      for (const height of [-100n, 1n << 62n, (1n << 63n) - 2n]) {
        const bodies = yield* Effect.flip(node.run(Effect.flatMap(VoteLedger, (l) => l.applyVoteBodies("A", [e], { height, proposer: "A" }))))
        expect(bodies).toMatchObject({ _tag: "InvalidBlockHeight", height })
        expect(bodies.message).toContain("2^62-1")
        const finalized = yield* Effect.flip(node.run(Effect.flatMap(VoteLedger, (l) => l.finalizeBlock(height))))
        expect(finalized).toMatchObject({ _tag: "InvalidBlockHeight", height })
      }
      expect(yield* node.run(Effect.flatMap(VoteLedger, (l) => l.stateDigest))).toBe(before)
    }))

  it.scoped("an event type of the node's own whose decode throws fails that resolution only", () =>
    Effect.gen(function*() {
      // An EventType made by hand (not with EventType.make): its decode throws as it is called.
      const Throwing: typeof Note = {
        ...Note,
        name: "throwing",
        decode: () => {
          throw new Error("decode threw")
        }
      }
      const throwing = Resolution.make({ type: Throwing, resolve: () => Effect.void })
      const node = yield* makeNode("A", {}, [...defaultResolutions, throwing])
      const good = yield* note(1)
      const odd = { type: "throwing", body: good.body }
      const ids = [good, odd].map(idOf)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B"), bodies: [good, odd] }))
      const b2 = yield* node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids }] }))
      expect(b2.resolved).toEqual([ids[0]])
      expect(b2.failures.map((f) => f.id)).toEqual([ids[1]])
      expect(yield* node.run(balanceOf("acct-1"))).toBe(1n)
    }))

  it.scoped("an event type of the node's own whose decodeAll throws: its run is applied one resolve at a time", () =>
    Effect.gen(function*() {
      // Made by hand: decodeAll throws as it is called (decode works), and the type has resolveAll.
      const ThrowingAll: typeof Tally = {
        ...Tally,
        name: "throwing-all",
        decodeAll: () => {
          throw new Error("decodeAll threw")
        }
      }
      const throwingAll = Resolution.make({
        type: ThrowingAll,
        resolve: tallyResolution.resolve,
        resolveAll: tallyResolution.resolveAll!
      })
      const node = yield* makeNode("A", {}, [...defaultResolutions, throwingAll])
      const events = yield* Effect.all(Array.from({ length: 4 }, (_, n) => tally(n)))
      const bodies = events.map((e) => ({ ...e, type: ThrowingAll.name }))
      const ids = bodies.map(idOf)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B"), bodies }))
      const b2 = yield* node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids }] }))
      expect(b2.resolved).toEqual([...ids].sort())
      expect(b2.failures).toEqual([])
      for (let n = 0; n < 4; n++) expect(yield* node.run(balanceOf(`acct-${n}`))).toBe(1n)
    }))

  it.scoped("applies many resolutions with scattered failures exactly as one savepoint each would", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      // More than one optimistic batch (256), failures spread over them.
      const events = yield* Effect.all(
        Array.from({ length: 700 }, (_, n) => note(n, { account: `acct-${n % 3}`, fail: n % 7 === 0 }))
      )
      const failing = new Set(events.filter((_, n) => n % 7 === 0).map(idOf))
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B"), bodies: events }))
      const ids = events.map(idOf)
      const b2 = yield* node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids }] }))
      expect(b2.failures.map((f) => f.id)).toEqual([...failing].sort())
      expect(b2.resolved).toEqual(ids.filter((id) => !failing.has(id)).sort())
      const expected = [0, 1, 2].map((k) =>
        BigInt(Array.from({ length: 700 }, (_, n) => n).filter((n) => n % 3 === k && n % 7 !== 0).length)
      )
      for (const k of [0, 1, 2]) expect(yield* node.run(balanceOf(`acct-${k}`))).toBe(expected[k])
    }))

  it.scoped("applies a run of one type with resolveAll in one call per optimistic batch", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const events = yield* Effect.all(Array.from({ length: 600 }, (_, n) => tally(n, { account: `acct-${n % 3}` })))
      const ids = events.map(idOf)
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B"), bodies: events }))
      resetTallyCalls()
      const b2 = yield* node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids }] }))
      expect(b2.resolved).toEqual([...ids].sort())
      expect(b2.failures).toEqual([])
      // Each item came with its own context, in id order.
      expect(tallyCalls).toEqual({ all: [256, 256, 88], one: 0, ids: [...ids].sort() })
      for (const k of [0, 1, 2]) expect(yield* node.run(balanceOf(`acct-${k}`))).toBe(200n)
    }))

  it.scoped("finds the failing ones of a failed resolveAll one by one, among other types, as one savepoint each would", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      // Two types alternating by `n`, so shuffled by id: runs break into groups; failures of both
      // spread over them.
      const events = yield* Effect.all(
        Array.from({ length: 700 }, (_, n) =>
          (n % 2 === 0 ? tally : note)(n, { account: `acct-${n % 3}`, fail: n % 7 === 0 || n === 351 }))
      )
      const failing = new Set(events.filter((_, n) => n % 7 === 0 || n === 351).map(idOf))
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B"), bodies: events }))
      const ids = events.map(idOf)
      resetTallyCalls()
      const b2 = yield* node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids }] }))
      expect(b2.failures.map((f) => f.id)).toEqual([...failing].sort())
      expect(b2.failures.every((f) => (f.error as { _tag: string })._tag === "NoteFailed")).toBe(true)
      expect(b2.resolved).toEqual(ids.filter((id) => !failing.has(id)).sort())
      const expected = [0, 1, 2].map((k) =>
        BigInt(Array.from({ length: 700 }, (_, n) => n).filter((n) => n % 3 === k && n % 7 !== 0 && n !== 351).length)
      )
      for (const k of [0, 1, 2]) expect(yield* node.run(balanceOf(`acct-${k}`))).toBe(expected[k])
      // Both ways ran: groups in one call, and the resolutions of failed groups alone.
      expect(tallyCalls.all.some((size) => size > 1)).toBe(true)
      expect(tallyCalls.one).toBeGreaterThan(0)
    }))

  it.scoped("takes a resolveAll that dies for a failure: its run is applied one resolve at a time", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const events = yield* Effect.all(Array.from({ length: 5 }, (_, n) => wayward(n, "die")))
      const ids = events.map(idOf)
      const b1 = yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A"), bodies: events }))
      expect(b1.resolved).toEqual([...ids].sort())
      expect(b1.failures).toEqual([])
      for (let n = 0; n < 5; n++) expect(yield* node.run(balanceOf(`acct-${n}`))).toBe(1n)
    }))

  it.scoped("aborts the block when a resolveAll is interrupted, and nothing of the block stays", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const events = yield* Effect.all(Array.from({ length: 3 }, (_, n) => wayward(n, "interrupt")))
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B"), bodies: events }))
      const ids = events.map(idOf)
      const exit = yield* Effect.exit(node.run(runBlock({ height: 2n, proposer: "A", votes: [{ sender: "B", ids }] })))
      expect(Exit.isInterrupted(exit)).toBe(true)
      // Still open, with B's votes gone with the block's transaction; nothing credited.
      const open = yield* node.run(Effect.flatMap(VoteLedger, (l) => l.all))
      expect(open.map((r) => r.id).sort()).toEqual([...ids].sort())
      expect(open.every((r) => r.voters.join() === "A")).toBe(true)
      for (let n = 0; n < 3; n++) expect(yield* node.run(balanceOf(`acct-${n}`))).toBe(0n)
    }))

  it.scoped("still rolls back a resolve that fails only when re-applied", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      // A flaky resolution sorted before a failing one: applied once in the optimistic run, then
      // re-applied alone after the failure, where it fails.
      let n = 0
      let flaky: VoteBody
      let failing: VoteBody
      do {
        n++
        flaky = { type: Flaky.name, body: yield* Flaky.encode({ n }) }
        failing = yield* note(n, { fail: true })
      } while (idOf(flaky) > idOf(failing))
      flakyCalls.clear()
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A"), bodies: [flaky, failing] }))
      expect(flakyCalls.get(n)).toBe(2)
      expect(yield* node.run(balanceOf(`flaky-${n}`))).toBe(0n)
      expect(yield* node.run(balanceOf(`acct-${n}`))).toBe(0n)
    }))

  it.scoped("leaves nothing confirmed while nobody holds power", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const e = yield* note(1)
      const b1 = yield* node.run(runBlock({ height: 1n, proposer: "A", validators: [], bodies: [e] }))
      expect(b1.resolved).toEqual([])
      expect((yield* node.run(Effect.flatMap(VoteLedger, (l) => l.all))).length).toBe(1)
    }))
})
