/**
 * Offline download (role 4) of a stored file, against the real server on
 * 127.0.0.1: PULL_DATA_RSP carries the request's seq, any in-file offset
 * works (resume), pulls are clamped to the end of the file and to the largest
 * block a frame can carry, pipelined pulls are answered in order, and the
 * block that reaches the end is followed by FILE_STATE DONE (seq 0, user_id =
 * from_user). Several downloaders of one task, at once or one after another.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, TransferMode } from "../../src/protocol/commands.js"
import { maxBlockBytes } from "../../src/protocol/dataBlock.js"
import { DEFAULT_MAX_FRAME_BYTES } from "../../src/protocol/frame.js"
import { isPdu, Pdu } from "../../src/protocol/messages.js"
import type { ServerSettings } from "../../src/server/config.js"
import type { RawConn } from "../support/raw.js"
import { FROM, pullReqPdu, pullRspPdu, rawLogin, sha256, TO } from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { createTask, eventually, startServer } from "../support/server.js"

const SEG = 32 * 1024
const MiB = 1024 * 1024

/** Creates an offline task FROM -> TO and uploads `data` with the SDK; returns the task id. */
const storeFile = (server: TestServer, data: Buffer) =>
  Effect.gen(function* () {
    const taskId = yield* createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "d.bin", fileSize: data.length, mode: TransferMode.Offline })
    const up = yield* Client.connect(server.client)
    const r = yield* Client.uploadFile(up, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
    expect(r.finalState).toBe(FileState.Done)
    return taskId
  })

const pull = (conn: RawConn, seq: number, taskId: string, offset: number, dataSize: number) =>
  conn.send(pullReqPdu(seq, { taskId, userId: TO, transMode: TransferMode.Offline, offset, dataSize }))

/** The next frame must be a PULL_DATA_RSP answering `seq` at `offset` with exactly `expected`. */
const expectBlock = (conn: RawConn, taskId: string, seq: number, offset: number, expected: Buffer) =>
  Effect.gen(function* () {
    const rsp = yield* conn.expect(Pdu.PullDataRsp)
    expect({ seq: rsp.seq, resultCode: rsp.msg.resultCode, taskId: rsp.msg.taskId, offset: rsp.msg.offset, length: rsp.msg.fileData.length }).toEqual({
      seq,
      resultCode: 0,
      taskId,
      offset,
      length: expected.length
    })
    expect(Buffer.from(rsp.msg.fileData).equals(expected)).toBe(true)
    return rsp
  })

const expectDone = (conn: RawConn, taskId: string) =>
  Effect.gen(function* () {
    const done = yield* conn.expect(Pdu.State)
    expect(done.seq).toBe(0)
    expect(done.msg).toEqual({ state: FileState.Done, taskId, userId: FROM })
  })

/** Pulls the rest of the file from `from`, one block at a time, checking every block and the DONE after the last. */
const pullRest = (conn: RawConn, taskId: string, data: Buffer, from: number, block = SEG, seq0 = 1) =>
  Effect.gen(function* () {
    let offset = from
    let seq = seq0
    while (offset < data.length) {
      pull(conn, seq, taskId, offset, block)
      const expected = data.subarray(offset, Math.min(offset + block, data.length))
      yield* expectBlock(conn, taskId, seq, offset, expected)
      offset += expected.length
      seq = (seq % 0xffff) + 1
    }
    yield* expectDone(conn, taskId)
  })

const SETTINGS: Partial<ServerSettings> = { uploadWindow: 8, uploadSegment: 256 * 1024 }

describe("offline download: pulls", () => {
  it.scopedLive("any in-file offset is served with the request's seq; DONE follows only the block that reaches the end", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 5 * SEG + 123
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      const down = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      const offsets = [0, 1, SEG - 1, SEG, 3 * SEG + 7, size - SEG - 1, size - SEG, size - 1, 2]
      let seq = 60_001
      for (const offset of offsets) {
        seq = seq === 0xffff ? 1 : seq + 1
        pull(down, seq, taskId, offset, SEG)
        const expected = data.subarray(offset, Math.min(offset + SEG, size))
        yield* expectBlock(down, taskId, seq, offset, expected)
        if (offset + expected.length === size) yield* expectDone(down, taskId)
      }
      // The downloader stays connected after DONE and may pull again.
      yield* down.expectQuiet(100)
      yield* pullRest(down, taskId, data, 0, SEG, 5)
    })
  )

  it.scopedLive("SDK downloadFile resumes from an offset inside the file and gets exactly the rest", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 9 * SEG + 77
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      for (const offset of [1, 2 * SEG + 5, size - 1]) {
        const down = yield* Client.connect(server.client)
        const sink = Client.memorySink()
        const got = yield* Client.downloadFile(down, { taskId, userId: TO, sink, size, offset, window: 3 })
        expect(got.bytes).toBe(size - offset)
        expect(got.finalState).toBe(FileState.Done)
        expect(sink.bytes().equals(data.subarray(offset))).toBe(true)
      }
    })
  )

  it.scopedLive("pulls are clamped to the end of the file; at or past the end an empty block and DONE; an empty pull inside, an empty block only", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 3 * SEG + 10
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      const down = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      // Asks for more than is left: gets what is left, then DONE.
      pull(down, 11, taskId, size - 10, 1000)
      yield* expectBlock(down, taskId, 11, size - 10, data.subarray(size - 10))
      yield* expectDone(down, taskId)
      // Asks for the whole file in one pull: gets it (it fits a frame), then DONE.
      pull(down, 12, taskId, 0, 10 * SEG)
      yield* expectBlock(down, taskId, 12, 0, data)
      yield* expectDone(down, taskId)
      // At the end: an empty block, then DONE.
      pull(down, 13, taskId, size, SEG)
      yield* expectBlock(down, taskId, 13, size, Buffer.alloc(0))
      yield* expectDone(down, taskId)
      // Past the end: an empty block and DONE (nothing more will come, so nobody waits for it).
      pull(down, 14, taskId, size + 5, SEG)
      yield* expectBlock(down, taskId, 14, size + 5, Buffer.alloc(0))
      yield* expectDone(down, taskId)
      // A pull of 0 bytes inside the file: an empty block, no DONE.
      pull(down, 15, taskId, 7, 0)
      yield* expectBlock(down, taskId, 15, 7, Buffer.alloc(0))
      yield* down.expectQuiet(100)
    })
  )

  for (const maxFrameBytes of [DEFAULT_MAX_FRAME_BYTES, 64 * 1024]) {
    it.scopedLive(`pulls are clamped to the largest block a ${maxFrameBytes}-byte frame can carry`, () =>
      Effect.gen(function* () {
        const server = yield* startServer({ ...SETTINGS, maxFrameBytes, uploadSegment: 1 * MiB })
        const largest = maxBlockBytes(maxFrameBytes, 36)
        const size = 2 * largest + 1000
        const data = randomBytes(size)
        const taskId = yield* storeFile(server, data)
        const down = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
        pull(down, 21, taskId, 0, size)
        const first = yield* expectBlock(down, taskId, 21, 0, data.subarray(0, largest))
        expect(first.frame.raw.length).toBeLessThanOrEqual(maxFrameBytes)
        pull(down, 22, taskId, largest, 0xffffffff)
        yield* expectBlock(down, taskId, 22, largest, data.subarray(largest, 2 * largest))
        pull(down, 23, taskId, 2 * largest, 4 * largest)
        yield* expectBlock(down, taskId, 23, 2 * largest, data.subarray(2 * largest))
        yield* expectDone(down, taskId)
      })
    )
  }

  it.scopedLive("pipelined pulls (seqs of the client's own, any order of offsets) are answered in the order sent", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 8 * SEG - 10
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      const down = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      const seqs = [9, 3, 65_000, 1, 77, 2, 500, 4]
      const blocks = [3, 0, 6, 1, 5, 2, 4, 7]
      down.send(
        ...blocks.map((b, i) => pullReqPdu(seqs[i]!, { taskId, userId: TO, transMode: TransferMode.Offline, offset: b * SEG, dataSize: SEG }))
      )
      const got = Buffer.alloc(size)
      for (let i = 0; i < blocks.length; i++) {
        const offset = blocks[i]! * SEG
        const rsp = yield* expectBlock(down, taskId, seqs[i]!, offset, data.subarray(offset, Math.min(offset + SEG, size)))
        Buffer.from(rsp.msg.fileData).copy(got, offset)
      }
      yield* expectDone(down, taskId)
      expect(sha256(got)).toBe(sha256(data))

      // The block that reaches the end is followed by DONE at once, even when pulls follow it.
      down.send(
        pullReqPdu(31, { taskId, userId: TO, transMode: TransferMode.Offline, offset: 7 * SEG, dataSize: SEG }),
        pullReqPdu(32, { taskId, userId: TO, transMode: TransferMode.Offline, offset: 0, dataSize: SEG })
      )
      yield* expectBlock(down, taskId, 31, 7 * SEG, data.subarray(7 * SEG))
      yield* expectDone(down, taskId)
      yield* expectBlock(down, taskId, 32, 0, data.subarray(0, SEG))
    })
  )

  it.scopedLive("a 0-byte file: a pull at offset 0 gets an empty block and DONE", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const taskId = yield* storeFile(server, Buffer.alloc(0))
      const down = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      pull(down, 5, taskId, 0, SEG)
      yield* expectBlock(down, taskId, 5, 0, Buffer.alloc(0))
      yield* expectDone(down, taskId)
    })
  )

  it.scopedLive("a downloader that pulls for another task, or as another user, is closed; other downloaders carry on", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 4 * SEG
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      const other = yield* storeFile(server, randomBytes(100))
      const good = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      pull(good, 1, taskId, 0, SEG)
      yield* expectBlock(good, taskId, 1, 0, data.subarray(0, SEG))
      const wrongTask = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      pull(wrongTask, 1, other, 0, SEG)
      const wrongUser = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      wrongUser.send(pullReqPdu(1, { taskId, userId: FROM, transMode: TransferMode.Offline, offset: 0, dataSize: SEG }))
      const answerer = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      answerer.send(pullRspPdu(1, { taskId, userId: TO, offset: 0, fileData: data.subarray(0, 10) }))
      for (const c of [wrongTask, wrongUser, answerer]) {
        const frames = yield* c.expectClosed()
        for (const f of frames) expect(isPdu(f, Pdu.PullDataRsp)).toBe(false)
      }
      yield* pullRest(good, taskId, data, SEG)
    })
  )
})

describe("offline download: several downloaders", () => {
  it.scopedLive("two SDK downloaders at once (window 4) both get the whole file", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 4 * MiB + 3
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      const downloads = yield* Effect.all(
        [0, 1].map(() =>
          Effect.gen(function* () {
            const sock = yield* Client.connect(server.client)
            const sink = Client.memorySink()
            const r = yield* Client.downloadFile(sock, { taskId, userId: TO, sink, size, window: 4 })
            return { r, bytes: sink.bytes() }
          })
        ),
        { concurrency: "unbounded" }
      )
      for (const d of downloads) {
        expect(d.r.bytes).toBe(size)
        expect(d.r.finalState).toBe(FileState.Done)
        expect(sha256(d.bytes)).toBe(sha256(data))
      }
    })
  )

  it.scopedLive("one of two downloaders disconnects mid-download (pulls in flight): the other completes, a third after it too", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 40 * SEG + 1
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      const a = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      const b = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      // Interleaved: A and B each take a few blocks.
      for (let i = 0; i < 3; i++) {
        pull(a, 100 + i, taskId, i * SEG, SEG)
        pull(b, 200 + i, taskId, i * SEG, SEG)
        yield* expectBlock(a, taskId, 100 + i, i * SEG, data.subarray(i * SEG, (i + 1) * SEG))
        yield* expectBlock(b, taskId, 200 + i, i * SEG, data.subarray(i * SEG, (i + 1) * SEG))
      }
      // A pipelines the rest of the file and hangs up without reading a byte of it.
      a.send(
        ...Array.from({ length: 37 }, (_, k) =>
          pullReqPdu(300 + k, { taskId, userId: TO, transMode: TransferMode.Offline, offset: (3 + k) * SEG, dataSize: SEG })
        )
      )
      a.destroy()
      yield* pullRest(b, taskId, data, 3 * SEG)
      yield* eventually(() => server.registry.snapshots().find((t) => t.taskId === taskId)?.phase === "Stored")
      const c = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      yield* Client.downloadFile(c, { taskId, userId: TO, sink, size, window: 8 })
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )

  // Issue 3, item 4: "Several downloaders of one task, at once ... must work". The task's actor
  // waits for every socket it wrote to to drain before its next step, so one downloader whose
  // socket is full holds up every other party of the task (until the idle timeout closes it).
  it.scopedLive("a downloader that stops reading (its socket full) does not hold up another downloader's login and download", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 2 * MiB
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      const stalled = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      stalled.socket.pause()
      // 64 pulls of the whole file, never read: far more than the socket buffers hold.
      stalled.send(
        ...Array.from({ length: 64 }, (_, k) => pullReqPdu(k + 1, { taskId, userId: TO, transMode: TransferMode.Offline, offset: 0, dataSize: size }))
      )
      yield* Effect.sleep(300)
      const other = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      yield* pullRest(other, taskId, data, 0, 256 * 1024)
    })
  )

  it.scopedLive("three downloads one after another each get the whole file", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SETTINGS)
      const size = 5 * SEG + 9
      const data = randomBytes(size)
      const taskId = yield* storeFile(server, data)
      for (let i = 0; i < 3; i++) {
        yield* Effect.scoped(
          Effect.gen(function* () {
            const sock = yield* Client.connect(server.client)
            const sink = Client.memorySink()
            const r = yield* Client.downloadFile(sock, { taskId, userId: TO, sink, size, window: 1 + i })
            expect(r.finalState).toBe(FileState.Done)
            expect(sha256(sink.bytes())).toBe(sha256(data))
          })
        )
      }
    })
  )
})


describe("offline download: a downloader that does not read", () => {
  it.scopedLive("asking for far more than --max-write-queue-bytes without reading gets it cut off; others carry on", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ ...SETTINGS, maxWriteQueueBytes: 4 * 1024 * 1024 })
      const data = randomBytes(8 * 1024 * 1024)
      const taskId = yield* storeFile(server, data)
      const hog = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      hog.socket.pause()
      // 400 pulls of 1 MiB (400 MiB) in one write, never read.
      hog.send(...Array.from({ length: 400 }, (_, i) => pullReqPdu(i + 1, { taskId, userId: TO, transMode: TransferMode.Offline, offset: (i % 8) * 1024 * 1024, dataSize: 1024 * 1024 })))
      // Once the hog looks at its socket again, it finds the server gone (cut off, not drained).
      yield* Effect.sleep(500)
      hog.socket.resume()
      const arrived = yield* hog.expectClosed(5000)
      expect(arrived.reduce((n, f) => n + f.raw.length, 0)).toBeLessThan(64 * 1024 * 1024)
      // The server is fine and serves another downloader of the same task.
      const sink = Client.memorySink()
      const down = yield* Client.connect(server.client)
      yield* Client.downloadFile(down, { taskId, userId: TO, sink, size: data.length, window: 4 })
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )
})
