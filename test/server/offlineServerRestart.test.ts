/**
 * Offline files across a server restart, in-process: a server is stopped
 * (its scope closed: tasks interrupted, connections dropped) and a new one
 * started on the same data dir. A complete file is verified (sha256) on load
 * and served; a partial upload resumes from the bytes on disk; a file altered
 * on disk is refused and quarantined; a file in TeamTalk's format (header, no
 * sidecar) written by the test is served and adopted.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { appendFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, closeSync, readSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import type { ServerSettings } from "../../src/server/config.js"
import { encodeHeader, HEADER_BYTES } from "../../src/storage/header.js"
import { FROM, loginPdu, pullRspPdu, rawConnect, rawLogin, sha256, TO } from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { createTask, startStoppableServer, tempDir } from "../support/server.js"
import { storedFiles } from "../support/files.js"

const SEG = 32 * 1024
const SETTINGS: Partial<ServerSettings> = { uploadWindow: 1, uploadSegment: SEG }

const stored = storedFiles

const readMeta = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>

const offlineTask = (server: TestServer, size: number, fileName = "s.bin") =>
  createTask(server, { fromUserId: FROM, toUserId: TO, fileName, fileSize: size, mode: TransferMode.Offline })

const upload = (server: TestServer, taskId: string, data: Buffer, userId = FROM) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(server.client)
      const offsets: Array<number> = []
      const source = Client.sourceFromBuffer(data)
      const r = yield* Client.uploadFile(sock, { taskId, userId, source: { size: data.length, read: (o, n) => (offsets.push(o), source.read(o, n)) } })
      expect(r.finalState).toBe(FileState.Done)
      return offsets
    })
  )

const download = (server: TestServer, taskId: string, size: number, userId = TO) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      const r = yield* Client.downloadFile(sock, { taskId, userId, sink, size, window: 4 })
      expect(r.bytes).toBe(size)
      expect(r.finalState).toBe(FileState.Done)
      return sink.bytes()
    })
  )

const loginResult = (server: TestServer, taskId: string, userId: number, role: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const conn = yield* rawConnect(server.client)
      conn.send(loginPdu(3, taskId, userId, role))
      const res = yield* conn.expect(Pdu.LoginRes)
      expect(res.msg.taskId).toBe(taskId)
      if (res.msg.resultCode !== ResultCode.Ok) yield* conn.expectClosed()
      return res.msg.resultCode
    })
  )

/** Flips one bit of the byte at `position` of a file. */
const flipByte = (path: string, position: number) => {
  const fd = openSync(path, "r+")
  try {
    const b = Buffer.alloc(1)
    readSync(fd, b, 0, 1, position)
    b[0] = b[0]! ^ 0x01
    writeSync(fd, b, 0, 1, position)
  } finally {
    closeSync(fd)
  }
}

/** A TeamTalk header written field by field (six NUL-padded ASCII fields), not with our encoder. */
const teamTalkHeader = (h: { taskId: string; from: number; to: number; createTime: number; fileName: string; size: number }) => {
  const buf = Buffer.alloc(HEADER_BYTES)
  buf.write(h.taskId, 0, "latin1")
  buf.write(String(h.from), 128, "latin1")
  buf.write(String(h.to), 192, "latin1")
  buf.write(String(h.createTime), 256, "latin1")
  buf.write(h.fileName, 384, "utf8")
  buf.write(String(h.size), 896, "latin1")
  return buf
}

describe("offline files across a restart", () => {
  it.scopedLive("a complete file is downloaded from the new server (loaded from disk, verified, served); the uploader's login is refused", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const size = 5 * SEG + 321
      const data = randomBytes(size)
      const first = yield* startStoppableServer({ dataDir, settings: SETTINGS })
      const taskId = yield* offlineTask(first.server, size)
      yield* upload(first.server, taskId, data)
      yield* first.stop

      const loads: Array<string> = []
      const second = yield* startStoppableServer({
        dataDir,
        settings: SETTINGS,
        store: (disk) => ({ ...disk, load: (id) => (loads.push(id), disk.load(id)) })
      })
      expect(second.server.registry.size()).toBe(0)
      expect(sha256(yield* download(second.server, taskId, size))).toBe(sha256(data))
      expect(loads).toEqual([taskId])
      // The whole file is served again from the loaded task, and cannot be uploaded over.
      expect(sha256(yield* download(second.server, taskId, size))).toBe(sha256(data))
      expect(yield* loginResult(second.server, taskId, FROM, FileRole.Uploader)).toBe(ResultCode.Failed)
      expect(yield* loginResult(second.server, taskId, FROM + 1, FileRole.Downloader)).toBe(ResultCode.Failed)
    })
  )

  it.scopedLive("two downloaders logging in at once after a restart share one load from disk, and both get the whole file", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const size = 4 * SEG + 4
      const data = randomBytes(size)
      const first = yield* startStoppableServer({ dataDir, settings: SETTINGS })
      const taskId = yield* offlineTask(first.server, size)
      yield* upload(first.server, taskId, data)
      yield* first.stop

      const loads: Array<string> = []
      const second = yield* startStoppableServer({
        dataDir,
        settings: SETTINGS,
        store: (disk) => ({ ...disk, load: (id) => Effect.sync(() => loads.push(id)).pipe(Effect.zipRight(Effect.sleep(50)), Effect.zipRight(disk.load(id))) })
      })
      const got = yield* Effect.all([download(second.server, taskId, size), download(second.server, taskId, size)], { concurrency: "unbounded" })
      for (const bytes of got) expect(sha256(bytes)).toBe(sha256(data))
      expect(loads).toEqual([taskId])
    })
  )

  for (const window of [1, 4]) {
    it.scopedLive(`window ${window}: a partial upload cut by the restart resumes on the new server from the bytes on disk, and the download is exact`, () =>
      Effect.gen(function* () {
        const dataDir = yield* tempDir
        const size = 10 * SEG + 5
        const data = randomBytes(size)
        const settings = { ...SETTINGS, uploadWindow: window }
        const first = yield* startStoppableServer({ dataDir, settings })
        const taskId = yield* offlineTask(first.server, size, "partial ✓.bin")
        const up = yield* rawLogin(first.server, taskId, FROM, FileRole.Uploader)
        // Blocks 0-3 in order; with a window, block 5 too (held, waiting for block 4).
        const reqs = new Map<number, number>()
        const answer = (block: number) =>
          up.send(pullRspPdu(1, { taskId, userId: FROM, offset: block * SEG, fileData: data.subarray(block * SEG, (block + 1) * SEG) }))
        const lastAsked = () => Math.max(...reqs.keys())
        const take = Effect.gen(function* () {
          const r = yield* up.expect(Pdu.PullDataReq)
          reqs.set(r.msg.offset / SEG, r.msg.dataSize)
        })
        for (let i = 0; i < window; i++) yield* take
        for (let block = 0; block < 4; block++) {
          answer(block)
          yield* take
        }
        if (window > 1) answer(5)
        // The request for block 3 + window proves blocks 0-3 are stored.
        expect(lastAsked()).toBe(3 + window)
        yield* Effect.sleep(50)
        yield* first.stop
        yield* up.expectClosed()
        const p = stored(dataDir, taskId)
        expect(statSync(p.part).size).toBe(HEADER_BYTES + 4 * SEG)
        expect(existsSync(p.file)).toBe(false)

        const second = yield* startStoppableServer({ dataDir, settings })
        expect(yield* loginResult(second.server, taskId, TO, FileRole.Downloader)).toBe(ResultCode.Failed)
        const offsets = yield* upload(second.server, taskId, data)
        expect(offsets[0]).toBe(4 * SEG)
        expect(new Set(offsets).size).toBe(offsets.length)
        expect(sha256(yield* download(second.server, taskId, size))).toBe(sha256(data))
        expect(readMeta(p.meta).fileName).toBe("partial ✓.bin")
        expect(readMeta(p.meta).sha256).toBe(sha256(data))
      })
    )
  }

  const corruptions: ReadonlyArray<{ name: string; corrupt: (file: string, size: number) => void }> = [
    { name: "a flipped data byte", corrupt: (file, size) => flipByte(file, HEADER_BYTES + Math.floor(size / 2)) },
    { name: "a flipped last byte", corrupt: (file, size) => flipByte(file, HEADER_BYTES + size - 1) },
    { name: "a truncated file", corrupt: (file, size) => truncateSync(file, HEADER_BYTES + size - 1) },
    { name: "an extra byte appended", corrupt: (file) => appendFileSync(file, Buffer.from([0])) }
  ]
  for (const c of corruptions) {
    it.scopedLive(`${c.name}: refused at the download login, moved to <dataDir>/quarantine/, refused again`, () =>
      Effect.gen(function* () {
        const dataDir = yield* tempDir
        const size = 3 * SEG + 11
        const data = randomBytes(size)
        const first = yield* startStoppableServer({ dataDir, settings: SETTINGS })
        const taskId = yield* offlineTask(first.server, size)
        yield* upload(first.server, taskId, data)
        yield* first.stop
        const p = stored(dataDir, taskId)
        c.corrupt(p.file, size)
        const altered = readFileSync(p.file)

        const second = yield* startStoppableServer({ dataDir, settings: SETTINGS })
        expect(yield* loginResult(second.server, taskId, TO, FileRole.Downloader)).toBe(ResultCode.Failed)
        expect(existsSync(p.file)).toBe(false)
        // The file and its sidecar (evidence of what it should have been) are moved aside together.
        const quarantined = readdirSync(join(dataDir, "quarantine")).sort()
        expect(quarantined.length).toBe(2)
        expect(quarantined[0]!.startsWith(taskId)).toBe(true)
        expect(quarantined[1]).toBe(`${quarantined[0]}.json`)
        expect(existsSync(p.meta)).toBe(false)
        // Moved aside as it was, not rewritten.
        expect(readFileSync(join(dataDir, "quarantine", quarantined[0]!)).equals(altered)).toBe(true)
        expect(yield* loginResult(second.server, taskId, TO, FileRole.Downloader)).toBe(ResultCode.Failed)
        expect(second.server.registry.size()).toBe(0)
      })
    )
  }
})

describe("files in TeamTalk's format (header, no sidecar)", () => {
  for (const how of ["hand-written header", "encodeHeader"] as const) {
    it.scopedLive(`${how}: served to its to_user after the server starts; a sidecar with the sha256 is then written`, () =>
      Effect.gen(function* () {
        const dataDir = yield* tempDir
        const taskId = randomUUID()
        const size = 2 * SEG + 99
        const data = randomBytes(size)
        const createTime = Math.floor(Date.now() / 1000) - 3600
        const fields = { taskId, from: 31, to: 42, createTime, fileName: "", size }
        const header =
          how === "hand-written header"
            ? teamTalkHeader(fields)
            : encodeHeader({ taskId, fromUserId: 31, toUserId: 42, createTime, fileName: "", fileSize: size })
        const p = stored(dataDir, taskId)
        mkdirSync(p.dir, { recursive: true })
        writeFileSync(p.file, Buffer.concat([header, data]))

        const { server } = yield* startStoppableServer({ dataDir, settings: SETTINGS })
        expect(yield* loginResult(server, taskId, 31, FileRole.Downloader)).toBe(ResultCode.Failed)
        expect(yield* loginResult(server, taskId, 31, FileRole.Uploader)).toBe(ResultCode.Failed)
        expect(sha256(yield* download(server, taskId, size, 42))).toBe(sha256(data))
        const meta = readMeta(p.meta)
        expect(meta).toMatchObject({ taskId, fromUserId: 31, toUserId: 42, fileSize: size, sha256: sha256(data) })
        // The file itself is left as TeamTalk wrote it.
        expect(readFileSync(p.file).equals(Buffer.concat([header, data]))).toBe(true)
      })
    )
  }

  it.scopedLive("a TeamTalk file whose length does not match its header, or whose header names another task, is quarantined and refused", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const short = randomUUID()
      const misnamed = randomUUID()
      const size = 1000
      for (const [taskId, named, bytes] of [
        [short, short, size - 1],
        [misnamed, randomUUID(), size]
      ] as const) {
        const p = stored(dataDir, taskId)
        mkdirSync(p.dir, { recursive: true })
        writeFileSync(p.file, Buffer.concat([teamTalkHeader({ taskId: named, from: 1, to: 2, createTime: 1_700_000_000, fileName: "", size }), randomBytes(bytes)]))
      }
      const { server } = yield* startStoppableServer({ dataDir, settings: SETTINGS })
      for (const taskId of [short, misnamed]) {
        expect(yield* loginResult(server, taskId, 2, FileRole.Downloader)).toBe(ResultCode.Failed)
        expect(existsSync(stored(dataDir, taskId).file)).toBe(false)
      }
      expect(readdirSync(join(dataDir, "quarantine")).length).toBe(2)
    })
  )
})
