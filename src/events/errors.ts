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

/**
 * The storage under the event store failed (disk full, locked, corrupt file...), or the store was
 * used where it cannot answer truly (then `hint` says what to do instead).
 */
export class EventStoreError extends Data.TaggedError("EventStoreError")<{
  readonly operation: string
  readonly cause: unknown
  /** What to do about it, when it is not the database's state. */
  readonly hint?: string
}> {
  override get message() {
    return `event store ${this.operation} failed: ${describe(this.cause)}; ` +
      (this.hint ?? "check that the node database is writable, not locked by another process and migrated")
  }
}

/** A store call from a fiber forked inside a `transaction` level that has ended: nothing is done. */
export const outlivedTransaction = (operation: string): EventStoreError =>
  new EventStoreError({
    operation,
    cause: new Error("the transaction this fiber was forked in has ended"),
    hint: "join fibers forked inside EventStore.transaction before its effect returns"
  })

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
