/**
 * How long offline tasks and their files live, against the real server on
 * 127.0.0.1 with a small --task-timeout: a task that never received a byte
 * ends within about a second of the timeout and leaves nothing on disk; a
 * paused partial upload leaves memory but keeps its .part for a resume;
 * --delete-after-download removes the stored file after a complete download.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import type { ServerSettings } from "../../src/server/config.js"
import { HEADER_BYTES } from "../../src/storage/header.js"
import { FROM, loginPdu, pullReqPdu, pullRspPdu, rawConnect, rawLogin, sha256, TO } from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { createTask, eventually, startServer } from "../support/server.js"
import { storedFiles } from "../support/files.js"

const SEG = 32 * 1024
const TIMEOUT_MS = 300
/** "Within about a second after the timeout", with room for a loaded machine. */
const GRACE_MS = 1000
const SETTINGS: Partial<ServerSettings> = { uploadWindow: 1, uploadSegment: SEG, taskTimeoutMs: TIMEOUT_MS }

const offlineTask = (server: TestServer, size: number) =>
  createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "l.bin", fileSize: size, mode: TransferMode.Offline })

const stored = storedFiles

/** Every regular file under `root` (directories left aside). */
const filesUnder = (root: string): Array<string> => {
  const out: Array<string> = []
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path)
      else out.push(path.slice(root.length))
    }
  }
  walk(root)
  return out.sort()
}

/** Waits for the task to leave memory; returns how long that took from `since`. */
const gone = (server: TestServer, taskId: string, since: number) =>
  eventually(() => server.registry.get(taskId) === undefined, TIMEOUT_MS + GRACE_MS + 2000).pipe(Effect.map(() => Date.now() - since))

const loginResult = (server: TestServer, taskId: string, userId: number, role: number) =>
  Effect.gen(function* () {
    const conn = yield* rawConnect(server.client)
    conn.send(loginPdu(3, taskId, userId, role))
    return (yield* conn.expect(Pdu.LoginRes)).msg.resultCode
  })

/** A whole download with the SDK on a connection closed afterwards. */
const download = (server: TestServer, taskId: string, size: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      const r = yield* Client.downloadFile(sock, { taskId, userId: TO, sink, size, window: 4 })
      expect(r.finalState).toBe(FileState.Done)
      return sink.bytes()
    })
  )

describe("offline task timeouts", () => {
  it.scopedLive("a task nobody logs in to ends within about a second after the timeout, leaving nothing on disk", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const started = Date.now()
      const taskId = yield* offlineTask(server, 5 * SEG)
      expect(server.registry.get(taskId)).toBeDefined()
      const took = yield* gone(server, taskId, started)
      expect(took).toBeGreaterThanOrEqual(TIMEOUT_MS - 20)
      expect(took).toBeLessThanOrEqual(TIMEOUT_MS + GRACE_MS)
      expect(filesUnder(server.dataDir)).toEqual([])
      expect(yield* loginResult(server, taskId, FROM, FileRole.Uploader)).toBe(ResultCode.Failed)
    })
  )

  it.scopedLive("an uploader that logs in and leaves before sending a byte: the task ends after the timeout and its .part and sidecar are removed", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const taskId = yield* offlineTask(server, 5 * SEG)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      yield* up.expect(Pdu.PullDataReq)
      const p = stored(server.dataDir, taskId)
      expect(existsSync(p.part)).toBe(true)
      // Stay connected past the timeout: the task does not expire while someone is connected.
      yield* Effect.sleep(TIMEOUT_MS + 200)
      expect(server.registry.get(taskId)).toBeDefined()
      up.destroy()
      const left = Date.now()
      const took = yield* gone(server, taskId, left)
      expect(took).toBeLessThanOrEqual(TIMEOUT_MS + GRACE_MS)
      expect(filesUnder(server.dataDir)).toEqual([])
      expect(yield* loginResult(server, taskId, FROM, FileRole.Uploader)).toBe(ResultCode.Failed)
    })
  )

  it.scopedLive("a paused partial upload: the task leaves memory after the timeout, its .part stays, and the uploader's next login resumes it", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 7 * SEG + 3
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      for (let i = 0; i < 3; i++) {
        const req = yield* up.expect(Pdu.PullDataReq)
        up.send(pullRspPdu(1, { taskId, userId: FROM, offset: req.msg.offset, fileData: data.subarray(req.msg.offset, req.msg.offset + req.msg.dataSize) }))
      }
      expect((yield* up.expect(Pdu.PullDataReq)).msg.offset).toBe(3 * SEG)
      up.destroy()
      const left = Date.now()
      const took = yield* gone(server, taskId, left)
      expect(took).toBeLessThanOrEqual(TIMEOUT_MS + GRACE_MS)
      const p = stored(server.dataDir, taskId)
      expect(statSync(p.part).size).toBe(HEADER_BYTES + 3 * SEG)
      expect(existsSync(p.meta)).toBe(true)
      expect(existsSync(p.file)).toBe(false)
      // Still not downloadable.
      expect(yield* loginResult(server, taskId, TO, FileRole.Downloader)).toBe(ResultCode.Failed)

      const again = yield* Client.connect(server.client)
      const offsets: Array<number> = []
      const source = Client.sourceFromBuffer(data)
      yield* Client.uploadFile(again, { taskId, userId: FROM, source: { size, read: (o, n) => (offsets.push(o), source.read(o, n)) } })
      expect(offsets[0]).toBe(3 * SEG)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
    })
  )

  it.scopedLive("a stored file's task leaves memory after the timeout and is loaded again for the next download", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 2 * SEG + 1
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* Client.connect(server.client)
      yield* Client.uploadFile(up, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
      yield* gone(server, taskId, Date.now())
      expect(existsSync(stored(server.dataDir, taskId).file)).toBe(true)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
    })
  )
})

describe("--delete-after-download", () => {
  it.scopedLive("after a complete download the stored files are gone and new download logins are refused, before and after the task leaves memory", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ ...SETTINGS, deleteAfterDownload: true })
      const size = 3 * SEG + 17
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* Client.connect(server.client)
      yield* Client.uploadFile(up, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
      const p = stored(server.dataDir, taskId)
      expect(existsSync(p.file)).toBe(true)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
      yield* eventually(() => !existsSync(p.file) && !existsSync(p.meta) && !existsSync(p.part), 2000)
      expect(filesUnder(server.dataDir)).toEqual([])
      expect(yield* loginResult(server, taskId, TO, FileRole.Downloader)).toBe(ResultCode.Failed)
      yield* gone(server, taskId, Date.now())
      expect(yield* loginResult(server, taskId, TO, FileRole.Downloader)).toBe(ResultCode.Failed)
    })
  )

  it.scopedLive("a downloader already connected when another completes the download still gets the whole file", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ ...SETTINGS, deleteAfterDownload: true })
      const size = 4 * SEG + 2
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* Client.connect(server.client)
      yield* Client.uploadFile(up, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
      const slow = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      const parts: Array<Buffer> = []
      const pullAt = (offset: number) =>
        Effect.gen(function* () {
          slow.send(pullReqPdu(offset / SEG + 1, { taskId, userId: TO, transMode: TransferMode.Offline, offset, dataSize: SEG }))
          const rsp = yield* slow.expect(Pdu.PullDataRsp)
          expect(rsp.msg.offset).toBe(offset)
          parts.push(Buffer.from(rsp.msg.fileData))
        })
      yield* pullAt(0)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
      yield* eventually(() => !existsSync(stored(server.dataDir, taskId).file), 2000)
      for (let offset = SEG; offset < size; offset += SEG) yield* pullAt(offset)
      expect((yield* slow.expect(Pdu.State)).msg.state).toBe(FileState.Done)
      expect(sha256(Buffer.concat(parts))).toBe(sha256(data))
    })
  )

  it.scopedLive("a download that stops before the end deletes nothing; the file stays downloadable", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ ...SETTINGS, deleteAfterDownload: true })
      const size = 4 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* Client.connect(server.client)
      yield* Client.uploadFile(up, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const down = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
          for (let i = 0; i < 3; i++) {
            down.send(pullReqPdu(7, { taskId, userId: TO, transMode: TransferMode.Offline, offset: i * SEG, dataSize: SEG }))
            yield* down.expect(Pdu.PullDataRsp)
          }
        })
      )
      yield* Effect.sleep(100)
      expect(existsSync(stored(server.dataDir, taskId).file)).toBe(true)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
    })
  )

  it.scopedLive("without it, the file stays after a complete download and downloads again", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = SEG + 1
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* Client.connect(server.client)
      yield* Client.uploadFile(up, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
      expect(existsSync(stored(server.dataDir, taskId).file)).toBe(true)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
    })
  )
})
