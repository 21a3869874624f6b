/**
 * What the host node tells the listener side about itself: its identity and its extension
 * config sections (`[app.extensions.<name>]`, string to string as in Kwil).
 */
import { Context, Layer } from "effect"

export class NodeInfo extends Context.Tag("kwil-listeners/NodeInfo")<NodeInfo, {
  /** The node's identity (its validator key, as the node spells it). */
  readonly identity: string
  /** Config sections by extension name; a listener without one gets `configured: false`. */
  readonly extensions: Readonly<Record<string, Readonly<Record<string, string>>>>
}>() {
  /** A fixed `NodeInfo`. */
  static readonly layer = (info: NodeInfo["Type"]) => Layer.succeed(NodeInfo, info)
}
