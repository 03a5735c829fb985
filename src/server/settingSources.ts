/**
 * Where settings come from: the command line, `TTFS_*` environment variables and a TeamTalk-style file, each a
 * Source of option values that remembers where each value was given. The sources become one ConfigProvider, the
 * first that has an option giving it, and settingsConfig is loaded from it; a bad value is reported by where it was
 * given (`--client-port`, `TTFS_CLIENT_PORT`, `fileserver.conf line 3 (ClientListenPort)`).
 */
import { ConfigProvider, Data, Effect, Either, Option } from "effect"
import type { ConfigError } from "effect"
import type { ServerSettings } from "./config.js"
import type { ConfigFileEntry } from "./configFile.js"
import { envName, fileKey, optionList, settingsConfig } from "./settingsConfig.js"

export interface Given {
  readonly value: string
  /** Where the value was given, as the user wrote it there. */
  readonly origin: string
}

/** Option values by option name (the flag without `--`). */
export type Source = ReadonlyMap<string, Given>

/** A value or a variable the user has to fix; one line, naming where it was given. */
export class SettingsError extends Data.TaggedError("SettingsError")<{ readonly message: string }> {}

/** Something in the file that is ignored: the daemon runs, but the user should know. */
export interface ConfigWarning {
  readonly file: string
  readonly line: number
  readonly key: string
  readonly message: string
}

/** The variable that names the configuration file: not a setting itself. */
export const CONFIG_ENV = "TTFS_CONFIG"

export const flagSource = (flags: Readonly<Record<string, Option.Option<string>>>): Source =>
  new Map(
    Object.entries(flags).flatMap(([name, value]) => (Option.isSome(value) ? [[name, { value: value.value, origin: `--${name}` }] as const] : []))
  )

const byEnvName = new Map(optionList.map((o) => [envName(o.name), o.name]))

/** The `TTFS_*` variables; any other `TTFS_` name is a mistake (a typo would otherwise be silently ignored). An empty one counts as unset. */
export const envSource = (env: Readonly<Record<string, string | undefined>>): Either.Either<Source, SettingsError> => {
  const source = new Map<string, Given>()
  const unknown: Array<string> = []
  for (const [variable, value] of Object.entries(env)) {
    if (!variable.startsWith("TTFS_") || variable === CONFIG_ENV) continue
    const name = byEnvName.get(variable)
    if (name === undefined) unknown.push(variable)
    else if (value !== undefined && value !== "") source.set(name, { value, origin: variable })
  }
  return unknown.length === 0
    ? Either.right(source)
    : Either.left(
        new SettingsError({
          message: `${unknown.join(", ")}: no such setting (the variables are TTFS_ and a serve flag in capitals, e.g. TTFS_CLIENT_PORT for --client-port)`
        })
      )
}

const byFileKey = new Map(
  optionList.flatMap((o) => [[fileKey(o.name), o.name] as const, ...(o.teamTalkKey === undefined ? [] : [[o.teamTalkKey, o.name] as const])])
)

/**
 * A parsed file's entries. As in TeamTalk, an empty value is skipped and the first line for a setting is the one
 * that counts; unlike TeamTalk, what is ignored is said: keys of other TeamTalk servers, later lines for a setting.
 */
export const fileSource = (file: string, entries: ReadonlyArray<ConfigFileEntry>): { readonly source: Source; readonly warnings: ReadonlyArray<ConfigWarning> } => {
  const source = new Map<string, Given & { readonly line: number }>()
  const warnings: Array<ConfigWarning> = []
  for (const { line, key, value } of entries) {
    const name = byFileKey.get(key)
    const first = name === undefined ? undefined : source.get(name)
    if (name === undefined) warnings.push({ file, line, key, message: `unknown key ${key} ignored` })
    else if (value === "") continue
    else if (first !== undefined) warnings.push({ file, line, key, message: `${key} ignored: line ${first.line} already sets ${name}` })
    else source.set(name, { value, origin: `${file} line ${line} (${key})`, line })
  }
  return { source, warnings }
}

const providerOf = (source: Source): ConfigProvider.ConfigProvider => ConfigProvider.fromMap(new Map([...source].map(([name, given]) => [name, given.value])))

/** One provider: for each option, the first source that gives it. */
export const layered = (sources: ReadonlyArray<Source>): ConfigProvider.ConfigProvider =>
  sources.reduce((before, source) => ConfigProvider.orElse(before, () => providerOf(source)), providerOf(new Map()))

const problems = (error: ConfigError.ConfigError): ReadonlyArray<{ readonly path: ReadonlyArray<string>; readonly message: string }> =>
  error._op === "And" || error._op === "Or" ? [...problems(error.left), ...problems(error.right)] : [{ path: error.path, message: error.message }]

const originOf = (sources: ReadonlyArray<Source>, name: string): string =>
  sources.find((s) => s.has(name))?.get(name)?.origin ?? `--${name} (default)`

/** The settings from the sources, first one first, each value checked; a failure names where each bad value was given. */
export const resolveSettings = (sources: ReadonlyArray<Source>): Effect.Effect<ServerSettings, SettingsError> =>
  layered(sources)
    .load(settingsConfig)
    .pipe(
      Effect.mapError(
        (error) => new SettingsError({ message: problems(error).map((p) => `${originOf(sources, p.path[0] ?? "")}: ${p.message}`).join("; ") })
      )
    )
