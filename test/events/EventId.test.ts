import { describe, expect, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import { v5 as uuidv5 } from "uuid"
import * as EventId from "../../src/events/EventId.js"

const bytes = (...values: ReadonlyArray<number>) => Uint8Array.from(values)
const utf8 = (text: string) => new TextEncoder().encode(text)

/** RFC 4122 section 4.3, written out here so the vectors do not rest on the code under test. */
const rfc4122v5 = (name: Uint8Array): string => {
  const namespace = Buffer.from(EventId.namespace.replaceAll("-", ""), "hex")
  const digest = createHash("sha1").update(namespace).update(name).digest().subarray(0, 16)
  digest[6] = (digest[6]! & 0x0f) | 0x50
  digest[8] = (digest[8]! & 0x3f) | 0x80
  const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("")
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-")
}

/** The name hashed for an event: `utf8(type) || 0x00 || body`. */
const name = (type: string, body: Uint8Array) => Uint8Array.from([...utf8(type), 0, ...body])

// Pinned literals, computed independently with Python's uuid.uuid5 and with the `uuid` package.
const vectors: ReadonlyArray<readonly [type: string, body: Uint8Array, id: string]> = [
  ["credit_account", bytes(0x01, 0x02), "2c8f6956-a5fc-5a20-a21d-2af5cb74c8d5"],
  ["credit_account", bytes(), "17b51c2f-9b58-5dc3-9de1-3b8b519ec08d"],
  ["ab", utf8("c"), "c9adbd67-a764-5f1c-9ef5-747edc9ca7c3"],
  ["a", utf8("bc"), "39239c62-3a56-501e-be19-27d871add48b"]
]

describe("EventId", () => {
  it("matches the pinned UUIDv5 vectors", () => {
    for (const [type, body, id] of vectors) {
      expect(EventId.make(type, body)).toBe(id)
    }
  })

  it("agrees with RFC 4122 via node:crypto and with the uuid package", () => {
    for (const [type, body, id] of vectors) {
      expect(rfc4122v5(name(type, body))).toBe(id)
      expect(uuidv5(name(type, body), EventId.namespace)).toBe(id)
    }
    for (let n = 0; n < 50; n++) {
      const body = Uint8Array.from({ length: n * 7 }, (_, i) => (i * 31 + n) & 0xff)
      const type = `type_${n}_ünïcode`
      expect(EventId.make(type, body)).toBe(uuidv5(name(type, body), EventId.namespace))
    }
  })

  it("separates the type from the body: (\"ab\", \"c\") and (\"a\", \"bc\") differ", () => {
    const left = EventId.make("ab", utf8("c"))
    const right = EventId.make("a", utf8("bc"))
    expect(left).not.toBe(right)
    // Kwil's unseparated scheme gives both the same id; ours gives neither that one.
    const kwil = uuidv5(utf8("abc"), EventId.namespace)
    expect(kwil).toBe("48bd8032-833b-5ac3-aaf2-e6bb078a212d")
    expect([left, right]).not.toContain(kwil)
  })

  it("is a version 5, RFC 4122 variant UUID and stable across calls", () => {
    const id = EventId.make("credit_account", bytes(0x01, 0x02))
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(EventId.make("credit_account", bytes(0x01, 0x02))).toBe(id)
  })
})

describe("EventId input buffer", () => {
  it("gives the package's id for bodies of any size, views and calls in any order", () => {
    const body = (length: number, seed: number) => Uint8Array.from({ length }, (_, i) => (i * 131 + seed * 17) & 0xff)
    // Around and far beyond the reused scratch buffer's 4096 bytes, large and small interleaved
    // so that a short input following a long one would show any stale bytes.
    const lengths = [0, 1, 160, 4070, 4080, 4081, 4096, 4097, 70_000, 3, 160, 5000, 0]
    for (const [seed, length] of lengths.entries()) {
      const b = body(length, seed)
      expect(EventId.make("credit_account", b)).toBe(uuidv5(name("credit_account", b), EventId.namespace))
    }
    // A body that is a view into a larger buffer hashes only its own bytes.
    const whole = body(400, 99)
    const view = whole.subarray(100, 260)
    expect(EventId.make("other", view)).toBe(EventId.make("other", Uint8Array.from(view)))
    expect(EventId.make("other", view)).toBe(uuidv5(name("other", view), EventId.namespace))
  })

  it("sets the version and variant digits whatever the digest's", () => {
    // 4 variant digits (8, 9, a, b) come from 16 digest nibbles: 64 bodies reach them all.
    const variants = new Set<string>()
    for (let n = 0; n < 64; n++) {
      const b = Uint8Array.of(n, n >> 8)
      const id = EventId.make("t", b)
      expect(id).toBe(uuidv5(name("t", b), EventId.namespace))
      variants.add(id[19]!)
    }
    expect([...variants].sort()).toEqual(["8", "9", "a", "b"])
  })
})
