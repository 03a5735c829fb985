/**
 * The graceful stop (src/server/shutdown.ts `drain`) on an in-process server:
 * what holds it, what it refuses, and what the parties of the tasks it
 * cancels at its timeout receive. The daemon's signals and exit codes are
 * tested on the real process in test/e2e/shutdown.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { existsSync, statSync } from "node:fs"
import { randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import { HEADER_BYTES } from "../../src/storage/header.js"
import { storedFiles } from "../support/files.js"
import { FROM, loginPdu, onlineTask, pullReqPdu, pullRspPdu, rawConnect, rawLogin, rawPair, sha256, TO } from "../support/raw.js"
import { createTask, eventually, startServerWith } from "../support/server.js"

/** Long enough never to be reached by a test that expects the drain to end by itself. */
const NEVER_MS = 600_000

const refused = (address: { readonly host: string; readonly port: number }) =>
  Effect.scoped(Client.connect(address)).pipe(
    Effect.flip,
    Effect.map((e) => e.message)
  )

describe("graceful drain", () => {
  it.scopedLive("ends at once when nothing is in flight: tasks nobody joined and stored files do not hold it, and stay", () =>
    Effect.gen(function* () {
      const server = yield* startServerWith({ settings: { drainTimeoutMs: NEVER_MS } })
      const data = randomBytes(70_000)
      const stored = yield* createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "f.bin", fileSize: data.length, mode: TransferMode.Offline })
      const uploaded = yield* Effect.scoped(
        Client.connect(server.client).pipe(Effect.flatMap((sock) => Client.uploadFile(sock, { taskId: stored, userId: FROM, source: Client.sourceFromBuffer(data) })))
      )
      expect(uploaded.finalState).toBe(FileState.Done)
      yield* onlineTask(server, 10)
      expect(server.registry.busy()).toBe(0)

      yield* server.drain
      expect(server.isDraining()).toBe(true)
      expect(yield* refused(server.client)).toContain("ECONNREFUSED")
      expect(yield* refused(server.msg)).toContain("ECONNREFUSED")
      expect(statSync(storedFiles(server.dataDir, stored).file).size).toBe(HEADER_BYTES + data.length)
      expect(server.registry.size()).toBe(0)
    })
  )

  it.scopedLive("waits for a transfer in flight, whose second party logs in on a connection opened before; task creation gets result_code 1", () =>
    Effect.gen(function* () {
      const server = yield* startServerWith({ settings: { drainTimeoutMs: NEVER_MS } })
      const data = randomBytes(300_000)
      const taskId = yield* onlineTask(server, data.length)
      const link = yield* Client.connectMsgLink(server.msg)
      const sender = yield* Client.connect(server.client)
      yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender })
      const serving = yield* Effect.fork(Client.serveFile(sender, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) }))
      const receiver = yield* Client.connect(server.client)
      yield* eventually(() => server.registry.busy() === 1)

      const draining = yield* Effect.fork(server.drain)
      yield* eventually(() => server.isDraining())
      const rsp = yield* link.createTask({ fromUserId: FROM, toUserId: TO, fileName: "late.bin", fileSize: 5, mode: TransferMode.Online })
      expect(rsp.resultCode).toBe(ResultCode.Failed)
      expect(yield* refused(server.client)).toContain("ECONNREFUSED")

      yield* Client.login(receiver, { taskId, userId: TO, role: FileRole.Receiver })
      const sink = Client.memorySink()
      const pulled = yield* Client.receiveFile(receiver, { taskId, userId: TO, sink, window: 1 })
      expect(pulled.bytes).toBe(data.length)
      expect(sha256(sink.bytes())).toBe(sha256(data))
      expect((yield* Fiber.join(serving)).finalState).toBe(FileState.Done)
      yield* Fiber.join(draining)
    })
  )

  it.scopedLive("at its timeout every party gets FILE_STATE CANCEL and is closed; an upload keeps its bytes as .part only", () =>
    Effect.gen(function* () {
      const server = yield* startServerWith({ settings: { drainTimeoutMs: 300, uploadWindow: 1, uploadSegment: 1024 } })
      const online = yield* onlineTask(server, 50_000)
      const { sender, receiver } = yield* rawPair(server, online)

      const data = randomBytes(10_000)
      const offline = yield* createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "f.bin", fileSize: data.length, mode: TransferMode.Offline })
      const uploader = yield* rawConnect(server.client)
      uploader.send(loginPdu(1, offline, FROM, FileRole.Uploader))
      expect((yield* uploader.expect(Pdu.LoginRes)).msg.resultCode).toBe(ResultCode.Ok)
      for (let i = 0; i < 3; i++) {
        const req = yield* uploader.expect(Pdu.PullDataReq)
        uploader.send(pullRspPdu(req.seq, { taskId: offline, userId: FROM, offset: req.msg.offset, fileData: data.subarray(req.msg.offset, req.msg.offset + req.msg.dataSize) }))
      }
      // The next pull leaves once the blocks before it are written: the uploader stalls here.
      expect((yield* uploader.expect(Pdu.PullDataReq)).msg.offset).toBe(3 * 1024)
      yield* eventually(() => server.registry.busy() === 2)

      yield* server.drain
      expect((yield* receiver.expect(Pdu.State)).msg).toEqual({ state: FileState.Cancel, taskId: online, userId: FROM })
      expect((yield* sender.expect(Pdu.State)).msg).toEqual({ state: FileState.Cancel, taskId: online, userId: TO })
      expect((yield* uploader.expect(Pdu.State)).msg).toEqual({ state: FileState.Cancel, taskId: offline, userId: FROM })
      for (const conn of [sender, receiver, uploader]) expect(yield* conn.expectClosed()).toEqual([])

      const files = storedFiles(server.dataDir, offline)
      expect(existsSync(files.file)).toBe(false)
      expect(statSync(files.part).size).toBe(HEADER_BYTES + 3 * 1024)
    })
  )

  it.scopedLive("a task stuck in storage past the grace period is interrupted: its parties are closed and a login waiting in its mailbox is refused", () =>
    Effect.gen(function* () {
      // openUpload never completes: the actor is stuck in it and takes no more mail.
      const server = yield* startServerWith({
        settings: { drainTimeoutMs: 200 },
        store: (disk) => ({ ...disk, openUpload: () => Effect.never })
      })
      const taskId = yield* createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "f.bin", fileSize: 1000, mode: TransferMode.Offline })
      const uploader = yield* rawConnect(server.client)
      uploader.send(loginPdu(1, taskId, FROM, FileRole.Uploader))
      // (The actor is stuck inside its first step, so no snapshot shows the login: give it time to arrive.)
      yield* Effect.sleep("300 millis")
      const late = yield* rawConnect(server.client)
      late.send(loginPdu(2, taskId, TO, FileRole.Downloader))

      const drained = yield* Effect.fork(server.drain)
      // 200 ms of drain, then about 5 s of grace before the stuck actor is interrupted.
      yield* Fiber.join(drained).pipe(Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error("the drain did not end") }))
      yield* late.expectClosed()
      yield* uploader.expectClosed()
      expect(server.registry.size()).toBe(0)
    })
  )

  it.scopedLive("a downloader that was sent the end and DONE does not hold the drain, though it stays connected", () =>
    Effect.gen(function* () {
      const server = yield* startServerWith({ settings: { drainTimeoutMs: NEVER_MS } })
      const data = randomBytes(5000)
      const taskId = yield* createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "f.bin", fileSize: data.length, mode: TransferMode.Offline })
      yield* Effect.scoped(
        Client.connect(server.client).pipe(Effect.flatMap((sock) => Client.uploadFile(sock, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })))
      )
      const down = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      yield* eventually(() => server.registry.busy() === 1)
      down.send(pullReqPdu(3, { taskId, userId: TO, offset: 0, dataSize: data.length, transMode: TransferMode.Offline }))
      const block = yield* down.expect(Pdu.PullDataRsp)
      expect(Buffer.from(block.msg.fileData).equals(data)).toBe(true)
      expect((yield* down.expect(Pdu.State)).msg.state).toBe(FileState.Done)
      yield* eventually(() => server.registry.busy() === 0)
      yield* server.drain
      yield* down.expectClosed()
    })
  )
})
