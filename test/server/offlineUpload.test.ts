/**
 * Offline upload (role 3) against the real server on 127.0.0.1, with real
 * files in a temp data dir: the server drives the upload (seq-0 PULL_DATA_REQs
 * in offset order), checks every block, keeps partial data under `.part`
 * only, and resumes from the bytes stored. Reference sections 5 and 6.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, TransferMode } from "../../src/protocol/commands.js"
import type { FileStateMsg, PullDataReq } from "../../src/protocol/messages.js"
import { isPdu, Pdu } from "../../src/protocol/messages.js"
import type { ServerSettings } from "../../src/server/config.js"
import { decodeHeader, HEADER_BYTES } from "../../src/storage/header.js"
import type { RawConn, Received } from "../support/raw.js"
import { decodeAs, FROM, pullReqPdu, pullRspPdu, rawLogin, sha256, statePdu, TO } from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { createTask, eventually, startServer } from "../support/server.js"
import { storedFiles } from "../support/files.js"

const SEG = 32 * 1024
const MiB = 1024 * 1024
/** TeamTalk's upload: one 32 KiB request at a time (the defaults may differ; tests say what they assume). */
const TEAMTALK: Partial<ServerSettings> = { uploadWindow: 1, uploadSegment: SEG }

const offlineTask = (server: TestServer, size: number, fileName = "file.bin") =>
  createTask(server, { fromUserId: FROM, toUserId: TO, fileName, fileSize: size, mode: TransferMode.Offline })

const stored = storedFiles

const sizeOf = (path: string) => statSync(path).size
const readMeta = (path: string) => JSON.parse(readFileSync(path, "utf8")) as { sha256?: string; fileSize: number; fileName: string }
const phaseOf = (server: TestServer, taskId: string) => server.registry.snapshots().find((t) => t.taskId === taskId)?.phase

interface UploadRun {
  readonly requests: ReadonlyArray<Received<PullDataReq>>
  /** The FILE_STATE that ended the upload; undefined when the run stopped after `stopAfter` answers. */
  readonly final: Received<FileStateMsg> | undefined
}

/**
 * A raw uploader: answers each PULL_DATA_REQ of the server with the slice of
 * `data` it asks for (seqs of its own), until a FILE_STATE arrives or
 * `stopAfter` requests have been answered.
 */
const answerPulls = (conn: RawConn, taskId: string, data: Buffer, stopAfter?: number) =>
  Effect.gen(function* () {
    const requests: Array<Received<PullDataReq>> = []
    for (;;) {
      if (stopAfter !== undefined && requests.length >= stopAfter) return { requests, final: undefined } satisfies UploadRun
      const frame = yield* conn.next()
      if (isPdu(frame, Pdu.State)) return { requests, final: { frame, seq: frame.seq, msg: yield* decodeAs(Pdu.State, frame) } } satisfies UploadRun
      if (!isPdu(frame, Pdu.PullDataReq)) return yield* Effect.fail(new Error(`uploader got command 0x${frame.commandId.toString(16)}`))
      const req = { frame, seq: frame.seq, msg: yield* decodeAs(Pdu.PullDataReq, frame) }
      requests.push(req)
      conn.send(
        pullRspPdu(900 + requests.length, { taskId, userId: FROM, offset: req.msg.offset, fileData: data.subarray(req.msg.offset, req.msg.offset + req.msg.dataSize) })
      )
    }
  })

/** The server's requests: seq 0, this task, FROM, offline mode, contiguous from `start`, each min(segment, remaining). */
const checkRequests = (requests: ReadonlyArray<Received<PullDataReq>>, o: { taskId: string; start: number; size: number; segment: number }) => {
  let offset = o.start
  for (const r of requests) {
    expect(r.seq).toBe(0)
    expect(r.msg.taskId).toBe(o.taskId)
    expect(r.msg.userId).toBe(FROM)
    expect(r.msg.transMode).toBe(TransferMode.Offline)
    expect(r.msg.offset).toBe(offset)
    expect(r.msg.dataSize).toBe(Math.min(o.segment, o.size - offset))
    offset += r.msg.dataSize
  }
  return offset
}

/** The FILE_STATE DONE that ends an upload or a download: seq 0, user_id = from_user. */
const expectDone = (final: Received<FileStateMsg> | undefined, taskId: string) => {
  expect(final).toBeDefined()
  expect(final!.seq).toBe(0)
  expect(final!.msg).toEqual({ state: FileState.Done, taskId, userId: FROM })
}

/**
 * A raw downloader pulling one block at a time from `from`, with seqs of its
 * own: each PULL_DATA_RSP must echo the seq, the offset, and hold min(block,
 * remaining) bytes; FILE_STATE DONE must follow the block that reaches the
 * end (and nothing else may come before it).
 */
const downloadRaw = (conn: RawConn, taskId: string, size: number, block = SEG, from = 0) =>
  Effect.gen(function* () {
    const parts: Array<Buffer> = []
    let offset = from
    let seq = 40_000
    for (;;) {
      seq = (seq * 7 + 13) % 65_000 + 1
      conn.send(pullReqPdu(seq, { taskId, userId: TO, transMode: TransferMode.Offline, offset, dataSize: block }))
      const rsp = yield* conn.expect(Pdu.PullDataRsp)
      expect(rsp.seq).toBe(seq)
      expect(rsp.msg.resultCode).toBe(0)
      expect(rsp.msg.taskId).toBe(taskId)
      expect(rsp.msg.offset).toBe(offset)
      expect(rsp.msg.fileData.length).toBe(Math.min(block, size - offset))
      parts.push(Buffer.from(rsp.msg.fileData))
      offset += rsp.msg.fileData.length
      if (offset === size) {
        const done = yield* conn.expect(Pdu.State)
        expectDone(done, taskId)
        return Buffer.concat(parts)
      }
    }
  })

const SIZES = [0, 1, SEG - 1, SEG, SEG + 1, 8 * MiB]

const CONFIGS: ReadonlyArray<{ name: string; settings: Partial<ServerSettings>; segment: number }> = [
  { name: "window 1, 32 KiB segments", settings: TEAMTALK, segment: SEG },
  { name: "window 4, 100000-byte segments", settings: { uploadWindow: 4, uploadSegment: 100_000 }, segment: 100_000 }
]

describe("offline round trip (raw uploader and downloader)", () => {
  for (const config of CONFIGS) {
    for (const size of SIZES) {
      it.scopedLive(`${config.name}: ${size} bytes up and down, sha256 intact`, () =>
        Effect.gen(function* () {
          const server = yield* startServer(config.settings)
          const data = randomBytes(size)
          const taskId = yield* offlineTask(server, size)
          const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
          const run = yield* answerPulls(up, taskId, data)
          expect(checkRequests(run.requests, { taskId, start: 0, size, segment: config.segment })).toBe(size)
          expect(run.requests.length).toBe(Math.ceil(size / config.segment))
          expectDone(run.final, taskId)
          yield* up.expectClosed()

          const down = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
          const got = yield* downloadRaw(down, taskId, size)
          expect(got.length).toBe(size)
          expect(sha256(got)).toBe(sha256(data))
          expect(readMeta(stored(server.dataDir, taskId).meta).sha256).toBe(sha256(data))
        })
      )
    }
  }

  it.scopedLive("SDK uploadFile and downloadFile (window 8), default upload settings: 8 MiB intact", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const size = 8 * MiB + 17
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* Client.connect(server.client)
      const served = yield* Client.uploadFile(up, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
      expect(served.bytes).toBe(size)
      expect(served.finalState).toBe(FileState.Done)
      const down = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      const got = yield* Client.downloadFile(down, { taskId, userId: TO, sink, size, window: 8 })
      expect(got.bytes).toBe(size)
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )

  it.scopedLive("a 0-byte file completes at the uploader's login: LOGIN_RES, then DONE, no PULL_DATA_REQ, closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer(TEAMTALK)
      const taskId = yield* offlineTask(server, 0, "empty.txt")
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const done = yield* up.expect(Pdu.State, 1000)
      expectDone(done, taskId)
      expect(yield* up.expectClosed()).toEqual([])
      const p = stored(server.dataDir, taskId)
      expect(sizeOf(p.file)).toBe(HEADER_BYTES)
      expect(existsSync(p.part)).toBe(false)
      const down = yield* Client.connect(server.client)
      const got = yield* Client.downloadFile(down, { taskId, userId: TO, sink: Client.memorySink(), size: 0 })
      expect(got.bytes).toBe(0)
      expect(got.finalState).toBe(FileState.Done)
    })
  )

  it.scopedLive("the server keeps exactly uploadWindow requests in flight, and one more per block stored", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ uploadWindow: 3, uploadSegment: 10_000 })
      const size = 95_000
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const first = [yield* up.expect(Pdu.PullDataReq), yield* up.expect(Pdu.PullDataReq), yield* up.expect(Pdu.PullDataReq)]
      yield* up.expectQuiet(150)
      expect(first.map((r) => [r.msg.offset, r.msg.dataSize])).toEqual([[0, 10_000], [10_000, 10_000], [20_000, 10_000]])
      // One answer: exactly one more request, for the next offset.
      up.send(pullRspPdu(1, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, 10_000) }))
      const fourth = yield* up.expect(Pdu.PullDataReq)
      expect([fourth.seq, fourth.msg.offset, fourth.msg.dataSize]).toEqual([0, 30_000, 10_000])
      yield* up.expectQuiet(150)
      // Answer the rest as asked.
      const outstanding = [first[1]!, first[2]!, fourth]
      for (const r of outstanding) {
        up.send(pullRspPdu(2, { taskId, userId: FROM, offset: r.msg.offset, fileData: data.subarray(r.msg.offset, r.msg.offset + r.msg.dataSize) }))
      }
      const rest = yield* answerPulls(up, taskId, data)
      expect(checkRequests(rest.requests, { taskId, start: 40_000, size, segment: 10_000 })).toBe(size)
      expect(rest.requests.at(-1)!.msg.dataSize).toBe(5_000)
      expectDone(rest.final, taskId)
      yield* up.expectClosed()
      const down = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      yield* Client.downloadFile(down, { taskId, userId: TO, sink, size })
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )
})

describe("offline uploads share --upload-memory", () => {
  it.scopedLive("an upload that finds the budget used asks for one block at a time, never none; both files arrive exactly", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ uploadWindow: 4, uploadSegment: 10_000, uploadMemoryBytes: 30_000 })
      const size = 80_000
      const dataA = randomBytes(size)
      const dataB = randomBytes(size)
      const taskA = yield* offlineTask(server, size)
      const taskB = yield* offlineTask(server, size)
      // A takes the whole budget: three requests, not four.
      const a = yield* rawLogin(server, taskA, FROM, FileRole.Uploader)
      const firstA = [yield* a.expect(Pdu.PullDataReq), yield* a.expect(Pdu.PullDataReq), yield* a.expect(Pdu.PullDataReq)]
      yield* a.expectQuiet(150)
      expect(firstA.map((r) => r.msg.offset)).toEqual([0, 10_000, 20_000])
      // B finds none free: still one request, so it is never stuck.
      const b = yield* rawLogin(server, taskB, FROM, FileRole.Uploader)
      const firstB = yield* b.expect(Pdu.PullDataReq)
      yield* b.expectQuiet(150)
      expect(firstB.msg.offset).toBe(0)
      // B's block stored: one more, still one at a time while A holds the rest.
      b.send(pullRspPdu(1, { taskId: taskB, userId: FROM, offset: 0, fileData: dataB.subarray(0, 10_000) }))
      const secondB = yield* b.expect(Pdu.PullDataReq)
      yield* b.expectQuiet(150)
      expect(secondB.msg.offset).toBe(10_000)
      // Both complete, exactly, each answering what it is asked.
      for (const r of firstA) a.send(pullRspPdu(2, { taskId: taskA, userId: FROM, offset: r.msg.offset, fileData: dataA.subarray(r.msg.offset, r.msg.offset + r.msg.dataSize) }))
      b.send(pullRspPdu(2, { taskId: taskB, userId: FROM, offset: 10_000, fileData: dataB.subarray(10_000, 20_000) }))
      const [restA, restB] = yield* Effect.all([answerPulls(a, taskA, dataA), answerPulls(b, taskB, dataB)], { concurrency: 2 })
      expectDone(restA.final, taskA)
      expectDone(restB.final, taskB)
      for (const [taskId, data] of [[taskA, dataA], [taskB, dataB]] as const) {
        const down = yield* Client.connect(server.client)
        const sink = Client.memorySink()
        yield* Client.downloadFile(down, { taskId, userId: TO, sink, size })
        expect(sha256(sink.bytes())).toBe(sha256(data))
      }
    })
  )
})

describe("offline files on disk", () => {
  it.scopedLive("after upload: <dataDir>/offline_file/<2 chars>/<taskId>, 960 + size bytes, header fields, sha256 sidecar, no .part", () =>
    Effect.gen(function* () {
      const server = yield* startServer(TEAMTALK)
      const size = 3 * SEG + 5
      const data = randomBytes(size)
      const fileName = "résumé ✓ 報告.pdf"
      const before = Math.floor(Date.now() / 1000)
      const taskId = yield* offlineTask(server, size, fileName)
      const after = Math.ceil(Date.now() / 1000)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      expectDone((yield* answerPulls(up, taskId, data)).final, taskId)

      const p = stored(server.dataDir, taskId)
      expect(p.dir).toBe(join(server.dataDir, "offline_file", taskId.slice(0, 2)))
      expect(sizeOf(p.file)).toBe(HEADER_BYTES + size)
      const bytes = readFileSync(p.file)
      const header = decodeHeader(bytes.subarray(0, HEADER_BYTES))
      expect(header.taskId).toBe(taskId)
      expect(header.fromUserId).toBe(FROM)
      expect(header.toUserId).toBe(TO)
      expect(header.fileName).toBe(fileName)
      expect(header.fileSize).toBe(size)
      expect(header.createTime).toBeGreaterThanOrEqual(before)
      expect(header.createTime).toBeLessThanOrEqual(after)
      expect(sha256(bytes.subarray(HEADER_BYTES))).toBe(sha256(data))
      const meta = readMeta(p.meta)
      expect(meta.sha256).toBe(sha256(data))
      expect(meta.fileSize).toBe(size)
      expect(meta.fileName).toBe(fileName)
      // Nothing else is left beside the file and its sidecar (no .part, no .tmp).
      expect(readdirSync(p.dir).sort()).toEqual([taskId, `${taskId}.json`])
    })
  )

  it.scopedLive("while an upload is in progress only <taskId>.part exists, holding exactly the blocks stored, never the final name", () =>
    Effect.gen(function* () {
      const server = yield* startServer(TEAMTALK)
      const blocks = 6
      const size = blocks * SEG - 100
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const p = stored(server.dataDir, taskId)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      let storedBytes = 0
      for (;;) {
        const frame = yield* up.next()
        // Each request proves the previous block is in the partial file.
        expect(existsSync(p.file)).toBe(false)
        expect(sizeOf(p.part)).toBe(HEADER_BYTES + storedBytes)
        expect(readdirSync(p.dir).sort()).toEqual([`${taskId}.json`, `${taskId}.part`])
        expect(readMeta(p.meta).sha256).toBeUndefined()
        if (isPdu(frame, Pdu.State)) {
          throw new Error("DONE before the last block")
        }
        const req = yield* decodeAs(Pdu.PullDataReq, frame)
        expect(req.offset).toBe(storedBytes)
        up.send(pullRspPdu(3, { taskId, userId: FROM, offset: req.offset, fileData: data.subarray(req.offset, req.offset + req.dataSize) }))
        storedBytes += req.dataSize
        if (storedBytes === size) break
      }
      expectDone(yield* up.expect(Pdu.State), taskId)
      // DONE is sent once the file is in place.
      expect(existsSync(p.part)).toBe(false)
      expect(sizeOf(p.file)).toBe(HEADER_BYTES + size)
      expect(readdirSync(p.dir).sort()).toEqual([taskId, `${taskId}.json`])
    })
  )
})

/** What a misbehaving uploader sends for the request it is handed, and how many of that request's bytes count as stored. */
interface Misbehaviour {
  readonly name: string
  readonly answer: (req: PullDataReq, data: Buffer, taskId: string) => ReadonlyArray<Buffer>
  /** Blocks stored by the misbehaving answer itself (1 when a correct answer precedes the bad one). */
  readonly storedToo: number
}

const MISBEHAVIOURS: ReadonlyArray<Misbehaviour> = [
  {
    name: "a short block (1 byte less than asked)",
    answer: (r, data, taskId) => [pullRspPdu(5, { taskId, userId: FROM, offset: r.offset, fileData: data.subarray(r.offset, r.offset + r.dataSize - 1) })],
    storedToo: 0
  },
  {
    name: "a long block (1 byte more than asked)",
    answer: (r, data, taskId) => [pullRspPdu(5, { taskId, userId: FROM, offset: r.offset, fileData: data.subarray(r.offset, r.offset + r.dataSize + 1) })],
    storedToo: 0
  },
  {
    name: "a block of the right size at the wrong offset",
    answer: (r, data, taskId) => [pullRspPdu(5, { taskId, userId: FROM, offset: r.offset + 1, fileData: data.subarray(r.offset + 1, r.offset + 1 + r.dataSize) })],
    storedToo: 0
  },
  {
    name: "the next block, not the one asked for",
    answer: (r, data, taskId) => [
      pullRspPdu(5, { taskId, userId: FROM, offset: r.offset + r.dataSize, fileData: data.subarray(r.offset + r.dataSize, r.offset + 2 * r.dataSize) })
    ],
    storedToo: 0
  },
  {
    name: "the block answered twice",
    answer: (r, data, taskId) => {
      const rsp = pullRspPdu(5, { taskId, userId: FROM, offset: r.offset, fileData: data.subarray(r.offset, r.offset + r.dataSize) })
      return [rsp, rsp]
    },
    storedToo: 1
  },
  {
    name: "an error result code",
    answer: (r, data, taskId) => [
      pullRspPdu(5, { taskId, userId: FROM, offset: r.offset, resultCode: 1, fileData: data.subarray(r.offset, r.offset + r.dataSize) })
    ],
    storedToo: 0
  },
  {
    name: "the block under another user id",
    answer: (r, data, taskId) => [pullRspPdu(5, { taskId, userId: TO, offset: r.offset, fileData: data.subarray(r.offset, r.offset + r.dataSize) })],
    storedToo: 0
  }
]

describe("misbehaving uploaders", () => {
  for (const m of MISBEHAVIOURS) {
    it.scopedLive(`${m.name}: the uploader is closed, the partial stays, a new login resumes from the bytes stored`, () =>
      Effect.gen(function* () {
        const server = yield* startServer(TEAMTALK)
        const size = 8 * SEG + 1234
        const data = randomBytes(size)
        const taskId = yield* offlineTask(server, size)
        const p = stored(server.dataDir, taskId)
        const good = 3
        const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
        yield* answerPulls(up, taskId, data, good)
        const req = yield* up.expect(Pdu.PullDataReq)
        expect(req.msg.offset).toBe(good * SEG)
        up.send(...m.answer(req.msg, data, taskId))
        const leftOver = yield* up.expectClosed()
        // No DONE for a bad block (at most the request that follows a good duplicate).
        for (const f of leftOver) expect(isPdu(f, Pdu.State)).toBe(false)

        const storedBytes = (good + m.storedToo) * SEG
        yield* eventually(() => phaseOf(server, taskId) === "Ready")
        expect(existsSync(p.file)).toBe(false)
        expect(sizeOf(p.part)).toBe(HEADER_BYTES + storedBytes)

        const again = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
        const run = yield* answerPulls(again, taskId, data)
        expect(run.requests[0]!.msg.offset).toBe(storedBytes)
        expect(storedBytes).toBeGreaterThan(0)
        expect(checkRequests(run.requests, { taskId, start: storedBytes, size, segment: SEG })).toBe(size)
        expectDone(run.final, taskId)

        const down = yield* Client.connect(server.client)
        const sink = Client.memorySink()
        yield* Client.downloadFile(down, { taskId, userId: TO, sink, size, window: 4 })
        expect(sha256(sink.bytes())).toBe(sha256(data))
        expect(sizeOf(p.file)).toBe(HEADER_BYTES + size)
      })
    )
  }

  it.scopedLive("window 4: responses in the order asked are stored; the upload completes", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ ...TEAMTALK, uploadWindow: 4 })
      const size = 10 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const run = yield* answerPulls(up, taskId, data)
      expectDone(run.final, taskId)
      expect(readMeta(stored(server.dataDir, taskId).meta).sha256).toBe(sha256(data))
    })
  )

  // Issue 3, item 1: "for each PULL_DATA_RSP checks ... offset == an outstanding request's offset";
  // reference section 5: "Senders answer pulls with seqs of their own: responses are matched to requests by offset".
  it.scopedLive("window 4: the outstanding requests answered in reverse order are all accepted and the file is exact", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ ...TEAMTALK, uploadWindow: 4 })
      const size = 4 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const reqs = [yield* up.expect(Pdu.PullDataReq), yield* up.expect(Pdu.PullDataReq), yield* up.expect(Pdu.PullDataReq), yield* up.expect(Pdu.PullDataReq)]
      up.send(
        ...[...reqs]
          .reverse()
          .map((r) => pullRspPdu(6, { taskId, userId: FROM, offset: r.msg.offset, fileData: data.subarray(r.msg.offset, r.msg.offset + r.msg.dataSize) }))
      )
      expectDone(yield* up.expect(Pdu.State), taskId)
      const p = stored(server.dataDir, taskId)
      expect(sha256(readFileSync(p.file).subarray(HEADER_BYTES))).toBe(sha256(data))
    })
  )
  it.scopedLive("window 4: a block held for an earlier gap, answered again, closes the uploader; the partial holds only the gapless prefix", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ ...TEAMTALK, uploadWindow: 4 })
      const size = 6 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      for (let i = 0; i < 4; i++) yield* up.expect(Pdu.PullDataReq)
      const block = (i: number) => pullRspPdu(8, { taskId, userId: FROM, offset: i * SEG, fileData: data.subarray(i * SEG, (i + 1) * SEG) })
      // Block 0 is stored (one more request follows); block 2 is held for the gap at 1; then 2 again.
      up.send(block(0))
      expect((yield* up.expect(Pdu.PullDataReq)).msg.offset).toBe(4 * SEG)
      up.send(block(2), block(2))
      yield* up.expectClosed()
      yield* eventually(() => phaseOf(server, taskId) === "Ready")
      const p = stored(server.dataDir, taskId)
      expect(sizeOf(p.part)).toBe(HEADER_BYTES + SEG)
      expect(readFileSync(p.part).subarray(HEADER_BYTES).equals(data.subarray(0, SEG))).toBe(true)
      const again = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const run = yield* answerPulls(again, taskId, data)
      expect(run.requests[0]!.msg.offset).toBe(SEG)
      expectDone(run.final, taskId)
      expect(sha256(readFileSync(p.file).subarray(HEADER_BYTES))).toBe(sha256(data))
    })
  )
})

describe("resuming an upload in the same server", () => {
  for (const window of [1, 4]) {
    it.scopedLive(`window ${window}: the uploader disconnects after 5 blocks; its new login is asked from 5 blocks on; the download is exact`, () =>
      Effect.gen(function* () {
        const server = yield* startServer({ ...TEAMTALK, uploadWindow: window })
        const size = 12 * SEG + 999
        const data = randomBytes(size)
        const taskId = yield* offlineTask(server, size)
        const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
        const answered = 5
        const run = yield* answerPulls(up, taskId, data, answered)
        expect(checkRequests(run.requests, { taskId, start: 0, size, segment: SEG })).toBe(answered * SEG)
        // The request for block answered + window - 1 proves the first `answered` blocks are stored.
        let last = run.requests.at(-1)!.msg.offset
        while (last < (answered + window - 1) * SEG) last = (yield* up.expect(Pdu.PullDataReq)).msg.offset
        up.destroy()
        yield* eventually(() => phaseOf(server, taskId) === "Ready")
        expect(sizeOf(stored(server.dataDir, taskId).part)).toBe(HEADER_BYTES + answered * SEG)

        // A download is refused while the upload is unfinished.
        const early = yield* Client.connect(server.client)
        const refused = yield* Client.login(early, { taskId, userId: TO, role: FileRole.Downloader }).pipe(Effect.flip)
        expect(refused.reason).toBe("Refused")

        const again = yield* Client.connect(server.client)
        const offsets: Array<number> = []
        const source = Client.sourceFromBuffer(data)
        yield* Client.uploadFile(again, {
          taskId,
          userId: FROM,
          source: { size, read: (offset, length) => (offsets.push(offset), source.read(offset, length)) }
        })
        expect(offsets[0]).toBe(answered * SEG)
        expect(offsets.length).toBe(Math.ceil((size - answered * SEG) / SEG))

        const down = yield* Client.connect(server.client)
        const sink = Client.memorySink()
        yield* Client.downloadFile(down, { taskId, userId: TO, sink, size })
        expect(sha256(sink.bytes())).toBe(sha256(data))
      })
    )
  }

  it.scopedLive("an uploader that logs in and leaves before any byte resumes from 0, and the partial is rewritten cleanly", () =>
    Effect.gen(function* () {
      const server = yield* startServer(TEAMTALK)
      const size = 2 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      expect((yield* up.expect(Pdu.PullDataReq)).msg.offset).toBe(0)
      up.destroy()
      yield* eventually(() => phaseOf(server, taskId) === "Ready")
      const again = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      const run = yield* answerPulls(again, taskId, data)
      expect(checkRequests(run.requests, { taskId, start: 0, size, segment: SEG })).toBe(size)
      expectDone(run.final, taskId)
      expect(sha256(readFileSync(stored(server.dataDir, taskId).file).subarray(HEADER_BYTES))).toBe(sha256(data))
    })
  )

  it.scopedLive("an uploader's FILE_STATE CANCEL withdraws the file: the partial and its sidecar are removed, the task ends", () =>
    Effect.gen(function* () {
      const server = yield* startServer(TEAMTALK)
      const size = 4 * SEG
      const data = randomBytes(size)
      const taskId = yield* offlineTask(server, size)
      const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
      yield* answerPulls(up, taskId, data, 2)
      yield* up.expect(Pdu.PullDataReq)
      up.send(statePdu(11, { state: FileState.Cancel, taskId, userId: FROM }))
      yield* up.expectClosed()
      yield* eventually(() => server.registry.get(taskId) === undefined)
      const p = stored(server.dataDir, taskId)
      expect(existsSync(p.part)).toBe(false)
      expect(existsSync(p.meta)).toBe(false)
      expect(existsSync(p.file)).toBe(false)
    })
  )
})
