import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, TransferMode } from "../../src/protocol/commands.js"
import { HEADER_BYTES } from "../../src/protocol/header.js"
import type { PullDataReq } from "../../src/protocol/messages.js"
import { Pdu } from "../../src/protocol/messages.js"
import type { RawConn, Received } from "../support/raw.js"
import { FROM, TO, onlineTask, pullReqPdu, pullRspPdu, rawLogin, rawPair, serveRaw, sha256, statePdu } from "../support/raw.js"
import { eventually, startServer } from "../support/server.js"

const BLOCK = 32 * 1024

/** A sort key that puts blocks in an order far from their natural one. */
const scramble = (offset: number) => ((offset / BLOCK) * 3 + 1) % 8

/** The other party is told CANCEL and closed; so is `offender`; the task ends. */
const expectThrownOut = (offender: RawConn, other: RawConn, taskId: string, registrySize: () => number) =>
  Effect.gen(function* () {
    const state = yield* other.expect(Pdu.State)
    expect(state.msg.state).toBe(FileState.Cancel)
    expect(state.msg.taskId).toBe(taskId)
    yield* other.expectClosed()
    yield* offender.expectClosed()
    yield* eventually(() => registrySize() === 0)
  })

describe("pipelined pulls", () => {
  it.scopedLive("window 8: every response carries the seq of the request it answers, though the sender uses its own seqs out of order", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const size = 21 * BLOCK - 1000
      const data = randomBytes(size)
      const taskId = yield* onlineTask(server, size)
      const { sender, receiver } = yield* rawPair(server, taskId)

      // What the receiver sent, by seq, to compare with what the sender is handed.
      const sent = new Map<number, Buffer>()
      const forwarded: Array<Received<PullDataReq>> = []
      const serving = yield* Effect.fork(
        serveRaw(sender, {
          taskId,
          data,
          onPull: (r) => forwarded.push(r),
          // Own seqs, unrelated to the receiver's.
          seqFor: (n) => 1000 + n,
          // Hold pulls until a full window (or the tail) is in, then answer it scrambled
          // (neither first-to-last nor last-to-first).
          batch: (pending) =>
            pending.length >= 8 || pending.some((p) => p.msg.offset + p.msg.dataSize === size)
              ? [...pending].sort((a, b) => scramble(a.msg.offset) - scramble(b.msg.offset))
              : []
        })
      )

      const got = Buffer.alloc(size)
      const inFlight = new Map<number, { offset: number; size: number }>()
      let seq = 0
      let requested = 0
      let received = 0
      let outOfOrder = 0
      const request = () => {
        const n = Math.min(BLOCK, size - requested)
        const pdu = pullReqPdu(++seq, { taskId, userId: TO, offset: requested, dataSize: n })
        sent.set(seq, pdu)
        inFlight.set(seq, { offset: requested, size: n })
        requested += n
        return pdu
      }
      receiver.send(...Array.from({ length: 8 }, request))
      let lastOffset = -1
      while (received < size) {
        const rsp = yield* receiver.expect(Pdu.PullDataRsp)
        const req = inFlight.get(rsp.seq)
        expect(req, `response seq ${rsp.seq} answers no outstanding request`).toBeDefined()
        inFlight.delete(rsp.seq)
        expect(rsp.msg.offset).toBe(req!.offset)
        expect(rsp.msg.fileData.length).toBe(req!.size)
        expect(rsp.msg.taskId).toBe(taskId)
        if (rsp.msg.offset < lastOffset) outOfOrder++
        lastOffset = rsp.msg.offset
        Buffer.from(rsp.msg.fileData).copy(got, rsp.msg.offset)
        received += rsp.msg.fileData.length
        if (requested < size) receiver.send(request())
      }
      expect(inFlight.size).toBe(0)
      expect(sha256(got)).toBe(sha256(data))
      // The sender really answered out of order and with its own seqs.
      expect(outOfOrder).toBeGreaterThan(0)
      // Each pull reached the sender unchanged: same seq, same bytes.
      expect(forwarded.length).toBe(seq)
      for (const f of forwarded) expect(f.frame.raw.equals(sent.get(f.seq)!)).toBe(true)

      const done = statePdu(4321, { state: FileState.Done, taskId, userId: TO })
      receiver.send(done)
      const final = yield* serving.await.pipe(Effect.flatten)
      expect(final.state).toBe(FileState.Done)
      yield* sender.expectClosed()
      yield* receiver.expectClosed()
      yield* eventually(() => server.registry.size() === 0)
    })
  )

  it.scopedLive("window 8 with the SDK receiver and a raw sender answering with shuffled seqs of its own: data intact", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const size = 40 * BLOCK + 123
      const data = randomBytes(size)
      const taskId = yield* onlineTask(server, size)
      const s = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      const r = yield* Client.connect(server.client)
      yield* Client.login(r, { taskId, userId: TO, role: FileRole.Receiver })
      const sink = Client.memorySink()
      let n = 0
      const [served, pulled] = yield* Effect.all(
        [
          serveRaw(s, {
            taskId,
            data,
            seqFor: () => 50_000 + ((n++ * 7919) % 10_000),
            batch: (pending) =>
              pending.length >= 8 || pending.some((p) => p.msg.offset + p.msg.dataSize === size)
                ? [...pending].sort((a, b) => ((a.msg.offset * 31) % 7) - ((b.msg.offset * 31) % 7))
                : []
          }),
          Client.receiveFile(r, { taskId, userId: TO, sink, size, window: 8 })
        ],
        { concurrency: 2 }
      )
      expect(pulled.bytes).toBe(size)
      expect(served.state).toBe(FileState.Done)
      expect(sha256(sink.bytes())).toBe(sha256(data))
      yield* eventually(() => server.registry.size() === 0)
    })
  )
})

describe("pulls at the end of the file", () => {
  it.scopedLive("a pull reaching past the file size is clamped: the sender sees the clamped data_size, the receiver's seq and fields", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const data = randomBytes(1000)
      const taskId = yield* onlineTask(server, data.length)
      const { sender, receiver } = yield* rawPair(server, taskId)

      receiver.send(pullReqPdu(5, { taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      const fwd = yield* sender.expect(Pdu.PullDataReq)
      expect(fwd.seq).toBe(5)
      expect(fwd.msg).toMatchObject({ taskId, userId: TO, transMode: TransferMode.Online, offset: 0, dataSize: 1000 })
      sender.send(pullRspPdu(999, { taskId, userId: FROM, offset: 0, fileData: data }))
      const rsp = yield* receiver.expect(Pdu.PullDataRsp)
      expect(rsp.seq).toBe(5)
      expect(rsp.msg.offset).toBe(0)
      expect(sha256(rsp.msg.fileData)).toBe(sha256(data))

      receiver.send(pullReqPdu(6, { taskId, userId: TO, offset: 900, dataSize: 500 }))
      const fwd2 = yield* sender.expect(Pdu.PullDataReq)
      expect(fwd2.seq).toBe(6)
      expect(fwd2.msg).toMatchObject({ offset: 900, dataSize: 100 })
      sender.send(pullRspPdu(1, { taskId, userId: FROM, offset: 900, fileData: data.subarray(900) }))
      const rsp2 = yield* receiver.expect(Pdu.PullDataRsp)
      expect(rsp2.seq).toBe(6)
      expect(Buffer.from(rsp2.msg.fileData).equals(data.subarray(900))).toBe(true)
      yield* sender.expectQuiet(30)
      yield* receiver.expectQuiet(30)
    })
  )

  it.scopedLive("a pull at or past the end is answered at once with an empty block carrying its seq; the sender hears nothing", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const data = randomBytes(1000)
      const taskId = yield* onlineTask(server, data.length)
      const { sender, receiver } = yield* rawPair(server, taskId)

      // A real pull left outstanding at the sender...
      receiver.send(pullReqPdu(10, { taskId, userId: TO, offset: 0, dataSize: 1000 }))
      const fwd = yield* sender.expect(Pdu.PullDataReq)
      expect(fwd.seq).toBe(10)
      // ...then pulls at the end, past it, and of nothing: each answered by the server, not the sender.
      for (const [seq, offset, dataSize] of [
        [11, 1000, BLOCK],
        [12, 5000, 10],
        [13, 0xffffffff, 1],
        [14, 1000, 0]
      ] as const) {
        receiver.send(pullReqPdu(seq, { taskId, userId: TO, offset, dataSize }))
        const empty = yield* receiver.expect(Pdu.PullDataRsp, 1000)
        expect(empty.seq).toBe(seq)
        expect(empty.msg.resultCode).toBe(0)
        expect(empty.msg.offset).toBe(offset)
        expect(empty.msg.taskId).toBe(taskId)
        expect(empty.msg.fileData.length).toBe(0)
      }
      yield* sender.expectQuiet(100)
      // The outstanding pull is still matched by offset.
      sender.send(pullRspPdu(7777, { taskId, userId: FROM, offset: 0, fileData: data }))
      const rsp = yield* receiver.expect(Pdu.PullDataRsp)
      expect(rsp.seq).toBe(10)
      expect(sha256(rsp.msg.fileData)).toBe(sha256(data))
    })
  )

  it.scopedLive("an empty file: the first pull gets an empty block, DONE ends the task", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 0)
      const { sender, receiver } = yield* rawPair(server, taskId)
      receiver.send(pullReqPdu(3, { taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      const empty = yield* receiver.expect(Pdu.PullDataRsp)
      expect(empty.seq).toBe(3)
      expect(empty.msg.fileData.length).toBe(0)
      receiver.send(statePdu(4, { state: FileState.Done, taskId, userId: TO }))
      const done = yield* sender.expect(Pdu.State)
      expect(done.seq).toBe(4)
      expect(done.msg.state).toBe(FileState.Done)
      yield* sender.expectClosed()
      yield* receiver.expectClosed()
      yield* eventually(() => server.registry.size() === 0)
    })
  )
})

describe("pulls that do not check out close the offender; the peer gets CANCEL", () => {
  const setup = (size = 1000) =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const data = randomBytes(size)
      const taskId = yield* onlineTask(server, size)
      const pair = yield* rawPair(server, taskId)
      return { server, data, taskId, ...pair }
    })

  it.scopedLive("PULL_DATA_REQ with the wrong user id", () =>
    Effect.gen(function* () {
      const { server, taskId, sender, receiver } = yield* setup()
      receiver.send(pullReqPdu(1, { taskId, userId: FROM, offset: 0, dataSize: 10 }))
      yield* expectThrownOut(receiver, sender, taskId, server.registry.size)
    })
  )

  it.scopedLive("PULL_DATA_REQ naming another task", () =>
    Effect.gen(function* () {
      const { server, taskId, sender, receiver } = yield* setup()
      const other = yield* onlineTask(server, 1000)
      receiver.send(pullReqPdu(1, { taskId: other, userId: TO, offset: 0, dataSize: 10 }))
      const state = yield* sender.expect(Pdu.State)
      expect(state.msg).toMatchObject({ state: FileState.Cancel, taskId })
      yield* sender.expectClosed()
      yield* receiver.expectClosed()
      // Only the other (untouched) task is left.
      yield* eventually(() => server.registry.size() === 1)
    })
  )

  it.scopedLive("PULL_DATA_REQ from the sender", () =>
    Effect.gen(function* () {
      const { server, taskId, sender, receiver } = yield* setup()
      sender.send(pullReqPdu(1, { taskId, userId: FROM, offset: 0, dataSize: 10 }))
      yield* expectThrownOut(sender, receiver, taskId, server.registry.size)
    })
  )

  it.scopedLive("PULL_DATA_REQ larger than the largest block a frame can carry", () =>
    Effect.gen(function* () {
      const { server, taskId, sender, receiver } = yield* setup(8 * 1024 * 1024)
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 4 * 1024 * 1024 }))
      yield* expectThrownOut(receiver, sender, taskId, server.registry.size)
    })
  )

  it.scopedLive("PULL_DATA_RSP with more bytes than were asked (after clamping)", () =>
    Effect.gen(function* () {
      const { server, taskId, sender, receiver } = yield* setup(1000)
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      yield* sender.expect(Pdu.PullDataReq)
      sender.send(pullRspPdu(1, { taskId, userId: FROM, offset: 0, fileData: randomBytes(BLOCK) }))
      yield* expectThrownOut(sender, receiver, taskId, server.registry.size)
    })
  )

  it.scopedLive("PULL_DATA_RSP with fewer bytes than were asked", () =>
    Effect.gen(function* () {
      const { server, data, taskId, sender, receiver } = yield* setup(1000)
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 500 }))
      yield* sender.expect(Pdu.PullDataReq)
      sender.send(pullRspPdu(1, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, 499) }))
      yield* expectThrownOut(sender, receiver, taskId, server.registry.size)
    })
  )

  it.scopedLive("PULL_DATA_RSP at an offset no pull asked for", () =>
    Effect.gen(function* () {
      const { server, data, taskId, sender, receiver } = yield* setup(1000)
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 500 }))
      yield* sender.expect(Pdu.PullDataReq)
      sender.send(pullRspPdu(1, { taskId, userId: FROM, offset: 500, fileData: data.subarray(500) }))
      yield* expectThrownOut(sender, receiver, taskId, server.registry.size)
    })
  )

  it.scopedLive("PULL_DATA_RSP from the wrong user", () =>
    Effect.gen(function* () {
      const { server, data, taskId, sender, receiver } = yield* setup(1000)
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 500 }))
      yield* sender.expect(Pdu.PullDataReq)
      sender.send(pullRspPdu(1, { taskId, userId: TO, offset: 0, fileData: data.subarray(0, 500) }))
      yield* expectThrownOut(sender, receiver, taskId, server.registry.size)
    })
  )

  it.scopedLive("PULL_DATA_RSP from the receiver", () =>
    Effect.gen(function* () {
      const { server, data, taskId, sender, receiver } = yield* setup(1000)
      receiver.send(pullRspPdu(1, { taskId, userId: TO, offset: 0, fileData: data.subarray(0, 10) }))
      yield* expectThrownOut(receiver, sender, taskId, server.registry.size)
    })
  )

  it.scopedLive("the same pull answered twice: the second answer is thrown out", () =>
    Effect.gen(function* () {
      const { server, data, taskId, sender, receiver } = yield* setup(1000)
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 500 }))
      yield* sender.expect(Pdu.PullDataReq)
      const answer = pullRspPdu(1, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, 500) })
      sender.send(answer, answer)
      const rsp = yield* receiver.expect(Pdu.PullDataRsp)
      expect(rsp.seq).toBe(1)
      expect(rsp.frame.raw.length).toBe(answer.length)
      expect(rsp.frame.raw.subarray(HEADER_BYTES).equals(answer.subarray(HEADER_BYTES))).toBe(true)
      yield* expectThrownOut(sender, receiver, taskId, server.registry.size)
    })
  )
})

describe("pull window limit", () => {
  it.scopedLive("pulls up to maxPullsInFlight are forwarded; one more closes the receiver and the sender gets CANCEL", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxPullsInFlight: 4 })
      const taskId = yield* onlineTask(server, 10 * BLOCK)
      const { sender, receiver } = yield* rawPair(server, taskId)
      receiver.send(...[0, 1, 2, 3].map((i) => pullReqPdu(i + 1, { taskId, userId: TO, offset: i * BLOCK, dataSize: BLOCK })))
      for (let i = 0; i < 4; i++) expect((yield* sender.expect(Pdu.PullDataReq)).seq).toBe(i + 1)
      // A pull at the end does not count: it is answered by the server.
      receiver.send(pullReqPdu(50, { taskId, userId: TO, offset: 10 * BLOCK, dataSize: BLOCK }))
      expect((yield* receiver.expect(Pdu.PullDataRsp)).seq).toBe(50)
      receiver.send(pullReqPdu(5, { taskId, userId: TO, offset: 4 * BLOCK, dataSize: BLOCK }))
      yield* receiver.expectClosed()
      yield* expectThrownOut(receiver, sender, taskId, server.registry.size)
    })
  )
})
