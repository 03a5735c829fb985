/**
 * Logins an offline task refuses, against the real server on 127.0.0.1:
 * LOGIN_RES result_code 1 echoing the task id exactly as sent, then the
 * connection is closed. Downloads before the upload completed, a second
 * uploader, the wrong user, roles of the other mode, and hostile task ids
 * (which must not reach the store, nor create anything anywhere).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import type { ServerSettings } from "../../src/server/config.js"
import { FROM, loginPdu, pullRspPdu, rawConnect, rawLogin, sha256, TO } from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { createTask, eventually, startServer, startServerWith, tempDir } from "../support/server.js"

const SEG = 32 * 1024
const SETTINGS: Partial<ServerSettings> = { uploadWindow: 1, uploadSegment: SEG }

const offlineTask = (server: TestServer, size: number) =>
  createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "r.bin", fileSize: size, mode: TransferMode.Offline })

/** A login that must be refused: LOGIN_RES (same seq) result 1 with the task id as sent, then the server closes. */
const expectRefused = (server: TestServer, taskIdAsSent: string, userId: number, role: number, seq = 9) =>
  Effect.gen(function* () {
    const conn = yield* rawConnect(server.client)
    conn.send(loginPdu(seq, taskIdAsSent, userId, role))
    const res = yield* conn.expect(Pdu.LoginRes)
    expect(res.seq).toBe(seq)
    expect(res.msg).toEqual({ resultCode: ResultCode.Failed, taskId: taskIdAsSent })
    expect(yield* conn.expectClosed()).toEqual([])
  })

/** Every file and directory under `root`, with sizes, for before/after comparisons. */
const tree = (root: string): Array<string> => {
  const out: Array<string> = []
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name)
      const s = statSync(path)
      out.push(`${path.slice(root.length)}${s.isDirectory() ? "/" : ` ${s.size}`}`)
      if (s.isDirectory()) walk(path)
    }
  }
  walk(root)
  return out
}

/** An uploader on a raw connection that answers `blocks` of the server's pulls with slices of `data`. */
const uploadSome = (server: TestServer, taskId: string, data: Buffer, blocks: number) =>
  Effect.gen(function* () {
    const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
    for (let i = 0; i < blocks; i++) {
      const req = yield* up.expect(Pdu.PullDataReq)
      up.send(pullRspPdu(1, { taskId, userId: FROM, offset: req.msg.offset, fileData: data.subarray(req.msg.offset, req.msg.offset + req.msg.dataSize) }))
    }
    // The next request proves the blocks are stored.
    yield* up.expect(Pdu.PullDataReq)
    return up
  })

const finishUpload = (server: TestServer, taskId: string, data: Buffer) =>
  Effect.gen(function* () {
    const up = yield* Client.connect(server.client)
    return yield* Client.uploadFile(up, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
  })

describe("offline logins refused", () => {
  it.scopedLive("a download before the upload completed: before any upload, mid-upload, and with the upload paused", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 6 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      yield* expectRefused(server, taskId, TO, FileRole.Downloader)
      const up = yield* uploadSome(server, taskId, data, 2)
      yield* expectRefused(server, taskId, TO, FileRole.Downloader)
      // The refusal did not disturb the upload: it goes on where it was.
      up.send(pullRspPdu(1, { taskId, userId: FROM, offset: 2 * SEG, fileData: data.subarray(2 * SEG, 3 * SEG) }))
      expect((yield* up.expect(Pdu.PullDataReq)).msg.offset).toBe(3 * SEG)
      up.destroy()
      yield* eventually(() => server.registry.snapshots().find((t) => t.taskId === taskId)?.phase === "Ready")
      yield* expectRefused(server, taskId, TO, FileRole.Downloader)
      yield* finishUpload(server, taskId, data)
      const down = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      yield* Client.downloadFile(down, { taskId, userId: TO, sink, size })
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )

  it.scopedLive("a second uploader while one is connected is refused; the first completes undisturbed; an uploader after completion is refused", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 4 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* uploadSome(server, taskId, data, 1)
      yield* expectRefused(server, taskId, FROM, FileRole.Uploader)
      for (let offset = SEG; ; ) {
        up.send(pullRspPdu(1, { taskId, userId: FROM, offset, fileData: data.subarray(offset, offset + SEG) }))
        offset += SEG
        if (offset === size) break
        expect((yield* up.expect(Pdu.PullDataReq)).msg.offset).toBe(offset)
      }
      const done = yield* up.expect(Pdu.State)
      expect(done.msg.state).toBe(FileState.Done)
      yield* up.expectClosed()
      yield* expectRefused(server, taskId, FROM, FileRole.Uploader)
    })
  )

  it.scopedLive("the wrong user: as uploader nothing is created on disk; as downloader refused after completion", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 2 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const before = tree(server.dataDir)
      for (const user of [TO, 4242, 0]) yield* expectRefused(server, taskId, user, FileRole.Uploader)
      expect(tree(server.dataDir)).toEqual(before)
      expect(existsSync(join(server.dataDir, "offline_file", taskId.slice(0, 2)))).toBe(false)
      yield* finishUpload(server, taskId, data)
      for (const user of [FROM, 4242, 0]) yield* expectRefused(server, taskId, user, FileRole.Downloader)
      // The right user still can.
      const down = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      yield* Client.downloadFile(down, { taskId, userId: TO, sink, size })
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )

  it.scopedLive("roles 1 and 2 (and undefined roles) on an offline task; roles 3 and 4 on an online task", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = SEG
      const data = randomBytes(size)
      const offline = yield* offlineTask(server, size)
      yield* expectRefused(server, offline, FROM, FileRole.Sender)
      yield* expectRefused(server, offline, TO, FileRole.Receiver)
      yield* expectRefused(server, offline, FROM, 0)
      yield* expectRefused(server, offline, TO, 5)
      yield* finishUpload(server, offline, data)
      yield* expectRefused(server, offline, FROM, FileRole.Sender)
      yield* expectRefused(server, offline, TO, FileRole.Receiver)

      const online = yield* createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "o.bin", fileSize: size, mode: TransferMode.Online })
      yield* expectRefused(server, online, FROM, FileRole.Uploader)
      yield* expectRefused(server, online, TO, FileRole.Downloader)
      // Nothing of the online task went to disk.
      expect(existsSync(join(server.dataDir, "offline_file", online.slice(0, 2), online))).toBe(false)
      expect(existsSync(join(server.dataDir, "offline_file", online.slice(0, 2), `${online}.part`))).toBe(false)
    })
  )
})

describe("hostile task ids", () => {
  it.scopedLive("path tricks, 300 chars, empty, uppercase: refused echoing the id, closed, never passed to the store, nothing created anywhere", () =>
    Effect.gen(function* () {
      // The data dir sits three levels down a fresh temp dir, so that `..` tricks land inside what we watch.
      const base = yield* tempDir
      const dataDir = join(base, "a", "b", "data")
      mkdirSync(dataDir, { recursive: true })
      const seen: Array<string> = []
      const server = yield* startServerWith({
        dataDir,
        settings: SETTINGS,
        store: (disk) => ({
          ...disk,
          load: (taskId) => (seen.push(taskId), disk.load(taskId)),
          openUpload: (meta) => (seen.push(meta.taskId), disk.openUpload(meta)),
          openRead: (taskId) => (seen.push(taskId), disk.openRead(taskId)),
          remove: (taskId) => (seen.push(taskId), disk.remove(taskId))
        })
      })
      // A real stored file, whose path the tricks aim at.
      const data = randomBytes(1000)
      const real = yield* offlineTask(server, data.length)
      yield* finishUpload(server, real, data)
      const prefix = real.slice(0, 2)
      const absent = randomUUID()
      const hostile = [
        "../../etc/passwd",
        `./../offline_file/${prefix}/${real}`,
        `../offline_file/${prefix}/${real}`,
        `${prefix}/${real}`,
        `/${real}`,
        `${real}/`,
        `${real}.part`,
        `${real}.json`,
        `${real}/../${real}`,
        `../../../../${absent}`,
        "..",
        ".",
        "x".repeat(300),
        "",
        real.toUpperCase(),
        absent.toUpperCase(),
        ` ${real}`,
        `${real}\u0000`,
        real.replace(/-/g, ""),
        `{${real}}`
      ]
      seen.length = 0
      const before = tree(base)
      const tasksBefore = server.registry.size()
      for (const id of hostile) {
        yield* expectRefused(server, id, FROM, FileRole.Uploader)
        yield* expectRefused(server, id, TO, FileRole.Downloader)
      }
      expect(seen).toEqual([])
      expect(tree(base)).toEqual(before)
      expect(server.registry.size()).toBe(tasksBefore)
      // The real task is still served under its real id.
      const down = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      yield* Client.downloadFile(down, { taskId: real, userId: TO, sink, size: data.length })
      expect(sink.bytes().equals(data)).toBe(true)
    })
  )

  it.scopedLive("a canonical id no task has: refused; the store is asked, and nothing is created", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const before = tree(server.dataDir)
      const id = randomUUID()
      yield* expectRefused(server, id, FROM, FileRole.Uploader)
      yield* expectRefused(server, id, TO, FileRole.Downloader)
      expect(tree(server.dataDir)).toEqual(before)
    })
  )
})
