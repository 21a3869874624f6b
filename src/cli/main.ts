#!/usr/bin/env node
/**
 * The `kwil-listeners` command. The devnet, `listen` and `inspect` commands arrive with their
 * issues; until then this says so plainly and exits 0.
 */
const command = process.argv[2] ?? "help"
if (command === "devnet") {
  console.log("kwil-listeners: the devnet is not built yet (see the README's status section).")
} else {
  console.log("kwil-listeners: no commands are built yet (devnet, listen and inspect are planned).")
}
