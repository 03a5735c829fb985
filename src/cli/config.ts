import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import type { ServerSettings } from "../server/config.js"
import { serveOptions, settingsOf } from "./serve.js"

/** Settings as JSON: durations in milliseconds (as their names say), unlimited sizes as "unlimited". */
export const describeSettings = (settings: ServerSettings): string =>
  JSON.stringify(settings, (_key, value: unknown) => (value === Number.POSITIVE_INFINITY ? "unlimited" : value), 2)

export const configCommand = Command.make("config", serveOptions, (flags) =>
  settingsOf(flags).pipe(Effect.flatMap((settings) => Console.log(describeSettings(settings))))
).pipe(
  Command.withDescription(
    "Print the configuration `serve` would run with, given the same flags, as JSON (durations in ms). " +
      "Example: tt-file-server config --client-port 9600 --offline-retention 3d"
  )
)
