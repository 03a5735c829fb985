import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, TransferMode } from "../../src/protocol/commands.js"
import { childEnv, repoRoot, startDaemon } from "../support/daemon.js"
import { eventually, tempDir } from "../support/server.js"

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex")

describe("daemon process (npm start)", () => {
  it.scopedLive("serves an online transfer end to end and stops on SIGTERM with status 0", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const daemon = yield* startDaemon(["--data-dir", join(dir, "data")])
      const data = randomBytes(3 * 1024 * 1024 + 17)
      const path = join(dir, "payload.bin")
      yield* Effect.promise(() => writeFile(path, data))

      const link = yield* Client.connectMsgLink({ host: "127.0.0.1", port: daemon.msgPort })
      const addresses = yield* link.serverAddresses
      expect(addresses).toEqual([{ ip: "127.0.0.1", port: daemon.clientPort }])
      const rsp = yield* link.createTask({ fromUserId: 7, toUserId: 8, fileName: "payload.bin", fileSize: data.length, mode: TransferMode.Online })
      expect(rsp.resultCode).toBe(0)
      const taskId = rsp.taskId!

      const server = { host: "127.0.0.1", port: daemon.clientPort }
      const receiver = yield* Client.connect(server)
      yield* Client.login(receiver, { taskId, userId: 8, role: FileRole.Receiver })
      const sender = yield* Client.connect(server)
      yield* Client.login(sender, { taskId, userId: 7, role: FileRole.Sender })
      const source = yield* Client.sourceFromFile(path)
      const sink = Client.memorySink()
      const [served, pulled] = yield* Effect.all(
        [
          Client.serveFile(sender, { taskId, userId: 7, source }),
          Client.receiveFile(receiver, { taskId, userId: 8, sink, window: 4 })
        ],
        { concurrency: 2 }
      )
      expect(served.finalState).toBe(3)
      expect(pulled.bytes).toBe(data.length)
      expect(sha256(sink.bytes())).toBe(sha256(data))

      const ended = yield* eventually(() => daemon.logs.find((l) => l.message === "task ended"))
      expect((ended!.annotations as Record<string, unknown>).outcome).toBe("done")
      expect((ended!.annotations as Record<string, unknown>).task).toBe(taskId.slice(0, 8))
      expect(JSON.stringify(daemon.logs)).not.toContain(taskId)

      // The daemon's own status must come out of `npm start`.
      process.kill(daemon.pid, "SIGTERM")
      expect(yield* Effect.promise(() => daemon.exited)).toBe(0)
    })
  )

  it("lists its flags on --help and exits 0", () => {
    const r = spawnSync("npm", ["start", "--silent", "--", "--help"], { cwd: repoRoot, env: childEnv(), encoding: "utf8" })
    expect(r.status).toBe(0)
    for (const flag of ["--client-host", "--client-port", "--msg-host", "--msg-port", "--advertise", "--data-dir", "--task-timeout", "--max-frame-bytes", "--log-level"]) {
      expect(r.stdout).toContain(flag)
    }
  })

  it("exits 2 naming the flag when a value is wrong", () => {
    const r = spawnSync("npm", ["start", "--silent", "--", "--client-port", "70000"], { cwd: repoRoot, env: childEnv(), encoding: "utf8" })
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("--client-port")
  })

  it("exits 1 when it cannot listen", () => {
    const r = spawnSync("npm", ["start", "--silent", "--", "--client-host", "192.0.2.1", "--client-port", "0", "--msg-port", "0"], {
      cwd: repoRoot,
      env: childEnv(),
      encoding: "utf8"
    })
    expect(r.status).toBe(1)
    expect(r.stdout + r.stderr).toContain("192.0.2.1")
  })
})
