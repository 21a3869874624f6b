/**
 * The live composition of one node's listener side: a SQLite file brought to the newest schema,
 * the resolution and listener registries, the event store, the vote ledger, the broadcaster and
 * the listener manager.
 *
 * The host node supplies what only it knows: `ValidatorStatus` (synced and in the validator set),
 * `VoteTransport` (how its transactions reach the network) and, through the options, its identity
 * and its `[app.extensions.*]` config sections.
 *
 *   SqliteClient ─┬─ migrations, WAL checkpoints (a thread of their own)
 *                 ├─ EventStore.layerSql ── EventStorage, EventLog ─┐
 *   ResolutionRegistry ─┘                 VoteLedger ──────────────┼─ Broadcaster ── VoteTransport (node)
 *   ListenerRegistry ─── ListenerManager ── ValidatorStatus (node) ┘
 */
import type { SqlClient } from "@effect/sql"
import type { MigrationError } from "@effect/sql/Migrator"
import { SqlError } from "@effect/sql/SqlError"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Cause, type ConfigError, Layer } from "effect"
import type { EventLog } from "../src/events/EventLog.js"
import { EventStorage, EventStore } from "../src/events/EventStore.js"
import type { InvalidEventTypeName } from "../src/events/EventType.js"
import type { Listener } from "../src/listener/Listener.js"
import { ListenerManager } from "../src/listener/ListenerManager.js"
import { type DuplicateListener, type InvalidListenerName, ListenerRegistry } from "../src/listener/ListenerRegistry.js"
import { NodeInfo } from "../src/listener/NodeInfo.js"
import type { ValidatorStatus } from "../src/listener/ValidatorStatus.js"
import * as Migrations from "../src/storage/migrations.js"
import type { DatabaseTooNew } from "../src/storage/schemaGuard.js"
import * as WalCheckpointer from "../src/storage/WalCheckpointer.js"
import { Broadcaster, type BroadcasterConfig, type InvalidBroadcasterConfig } from "../src/voting/Broadcaster.js"
import type { AnyResolution } from "../src/voting/Resolution.js"
import { type DuplicateResolution, ResolutionRegistry } from "../src/voting/ResolutionRegistry.js"
import { VoteLedger } from "../src/voting/VoteLedger.js"
import type { VoteTransport } from "../src/voting/VoteTransport.js"

export interface NodeOptions {
  /** The SQLite file (created if missing; `:memory:` for a throw-away node). */
  readonly filename: string
  /** The node's identity, as its validator key is spelled in the validator set. */
  readonly identity: string
  /** Config sections by extension name (`[app.extensions.<name>]`). */
  readonly extensions?: Readonly<Record<string, Readonly<Record<string, string>>>>
  /** The listeners this node runs (each must need nothing beyond what the manager gives). */
  readonly listeners: ReadonlyArray<Listener<unknown, never>>
  /** The resolution types this node votes on and applies. */
  readonly resolutions: ReadonlyArray<AnyResolution>
  readonly broadcaster?: BroadcasterConfig
}

/** Every service of one node, for the host to use. */
export type NodeServices =
  | SqlClient.SqlClient
  | ResolutionRegistry
  | ListenerRegistry
  | EventStorage
  | EventLog
  | VoteLedger
  | Broadcaster
  | ListenerManager
  | NodeInfo

/** The database: the SQLite file, migrated, its WAL checkpointed on a thread of its own (`WalCheckpointer`). */
export const database = (filename: string) =>
  Layer.merge(Migrations.layer, WalCheckpointer.layer(filename)).pipe(Layer.provideMerge(open(filename)))

/**
 * Opens the SQLite file. better-sqlite3 throws when the file cannot be opened (a directory, a
 * missing parent directory); that becomes a `SqlError` naming the file instead of a defect.
 */
const open = (filename: string): Layer.Layer<SqliteClient.SqliteClient | SqlClient.SqlClient, ConfigError.ConfigError | SqlError> =>
  SqliteClient.layer({ filename }).pipe(
    Layer.catchAllCause((cause): Layer.Layer<unknown, ConfigError.ConfigError | SqlError> => {
      if (Cause.isInterruptedOnly(cause)) return Layer.failCause(cause)
      const error = Cause.squash(cause)
      const reason = error instanceof Error ? error.message : String(error)
      return Layer.fail(
        new SqlError({
          message: `cannot open the node database ${filename}: ${reason}; ` +
            `check that the path is a file in an existing, writable directory`,
          cause: error
        })
      )
    })
  )

/**
 * One node. Building it opens the database and starts the manager, which runs the listeners
 * whenever `ValidatorStatus` says synced and validator; closing its scope stops them all.
 */
export const layer = (options: NodeOptions) => {
  const info = NodeInfo.layer({ identity: options.identity, extensions: options.extensions ?? {} })
  const storage = Layer.merge(database(options.filename), ResolutionRegistry.layer(...options.resolutions))
  const events = EventStore.layerSql.pipe(Layer.provideMerge(storage))
  const ledger = VoteLedger.layer.pipe(Layer.provideMerge(events))
  const voting = Broadcaster.layer(options.broadcaster).pipe(Layer.provideMerge(ledger), Layer.provideMerge(info))
  const node: Layer.Layer<NodeServices, NodeStartError, ValidatorStatus | VoteTransport> = ListenerManager.layer.pipe(
    Layer.provideMerge(ListenerRegistry.layer(...options.listeners)),
    Layer.provideMerge(voting)
  )
  return node
}

/** Why a node could not start: its database, a listener or resolution that cannot be registered, or a bad broadcaster config. */
export type NodeStartError =
  | SqlError
  | DatabaseTooNew
  | ConfigError.ConfigError
  | MigrationError
  | InvalidListenerName
  | DuplicateListener
  | DuplicateResolution
  | InvalidEventTypeName
  | InvalidBroadcasterConfig
