/**
 * `kwil-listeners`: the command line. Subcommands: `devnet` (the whole loop on a local chain),
 * `listen` (the eth_deposits listener against any chain) and `inspect` (a node database).
 *
 * Exit codes: 0 success (and Ctrl-C: the command stops cleanly, finalizers run); 2 bad input (an
 * unknown flag, a bad value, a missing or unreadable file, bad TOML), reported as ONE line on
 * stderr naming what and why; 1 any other failure, with its reason. Logs go to stderr, so stdout
 * carries only the command's output (`--json` stays machine-readable), all of it before the
 * process exits. A closed stdout or stderr (`| head`) stops the command as Ctrl-C does.
 */
import { Command, HelpDoc, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Exit, Logger, Option } from "effect"
import { devnetCommand } from "./devnet.js"
import { inspectCommand } from "./inspect.js"
import { listenCommand } from "./listen.js"
import { isBadInput } from "./options.js"
import { StderrLine, stderrLogger } from "./Progress.js"

const root = Command.make("kwil-listeners").pipe(
  Command.withDescription("Kwil's event listeners on Effect: watch Ethereum deposits, store them, vote them into effect."),
  Command.withSubcommands([devnetCommand, listenCommand, inspectCommand])
)

const cli = Command.run(root, { name: "kwil-listeners", version: "0.1.0" })

/** Bad input exits 2, other failures 1. */
export const exitCodes = { ok: 0, failure: 1, badInput: 2 } as const

/** @effect/cli renders its errors as ANSI help docs; one plain line is what a script can show. */
const oneLine = (text: string): string =>
  // eslint-disable-next-line no-control-regex
  text.replace(/\x1b\[[0-9;]*m/g, "").split("\n").map((s) => s.trim()).filter((s) => s !== "").join(" ")

/** The line to print and the exit code for a failure of the program. */
const describeFailure = (
  cause: Cause.Cause<unknown>,
  argv: ReadonlyArray<string>
): { readonly line: string; readonly code: number } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (ValidationError.isValidationError(error)) {
      const text = oneLine(HelpDoc.toAnsiText(error.error))
      // "Invalid subcommand for kwil-listeners - use one of ..." does not say which word.
      const mismatch = /^Invalid subcommand for kwil-listeners - (.*)$/.exec(text)
      return {
        line: mismatch !== null && argv[2] !== undefined ? `'${argv[2]}' is not a command: ${mismatch[1]}` : text,
        code: exitCodes.badInput
      }
    }
    if (isBadInput(error)) return { line: oneLine(error.message), code: exitCodes.badInput }
    const message = error instanceof Error ? error.message : typeof error === "object" && error !== null && "message" in error
      ? String(error.message)
      : String(error)
    // Some errors keep the reason in their cause (`SqlError`: "Failed to prepare statement").
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message.trim() : ""
    const line = cause === "" || message.includes(cause) ? message : `${message.trim()}: ${cause}`
    return { line, code: exitCodes.failure }
  }
  return { line: Cause.pretty(cause), code: exitCodes.failure }
}

/**
 * Runs the command line; never fails: it prints the failure and returns the exit code.
 * @effect/cli prints its own validation errors as multi-line help docs through `Console.error`:
 * silenced here, since the one line below says the same.
 */
export const main = (argv: ReadonlyArray<string>) =>
  cli(argv).pipe(
    quietConsoleErrors,
    Effect.as(exitCodes.ok),
    Effect.catchAllCause((cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.succeed(exitCodes.ok)
      const { code, line } = describeFailure(cause, argv)
      return Effect.sync(() => {
        StderrLine.clearStatus()
        StderrLine.write(`kwil-listeners: ${line}`)
        return code
      })
    }),
    Effect.provide(NodeContext.layer),
    Effect.provide(Logger.replace(Logger.defaultLogger, stderrLogger))
  )

/** Runs `effect` with a Console whose effectful `error` does nothing (the `unsafe` methods, used by loggers, stay). */
const quietConsoleErrors = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.console, (console) => Console.withConsole(effect, { ...console, error: () => Effect.void }))

/**
 * Exits with `code` once stdout and stderr have passed on what was written to them: a pipe is
 * written asynchronously, and `process.exit` at once would drop the rest (a `--json` report cut
 * off, with exit 0). A stream that does not drain (its reader stopped reading) is given up on
 * after 5 s, and the process does not wait for a lingering socket either.
 */
const exitOnceFlushed = (code: number) => {
  process.exitCode = code
  let pending = 2
  const flushed = () => {
    if (--pending === 0) process.exit(code)
  }
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.writableLength === 0 || stream.destroyed) flushed()
    else stream.write("", flushed)
  }
  setTimeout(() => process.exit(code), 5_000).unref()
}

/**
 * A reader that goes away (`| head`) closes the pipe, and the next write fails with EPIPE, which
 * Node throws as an uncaught error: the process died with a stack trace and skipped its
 * finalizers (anvil left running, temp files left). The command stops as on Ctrl-C instead.
 */
const stopWhenOutputCloses = (ended: () => boolean) => {
  let stopping = false
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE" && error.code !== "ERR_STREAM_DESTROYED") throw error
      // Once the program ended, `exitOnceFlushed` is exiting already; once runMain's own handler
      // ran (a Ctrl-C that also ended the reader: `| tee`), it is stopping already, and without
      // its handler a SIGINT would kill the process in the middle of its finalizers.
      if (!stopping && !ended() && process.listenerCount("SIGINT") > 0) {
        stopping = true
        process.kill(process.pid, "SIGINT")
      }
    })
  }
}

if (process.argv[1] !== undefined && /(?:main\.ts|kwil-listeners(?:\.m?js)?)$/.test(process.argv[1])) {
  let code: number = exitCodes.failure
  let ended = false
  stopWhenOutputCloses(() => ended)
  NodeRuntime.runMain(Effect.map(main(process.argv), (c) => {
    code = c
  }), {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // Exit with the code even on success: a lingering socket must not keep a finished command alive.
    teardown: (exit) => {
      ended = true
      exitOnceFlushed(Exit.isSuccess(exit) ? code : Cause.isInterruptedOnly(exit.cause) ? exitCodes.ok : exitCodes.failure)
    }
  })
}
