/**
 * `npm run bench [-- --quick] [-- --only name,...]`: runs every benchmark in this folder, prints
 * the table and writes `bench/results.json` (`[{ name, ours, baseline, unit, ratio, bar, pass }]`
 * plus a note each). Figures are medians of side-by-side rounds; see `harness.ts`. A `--quick`
 * run's smaller sizes are not the figures of record: it writes `bench/results.local.json`
 * (ignored by git) instead.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import type { Options, Result } from "./harness.js"

interface Bench {
  readonly name: string
  readonly run: (options: Options) => Promise<ReadonlyArray<Result>>
}

const benches: ReadonlyArray<Bench> = [
  { name: "eventWrites", run: async (o) => (await import("./eventWrites.js")).run(o) },
  { name: "voteFinalization", run: async (o) => (await import("./voteFinalization.js")).run(o) },
  { name: "manager", run: async (o) => (await import("./manager.js")).run(o) },
  { name: "memoryFlips", run: async (o) => (await import("./memory.js")).flips(o) },
  { name: "catchup", run: async (o) => (await import("./catchup.js")).run(o) },
  { name: "memoryCatchup", run: async (o) => (await import("./memoryCatchup.js")).run(o) }
]

/** Exits 2 with `message`: a mistyped flag or name must not run everything and overwrite the figures of record. */
const refuse = (message: string): never => {
  console.error(message)
  process.exit(2)
}

const flags = (() => {
  try {
    return parseArgs({ options: { quick: { type: "boolean" }, only: { type: "string" } }, strict: true }).values
  } catch (error) {
    return refuse(`${(error as Error).message}; usage: npm run bench [-- --quick] [-- --only name,...]`)
  }
})()
const quick = flags.quick === true
const only = flags.only === undefined ? undefined : new Set(flags.only.split(","))
const unknown = only === undefined ? [] : [...only].filter((name) => !benches.some((b) => b.name === name))
if (unknown.length > 0) refuse(`no benchmark named ${unknown.join(", ")}: use ${benches.map((b) => b.name).join(", ")}`)

const fmt = (n: number | null, digits = 2): string =>
  n === null ? "-" : Math.abs(n) >= 1000 ? Math.round(n).toLocaleString("en") : String(Math.round(n * 10 ** digits) / 10 ** digits)

const table = (results: ReadonlyArray<Result>): string => {
  const head = ["benchmark", "ours", "baseline", "unit", "ratio", "bar", "pass"]
  const rows = results.map((r) => [r.name, fmt(r.ours), fmt(r.baseline), r.unit, fmt(r.ratio), r.bar, r.pass ? "yes" : "NO"])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n")
}

const machine = `${cpus().length} x ${cpus()[0]?.model.trim() ?? "cpu"}, node ${process.version}`
console.log(`kwil-listeners benchmarks${quick ? " (--quick)" : ""}: ${machine}, load ${loadavg().map((l) => l.toFixed(1)).join(" ")}`)
const results: Array<Result> = []
for (const bench of benches) {
  if (only !== undefined && !only.has(bench.name)) continue
  const started = Date.now()
  process.stdout.write(`${bench.name} ... `)
  try {
    const rows = await bench.run({ quick })
    results.push(...rows)
    console.log(`${((Date.now() - started) / 1000).toFixed(1)} s`)
  } catch (error) {
    console.log("FAILED")
    console.error(error)
    process.exitCode = 1
  }
}
console.log(`\n${new Date().toISOString()}, ${machine}, load after: ${loadavg().map((l) => l.toFixed(1)).join(" ")}\n`)
console.log(table(results))
for (const r of results) if (r.note !== undefined) console.log(`- ${r.name}: ${r.note}`)
const out = fileURLToPath(new URL(quick ? "./results.local.json" : "./results.json", import.meta.url))
// A partial run (`--only`) replaces its own rows and keeps the others' latest figures.
const kept: ReadonlyArray<Result> = only !== undefined && existsSync(out)
  ? (JSON.parse(readFileSync(out, "utf8")) as ReadonlyArray<Result>).filter((r) => !results.some((n) => n.name === r.name))
  : []
writeFileSync(out, JSON.stringify([...kept, ...results], null, 2) + "\n")
console.log(`\nwritten ${out}`)
