/**
 * TeamTalk's `fileserver.conf` format, read as TeamTalk's CConfigFileReader reads it: `key=value` lines, `#` starts
 * a comment anywhere on a line, blanks around keys and values are trimmed, blank lines are skipped. Pure: what the
 * keys mean is settingSources.ts's business.
 */
import { Either } from "effect"

export interface ConfigFileEntry {
  /** 1-based. */
  readonly line: number
  readonly key: string
  /** Everything after the first `=`, trimmed; may be empty. */
  readonly value: string
}

/** A line that is not `key=value`. TeamTalk skips such lines silently; a typo there would go unnoticed, so we refuse it. */
export interface ConfigFileSyntaxError {
  readonly line: number
  readonly problem: string
}

export const parseConfigFile = (text: string): Either.Either<ReadonlyArray<ConfigFileEntry>, ConfigFileSyntaxError> => {
  const entries: Array<ConfigFileEntry> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const content = lines[i]!.split("#", 1)[0]!.trim()
    if (content === "") continue
    const equals = content.indexOf("=")
    if (equals < 0) return Either.left({ line: i + 1, problem: `"${content}" is not key=value` })
    const key = content.slice(0, equals).trim()
    if (key === "") return Either.left({ line: i + 1, problem: `"${content}" has no key before "="` })
    entries.push({ line: i + 1, key, value: content.slice(equals + 1).trim() })
  }
  return Either.right(entries)
}
