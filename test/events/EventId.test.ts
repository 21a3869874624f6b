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
