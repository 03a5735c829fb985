/**
 * Fault tests (issue 4, item 5): a peer disconnecting at every step of the
 * online and offline flows not already covered elsewhere (endings.test.ts
 * covers mid-transfer and receiver-after-PEER_READY; offlineUpload/
 * offlineLifetimes cover the uploader after login and after 5 blocks;
 * offlineDownload covers one of two downloaders leaving mid-download), and a
 * stalled online receiver (server memory bounded, sender not asked for more).
 * After every fault the server must still complete fresh transfers and the
 * task registry must return to its baseline.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { randomBytes } from "node:crypto"
import { statSync } from "node:fs"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, TransferMode } from "../../src/protocol/commands.js"
import { isPdu, Pdu } from "../../src/protocol/messages.js"
import type { ServerSettings } from "../../src/server/config.js"
import { HEADER_BYTES } from "../../src/storage/header.js"
import type { RawConn } from "../support/raw.js"
import { decodeAs, FROM, onlineTask, pullReqPdu, pullRspPdu, rawConnect, rawLogin, rawPair, sha256, statePdu, TO } from "../support/raw.js"
import { collectedMemory } from "../support/memory.js"
import type { TestServer } from "../support/server.js"
import { createTask, eventually, startServer } from "../support/server.js"

const SEG = 32 * 1024
const MiB = 1024 * 1024


const offlineTask = (server: TestServer, size: number) =>
  createTask(server, { fromUserId: FROM, toUserId: TO, fileName: "f.bin", fileSize: size, mode: TransferMode.Offline })

const partOf = (server: TestServer, taskId: string) => join(server.dataDir, "offline_file", taskId.slice(0, 2), `${taskId}.part`)
const sizeOrZero = (path: string) => {
  try {
    return statSync(path).size
  } catch {
    return -1
  }
}

/** An SDK online transfer of `data` on `taskId` (both parties new); the bytes must arrive exactly. */
const onlineTransfer = (server: TestServer, taskId: string, data: Buffer) =>
  Effect.scoped(
    Effect.gen(function* () {
      const s = yield* Client.connect(server.client)
      const r = yield* Client.connect(server.client)
      yield* Client.login(s, { taskId, userId: FROM, role: FileRole.Sender })
      yield* Client.login(r, { taskId, userId: TO, role: FileRole.Receiver })
      const sink = Client.memorySink()
      const [served, pulled] = yield* Effect.all(
        [
          Client.serveFile(s, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) }),
          Client.receiveFile(r, { taskId, userId: TO, sink, size: data.length, window: 4 })
        ],
        { concurrency: 2 }
      )
      expect(served.finalState).toBe(FileState.Done)
      expect(pulled.bytes).toBe(data.length)
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )

const offlineUpload = (server: TestServer, taskId: string, data: Buffer, offsets?: Array<number>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(server.client)
      const source = Client.sourceFromBuffer(data)
      const r = yield* Client.uploadFile(sock, {
        taskId,
        userId: FROM,
        source: { size: data.length, read: (o, l) => (offsets?.push(o), source.read(o, l)) }
      })
      expect(r.finalState).toBe(FileState.Done)
    })
  )

const offlineDownload = (server: TestServer, taskId: string, data: Buffer) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(server.client)
      const sink = Client.memorySink()
      const r = yield* Client.downloadFile(sock, { taskId, userId: TO, sink, size: data.length, window: 4 })
      expect(r.finalState).toBe(FileState.Done)
      expect(sha256(sink.bytes())).toBe(sha256(data))
    })
  )

/** The server still serves: a fresh online and a fresh offline transfer complete exactly; then the registry is empty again. */
const stillServing = (server: TestServer) =>
  Effect.gen(function* () {
    const a = randomBytes(100_000)
    yield* onlineTransfer(server, yield* onlineTask(server, a.length), a)
    const b = randomBytes(3 * SEG + 17)
    const t = yield* offlineTask(server, b.length)
    yield* offlineUpload(server, t, b)
    yield* offlineDownload(server, t, b)
    yield* eventually(() => server.registry.size() === 0, 8000)
  })

const SHORT: Partial<ServerSettings> = { taskTimeoutMs: 500 }

const expectCancelThenClosed = (conn: RawConn, taskId: string) =>
  Effect.gen(function* () {
    const st = yield* conn.expect(Pdu.State)
    expect(st.msg.state).toBe(FileState.Cancel)
    expect(st.msg.taskId).toBe(taskId)
    yield* conn.expectClosed()
  })

describe("online flow: a party disconnecting at each step", () => {
  for (const leaver of ["sender", "receiver"] as const) {
    it.scopedLive(`the ${leaver} connects and leaves without logging in: nothing happens to the task; it completes later`, () =>
      Effect.gen(function* () {
        const server = yield* startServer(SHORT)
        const data = randomBytes(70_000)
        const taskId = yield* onlineTask(server, data.length)
        const other = yield* rawLogin(server, taskId, leaver === "sender" ? TO : FROM, leaver === "sender" ? FileRole.Receiver : FileRole.Sender)
        const gone = yield* rawConnect(server.client)
        gone.destroy()
        yield* other.expectQuiet(200)
        other.destroy()
        yield* Effect.sleep(100)
        expect(server.registry.size()).toBe(1)
        yield* onlineTransfer(server, taskId, data)
        yield* stillServing(server)
      })
    )
  }

  // The sender alone leaving after login is covered in endings.test.ts; the receiver alone here.
  it.scopedLive("the receiver logs in alone and leaves: the task lives on, completes later, then the registry is empty", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SHORT)
      const data = randomBytes(70_000)
      const taskId = yield* onlineTask(server, data.length)
      const early = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      early.destroy()
      yield* Effect.sleep(100)
      expect(server.registry.size()).toBe(1)
      yield* onlineTransfer(server, taskId, data)
      yield* stillServing(server)
    })
  )

  it.scopedLive("a lone party leaving: the task then expires after taskTimeoutMs (registry back to baseline)", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SHORT)
      for (const [user, role] of [[FROM, FileRole.Sender], [TO, FileRole.Receiver]] as const) {
        const taskId = yield* onlineTask(server, 10)
        const c = yield* rawLogin(server, taskId, user, role)
        c.destroy()
      }
      expect(server.registry.size()).toBe(2)
      yield* eventually(() => server.registry.size() === 0, 3000)
      yield* stillServing(server)
    })
  )

  it.scopedLive("the sender leaves right after PEER_READY (before any pull): the receiver gets CANCEL and is closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SHORT)
      const taskId = yield* onlineTask(server, 100_000)
      const { sender, receiver } = yield* rawPair(server, taskId)
      sender.destroy()
      yield* expectCancelThenClosed(receiver, taskId)
      yield* eventually(() => server.registry.size() === 0)
      yield* stillServing(server)
    })
  )

  for (const leaver of ["sender", "receiver"] as const) {
    it.scopedLive(`the ${leaver} leaves after the first pull was forwarded, before any data: the other gets CANCEL and is closed`, () =>
      Effect.gen(function* () {
        const server = yield* startServer(SHORT)
        const taskId = yield* onlineTask(server, 100_000)
        const { sender, receiver } = yield* rawPair(server, taskId)
        receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: SEG }))
        yield* sender.expect(Pdu.PullDataReq)
        const [gone, other] = leaver === "sender" ? [sender, receiver] : [receiver, sender]
        gone.destroy()
        yield* expectCancelThenClosed(other, taskId)
        yield* eventually(() => server.registry.size() === 0)
        yield* stillServing(server)
      })
    )

    it.scopedLive(`the ${leaver} leaves half-way through writing a PDU mid-transfer: the other gets CANCEL, the half PDU is not relayed`, () =>
      Effect.gen(function* () {
        const server = yield* startServer(SHORT)
        const data = randomBytes(4 * SEG)
        const taskId = yield* onlineTask(server, data.length)
        const { sender, receiver } = yield* rawPair(server, taskId)
        receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: SEG }))
        yield* sender.expect(Pdu.PullDataReq)
        sender.send(pullRspPdu(1, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, SEG) }))
        yield* receiver.expect(Pdu.PullDataRsp)
        receiver.send(pullReqPdu(2, { taskId, userId: TO, offset: SEG, dataSize: SEG }))
        yield* sender.expect(Pdu.PullDataReq)
        if (leaver === "sender") {
          const rsp = pullRspPdu(2, { taskId, userId: FROM, offset: SEG, fileData: data.subarray(SEG, 2 * SEG) })
          sender.send(rsp.subarray(0, rsp.length >> 1))
          yield* Effect.sleep(50)
          sender.destroy()
          const st = yield* receiver.expect(Pdu.State)
          expect(st.msg.state).toBe(FileState.Cancel)
          yield* receiver.expectClosed()
        } else {
          const req = pullReqPdu(3, { taskId, userId: TO, offset: 2 * SEG, dataSize: SEG })
          receiver.send(req.subarray(0, 20))
          yield* Effect.sleep(50)
          receiver.destroy()
          // The sender is still owed nothing new: the half pull was not relayed.
          const frames = yield* sender.expectClosed()
          expect(frames.map((f) => f.commandId)).toEqual([Pdu.State.commandId])
          expect((yield* decodeAs(Pdu.State, frames[0]!)).state).toBe(FileState.Cancel)
        }
        yield* eventually(() => server.registry.size() === 0)
        yield* stillServing(server)
      })
    )

    it.scopedLive(`the ${leaver} leaves right after DONE: nobody gets CANCEL, the task ends`, () =>
      Effect.gen(function* () {
        const server = yield* startServer(SHORT)
        const data = randomBytes(2 * SEG + 5)
        const taskId = yield* onlineTask(server, data.length)
        const { sender, receiver } = yield* rawPair(server, taskId)
        for (let offset = 0, seq = 1; offset < data.length; offset += SEG, seq++) {
          const n = Math.min(SEG, data.length - offset)
          receiver.send(pullReqPdu(seq, { taskId, userId: TO, offset, dataSize: n }))
          const req = yield* sender.expect(Pdu.PullDataReq)
          sender.send(pullRspPdu(50 + seq, { taskId, userId: FROM, offset: req.msg.offset, fileData: data.subarray(offset, offset + n) }))
          const rsp = yield* receiver.expect(Pdu.PullDataRsp)
          expect(Buffer.from(rsp.msg.fileData).equals(data.subarray(offset, offset + n))).toBe(true)
        }
        receiver.send(statePdu(9, { state: FileState.Done, taskId, userId: TO }))
        const done = yield* sender.expect(Pdu.State)
        expect(done.msg.state).toBe(FileState.Done)
        const [gone, other] = leaver === "sender" ? [sender, receiver] : [receiver, sender]
        gone.destroy()
        yield* Effect.sleep(200)
        const states = yield* Effect.forEach(
          other.pending().filter((f) => isPdu(f, Pdu.State)),
          (f) => decodeAs(Pdu.State, f)
        )
        expect(states.filter((s) => s.state === FileState.Cancel)).toEqual([])
        yield* eventually(() => server.registry.size() === 0)
        yield* stillServing(server)
      })
    )
  }
})

/**
 * A raw uploader that answers the server's pulls in order until `cut` says
 * to stop: "full" answers, "half" writes half the response PDU and stops.
 */
const uploadUntil = (up: RawConn, taskId: string, data: Buffer, cut: (offset: number) => "full" | "half") =>
  Effect.gen(function* () {
    for (;;) {
      const req = yield* up.expect(Pdu.PullDataReq)
      const { offset, dataSize } = req.msg
      const pdu = pullRspPdu(100 + offset / SEG, { taskId, userId: FROM, offset, fileData: data.subarray(offset, offset + dataSize) })
      if (cut(offset) === "half") {
        up.send(pdu.subarray(0, pdu.length >> 1))
        return offset
      }
      up.send(pdu)
    }
  })

describe("offline flow: an uploader or downloader disconnecting", () => {
  const size = 6 * SEG + 1234
  const last = 6 * SEG
  const cases = [
    // after the first block is stored, with the window's other requests outstanding
    { name: "after the first block", stored: 1, windows: [4], cut: (o: number) => (o === SEG ? ("half" as const) : ("full" as const)), half: false },
    { name: "mid-upload, half-way through writing block 3", stored: 3, windows: [4], cut: (o: number) => (o === 3 * SEG ? ("half" as const) : ("full" as const)), half: true },
    { name: "during the final block (half of it written)", stored: 6, windows: [1, 4], cut: (o: number) => (o === last ? ("half" as const) : ("full" as const)), half: true }
  ]
  for (const c of cases) {
    for (const window of c.windows) {
      it.scopedLive(`window ${window}, uploader leaves ${c.name}: partial holds exactly ${c.stored} blocks, the task expires, the resume asks from there, the file is exact`, () =>
        Effect.gen(function* () {
          const server = yield* startServer({ ...SHORT, uploadWindow: window, uploadSegment: SEG })
          const data = randomBytes(size)
          const taskId = yield* offlineTask(server, data.length)
          const up = yield* rawLogin(server, taskId, FROM, FileRole.Uploader)
          if (c.half) {
            yield* uploadUntil(up, taskId, data, c.cut)
          } else {
            // Answer block 0 only, leaving the rest of the window unanswered.
            const req = yield* up.expect(Pdu.PullDataReq)
            expect(req.msg.offset).toBe(0)
            up.send(pullRspPdu(5, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, SEG) }))
          }
          const part = partOf(server, taskId)
          yield* eventually(() => sizeOrZero(part) === HEADER_BYTES + c.stored * SEG)
          up.destroy()
          // Nobody is connected: the task leaves memory after the timeout; the partial stays.
          yield* eventually(() => server.registry.size() === 0, 4000)
          expect(sizeOrZero(part)).toBe(HEADER_BYTES + c.stored * SEG)
          // A download is refused meanwhile.
          const early = yield* Client.connect(server.client)
          const refused = yield* Client.login(early, { taskId, userId: TO, role: FileRole.Downloader }).pipe(Effect.flip)
          expect(refused.reason).toBe("Refused")
          const offsets: Array<number> = []
          yield* offlineUpload(server, taskId, data, offsets)
          expect(offsets[0]).toBe(c.stored * SEG)
          expect(new Set(offsets).size).toBe(offsets.length)
          expect(offsets.length).toBe(Math.ceil((size - c.stored * SEG) / SEG))
          yield* offlineDownload(server, taskId, data)
          yield* stillServing(server)
        })
      )
    }
  }

  it.scopedLive("a downloader that logs in and leaves: the task expires; the next download is exact", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SHORT)
      const data = randomBytes(5 * SEG + 3)
      const taskId = yield* offlineTask(server, data.length)
      yield* offlineUpload(server, taskId, data)
      const d = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      d.destroy()
      yield* eventually(() => server.registry.size() === 0, 4000)
      yield* offlineDownload(server, taskId, data)
      yield* stillServing(server)
    })
  )

  it.scopedLive("a lone downloader leaving mid-download (8 pulls in flight, half a pull written, not reading): the task expires; the next download is exact", () =>
    Effect.gen(function* () {
      const server = yield* startServer(SHORT)
      const data = randomBytes(40 * SEG + 3)
      const taskId = yield* offlineTask(server, data.length)
      yield* offlineUpload(server, taskId, data)
      const d = yield* rawLogin(server, taskId, TO, FileRole.Downloader)
      d.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: SEG, transMode: TransferMode.Offline }))
      yield* d.expect(Pdu.PullDataRsp)
      d.socket.pause()
      d.send(
        ...Array.from({ length: 8 }, (_, i) =>
          pullReqPdu(2 + i, { taskId, userId: TO, offset: (1 + i) * SEG, dataSize: SEG, transMode: TransferMode.Offline })
        ),
        pullReqPdu(20, { taskId, userId: TO, offset: 9 * SEG, dataSize: SEG, transMode: TransferMode.Offline }).subarray(0, 30)
      )
      yield* Effect.sleep(50)
      d.destroy()
      yield* eventually(() => server.registry.size() === 0, 4000)
      yield* offlineDownload(server, taskId, data)
      yield* stillServing(server)
    })
  )
})

/** A raw sender answering forwarded pulls, one response written at a time, honouring socket backpressure. */
const politeSender = (conn: RawConn, taskId: string, data: Buffer, onPull: (offset: number, size: number) => void) =>
  Effect.gen(function* () {
    for (;;) {
      const frame = yield* conn.next(60_000)
      if (isPdu(frame, Pdu.State)) return (yield* decodeAs(Pdu.State, frame)).state
      const req = yield* decodeAs(Pdu.PullDataReq, frame)
      onPull(req.offset, req.dataSize)
      const ok = conn.socket.write(
        pullRspPdu(frame.seq, { taskId, userId: FROM, offset: req.offset, fileData: data.subarray(req.offset, req.offset + req.dataSize) })
      )
      if (!ok && !conn.isClosed())
        yield* Effect.async<void>((resume) => {
          const done = () => {
            conn.socket.off("drain", done)
            conn.socket.off("close", done)
            resume(Effect.void)
          }
          conn.socket.once("drain", done)
          conn.socket.once("close", done)
        })
      if (conn.isClosed() && conn.pending().length === 0) return undefined
    }
  })

describe("a stalled online receiver", () => {
  it.scopedLive("window 8 then not reading: server memory stays bounded, the sender is asked for at most window + read-ahead blocks; resumed, the 64 MiB transfer completes exactly", () =>
    Effect.gen(function* () {
      const readahead = 4
      const window = 8
      const server = yield* startServer({ onlineReadahead: readahead })
      const size = 64 * MiB
      const data = randomBytes(size)
      const taskId = yield* onlineTask(server, size)
      const { sender, receiver } = yield* rawPair(server, taskId)
      // In blocks: read-ahead asks for segments of several.
      let asked = 0
      const serving = yield* Effect.fork(politeSender(sender, taskId, data, (_o, n) => (asked += n / SEG)))

      const before = collectedMemory().off
      receiver.socket.pause()
      receiver.send(...Array.from({ length: window }, (_, i) => pullReqPdu(1 + i, { taskId, userId: TO, offset: i * SEG, dataSize: SEG })))
      yield* Effect.sleep(3000)
      const grown = collectedMemory().off - before
      console.log(`stalled receiver: off-heap growth ${(grown / MiB).toFixed(2)} MiB over 3 s; sender asked for ${asked} blocks`)
      expect(grown).toBeLessThan(4 * MiB)
      expect(asked).toBeLessThanOrEqual(window + readahead)
      expect(asked).toBeGreaterThanOrEqual(window)

      // Resume reading: pull the rest, window 8, and check the bytes.
      const got = Buffer.alloc(size)
      let received = 0
      let next = window * SEG
      let seq = window + 1
      receiver.socket.resume()
      while (received < size) {
        const rsp = yield* receiver.expect(Pdu.PullDataRsp, 10_000)
        Buffer.from(rsp.msg.fileData).copy(got, rsp.msg.offset)
        received += rsp.msg.fileData.length
        if (next < size) {
          receiver.send(pullReqPdu(seq++ & 0xffff, { taskId, userId: TO, offset: next, dataSize: Math.min(SEG, size - next) }))
          next += SEG
        }
      }
      receiver.send(statePdu(1, { state: FileState.Done, taskId, userId: TO }))
      expect(yield* Fiber.join(serving)).toBe(FileState.Done)
      expect(sha256(got)).toBe(sha256(data))
      yield* eventually(() => server.registry.size() === 0)
    })
  )

  it.scopedLive("a receiver that keeps pulling (1 MiB blocks, the whole 64 MiB) but never reads: server memory stays bounded; the server keeps serving", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxWriteQueueBytes: 1 * MiB, ...SHORT, clientIdleTimeoutMs: 120_000 })
      const size = 64 * MiB
      const block = 1 * MiB
      const data = randomBytes(size)
      const taskId = yield* onlineTask(server, size)
      const { sender, receiver } = yield* rawPair(server, taskId)
      let askedBytes = 0
      const serving = yield* Effect.fork(politeSender(sender, taskId, data, (_o, n) => (askedBytes += n)))
      const before = collectedMemory().off
      receiver.socket.pause()
      receiver.send(...Array.from({ length: size / block }, (_, i) => pullReqPdu(1 + i, { taskId, userId: TO, offset: i * block, dataSize: block })))
      yield* Effect.sleep(3000)
      const grown = collectedMemory().off - before
      console.log(
        `never-reading receiver: off-heap growth ${(grown / MiB).toFixed(2)} MiB; sender asked for ${(askedBytes / MiB).toFixed(0)} MiB; receiver ${receiver.socket.destroyed || receiver.isClosed() ? "closed" : "open"}`
      )
      expect(grown).toBeLessThan(16 * MiB)
      // Either the receiver was cut off by the server (then the sender is told CANCEL without
      // anyone else acting) or it is still held; leaving then ends the task and the sender hears CANCEL.
      if (receiver.isClosed()) {
        const early = yield* Fiber.join(serving).pipe(Effect.timeout(3000))
        expect(early).toBe(FileState.Cancel)
      }
      receiver.destroy()
      const final = yield* Fiber.join(serving).pipe(Effect.timeout(5000))
      expect(final).toBe(FileState.Cancel)
      yield* eventually(() => server.registry.size() === 0)
      yield* stillServing(server)
    })
  )
})
