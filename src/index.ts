/** kwil-listeners: the public API. */
export * as Listener from "./listener/Listener.js"
export { ListenerContext } from "./listener/Listener.js"
export { NodeInfo } from "./listener/NodeInfo.js"
export * as EventType from "./events/EventType.js"
export * as EventId from "./events/EventId.js"
export { EventStorage, EventStore, EventStoreError, UnknownEventType } from "./events/EventStore.js"
export * as Resolution from "./voting/Resolution.js"
export { ResolutionRegistry } from "./voting/ResolutionRegistry.js"
