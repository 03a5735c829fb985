#!/usr/bin/env node
import { Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { packageRoot } from "../packageRoot.js"
import { serveCommand } from "./serve.js"

const version = (JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as { version: string }).version

const root = Command.make("tt-file-server").pipe(
  Command.withDescription("A TeamTalk-compatible file server."),
  Command.withSubcommands([serveCommand])
)

const cli = Command.run(root, { name: "tt-file-server", version })

/** 0 on success or a signal, 2 for what the user must fix (flags, values), 1 for anything else. */
const exitCode = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return 0
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") {
    const error = failure.value as { _tag?: string }
    if (error._tag === "UsageError" || error._tag === "ValidationError" || isCliValidationError(error)) return 2
  }
  return 1
}

const isCliValidationError = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error &&
  ["CommandMismatch", "CorrectedFlag", "HelpRequested", "InvalidArgument", "InvalidValue", "MissingValue", "MissingFlag", "MultipleValuesDetected", "MissingSubcommand", "NoBuiltInMatch", "UnclusteredFlag"].includes(
    (error as { _tag: string })._tag
  )

const program = cli(process.argv).pipe(
  Effect.tapErrorTag("UsageError", (e) => Effect.sync(() => console.error(`tt-file-server: ${e.message}`))),
  Effect.provide(NodeContext.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(exitCode(exit))
})
