/**
 * Event ids: UUIDv5 (RFC 4122) in Kwil's namespace over `utf8(type) || 0x00 || body`.
 *
 * Kwil hashes `type || body` with no separator, so type "ab" with body "c" and type "a" with
 * body "bc" collide. The 0x00 separator closes that: a type name never contains NUL. Ids here
 * therefore differ from the original's for the same event (see the README).
 *
 * Computed with node:crypto directly rather than the `uuid` package, and without a Buffer per
 * call: it is on every broadcast's path (the tests cross-check it against the package). The input
 * is assembled in one reused scratch buffer (hashing is synchronous, so no call sees another's
 * bytes) and the digest comes back as hex, with the version and variant set on its digits; a new
 * input and digest Buffer per call cost more than the hashing itself.
 */
import { Brand } from "effect"
import { hash } from "node:crypto"

/** A UUID string naming one event; the resolution voted on for it has the same id. */
export type EventId = string & Brand.Brand<"EventId">
export const EventId = Brand.nominal<EventId>()

/** Kwil's namespace for event ids. */
export const namespace = "cc1cd90f-b4db-47f4-b6df-4bbe5fca88eb"

const namespaceBytes = Buffer.from(namespace.replaceAll("-", ""), "hex")

/** `namespace || utf8(type) || 0x00` per type name; bounded so arbitrary names cannot grow it. */
const prefixes = new Map<string, Buffer>()
const maxPrefixes = 256

const prefixOf = (type: string): Buffer => {
  let prefix = prefixes.get(type)
  if (prefix === undefined) {
    prefix = Buffer.concat([namespaceBytes, Buffer.from(type, "utf8"), Buffer.of(0)])
    if (prefixes.size < maxPrefixes) prefixes.set(type, prefix)
  }
  return prefix
}

/** Inputs up to this many bytes are assembled in `scratch`; longer ones get a buffer of their own. */
const scratchSize = 4096
const scratch = Buffer.allocUnsafeSlow(scratchSize)

/** The RFC 4122 variant's hex digit for each hex digit of the digest's byte 8 high nibble: `(n & 0x3) | 0x8`. */
const variant: Record<string, string> = {}
for (let n = 0; n < 16; n++) variant[n.toString(16)] = ((n & 0x3) | 0x8).toString(16)

/** The id of an event of `type` with `body`. */
export const make = (type: string, body: Uint8Array): EventId => {
  const prefix = prefixOf(type)
  const length = prefix.length + body.length
  const input = length <= scratchSize ? scratch : Buffer.allocUnsafe(length)
  prefix.copy(input, 0)
  input.set(body, prefix.length)
  const hex = hash("sha1", length <= scratchSize ? input.subarray(0, length) : input, "hex")
  // The first 16 bytes of the digest; the version (5) replaces the high nibble of byte 6 (hex
  // digit 12) and the variant the top two bits of byte 8 (hex digit 16).
  return EventId(
    `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant[hex[16]!]}${hex.slice(17, 20)}-${
      hex.slice(20, 32)
    }`
  )
}
