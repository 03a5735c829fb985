import { Data, Effect, Either, Option } from "effect"
import { readFile } from "node:fs/promises"
import type { ServerSettings } from "../server/config.js"
import { parseConfigFile } from "../server/configFile.js"
import type { ConfigWarning, Source } from "../server/settingSources.js"
import { CONFIG_ENV, envSource, fileSource, flagSource, resolveSettings } from "../server/settingSources.js"

/** A flag or value the user has to fix; the CLI exits with status 2. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** What `serve` and `config` were given: `--config`, and the settings' flags by name (absent: not on the command line). */
export interface GivenFlags {
  readonly config: Option.Option<string>
  readonly settings: Readonly<Record<string, Option.Option<string>>>
}

export interface LoadedSettings {
  readonly settings: ServerSettings
  readonly warnings: ReadonlyArray<ConfigWarning>
}

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/** The file `--config` (else TTFS_CONFIG) names, as a source; none without either. */
const configFile = (flag: Option.Option<string>, env: NodeJS.ProcessEnv): Effect.Effect<{ readonly source: Source; readonly warnings: ReadonlyArray<ConfigWarning> }, UsageError> => {
  const given = Option.match(flag, {
    onSome: (path) => Option.some({ path, origin: "--config" }),
    onNone: () => Option.map(Option.fromNullable(env[CONFIG_ENV] || undefined), (path) => ({ path, origin: CONFIG_ENV }))
  })
  if (Option.isNone(given)) return Effect.succeed({ source: new Map(), warnings: [] })
  const { path, origin } = given.value
  return Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (e) => new UsageError({ message: `${origin}: cannot read ${path}: ${describe(e)}` })
  }).pipe(
    Effect.flatMap((text) =>
      Either.match(parseConfigFile(text), {
        onLeft: (e) => Effect.fail(new UsageError({ message: `${path} line ${e.line}: ${e.problem}` })),
        onRight: (entries) => Effect.succeed(fileSource(path, entries))
      })
    )
  )
}

/** The settings from, first to last: the flags given, the `TTFS_*` environment, the configuration file, the defaults. */
export const loadSettings = (flags: GivenFlags, env: NodeJS.ProcessEnv = process.env): Effect.Effect<LoadedSettings, UsageError> =>
  Effect.gen(function* () {
    const environment = yield* envSource(env)
    const file = yield* configFile(flags.config, env)
    const settings = yield* resolveSettings([flagSource(flags.settings), environment, file.source])
    return { settings, warnings: file.warnings }
  }).pipe(Effect.mapError((e) => (e._tag === "UsageError" ? e : new UsageError({ message: e.message }))))

/** A warning about the file, as one line for a terminal. */
export const describeWarning = (w: ConfigWarning): string => `${w.file} line ${w.line}: ${w.message}`
