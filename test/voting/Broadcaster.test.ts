import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Ref } from "effect"
import * as EventId from "../../src/events/EventId.js"
import { EventLog } from "../../src/events/EventLog.js"
import { Broadcaster, voteBodySize } from "../../src/voting/Broadcaster.js"
import type { VoteTx } from "../../src/voting/VoteTransport.js"
import { makeNode, nodeLayer, note, observe, runBlock, type TestNode, validators } from "./harness.js"

const idOf = (event: { type: string; body: Uint8Array }) => EventId.make(event.type, event.body)
const ABC = validators("A", "B", "C")
const after = (node: TestNode, height: bigint, proposer: string, isValidator = true) =>
  node.run(Effect.flatMap(Broadcaster, (b) => b.afterBlock({ height, proposer, isValidator })))

describe("Broadcaster.proposal", () => {
  it.scoped("takes un-resolved local events in insertion order within the count and byte caps", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const events = yield* Effect.all([5, 3, 9, 1, 7].map((n) => note(n)))
      for (const e of events) yield* node.run(observe(e))
      // Event 3 already has a resolution with A's vote: never proposed again.
      yield* node.run(runBlock({
        height: 1n,
        proposer: "B",
        validators: ABC,
        bodies: [events[1]!],
        votes: [{ sender: "A", ids: [idOf(events[1]!)] }]
      }))
      const propose = (caps: { maxVotes: number; maxBytes: number }) =>
        node.run(Effect.flatMap(Broadcaster, (b) => b.proposal(caps)))

      const byCount = yield* propose({ maxVotes: 2, maxBytes: 1_000_000 })
      expect(byCount._tag).toBe("VoteBodies")
      expect(byCount.sender).toBe("A")
      expect(byCount.events).toEqual([events[0], events[2]])

      const sizes = [events[0], events[2], events[3]].map((e) => voteBodySize({ ...e!, id: idOf(e!) }))
      const byBytes = yield* propose({ maxVotes: 100, maxBytes: sizes[0]! + sizes[1]! + sizes[2]! - 1 })
      expect(byBytes.events).toEqual([events[0], events[2]])
      const exact = yield* propose({ maxVotes: 100, maxBytes: sizes[0]! + sizes[1]! + sizes[2]! })
      expect(exact.events).toEqual([events[0], events[2], events[3]])
      expect((yield* propose({ maxVotes: 0, maxBytes: 1_000_000 })).events).toEqual([])
    }))

  it.scoped("a validator that proposes every block (the last one left) votes for resolutions others created", () =>
    Effect.gen(function*() {
      const a = yield* makeNode("A")
      const e = yield* note(1)
      // B proposes E before A's listener saw it; from block 2 on, A is the only validator.
      yield* a.run(runBlock({ height: 1n, proposer: "B", validators: validators("A", "B"), bodies: [e] }))
      yield* a.run(Effect.flatMap(Broadcaster, (b) => b.afterBlock({ height: 1n, proposer: "B", isValidator: true })))
      yield* a.run(observe(e))
      const proposal = yield* a.run(Effect.flatMap(Broadcaster, (b) => b.proposal({ maxVotes: 100, maxBytes: 1_000_000 })))
      expect(proposal.events).toEqual([e])
      const out = yield* a.run(runBlock({ height: 2n, proposer: "A", validators: validators("A"), bodies: proposal.events }))
      expect(out.resolved).toEqual([idOf(e)])
    }))

  it.scoped("a vote already sent as VoteIds is proposed as a body only once it is due for a re-send", () =>
    Effect.gen(function*() {
      const a = yield* makeNode("A", { resendAfterBlocks: 3 }) // notes expire after 5 blocks
      const e = yield* note(1)
      yield* a.run(observe(e))
      yield* a.run(runBlock({ height: 1n, proposer: "B", validators: ABC, bodies: [e] }))
      expect((yield* after(a, 1n, "B")).sent).toEqual([idOf(e)]) // the VoteIds tx, which is then lost
      const propose = a.run(Effect.flatMap(Broadcaster, (b) => b.proposal({ maxVotes: 100, maxBytes: 1_000_000 })))
      expect((yield* propose).events).toEqual([])
      for (let h = 2n; h <= 3n; h++) {
        yield* a.run(runBlock({ height: h, proposer: "A" }))
        yield* after(a, h, "A")
        expect((yield* propose).events).toEqual([])
      }
      yield* a.run(runBlock({ height: 4n, proposer: "A" }))
      yield* after(a, 4n, "A")
      expect((yield* propose).events).toEqual([e]) // 3 blocks on, still not landed
    }))

  it.scoped("refuses caps that are not whole numbers of at least 0 (NaN would cap nothing) with InvalidProposalCaps", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      for (const e of yield* Effect.all([1, 2].map((n) => note(n)))) yield* node.run(observe(e))
      for (const [caps, key] of [
        [{ maxVotes: Number.NaN, maxBytes: 1_000 }, "maxVotes"],
        [{ maxVotes: 1, maxBytes: Number.NaN }, "maxBytes"],
        [{ maxVotes: -1, maxBytes: 1_000 }, "maxVotes"],
        [{ maxVotes: 1.5, maxBytes: 1_000 }, "maxVotes"]
      ] as const) {
        const error = yield* Effect.flip(node.run(Effect.flatMap(Broadcaster, (b) => b.proposal(caps))))
        expect(error).toMatchObject({ _tag: "InvalidProposalCaps", key })
        expect(error.message).toContain("whole number of at least 0")
      }
    }))
})

describe("Broadcaster.afterBlock", () => {
  it.scoped("votes for resolved-elsewhere events unless it proposed the block, and marks them voted", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("B")
      const events = yield* Effect.all([note(1), note(2), note(3)])
      for (const e of events) yield* node.run(observe(e))
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABC, bodies: events.slice(0, 2) }))

      expect(yield* after(node, 1n, "B")).toEqual({ sent: [], resent: [] })
      expect(yield* Ref.get(node.submitted)).toEqual([])

      const outcome = yield* after(node, 1n, "A")
      const ids = events.slice(0, 2).map(idOf)
      expect(outcome).toEqual({ sent: ids, resent: [] })
      const [tx] = yield* Ref.get(node.submitted)
      expect(tx).toMatchObject({ _tag: "VoteIds", sender: "B", ids })
      const voted = yield* node.run(Effect.flatMap(EventLog, (l) => l.list({ voted: true })))
      expect(voted.map((e) => e.id)).toEqual(ids)
      // Nothing new: nothing sent.
      expect(yield* after(node, 2n, "A")).toEqual({ sent: [], resent: [] })
    }))

  it.scoped("sends nothing while the node is not a validator", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("Z")
      const e = yield* note(1)
      yield* node.run(observe(e))
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABC, bodies: [e] }))
      expect(yield* after(node, 1n, "A", false)).toEqual({ sent: [], resent: [] })
      expect(yield* Ref.get(node.submitted)).toEqual([])
      expect(yield* node.run(Effect.flatMap(EventLog, (l) => l.list({ voted: true })))).toEqual([])
    }))

  it.scoped("marks events its own proposal voted for without sending them", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("A")
      const e = yield* note(1)
      yield* node.run(observe(e))
      const bodies = yield* node.run(Effect.flatMap(Broadcaster, (b) => b.proposal({ maxVotes: 10, maxBytes: 10_000 })))
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABC, bodies: bodies.events }))
      expect(yield* after(node, 2n, "B")).toEqual({ sent: [], resent: [] })
      expect(yield* Ref.get(node.submitted)).toEqual([])
      expect((yield* node.run(Effect.flatMap(EventLog, (l) => l.list({ voted: true })))).map((x) => x.id)).toEqual([
        idOf(e)
      ])
    }))

  it.scoped("re-sends a vote that has not landed after resendAfterBlocks, and stops once it lands", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("B", { resendAfterBlocks: 3 })
      const e = yield* note(1)
      const id = idOf(e)
      yield* node.run(observe(e))
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: validators("A", "B", "C", "D"), bodies: [e] }))
      expect((yield* after(node, 1n, "A")).sent).toEqual([id])
      // The tx is lost: the ledger never sees B's vote.
      for (const height of [2n, 3n]) expect(yield* after(node, height, "A")).toEqual({ sent: [], resent: [] })
      expect(yield* after(node, 4n, "A")).toEqual({ sent: [], resent: [id] })
      expect((yield* Ref.get(node.submitted)).length).toBe(2)
      // Not while proposing, though.
      expect(yield* after(node, 7n, "B")).toEqual({ sent: [], resent: [] })
      // This time it lands: never sent again.
      yield* node.run(runBlock({ height: 8n, proposer: "A", votes: [{ sender: "B", ids: [id] }] }))
      for (const height of [8n, 11n, 20n]) expect(yield* after(node, height, "A")).toEqual({ sent: [], resent: [] })
      expect((yield* Ref.get(node.submitted)).length).toBe(2)
    }))

  it.scoped("caps a VoteIds tx at maxVotesPerTx, fresh votes first", () =>
    Effect.gen(function*() {
      const node = yield* makeNode("B", { maxVotesPerTx: 2 })
      const events = yield* Effect.all([note(1), note(2), note(3)])
      for (const e of events) yield* node.run(observe(e))
      yield* node.run(runBlock({ height: 1n, proposer: "A", validators: ABC, bodies: events }))
      expect((yield* after(node, 1n, "A")).sent).toEqual(events.slice(0, 2).map(idOf))
      expect((yield* after(node, 2n, "A")).sent).toEqual([idOf(events[2]!)])
    }))

  it.effect.each([
    [{ maxVotesPerTx: 0 }, "maxVotesPerTx", "(0 would never send a vote)"],
    [{ maxVotesPerTx: -5 }, "maxVotesPerTx", "must be a whole number of at least 1"],
    [{ maxVotesPerTx: Number.NaN }, "maxVotesPerTx", "must be a whole number of at least 1"],
    [{ resendAfterBlocks: 0 }, "resendAfterBlocks", "(0 would send every open vote again each block)"],
    [{ resendAfterBlocks: 2.5 }, "resendAfterBlocks", "must be a whole number of at least 1"]
  ] as const)("refuses the config %o with InvalidBroadcasterConfig, before the node starts", ([config, key, says]) =>
    Effect.gen(function*() {
      const ref = yield* Ref.make<ReadonlyArray<VoteTx>>([])
      const error = yield* Effect.flip(Effect.scoped(Layer.build(nodeLayer("B", ref, config))))
      expect(error._tag).toBe("InvalidBroadcasterConfig")
      expect(error.message).toContain(`broadcaster config ${key} = `)
      expect(error.message).toContain(says)
    }))
})
