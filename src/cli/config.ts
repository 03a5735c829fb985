import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import type { ServerSettings } from "../server/config.js"
import { serveOptions } from "./serve.js"
import type { GivenFlags } from "./settings.js"
import { describeWarning, loadSettings } from "./settings.js"

/** Settings as JSON: durations in milliseconds (as their names say), unlimited sizes as "unlimited". */
export const describeSettings = (settings: ServerSettings): string =>
  JSON.stringify(settings, (_key, value: unknown) => (value === Number.POSITIVE_INFINITY ? "unlimited" : value), 2)

export const configCommand = Command.make("config", serveOptions, (flags: GivenFlags) =>
  loadSettings(flags).pipe(
    Effect.tap(({ warnings }) => Effect.forEach(warnings, (w) => Console.error(`tt-file-server: warning: ${describeWarning(w)}`))),
    Effect.flatMap(({ settings }) => Console.log(describeSettings(settings)))
  )
).pipe(
  Command.withDescription(
    "Print the configuration `serve` would run with, given the same flags, environment and --config file, as JSON (durations in ms); " +
      "warnings about the file go to stderr. Example: tt-file-server config --config /etc/fileserver.conf --client-port 9600"
  )
)
