/**
 * Graceful shutdown of the real daemon process (`npm start`, docs/shutdown.md):
 * SIGTERM lets transfers in flight finish, cancels what is left at
 * --drain-timeout, refuses new connections meanwhile, exits 0; a second signal
 * exits at once with 1.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, statSync } from "node:fs"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { isPdu, Pdu } from "../../src/protocol/messages.js"
import { SAME_REQUEST_MS } from "../../src/server/shutdown.js"
import { HEADER_BYTES } from "../../src/storage/header.js"
import type { Daemon } from "../support/daemon.js"
import { clientOf, createDaemonTask, msgOf, startDaemon } from "../support/daemon.js"
import { storedFiles } from "../support/files.js"
import type { RawConn } from "../support/raw.js"
import { decodeAs, loginPdu, pullReqPdu, pullRspPdu, rawConnect, sha256 } from "../support/raw.js"
import { eventually, tempDir } from "../support/server.js"

const FROM = 7
const TO = 8
const SEG = 32 * 1024
/** Long enough never to be reached by a test that expects the drain to end by itself. */
const NEVER = "10m"
/** Waits for the daemon, which shares two cores with the test. */
const SLOW_MS = 20_000


/** The first log line with this message, once there is one. */
const logged = (d: Daemon, message: string) =>
  eventually(() => d.logs.find((l) => l.message === message), SLOW_MS).pipe(Effect.map((l) => l.annotations as Record<string, unknown>))

/** `npm start` and the daemon under it: what a terminal's Ctrl-C or systemd signals. */
const signalGroup = (d: Daemon, signal: NodeJS.Signals) => process.kill(-d.process.pid!, signal)
const signalDaemon = (d: Daemon, signal: NodeJS.Signals) => process.kill(d.pid, signal)

const exitCode = (d: Daemon) => Effect.promise(() => d.exited)

const rawLogin = (d: Daemon, taskId: string, userId: number, role: FileRole) =>
  Effect.gen(function* () {
    const conn = yield* rawConnect(clientOf(d))
    conn.send(loginPdu(1, taskId, userId, role))
    expect((yield* conn.expect(Pdu.LoginRes, SLOW_MS)).msg.resultCode).toBe(ResultCode.Ok)
    return conn
  })

/** The FILE_STATE the server sends next, past the pulls it sent before it. */
const stateAfterPulls = (conn: RawConn) =>
  Effect.gen(function* () {
    for (;;) {
      const frame = yield* conn.next(SLOW_MS)
      if (isPdu(frame, Pdu.State)) return yield* decodeAs(Pdu.State, frame)
      expect(isPdu(frame, Pdu.PullDataReq)).toBe(true)
    }
  })

describe("daemon shutdown (SIGTERM/SIGINT)", () => {
  it.scopedLive("SIGTERM to npm start's process group during an online transfer lets it finish byte for byte, then exits 0 at once", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const daemon = yield* startDaemon(["--data-dir", join(dir, "data"), "--drain-timeout", NEVER])
      const data = randomBytes(2 * 1024 * 1024 + 3)
      const taskId = yield* createDaemonTask(daemon, { fromUserId: FROM, toUserId: TO, fileSize: data.length, mode: TransferMode.Online })
      const sender = yield* Client.connect(clientOf(daemon))
      yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender })
      const serving = yield* Effect.fork(Client.serveFile(sender, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) }))
      const receiver = yield* Client.connect(clientOf(daemon))
      yield* Client.login(receiver, { taskId, userId: TO, role: FileRole.Receiver })

      // The first block in: signal, and go on only once the daemon is draining.
      const memory = Client.memorySink()
      let signalled = false
      const sink: Client.BlockSink = {
        write: (offset, block) =>
          Effect.gen(function* () {
            if (!signalled) {
              signalled = true
              signalGroup(daemon, "SIGTERM")
              yield* logged(daemon, "draining").pipe(Effect.orDie)
            }
            yield* memory.write(offset, block)
          })
      }
      const pulled = yield* Client.receiveFile(receiver, { taskId, userId: TO, sink, window: 1 })
      expect(pulled.bytes).toBe(data.length)
      expect(sha256(memory.bytes())).toBe(sha256(data))
      expect((yield* Fiber.join(serving)).finalState).toBe(FileState.Done)

      // Both SIGTERMs (the group's and npm's forwarded copy) are one request; the drain ends with the transfer.
      expect(yield* exitCode(daemon)).toBe(0)
      expect(yield* logged(daemon, "draining")).toMatchObject({ transfers: 1, timeoutMs: 600_000 })
      expect(yield* logged(daemon, "task ended")).toMatchObject({ outcome: "done" })
      yield* logged(daemon, "drained")
      expect(daemon.logs.filter((l) => l.message === "stop requested")).toHaveLength(1)
      expect(daemon.logs.some((l) => l.message === "drain timeout: cancelling transfers")).toBe(false)
    })
  )

  it.scopedLive("a stalled transfer is cancelled at --drain-timeout: both parties get FILE_STATE CANCEL and are closed; exit 0", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const daemon = yield* startDaemon(["--data-dir", join(dir, "data"), "--drain-timeout", "1s"])
      const data = randomBytes(10 * SEG)
      const taskId = yield* createDaemonTask(daemon, { fromUserId: FROM, toUserId: TO, fileSize: data.length, mode: TransferMode.Online })
      const sender = yield* rawLogin(daemon, taskId, FROM, FileRole.Sender)
      const receiver = yield* rawLogin(daemon, taskId, TO, FileRole.Receiver)
      expect((yield* receiver.expect(Pdu.State, SLOW_MS)).msg.state).toBe(FileState.PeerReady)
      // One block, then the receiver pulls no more.
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: SEG }))
      const pull = yield* sender.expect(Pdu.PullDataReq, SLOW_MS)
      sender.send(pullRspPdu(pull.seq, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, SEG) }))
      expect((yield* receiver.expect(Pdu.PullDataRsp, SLOW_MS)).msg.fileData.length).toBe(SEG)

      signalDaemon(daemon, "SIGTERM")
      expect(yield* receiver.expect(Pdu.State, SLOW_MS)).toMatchObject({ msg: { state: FileState.Cancel, taskId, userId: FROM } })
      expect(yield* stateAfterPulls(sender)).toEqual({ state: FileState.Cancel, taskId, userId: TO })
      expect(yield* receiver.expectClosed(SLOW_MS)).toEqual([])
      expect(yield* sender.expectClosed(SLOW_MS)).toEqual([])
      expect(yield* exitCode(daemon)).toBe(0)
      expect(yield* logged(daemon, "draining")).toMatchObject({ transfers: 1, timeoutMs: 1000 })
      expect(yield* logged(daemon, "drain timeout: cancelling transfers")).toMatchObject({ transfers: 1 })
      expect(yield* logged(daemon, "task ended")).toMatchObject({ outcome: "shutdown" })
    })
  )

  it.scopedLive("while draining, /readyz says 503, new connections to both ports are refused and task creation gets result_code 1", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const daemon = yield* startDaemon(["--data-dir", join(dir, "data"), "--drain-timeout", NEVER], { admin: true })
      const readyz = Effect.promise(async () => {
        const res = await fetch(`http://127.0.0.1:${daemon.adminPort}/readyz`)
        return { status: res.status, body: await res.text() }
      })
      expect((yield* readyz).status).toBe(200)
      const taskId = yield* createDaemonTask(daemon, { fromUserId: FROM, toUserId: TO, fileSize: 100, mode: TransferMode.Online })
      const link = yield* Client.connectMsgLink(msgOf(daemon))
      // A party connected holds the drain.
      const sender = yield* rawLogin(daemon, taskId, FROM, FileRole.Sender)

      signalDaemon(daemon, "SIGINT")
      yield* logged(daemon, "draining")
      // Load balancers see the daemon leave while it still serves what is in flight.
      expect(yield* readyz).toEqual({ status: 503, body: "draining\n" })
      for (const address of [clientOf(daemon), msgOf(daemon)]) {
        const error = yield* Effect.scoped(Client.connect(address)).pipe(Effect.flip)
        expect(error.message).toContain("ECONNREFUSED")
      }
      const rsp = yield* link.createTask({ fromUserId: FROM, toUserId: TO, fileName: "late.bin", fileSize: 5, mode: TransferMode.Online })
      expect(rsp.resultCode).toBe(ResultCode.Failed)
      expect(daemon.process.exitCode).toBeNull()

      // The sender goes: nothing is in flight, the drain ends.
      sender.destroy()
      expect(yield* exitCode(daemon)).toBe(0)
    })
  )

  it.scopedLive("a second signal during the drain exits at once with status 1", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const daemon = yield* startDaemon(["--data-dir", join(dir, "data"), "--drain-timeout", NEVER])
      const taskId = yield* createDaemonTask(daemon, { fromUserId: FROM, toUserId: TO, fileSize: 100, mode: TransferMode.Online })
      const sender = yield* rawLogin(daemon, taskId, FROM, FileRole.Sender)

      signalDaemon(daemon, "SIGTERM")
      yield* logged(daemon, "draining")
      // A signal sooner than this would count as the same request.
      yield* Effect.sleep(SAME_REQUEST_MS + 100)
      signalDaemon(daemon, "SIGTERM")
      expect(yield* exitCode(daemon)).toBe(1)
      expect(yield* logged(daemon, "second signal: stopping at once")).toMatchObject({ signal: "SIGTERM", exitCode: 1 })
      expect(daemon.logs.some((l) => l.message === "drained")).toBe(false)
      yield* sender.expectClosed(SLOW_MS)
    })
  )

  it.scopedLive("an offline upload cut at --drain-timeout stays a .part, is refused for download, and resumes after a restart", () =>
    Effect.gen(function* () {
      const dataDir = join(yield* tempDir, "data")
      const data = randomBytes(20 * SEG + 77)
      const answered = 5
      const flags = ["--data-dir", dataDir, "--drain-timeout", "1s", "--upload-window", "1", "--upload-segment", String(SEG)]
      const first = yield* startDaemon(flags)
      const taskId = yield* createDaemonTask(first, { fromUserId: FROM, toUserId: TO, fileSize: data.length, mode: TransferMode.Offline })
      const files = storedFiles(dataDir, taskId)

      const uploader = yield* rawLogin(first, taskId, FROM, FileRole.Uploader)
      for (let i = 0; i < answered; i++) {
        const req = yield* uploader.expect(Pdu.PullDataReq, SLOW_MS)
        uploader.send(pullRspPdu(req.seq, { taskId, userId: FROM, offset: req.msg.offset, fileData: data.subarray(req.msg.offset, req.msg.offset + req.msg.dataSize) }))
      }
      // Asked for the next block (the ones before are written); the uploader stalls.
      expect((yield* uploader.expect(Pdu.PullDataReq, SLOW_MS)).msg.offset).toBe(answered * SEG)

      signalGroup(first, "SIGTERM")
      expect((yield* uploader.expect(Pdu.State, SLOW_MS)).msg).toEqual({ state: FileState.Cancel, taskId, userId: FROM })
      expect(yield* uploader.expectClosed(SLOW_MS)).toEqual([])
      expect(yield* exitCode(first)).toBe(0)
      expect(existsSync(files.file)).toBe(false)
      expect(statSync(files.part).size).toBe(HEADER_BYTES + answered * SEG)

      const second = yield* startDaemon(flags)
      const early = yield* rawConnect(clientOf(second))
      early.send(loginPdu(3, taskId, TO, FileRole.Downloader))
      expect((yield* early.expect(Pdu.LoginRes, SLOW_MS)).msg.resultCode).toBe(ResultCode.Failed)

      const offsets: Array<number> = []
      const source: Client.BlockSource = {
        size: data.length,
        read: (offset, length) =>
          Effect.sync(() => {
            offsets.push(offset)
            return data.subarray(offset, Math.min(offset + length, data.length))
          })
      }
      const resumed = yield* Effect.scoped(
        Client.connect(clientOf(second)).pipe(Effect.flatMap((sock) => Client.uploadFile(sock, { taskId, userId: FROM, source })))
      )
      expect(offsets[0]).toBe(answered * SEG)
      expect(resumed.bytes).toBe(data.length - answered * SEG)
      expect(existsSync(files.part)).toBe(false)

      const sink = Client.memorySink()
      const got = yield* Effect.scoped(
        Client.connect(clientOf(second)).pipe(Effect.flatMap((sock) => Client.downloadFile(sock, { taskId, userId: TO, sink, size: data.length, window: 4 })))
      )
      expect(got.finalState).toBe(FileState.Done)
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )
})
