/**
 * Event ids: UUIDv5 in Kwil's namespace over `utf8(type) || 0x00 || body`.
 *
 * Kwil hashes `type || body` with no separator, so type "ab" with body "c" and type "a" with
 * body "bc" collide. The 0x00 separator closes that: a type name never contains NUL. Ids here
 * therefore differ from the original's for the same event (see the README).
 */
import { Brand } from "effect"
import { v5 as uuidv5 } from "uuid"

/** A UUID string naming one event; the resolution voted on for it has the same id. */
export type EventId = string & Brand.Brand<"EventId">
export const EventId = Brand.nominal<EventId>()

/** Kwil's namespace for event ids. */
export const namespace = "cc1cd90f-b4db-47f4-b6df-4bbe5fca88eb"

const encoder = new TextEncoder()

/** The id of an event of `type` with `body`. */
export const make = (type: string, body: Uint8Array): EventId => {
  const name = encoder.encode(type)
  const bytes = new Uint8Array(name.length + 1 + body.length)
  bytes.set(name, 0)
  bytes[name.length] = 0
  bytes.set(body, name.length + 1)
  return EventId(uuidv5(bytes, namespace))
}
