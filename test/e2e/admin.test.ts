/**
 * The admin port of the daemon process (`npm start`): it logs where it
 * listens, answers /healthz and /readyz, and /metrics, scraped over HTTP,
 * counts a transfer made through the daemon. `--admin-port 0` turns it off.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, TransferMode } from "../../src/protocol/commands.js"
import { startDaemon } from "../support/daemon.js"
import { httpRequest } from "../support/http.js"
import { parseExposition, valueOf } from "../support/prometheus.js"
import { tempDir } from "../support/server.js"

describe("daemon process: admin port", () => {
  it.scopedLive("serves /healthz, /readyz and /metrics, which counts a transfer through the daemon", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const daemon = yield* startDaemon(["--data-dir", join(dir, "data")], { admin: true })
      const listening = daemon.logs.find((l) => l.message === "listening" && (l.annotations as Record<string, unknown>).port === "admin")
      expect(listening?.annotations).toEqual({ port: "admin", host: "127.0.0.1", bound: daemon.adminPort })
      const admin = { host: "127.0.0.1", port: daemon.adminPort }
      expect((yield* httpRequest(admin, "/healthz")).status).toBe(200)
      expect((yield* httpRequest(admin, "/readyz")).status).toBe(200)

      const size = 1024 * 1024 + 3
      const link = yield* Client.connectMsgLink({ host: "127.0.0.1", port: daemon.msgPort })
      const rsp = yield* link.createTask({ fromUserId: 7, toUserId: 8, fileName: "p.bin", fileSize: size, mode: TransferMode.Online })
      const taskId = rsp.taskId!
      const server = { host: "127.0.0.1", port: daemon.clientPort }
      yield* Effect.scoped(
        Effect.gen(function* () {
          const receiver = yield* Client.connect(server)
          yield* Client.login(receiver, { taskId, userId: 8, role: FileRole.Receiver })
          const sender = yield* Client.connect(server)
          yield* Client.login(sender, { taskId, userId: 7, role: FileRole.Sender })
          yield* Effect.all(
            [
              Client.serveFile(sender, { taskId, userId: 7, source: Client.sourceFromBuffer(randomBytes(size)) }),
              Client.receiveFile(receiver, { taskId, userId: 8, sink: Client.memorySink(), window: 4 })
            ],
            { concurrency: 2 }
          )
        })
      )

      const deadline = Date.now() + 10_000
      let metrics = parseExposition((yield* httpRequest(admin, "/metrics")).body)
      while (valueOf(metrics, "ttfs_tasks_ended_total", { mode: "online", outcome: "done" }) === 0 && Date.now() < deadline) {
        yield* Effect.sleep(50)
        metrics = parseExposition((yield* httpRequest(admin, "/metrics")).body)
      }
      expect(valueOf(metrics, "ttfs_tasks_ended_total", { mode: "online", outcome: "done" })).toBe(1)
      expect(valueOf(metrics, "ttfs_online_relayed_bytes_total")).toBe(size)
      expect(valueOf(metrics, "ttfs_transfers_completed_total", { kind: "online" })).toBe(1)
      expect(valueOf(metrics, "ttfs_task_duration_seconds_count", { mode: "online" })).toBe(1)
      expect(valueOf(metrics, "process_resident_memory_bytes")).toBeGreaterThan(0)
    })
  )

  it.scopedLive("--admin-port 0 turns the admin port off", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const daemon = yield* startDaemon(["--data-dir", join(dir, "data"), "--admin-port", "0"])
      expect(daemon.adminPort).toBe(0)
      expect(daemon.logs.filter((l) => l.message === "listening").map((l) => (l.annotations as Record<string, unknown>).port)).toEqual(["client", "msg"])
    })
  )
})
