/** kwil-listeners: the public API. */

// Listeners
export * as Listener from "./listener/Listener.js"
export { ListenerContext } from "./listener/Listener.js"
export { DuplicateListener, InvalidListenerName, ListenerRegistry } from "./listener/ListenerRegistry.js"
export { ListenerManager, ListenerShutdown, ValidatorStatusEnded } from "./listener/ListenerManager.js"
export type { ListenerState, ListenerStatus } from "./listener/ListenerManager.js"
export { ValidatorStatus, ValidatorStatusControl } from "./listener/ValidatorStatus.js"
export { NodeInfo } from "./listener/NodeInfo.js"

// Events
export * as EventType from "./events/EventType.js"
export * as EventId from "./events/EventId.js"
export { EventStorage, EventStore, EventStoreError, UnknownEventType } from "./events/EventStore.js"
export { EventLog } from "./events/EventLog.js"
export type { LocalEvent } from "./events/EventLog.js"

// Voting
export * as Resolution from "./voting/Resolution.js"
export { DuplicateResolution, ResolutionRegistry } from "./voting/ResolutionRegistry.js"
export { InvalidBlockHeight, InvalidValidatorSet, NotAValidator, NotBlockProposer, VoteLedger } from "./voting/VoteLedger.js"
export { Broadcaster, InvalidBroadcasterConfig, InvalidProposalCaps } from "./voting/Broadcaster.js"
export { VoteTransport } from "./voting/VoteTransport.js"

// Ethereum
export { EthereumClient } from "./ethereum/EthereumClient.js"
export * as LogFollower from "./ethereum/LogFollower.js"

// Built-in extensions
export { ethDeposits, makeEthDeposits } from "./extensions/ethDeposits.js"
export * as EthDepositsConfig from "./extensions/ethDepositsConfig.js"
export * as CreditAccount from "./extensions/creditAccount.js"
export { loadConfigFile } from "./extensions/configFile.js"
