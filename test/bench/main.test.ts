/**
 * `npm run bench` refuses a benchmark name or a flag it does not know (exit 2), rather than run
 * nothing, or everything, and overwrite the figures of record.
 */
import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "../..")

const bench = (...args: Array<string>) =>
  spawnSync(process.execPath, ["--import", "tsx", join(root, "bench/main.ts"), ...args], { cwd: root, encoding: "utf8", timeout: 60_000 })

describe("npm run bench", () => {
  it("refuses an unknown benchmark name, naming the known ones", () => {
    for (const args of [["--only", "memory"], ["--only=memory"]]) {
      const run = bench(...args)
      expect(run.status).toBe(2)
      expect(run.stderr).toContain("no benchmark named memory: use eventWrites, voteFinalization, manager, memoryFlips, catchup, memoryCatchup")
    }
  }, 60_000)

  it("refuses an unknown flag", () => {
    const run = bench("--quik")
    expect(run.status).toBe(2)
    expect(run.stderr).toContain("Unknown option '--quik'")
  }, 60_000)
})
