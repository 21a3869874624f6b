#!/usr/bin/env node
// Runs the command line in this same process, so signals (Ctrl-C) reach the program directly:
// the bundle (`dist/kwil-listeners.mjs`, see `bundle.mjs`) when it is up to date with the
// sources, which starts in well under a second; otherwise the TypeScript sources through tsx's
// loader, which needs no build step but takes seconds to start.
import { pathToFileURL } from "node:url"
import { bundlePath, isFresh } from "./bundle.mjs"

if (isFresh()) {
  await import(pathToFileURL(bundlePath()).href)
} else {
  const { register } = await import("tsx/esm/api")
  register()
  await import("../src/cli/main.ts")
}
