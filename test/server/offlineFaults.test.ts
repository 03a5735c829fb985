/**
 * Storage errors injected through the Layer: the server runs on an
 * OfflineStore that wraps the disk store and fails on demand (openUpload,
 * the Nth write, or finish). The failing upload ends cleanly (the uploader
 * is told CANCEL and closed, or its login refused), no complete file
 * appears, what was written stays for a resume, and every other transfer
 * carries on.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, readFileSync, statSync } from "node:fs"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { isPdu, Pdu } from "../../src/protocol/messages.js"
import type { ServerSettings } from "../../src/server/config.js"
import { HEADER_BYTES } from "../../src/storage/header.js"
import { StoreError } from "../../src/storage/store.js"
import type { RawConn } from "../support/raw.js"
import { decodeAs, FROM, loginPdu, pullReqPdu, pullRspPdu, rawConnect, rawLogin, sha256, TO } from "../support/raw.js"
import type { OfflineStoreService, TestServer } from "../support/server.js"
import { createTask, eventually, startServerWith } from "../support/server.js"
import { storedFiles } from "../support/files.js"

const SEG = 32 * 1024
const SETTINGS: Partial<ServerSettings> = { uploadWindow: 1, uploadSegment: SEG }

/** Faults by task id, switched on and off by the test while the server runs. */
interface Faults {
  readonly failOpen: Set<string>
  /** Writes that still succeed before every further write fails (per task). */
  readonly writesLeft: Map<string, number>
  readonly failFinish: Set<string>
  /** Writes that reached the disk store, per task. */
  readonly written: Map<string, number>
}

const makeFaults = (): Faults => ({ failOpen: new Set(), writesLeft: new Map(), failFinish: new Set(), written: new Map() })

const injected = (what: string) => new StoreError({ reason: "NoSpace", message: `injected: ${what}` })

const faultyStore =
  (faults: Faults) =>
  (disk: OfflineStoreService): OfflineStoreService => ({
    ...disk,
    openUpload: (meta) =>
      faults.failOpen.has(meta.taskId)
        ? Effect.fail(injected("openUpload"))
        : disk.openUpload(meta).pipe(
            Effect.map((writer) => ({
              received: writer.received,
              write: (data: Uint8Array | ReadonlyArray<Uint8Array>) =>
                Effect.suspend(() => {
                  const left = faults.writesLeft.get(meta.taskId)
                  if (left !== undefined) {
                    if (left <= 0) return Effect.fail(injected("write"))
                    faults.writesLeft.set(meta.taskId, left - 1)
                  }
                  faults.written.set(meta.taskId, (faults.written.get(meta.taskId) ?? 0) + 1)
                  return writer.write(data)
                }),
              finish: Effect.suspend(() => (faults.failFinish.has(meta.taskId) ? Effect.fail(injected("finish")) : writer.finish))
            }))
          )
  })

const stored = storedFiles

const offlineTask = (server: TestServer, size: number) =>
  createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "f.bin", fileSize: size, mode: TransferMode.Offline })

/** Answers the server's pulls with `data` until a FILE_STATE comes (returned) or `stopAfter` answers were sent. */
const answer = (conn: RawConn, taskId: string, data: Buffer, stopAfter = Infinity) =>
  Effect.gen(function* () {
    for (let n = 0; n < stopAfter; n++) {
      const frame = yield* conn.next()
      if (isPdu(frame, Pdu.State)) return { seq: frame.seq, state: yield* decodeAs(Pdu.State, frame) }
      const { offset, dataSize } = yield* decodeAs(Pdu.PullDataReq, frame)
      conn.send(pullRspPdu(4, { taskId, userId: FROM, offset, fileData: data.subarray(offset, offset + dataSize) }))
    }
    return undefined
  })

const pullReq = (taskId: string, offset: number) =>
  pullReqPdu(9, { taskId, userId: TO, transMode: TransferMode.Offline, offset, dataSize: SEG })

const download = (server: TestServer, taskId: string, size: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      yield* Client.downloadFile(sock, { taskId, userId: TO, sink, size, window: 4 })
      return sink.bytes()
    })
  )

const upload = (server: TestServer, taskId: string, data: Buffer) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(server.client)
      const offsets: Array<number> = []
      const source = Client.sourceFromBuffer(data)
      const r = yield* Client.uploadFile(sock, { taskId, userId: FROM, source: { size: data.length, read: (o, n) => (offsets.push(o), source.read(o, n)) } })
      expect(r.finalState).toBe(FileState.Done)
      return offsets
    })
  )

describe("storage errors injected through the Layer", () => {
  it.scopedLive("a write fails after 3 blocks: CANCEL to the uploader, closed, no complete file; others carry on; a later login resumes at 3 blocks", () =>
    Effect.gen(function* () {
      const faults = makeFaults()
      const server = yield* startServerWith({ settings: SETTINGS, store: faultyStore(faults) })
      const size = 8 * SEG + 7
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      // Another upload in progress when the fault hits, and a stored file being downloaded.
      const otherData = randomBytes(6 * SEG)
      const other = yield* offlineTask(server, otherData.length)
      const servedData = randomBytes(5 * SEG + 1)
      const served = yield* offlineTask(server, servedData.length)
      yield* upload(server, served, servedData)
      const otherUp = yield* rawLogin(server, other, FROM, FileRole.Uploader)
      expect(yield* answer(otherUp, other, otherData, 2)).toBeUndefined()
      const reader = yield* rawLogin(server, served, TO, FileRole.Downloader)
      reader.send(pullReq(served, 0))
      expect((yield* reader.expect(Pdu.PullDataRsp)).msg.fileData.length).toBe(SEG)

      faults.writesLeft.set(taskId, 3)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const end = yield* answer(up, taskId, data)
      expect(end).toBeDefined()
      expect(end!.seq).toBe(0)
      expect(end!.state).toEqual({ state: FileState.Cancel, taskId, userId: FROM })
      yield* up.expectClosed()

      const p = stored(server.dataDir, taskId)
      expect(faults.written.get(taskId)).toBe(3)
      expect(existsSync(p.file)).toBe(false)
      expect(statSync(p.part).size).toBe(HEADER_BYTES + 3 * SEG)
      expect(server.registry.get(taskId)).toBeDefined()

      // The other transfers did not notice.
      const otherEnd = yield* answer(otherUp, other, otherData)
      expect(otherEnd!.state.state).toBe(FileState.Done)
      expect(sha256(yield* download(server, other, otherData.length))).toBe(sha256(otherData))
      reader.send(pullReq(served, SEG))
      expect((yield* reader.expect(Pdu.PullDataRsp)).msg.offset).toBe(SEG)
      expect(sha256(yield* download(server, served, servedData.length))).toBe(sha256(servedData))

      // The disk is fine again: the uploader resumes where the data ends.
      faults.writesLeft.delete(taskId)
      const offsets = yield* upload(server, taskId, data)
      expect(offsets[0]).toBe(3 * SEG)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
      expect(sha256(readFileSync(p.file).subarray(HEADER_BYTES))).toBe(sha256(data))
    })
  )

  it.scopedLive("openUpload fails: the uploader's login is refused and closed, nothing is stored; once it works the upload completes", () =>
    Effect.gen(function* () {
      const faults = makeFaults()
      const server = yield* startServerWith({ settings: SETTINGS, store: faultyStore(faults) })
      const size = 2 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      faults.failOpen.add(taskId)
      const conn = yield* rawConnect(server.client)
      conn.send(loginPdu(12, taskId, FROM, FileRole.Uploader))
      const res = yield* conn.expect(Pdu.LoginRes)
      expect(res.seq).toBe(12)
      expect(res.msg).toEqual({ resultCode: ResultCode.Failed, taskId })
      expect(yield* conn.expectClosed()).toEqual([])
      const p = stored(server.dataDir, taskId)
      expect(existsSync(p.file)).toBe(false)
      expect(existsSync(p.part)).toBe(false)
      // The task is still there for a new attempt.
      faults.failOpen.delete(taskId)
      const offsets = yield* upload(server, taskId, data)
      expect(offsets[0]).toBe(0)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
    })
  )

  it.scopedLive("finish fails: CANCEL, closed, no complete file, download refused; a new login finishes at once (no pull) and the file is exact", () =>
    Effect.gen(function* () {
      const faults = makeFaults()
      const server = yield* startServerWith({ settings: SETTINGS, store: faultyStore(faults) })
      const size = 3 * SEG + 1
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      faults.failFinish.add(taskId)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const end = yield* answer(up, taskId, data)
      expect(end!.state).toEqual({ state: FileState.Cancel, taskId, userId: FROM })
      yield* up.expectClosed()
      const p = stored(server.dataDir, taskId)
      expect(existsSync(p.file)).toBe(false)
      expect(statSync(p.part).size).toBe(HEADER_BYTES + size)
      yield* eventually(() => server.registry.snapshots().find((t) => t.taskId === taskId)?.phase === "Ready")
      const down = yield* rawConnect(server.client)
      down.send(loginPdu(2, taskId, TO, FileRole.Downloader))
      expect((yield* down.expect(Pdu.LoginRes)).msg.resultCode).toBe(ResultCode.Failed)

      faults.failFinish.delete(taskId)
      const again = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const done = yield* again.expect(Pdu.State)
      expect(done.msg).toEqual({ state: FileState.Done, taskId, userId: FROM })
      yield* again.expectClosed()
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
    })
  )

  it.scopedLive("every write fails from the first: CANCEL, the partial holds no data, a later login starts from 0", () =>
    Effect.gen(function* () {
      const faults = makeFaults()
      const server = yield* startServerWith({ settings: { ...SETTINGS, uploadWindow: 4 }, store: faultyStore(faults) })
      const size = 6 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      faults.writesLeft.set(taskId, 0)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const end = yield* answer(up, taskId, data)
      expect(end!.state.state).toBe(FileState.Cancel)
      yield* up.expectClosed()
      expect(existsSync(stored(server.dataDir, taskId).file)).toBe(false)
      faults.writesLeft.delete(taskId)
      const offsets = yield* upload(server, taskId, data)
      expect(offsets[0]).toBe(0)
      expect(sha256(yield* download(server, taskId, size))).toBe(sha256(data))
    })
  )
})

