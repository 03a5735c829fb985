#!/usr/bin/env node
import { Command } from "@effect/cli"
// Subpaths, not the package's index: the index loads every Node module of the platform (HTTP, workers...), which
// nearly doubles the start-up time of a one-shot command.
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { packageRoot } from "../packageRoot.js"
import { configCommand } from "./config.js"
import { downloadCommand } from "./download.js"
import { Progress } from "./progress.js"
import { recvCommand } from "./recv.js"
import { sendCommand } from "./send.js"
import { serveCommand } from "./serve.js"
import { storeCommand } from "./store.js"
import { taskCommand } from "./task.js"
import { uploadCommand } from "./upload.js"

const version = (JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as { version: string }).version

const root = Command.make("tt-file-server").pipe(
  Command.withDescription(
    "A TeamTalk-compatible file server, and a client to try it: serve (the daemon), config (its effective settings), task create, send and recv (online), " +
      "upload and download (offline), store ls|rm|verify. `tt-file-server <command> --help` shows each command's flags and examples."
  ),
  Command.withSubcommands([serveCommand, configCommand, taskCommand, sendCommand, recvCommand, uploadCommand, downloadCommand, storeCommand])
)

const cli = Command.run(root, { name: "tt-file-server", version })

/**
 * 0 on success or a signal, 2 for what the user must fix (flags, values), 1 for anything else
 * (a failed transfer). A transfer stopped by a signal has set process.exitCode to 1: it did not succeed.
 */
const exitCode = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit)) return 0
  if (Cause.isInterruptedOnly(exit.cause)) return process.exitCode === 1 ? 1 : 0
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") {
    const error = failure.value as { _tag?: string }
    if (error._tag === "UsageError" || isCliValidationError(error)) return 2
  }
  return 1
}

const isCliValidationError = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error &&
  ["CommandMismatch", "CorrectedFlag", "HelpRequested", "InvalidArgument", "InvalidValue", "MissingValue", "MissingFlag", "MultipleValuesDetected", "MissingSubcommand", "NoBuiltInMatch", "UnclusteredFlag"].includes(
    (error as { _tag: string })._tag
  )

/** @effect/cli prints its own usage errors; ours and start-up failures get one line on stderr. */
const report = (cause: Cause.Cause<unknown>) =>
  Effect.sync(() => {
    if (Cause.isInterruptedOnly(cause)) return
    const failure = Cause.failureOption(cause)
    if (failure._tag === "Some" && isCliValidationError(failure.value)) return
    const error = failure._tag === "Some" ? failure.value : Cause.squash(cause)
    console.error(`tt-file-server: ${error instanceof Error ? error.message : String(error)}`)
  })

const program = cli(process.argv).pipe(Effect.tapErrorCause(report), Effect.provide(Progress.layer), Effect.provide(NodeContext.layer))

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  disablePrettyLogger: true,
  teardown: (exit, onExit) => onExit(exitCode(exit))
})
