/**
 * The event store's failures. They live apart from `EventStore.ts` so that the implementations
 * can use them without an import cycle; `EventStore.ts` re-exports them.
 */
import { Data } from "effect"

/** A broadcast of an event type that no resolution is registered for: the network could never vote it. */
export class UnknownEventType extends Data.TaggedError("UnknownEventType")<{
  readonly type: string
  readonly known: ReadonlyArray<string>
}> {
  override get message() {
    return `no resolution is registered for event type "${this.type}" ` +
      `(known: ${this.known.length === 0 ? "none" : this.known.join(", ")}); ` +
      `register its Resolution in the ResolutionRegistry layer`
  }
}

/** The storage under the event store failed (disk full, locked, corrupt file...). */
export class EventStoreError extends Data.TaggedError("EventStoreError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  override get message() {
    return `event store ${this.operation} failed: ${describe(this.cause)}; ` +
      `check that the node database is writable, not locked by another process and migrated`
  }
}

/** The messages down a cause chain: an `SqlError` says "Failed to execute", its cause says why. */
const describe = (cause: unknown): string => {
  const messages: Array<string> = []
  for (let current = cause, depth = 0; current !== undefined && depth < 4; depth++) {
    if (!(current instanceof Error)) {
      messages.push(String(current))
      break
    }
    const message = current.message.trim()
    if (message !== "") messages.push(message)
    current = current.cause
  }
  return messages.join(": ")
}
