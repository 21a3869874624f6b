/**
 * The launcher's bundle: when `bin/kwil-listeners.js` may run `dist/kwil-listeners.mjs` (only while
 * it is newer than everything it was made from), and that a bundle runs the commands: the native
 * SQLite driver and the WAL checkpointer's thread included.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { bundle, bundlePath, isFresh, root } from "../../bin/bundle.mjs"
import * as Node from "../../layers/Node.js"

/** A folder removed when the test's scope closes. */
const tempFolder = (under: string, prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(under, prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** Sets a file's modification time to `seconds` after the epoch. */
const at = (path: string, seconds: number) => utimesSync(path, seconds, seconds)

/** A package laid out as the bundle's inputs are, every file and folder at time 1,000, the bundle at 2,000. */
const layout = (dir: string) => {
  const files = ["src/cli/main.ts", "src/events/EventStore.ts", "layers/Node.ts", "tsconfig.json", "bin/bundle.mjs", "package-lock.json",
    "node_modules/.package-lock.json", "dist/kwil-listeners.mjs"]
  for (const file of files) {
    mkdirSync(join(dir, file, ".."), { recursive: true })
    writeFileSync(join(dir, file), "")
  }
  for (const path of [...files, "src/cli", "src/events", "src", "layers", "bin", "node_modules"]) at(join(dir, path), 1_000)
  at(bundlePath(dir), 2_000)
}

describe("the launcher's bundle", () => {
  it.scoped("is used only while it is newer than the sources, the compiler settings, the bundler and what npm installed", () =>
    Effect.gen(function*() {
      const dir = yield* tempFolder(tmpdir(), "bundle-")
      layout(dir)
      expect(isFresh(dir)).toBe(true)

      for (const [input, what] of [
        ["src/events/EventStore.ts", "a source"],
        ["layers/Node.ts", "a layer"],
        ["tsconfig.json", "the compiler settings"],
        ["node_modules/.package-lock.json", "what npm installed"],
        ["package-lock.json", "the lockfile"],
        ["bin/bundle.mjs", "the bundler"]
      ] as const) {
        at(join(dir, input), 3_000)
        expect(isFresh(dir), `${what} changed after the build`).toBe(false)
        at(join(dir, input), 1_000)
        expect(isFresh(dir)).toBe(true)
      }

      rmSync(join(dir, "src/events/EventStore.ts"))
      at(join(dir, "src/events"), 3_000)
      expect(isFresh(dir), "a source deleted after the build").toBe(false)
      at(join(dir, "src/events"), 1_000)
      expect(isFresh(dir)).toBe(true)

      rmSync(bundlePath(dir))
      expect(isFresh(dir), "no bundle").toBe(false)
    }))

  it.scoped("runs the commands: its version, a bad flag (exit 2), inspect of a node database, and a devnet with its checkpointer threads", () =>
    Effect.gen(function*() {
      // Inside the package, so that the bundle finds better-sqlite3 in its node_modules, as dist/ does.
      const out = yield* tempFolder(root, ".bundle-test-")
      yield* Effect.promise(() => bundle(root, out))
      expect(existsSync(join(out, "walCheckpointer.worker.mjs"))).toBe(true)
      const run = (...args: Array<string>) =>
        spawnSync(process.execPath, [join(out, "kwil-listeners.mjs"), ...args], { cwd: root, encoding: "utf8", timeout: 60_000 })

      const version = run("--version")
      expect(version.status).toBe(0)
      expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version)

      const bad = run("listen", "--confirmations", "many")
      expect(bad.status).toBe(2)
      expect(bad.stderr.trim().split("\n")).toHaveLength(1)

      const dir = yield* tempFolder(tmpdir(), "bundle-db-")
      const db = join(dir, "node.db")
      // Made and migrated by the node's own database layer, then closed.
      yield* Effect.scoped(Layer.build(Node.database(db)))
      const inspect = run("inspect", "--db", db, "--json")
      expect(inspect.stderr).toBe("")
      expect(inspect.status).toBe(0)
      expect(JSON.parse(inspect.stdout)).toMatchObject({ events: [] })

      // Each validator's database is checkpointed by a thread from the script beside the bundle;
      // without it the node says so ("cannot checkpoint the WAL on a thread of its own") and goes on.
      const devnet = run("devnet", "--validators", "1", "--deposits", "2", "--data-dir", join(dir, "devnet"))
      expect(devnet.status).toBe(0)
      expect(devnet.stdout).toContain("Deposits: 2 of 2 credited")
      expect(devnet.stderr).not.toContain("checkpoint")
    }), 120_000)
})
