/**
 * The devnet's final report as text: a table of deposits (who, how much, where on Ethereum, who
 * voted, which block credited it) and the credited balances next to the deposited sums.
 */
import { Option } from "effect"
import type { DevnetSummary } from "./Devnet.js"
import { shortName } from "./Validator.js"

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, right: ReadonlySet<number>) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    "  " + cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), line(widths.map((w) => "─".repeat(w))), ...rows.map(line)].join("\n")
}

/** The report: deposits, then balances, then the common state digest. */
export const format = (summary: DevnetSummary): string => {
  const creditedCount = summary.deposits.filter((d) => Option.isSome(d.resolvedAt)).length
  const deposits = table(
    ["account", "amount", "tx hash", "log", "voted by", "credited in block"],
    summary.deposits.map((d) => [
      d.account,
      d.amount.toString(),
      d.txHash,
      String(d.logIndex),
      d.voters.length === 0 ? "-" : d.voters.map(shortName).join(" "),
      Option.match(d.resolvedAt, { onNone: () => "pending", onSome: String })
    ]),
    new Set([1, 3])
  )
  const pending = new Set(summary.deposits.filter((d) => Option.isNone(d.resolvedAt)).map((d) => d.account.toLowerCase()))
  const mark = (b: DevnetSummary["balances"][number]) =>
    b.balance === b.deposited ? "✔" : pending.has(b.account) ? "(deposits pending)" : "✖ lost or credited twice"
  const balances = table(
    ["account", "credited", "deposited", ""],
    summary.balances.map((b) => [
      b.account,
      b.balance.toString(),
      b.deposited.toString(),
      mark(b)
    ]),
    new Set([1, 2])
  )
  return [
    `Deposits: ${creditedCount} of ${summary.deposits.length} credited after ${summary.height} blocks`,
    deposits,
    "",
    "Balances (every validator holds the same):",
    balances,
    "",
    `State digest after block ${summary.height}, equal on every validator: ${summary.digest}`
  ].join("\n")
}
