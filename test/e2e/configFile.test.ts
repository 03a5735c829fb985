/** The daemon process (`npm start`) configured by a TeamTalk fileserver.conf, under its command-line flags. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { TransferMode } from "../../src/protocol/commands.js"
import { runCli } from "../support/cli.js"
import { teamTalkConf, writeConf } from "../support/configFile.js"
import { childEnv, repoRoot, startDaemon } from "../support/daemon.js"
import { eventually, tempDir } from "../support/server.js"

/** What startDaemon passes before the test's own flags. */
const daemonFlags = ["--client-host", "127.0.0.1", "--client-port", "0", "--msg-port", "0"]

describe("daemon configured by a file", () => {
  it.scopedLive("runs on TeamTalk's fileserver.conf: warns about other servers' keys, and uses the file where no flag overrides it", () =>
    Effect.gen(function* () {
      const conf = yield* writeConf(teamTalkConf)
      const dir = yield* tempDir
      const daemon = yield* startDaemon(["--data-dir", join(dir, "data"), "--config", conf])

      // Keys of TeamTalk's other servers: a warning each, naming key and line; the daemon runs on.
      const warnings = daemon.logs.filter((l) => l.logLevel === "WARN")
      expect(warnings.map((w) => w.message)).toEqual([`${conf} line 13: unknown key DBServerIP1 ignored`, `${conf} line 14: unknown key LoginServerIP ignored`])
      expect(warnings.map((w) => (w.annotations as Record<string, unknown>).key)).toEqual(["DBServerIP1", "LoginServerIP"])

      // The flags win over the file's ClientListenIP (two addresses) and ports: one client listener, on 127.0.0.1.
      const listening = daemon.logs.filter((l) => l.message === "listening").map((l) => l.annotations as Record<string, unknown>)
      expect(listening.filter((a) => a.port === "client").map((a) => a.host)).toEqual(["127.0.0.1"])

      // No flag sets what is advertised: the file's FileServerIp list, each with the client port.
      const link = yield* Client.connectMsgLink({ host: "127.0.0.1", port: daemon.msgPort })
      expect(yield* link.serverAddresses).toEqual([
        { ip: "192.0.2.7", port: daemon.clientPort },
        { ip: "192.0.2.8", port: daemon.clientPort }
      ])

      // Nor the task timeout: the file's TaskTimeout=1 ends a task nobody joins (the default would take a minute).
      const rsp = yield* link.createTask({ fromUserId: 1, toUserId: 2, fileName: "a.bin", fileSize: 10, mode: TransferMode.Online })
      expect(rsp.resultCode).toBe(0)
      const ended = yield* eventually(() => daemon.logs.find((l) => l.message === "task ended"), 20_000)
      expect((ended.annotations as Record<string, unknown>).outcome).toBe("expired")

      // `config` with the same file and flags shows the same.
      const shown = yield* runCli(["config", ...daemonFlags, "--data-dir", join(dir, "data"), "--config", conf])
      expect(shown.code).toBe(0)
      expect(JSON.parse(shown.stdout)).toMatchObject({
        clientHosts: ["127.0.0.1"],
        clientPort: 0,
        msgPort: 0,
        taskTimeoutMs: 1000,
        uploadWindow: 12,
        advertise: [{ ip: "192.0.2.7" }, { ip: "192.0.2.8" }]
      })
    })
  )

  it.scopedLive("does not start, with status 2 and the reason, on an unknown TTFS_ variable or a file line without =", () =>
    Effect.gen(function* () {
      const conf = yield* writeConf("ClientListenPort=8600\nTaskTimeout\n")
      const start = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
        spawnSync("npm", ["start", "--silent", "--", ...daemonFlags, ...args], { cwd: repoRoot, env: childEnv(env), encoding: "utf8" })
      const unknown = start([], { TTFS_TASK_TIMEOUTS: "5" })
      expect(unknown.status).toBe(2)
      expect(unknown.stderr).toContain("TTFS_TASK_TIMEOUTS: no such setting")
      const syntax = start(["--config", conf])
      expect(syntax.status).toBe(2)
      expect(syntax.stderr).toContain(`${conf} line 2: "TaskTimeout" is not key=value`)
    })
  )
})
