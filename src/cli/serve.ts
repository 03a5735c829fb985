import { Command, Options } from "@effect/cli"
import { Effect, Option } from "effect"
import { ServerLive } from "../server/app.js"
import { ServerConfig } from "../server/config.js"
import { loggerLayer } from "../server/logging.js"
import type { SettingOption } from "../server/settingsConfig.js"
import { envName, fileKey, optionList } from "../server/settingsConfig.js"
import { runUntilStopped } from "../server/shutdown.js"
import type { GivenFlags } from "./settings.js"
import { describeWarning, loadSettings } from "./settings.js"

type Flag = Options.Options<Option.Option<string>>

/**
 * A setting's flag. It has no default of its own: a flag that is absent leaves the setting to the environment,
 * the file or the default (settingSources.ts), so it must be told apart from one given with the default's value.
 */
const flagOf = (o: SettingOption<unknown> & { readonly shownDefault: string }): Flag => {
  const keys = o.teamTalkKey === undefined ? fileKey(o.name) : `${fileKey(o.name)} or ${o.teamTalkKey}`
  const help = `${o.description} Default: ${o.shownDefault}. Environment: ${envName(o.name)}; file key: ${keys}.`
  const described = <A>(flag: Options.Options<A>) => flag.pipe(Options.withDescription(help), Options.optional, Options.map(Option.map(String)))
  if (o.flag === "integer") return described(Options.integer(o.name))
  if (o.flag === "text") return described(Options.text(o.name))
  if (o.flag === "switch") {
    // @effect/cli's booleans are false when absent: a pair of them says on, off, or nothing.
    const on = Options.boolean(o.name).pipe(Options.withDescription(help))
    const off = Options.boolean(`no-${o.name}`).pipe(Options.withDescription(`Turns --${o.name} off (over the environment and the file).`))
    return Options.all([on, off]).pipe(Options.map(([yes, no]) => (yes ? Option.some("true") : no ? Option.some("false") : Option.none())))
  }
  return described(Options.choice(o.name, o.flag.choices))
}

/** The daemon's flags; `config` takes the same ones. */
export const serveOptions = {
  config: Options.file("config").pipe(
    Options.optional,
    Options.withDescription(
      "A configuration file in TeamTalk's fileserver.conf format (key=value, # comments); flags and TTFS_* variables override it. Default: $TTFS_CONFIG, else none."
    )
  ),
  settings: Options.all(Object.fromEntries(optionList.map((o) => [o.name, flagOf(o)])))
}

export const serveCommand = Command.make("serve", serveOptions, (flags: GivenFlags) =>
  loadSettings(flags).pipe(
    Effect.flatMap(({ settings, warnings }) =>
      Effect.forEach(warnings, (w) => Effect.logWarning(describeWarning(w)).pipe(Effect.annotateLogs({ file: w.file, line: w.line, key: w.key }))).pipe(
        // Until the first SIGINT/SIGTERM (runMain interrupts), then a graceful drain; a second signal exits at once.
        Effect.zipRight(runUntilStopped(ServerLive)),
        Effect.provide(ServerConfig.layer(settings)),
        Effect.provide(loggerLayer(settings.logLevel))
      )
    )
  )
).pipe(
  Command.withDescription(
    "Run the file server daemon (what `npm start` runs). Settings come from the flags, then TTFS_* environment variables, then --config FILE, then the defaults."
  )
)
