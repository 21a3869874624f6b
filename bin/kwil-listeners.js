#!/usr/bin/env node
// Loads the TypeScript CLI in this same process through tsx's loader, so the package needs no
// build step and signals (Ctrl-C) reach the program directly.
import { register } from "tsx/esm/api"

register()
await import("../src/cli/main.ts")
