/** loadSettings, in-process: the flags, a given environment and a real file on disk, and every way they can be wrong. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { join } from "node:path"
import type { GivenFlags } from "../../src/cli/settings.js"
import { loadSettings } from "../../src/cli/settings.js"
import { teamTalkConf, writeConf } from "../support/configFile.js"
import { tempDir } from "../support/server.js"

const given = (config: string | undefined, settings: Record<string, string> = {}): GivenFlags => ({
  config: Option.fromNullable(config),
  settings: Object.fromEntries(Object.entries(settings).map(([k, v]) => [k, Option.some(v)]))
})

/** The UsageError's message. */
const refusal = (flags: GivenFlags, env: NodeJS.ProcessEnv = {}) =>
  loadSettings(flags, env).pipe(
    Effect.flip,
    Effect.map((e) => {
      expect(e._tag).toBe("UsageError")
      return e.message
    })
  )

describe("loadSettings", () => {
  it.scopedLive("a TeamTalk file: its settings, and a warning for each key it does not know, with its line", () =>
    Effect.gen(function* () {
      const path = yield* writeConf(teamTalkConf)
      const { settings, warnings } = yield* loadSettings(given(path, { "client-port": "0" }), {})
      expect(settings.clientPort).toBe(0)
      expect(settings.taskTimeoutMs).toBe(1000)
      expect(warnings.map((w) => [w.line, w.key])).toEqual([
        [13, "DBServerIP1"],
        [14, "LoginServerIP"]
      ])
    })
  )

  it.scopedLive("a missing or unreadable file names the file and how it was named", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const missing = join(dir, "none.conf")
      expect(yield* refusal(given(missing))).toMatch(new RegExp(`^--config: cannot read ${missing}: ENOENT`))
      expect(yield* refusal(given(undefined), { TTFS_CONFIG: missing })).toMatch(new RegExp(`^TTFS_CONFIG: cannot read ${missing}`))
      expect(yield* refusal(given(dir))).toMatch(new RegExp(`^--config: cannot read ${dir}: EISDIR`))
    })
  )

  it.scopedLive("a line without = names the file and the line, even when the line has a comment", () =>
    Effect.gen(function* () {
      const path = yield* writeConf("ClientListenPort=8600\n\n  UploadWindow 12   # twelve\n")
      expect(yield* refusal(given(path))).toBe(`${path} line 3: "UploadWindow 12" is not key=value`)
    })
  )

  it.scopedLive("a bad value from each source names that source; the file's names file, line and key", () =>
    Effect.gen(function* () {
      const path = yield* writeConf("#\nTaskTimeout=never\n")
      expect(yield* refusal(given(path))).toBe(`${path} line 2 (TaskTimeout): "never" is not a positive duration (seconds, or with a unit: 500ms, 30s, 5m, 24h, 7d)`)
      expect(yield* refusal(given(path), { TTFS_TASK_TIMEOUT: "0" })).toMatch(/^TTFS_TASK_TIMEOUT: "0" is not a positive duration/)
      expect(yield* refusal(given(path, { "task-timeout": "1y" }))).toMatch(/^--task-timeout: "1y" is not a positive duration/)
      expect(yield* refusal(given(undefined, { "admin-port": "65536" }))).toBe('--admin-port: "65536" is not a port (0-65535)')
      expect(yield* refusal(given(undefined, { "msg-host": "a b" }))).toBe('--msg-host: "a b" is not a host address')
      expect(yield* refusal(given(undefined, { advertise: "host:1:2" }))).toBe('--advertise: "host:1:2" is not host[:port]')
    })
  )

  it.scopedLive("a duration that runs as a timer is refused past what a Node timer can wait (it would fire at once), a lifetime is not", () =>
    Effect.gen(function* () {
      const path = yield* writeConf("TaskTimeout=2592000\n")
      expect(yield* refusal(given(path))).toBe(`${path} line 1 (TaskTimeout): "2592000" is longer than a timer can wait (at most 24d)`)
      expect(yield* refusal(given(undefined, { "drain-timeout": "25d" }))).toBe('--drain-timeout: "25d" is longer than a timer can wait (at most 24d)')
      const { settings } = yield* loadSettings(given(undefined, { "task-timeout": "24d", "offline-retention": "365d" }), {})
      expect(settings.taskTimeoutMs).toBe(24 * 86_400_000)
      expect(settings.offlineRetentionMs).toBe(365 * 86_400_000)
    })
  )

  it.effect("an unknown TTFS_ variable is refused before anything else is read", () =>
    Effect.gen(function* () {
      expect(yield* refusal(given("/nonexistent.conf"), { TTFS_UPLOAD_WINDOWS: "4", TTFS_X: "" })).toMatch(/^TTFS_UPLOAD_WINDOWS, TTFS_X: no such setting/)
    })
  )
})
