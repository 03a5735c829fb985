import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import type { CliResult } from "../support/cli.js"
import { runCli } from "../support/cli.js"
import { teamTalkConf, writeConf } from "../support/configFile.js"
import { repoRoot } from "../support/daemon.js"

const settingsOf = (r: CliResult) => JSON.parse(r.stdout) as Record<string, unknown>

/** Exit 2, one line on stderr that says `expected`, nothing on stdout. */
const expectUsageError = (r: CliResult, expected: string) => {
  expect(r.code).toBe(2)
  expect(r.stdout).toBe("")
  expect(r.stderr.trim().split("\n")).toHaveLength(1)
  expect(r.stderr).toContain(expected)
}

describe("tt-file-server config", () => {
  it.live("prints the settings serve would run with, the flags applied, as JSON", () =>
    Effect.gen(function* () {
      const r = yield* runCli(["config", "--client-port", "9600", "--offline-retention", "3d", "--max-store-bytes", "1000"])
      expect(r.code).toBe(0)
      const settings = settingsOf(r)
      expect(settings.clientPort).toBe(9600)
      expect(settings.msgPort).toBe(8601)
      expect(settings.offlineRetentionMs).toBe(3 * 86_400_000)
      expect(settings.maxStoreBytes).toBe(1000)
      expect(settings.maxUserStoreBytes).toBe("unlimited")
      expect(settings.onlineReadahead).toBe(4)
    })
  )

  it.scopedLive("takes each setting from the flags, else the environment, else the file, else the default", () =>
    Effect.gen(function* () {
      const conf = yield* writeConf(
        [
          "ClientListenIP=0.0.0.0;127.0.0.1",
          "ClientListenPort=8700",
          "MsgAllow=10.0.0.0/8; 127.0.0.1 # a list",
          "TaskTimeout=3600",
          "OfflineRetention=2d",
          "DeleteAfterDownload=yes",
          "AdminPort=0"
        ].join("\n")
      )
      const r = yield* runCli(
        ["config", "--config", conf, "--client-host", "127.0.0.2,127.0.0.3", "--offline-retention", "4d", "--no-delete-after-download"],
        { TTFS_TASK_TIMEOUT: "5m", TTFS_OFFLINE_RETENTION: "3d", TTFS_UPLOAD_WINDOW: "16", TTFS_DRAIN_TIMEOUT: "90" }
      )
      expect(r.stderr).toBe("")
      expect(r.code).toBe(0)
      const s = settingsOf(r)
      // flag over file (a list), flag over environment over file (a duration), flag off over file on
      expect(s.clientHosts).toEqual(["127.0.0.2", "127.0.0.3"])
      expect(s.offlineRetentionMs).toBe(4 * 86_400_000)
      expect(s.deleteAfterDownload).toBe(false)
      // environment over file, environment over default
      expect(s.taskTimeoutMs).toBe(300_000)
      expect(s.uploadWindow).toBe(16)
      expect(s.drainTimeoutMs).toBe(90_000)
      // file over default (a list and numbers)
      expect(s.msgAllow).toEqual(["10.0.0.0/8", "127.0.0.1"])
      expect(s.clientPort).toBe(8700)
      expect(s.adminPort).toBe(0)
      // default
      expect(s.msgIdleTimeoutMs).toBe(30_000)
      expect(s.adminHost).toBe("127.0.0.1")
    })
  )

  it.scopedLive("reads the file TTFS_CONFIG names, unless --config names another", () =>
    Effect.gen(function* () {
      const fromEnv = yield* writeConf("UploadWindow=3", "env.conf")
      const fromFlag = yield* writeConf("UploadWindow=5", "flag.conf")
      expect(settingsOf(yield* runCli(["config"], { TTFS_CONFIG: fromEnv })).uploadWindow).toBe(3)
      expect(settingsOf(yield* runCli(["config", "--config", fromFlag], { TTFS_CONFIG: fromEnv })).uploadWindow).toBe(5)
    })
  )

  it.scopedLive("reads TeamTalk's fileserver.conf; the keys of other servers are warnings on stderr, naming key and line", () =>
    Effect.gen(function* () {
      const conf = yield* writeConf(teamTalkConf)
      const r = yield* runCli(["config", "--config", conf])
      expect(r.code).toBe(0)
      const s = settingsOf(r)
      expect(s.clientHosts).toEqual(["0.0.0.0", "127.0.0.1"])
      expect(s.clientPort).toBe(8600)
      expect(s.msgHost).toBe("127.0.0.1")
      expect(s.msgPort).toBe(8601)
      expect(s.advertise).toEqual([{ ip: "192.0.2.7" }, { ip: "192.0.2.8" }])
      expect(s.taskTimeoutMs).toBe(1000)
      expect(s.uploadWindow).toBe(12)
      expect(s.msgAllow).toEqual(["127.0.0.0/8", "::1"])
      expect(r.stderr.trim().split("\n")).toEqual([
        `tt-file-server: warning: ${conf} line 13: unknown key DBServerIP1 ignored`,
        `tt-file-server: warning: ${conf} line 14: unknown key LoginServerIP ignored`
      ])
    })
  )

  it.scopedLive("a bad configuration exits 2 with one line naming where it is wrong (settings.test.ts has every case)", () =>
    Effect.gen(function* () {
      const badValue = yield* writeConf("# ports\nClientListenPort=8600\nMsgServerListenPort=86001\n")
      const missing = join(repoRoot, "no-such-dir", "fileserver.conf")
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, Record<string, string>, string]> = [
        [["--client-port", "70000"], {}, '--client-port: "70000" is not a port (0-65535)'],
        [[], { TTFS_UPLOAD_WINDOW: "0" }, 'TTFS_UPLOAD_WINDOW: "0" must be an integer from 1 to 1024'],
        [["--config", badValue], {}, `${badValue} line 3 (MsgServerListenPort): "86001" is not a port (0-65535)`],
        [["--config", missing], {}, `--config: cannot read ${missing}`],
        [[], { TTFS_CLIENT_PROT: "8600" }, "TTFS_CLIENT_PROT: no such setting"]
      ]
      yield* Effect.forEach(cases, ([args, env, expected]) => Effect.map(runCli(["config", ...args], env), (r) => expectUsageError(r, expected)), {
        concurrency: 2
      })
    })
  )

  it.live("an unknown flag exits 2", () =>
    Effect.gen(function* () {
      const r = yield* runCli(["config", "--client-prot", "8600"])
      expect(r.code).toBe(2)
      expect(r.stdout).toBe("")
      expect(r.stderr).toContain("--client-prot")
    })
  )

  it.live("--version prints the package's version and exits 0", () =>
    Effect.gen(function* () {
      const { version } = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }
      const r = yield* runCli(["--version"])
      expect(r.code).toBe(0)
      expect(r.stdout.trim()).toBe(version)
    })
  )
})
