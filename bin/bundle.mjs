#!/usr/bin/env node
/**
 * The command line as one JavaScript file, `dist/kwil-listeners.mjs`, which `bin/kwil-listeners.js`
 * runs when it is up to date. Through tsx's loader, every one of the ~1,000 modules the CLI
 * imports is resolved and transformed on the loader's thread, and a command took 4 to 5 s to
 * start (`--version`: 4.12 and 4.55 s here); bundled, 0.72 s.
 *
 * `npm ci` builds it (`prepare`), and so do `npm start` and `npm test` when it is out of date;
 * `node bin/bundle.mjs` by hand. better-sqlite3 stays outside (a native addon); the WAL
 * checkpointer's thread script is copied beside the bundle, where `WalCheckpointer` looks for it.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, realpathSync, renameSync, statSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The package's root: this file is in `bin/`. */
export const root = join(dirname(fileURLToPath(import.meta.url)), "..")

/** Where the bundle goes. */
export const bundlePath = (at = root) => join(at, "dist", "kwil-listeners.mjs")

/**
 * What the bundle is made of: the sources, the compiler settings esbuild reads, this script, and
 * what npm installed (its record of it). By modification time: a source copied back with an
 * older time (`cp -p`, `tar x`) is not seen, and `npm run build` is then needed.
 */
const inputs = (at) => [
  join(at, "src"),
  join(at, "layers"),
  join(at, "tsconfig.json"),
  join(at, "bin", "bundle.mjs"),
  join(at, "package-lock.json"),
  join(at, "node_modules", ".package-lock.json")
]

/** The newest modification time (ms) of `path` and, for a folder, of everything in it (a deletion changes its folder's). */
const newest = (path) => {
  if (!existsSync(path)) return 0
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.mtimeMs
  let latest = stat.mtimeMs
  for (const entry of readdirSync(path, { recursive: true })) {
    latest = Math.max(latest, statSync(join(path, String(entry))).mtimeMs)
  }
  return latest
}

/**
 * Whether the bundle at `at` exists and is newer than everything it was made from: a source
 * edited since (or a dependency installed) makes it stale, and the launcher then runs the
 * sources through tsx instead.
 */
export const isFresh = (at = root) => {
  const bundle = bundlePath(at)
  if (!existsSync(bundle)) return false
  const built = statSync(bundle).mtimeMs
  return inputs(at).every((input) => newest(input) <= built)
}

/** Builds the bundle of the sources at `from` into the folder `to` (with esbuild, which tsx already brings). */
export const bundle = async (from = root, to = dirname(bundlePath(from))) => {
  const { build } = await import("esbuild")
  mkdirSync(to, { recursive: true })
  const worker = "walCheckpointer.worker.mjs"
  copyFileSync(join(from, "src", "storage", worker), join(to, worker))
  // Written beside, then renamed over it: a launcher starting meanwhile reads the old bundle or the new, never half of one.
  const out = join(to, "kwil-listeners.mjs")
  const partial = `${out}.${process.pid}.partial`
  await build({
    entryPoints: [join(from, "src", "cli", "main.ts")],
    outfile: partial,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["better-sqlite3"],
    // Names as written (a class's or function's `name` shows in messages), not renamed to avoid clashes.
    keepNames: true,
    // The CommonJS dependencies inside an ES module still call `require` (for node's own modules).
    banner: { js: "import { createRequire as __createRequire } from \"node:module\"; const require = __createRequire(import.meta.url);" },
    logLevel: "warning"
  })
  renameSync(partial, out)
}

// Run as a script (its path as given may go through a link; `import.meta.url` is the real one).
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  if (process.argv.includes("--if-stale") && isFresh()) process.exit(0)
  await bundle()
}
