/** `npm run bench` refuses a benchmark name it does not know, rather than run nothing and exit 0. */
import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "../..")

describe("npm run bench --only", () => {
  it("refuses an unknown benchmark name, naming the known ones", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", join(root, "bench/main.ts"), "--only", "memory"], {
      cwd: root,
      encoding: "utf8",
      timeout: 60_000
    })
    expect(run.status).toBe(2)
    expect(run.stderr).toContain("no benchmark named memory: use eventWrites, voteFinalization, manager, memoryFlips, catchup, memoryCatchup")
  }, 60_000)
})
