import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import { FROM, heartbeatPdu, onlineTask, pullReqPdu, pullRspPdu, rawLogin, serveRaw, sha256, statePdu, TO } from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { eventually, startServer } from "../support/server.js"

const BLOCK = 32 * 1024

/** An online task of `size` bytes with its sender and receiver logged in (the receiver told PEER_READY). */
const bothIn = (server: TestServer, size: number) =>
  Effect.gen(function* () {
    const taskId = yield* onlineTask(server, size)
    const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
    const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
    yield* receiver.expect(Pdu.State)
    return { taskId, sender, receiver }
  })

describe("online read-ahead", () => {
  for (const window of [1, 8]) {
    for (const size of [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 1024 * 1024 + 5]) {
      it.scopedLive(`window ${window}: ${size} bytes arrive intact with read-ahead 4`, () =>
        Effect.gen(function* () {
          const server = yield* startServer({ onlineReadahead: 4 })
          const data = randomBytes(size)
          const taskId = yield* onlineTask(server, size)
          const sender = yield* Client.connect(server.client)
          const receiver = yield* Client.connect(server.client)
          yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender })
          yield* Client.login(receiver, { taskId, userId: TO, role: FileRole.Receiver })
          const sink = Client.memorySink()
          const [served, pulled] = yield* Effect.all(
            [
              Client.serveFile(sender, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) }),
              Client.receiveFile(receiver, { taskId, userId: TO, sink, size, window })
            ],
            { concurrency: 2 }
          )
          expect(served.finalState).toBe(FileState.Done)
          expect(pulled.bytes).toBe(size)
          expect(sha256(sink.bytes())).toBe(sha256(data))
          yield* eventually(() => server.registry.size() === 0)
        })
      )
    }
  }

  it.scopedLive("the sender is asked ahead; the receiver's next pull is answered from memory with its own seq", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ onlineReadahead: 3, readaheadSegment: BLOCK })
      const data = randomBytes(10 * BLOCK)
      const { taskId, sender, receiver } = yield* bothIn(server, data.length)
      const asked: Array<{ offset: number; size: number; seq: number }> = []
      const serving = yield* Effect.fork(
        serveRaw(sender, { taskId, data, onPull: (r) => asked.push({ offset: r.msg.offset, size: r.msg.dataSize, seq: r.seq }) })
      )
      receiver.send(pullReqPdu(41, { taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      const first = yield* receiver.expect(Pdu.PullDataRsp)
      expect(first.seq).toBe(41)
      // The receiver's pull (seq 41) plus three blocks ahead (seq 0, the server's own).
      yield* eventually(() => asked.length === 4)
      expect(asked).toEqual([
        { offset: 0, size: BLOCK, seq: 41 },
        { offset: BLOCK, size: BLOCK, seq: 0 },
        { offset: 2 * BLOCK, size: BLOCK, seq: 0 },
        { offset: 3 * BLOCK, size: BLOCK, seq: 0 }
      ])
      receiver.send(pullReqPdu(42, { taskId, userId: TO, offset: BLOCK, dataSize: BLOCK }))
      const second = yield* receiver.expect(Pdu.PullDataRsp)
      expect(second.seq).toBe(42)
      expect(second.msg.offset).toBe(BLOCK)
      expect(Buffer.from(second.msg.fileData).equals(data.subarray(BLOCK, 2 * BLOCK))).toBe(true)
      // Answering it from memory asked for one more block ahead, not the pulled one again.
      yield* eventually(() => asked.length === 5)
      expect(asked[4]).toEqual({ offset: 4 * BLOCK, size: BLOCK, seq: 0 })
      yield* Fiber.interrupt(serving)
    })
  )

  it.scopedLive("--readahead-segment: the sender is asked for two blocks at once; the receiver still gets its own blocks, from memory, with its seqs", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ onlineReadahead: 4, readaheadSegment: 2 * BLOCK })
      const data = randomBytes(10 * BLOCK)
      const { taskId, sender, receiver } = yield* bothIn(server, data.length)
      const asked: Array<{ offset: number; size: number; seq: number }> = []
      const serving = yield* Effect.fork(
        serveRaw(sender, { taskId, data, onPull: (r) => asked.push({ offset: r.msg.offset, size: r.msg.dataSize, seq: r.seq }) })
      )
      const pull = (seq: number, offset: number) =>
        Effect.gen(function* () {
          receiver.send(pullReqPdu(seq, { taskId, userId: TO, offset, dataSize: BLOCK }))
          const rsp = yield* receiver.expect(Pdu.PullDataRsp)
          expect(rsp.seq).toBe(seq)
          expect(rsp.msg.offset).toBe(offset)
          expect(Buffer.from(rsp.msg.fileData).equals(data.subarray(offset, offset + BLOCK))).toBe(true)
        })
      yield* pull(41, 0)
      // The pull itself, then four blocks ahead in two segments of two.
      yield* eventually(() => asked.length === 3)
      expect(asked).toEqual([
        { offset: 0, size: BLOCK, seq: 41 },
        { offset: BLOCK, size: 2 * BLOCK, seq: 0 },
        { offset: 3 * BLOCK, size: 2 * BLOCK, seq: 0 }
      ])
      yield* pull(42, BLOCK)
      yield* pull(43, 2 * BLOCK)
      // The first segment is used up: one more is asked for, and nothing else.
      yield* eventually(() => asked.length === 4)
      expect(asked[3]).toEqual({ offset: 5 * BLOCK, size: 2 * BLOCK, seq: 0 })
      for (let i = 3; i < 10; i++) yield* pull(41 + i, i * BLOCK)
      expect(asked.slice(4)).toEqual([{ offset: 7 * BLOCK, size: 2 * BLOCK, seq: 0 }, { offset: 9 * BLOCK, size: BLOCK, seq: 0 }])
      yield* Fiber.interrupt(serving)
    })
  )

  it.scopedLive("a pull waiting on a segment still in flight gets the sender's error code when the segment fails, and the next pull is relayed", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ onlineReadahead: 2, readaheadSegment: 2 * BLOCK })
      const data = randomBytes(8 * BLOCK)
      const { taskId, sender, receiver } = yield* bothIn(server, data.length)
      receiver.send(pullReqPdu(5, { taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      expect((yield* sender.expect(Pdu.PullDataReq)).seq).toBe(5)
      const ahead = yield* sender.expect(Pdu.PullDataReq)
      expect(ahead.msg).toMatchObject({ offset: BLOCK, dataSize: 2 * BLOCK })
      sender.send(pullRspPdu(5, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, BLOCK) }))
      expect((yield* receiver.expect(Pdu.PullDataRsp)).seq).toBe(5)
      // The receiver's next pull waits on the segment; the sender cannot read it. The heartbeat's
      // echo shows the pull is in the task's mailbox before the sender's answer can be.
      receiver.send(pullReqPdu(6, { taskId, userId: TO, offset: BLOCK, dataSize: BLOCK }), heartbeatPdu(9))
      yield* receiver.expect(Pdu.HeartBeat)
      sender.send(pullRspPdu(0, { taskId, userId: FROM, offset: BLOCK, fileData: new Uint8Array(0), resultCode: 3 }))
      const failed = yield* receiver.expect(Pdu.PullDataRsp)
      expect(failed.seq).toBe(6)
      expect(failed.msg).toMatchObject({ resultCode: 3, offset: BLOCK })
      expect(failed.msg.fileData.length).toBe(0)
      // Nothing is left ahead at that offset: a pull there goes to the sender as TeamTalk relays it.
      receiver.send(pullReqPdu(7, { taskId, userId: TO, offset: 2 * BLOCK, dataSize: BLOCK }))
      const relayed = yield* sender.expect(Pdu.PullDataReq)
      expect(relayed.seq).toBe(7)
      expect(relayed.msg).toMatchObject({ offset: 2 * BLOCK, dataSize: BLOCK })
    })
  )

  it.scopedLive("all tasks share --readahead-memory: a task that finds none free relays pulls as they come, and reads ahead once memory is freed", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ onlineReadahead: 4, readaheadSegment: BLOCK, readaheadMemoryBytes: 3 * BLOCK })
      const data = randomBytes(10 * BLOCK)
      const start = (asked: Array<{ offset: number; seq: number }>) =>
        Effect.gen(function* () {
          const { taskId, sender, receiver } = yield* bothIn(server, data.length)
          yield* Effect.forkScoped(serveRaw(sender, { taskId, data, onPull: (r) => asked.push({ offset: r.msg.offset, seq: r.seq }) }))
          return { taskId, receiver }
        })
      const askedA: Array<{ offset: number; seq: number }> = []
      const askedB: Array<{ offset: number; seq: number }> = []
      const a = yield* start(askedA)
      const b = yield* start(askedB)

      // A takes the whole budget: its pull and three blocks ahead.
      a.receiver.send(pullReqPdu(1, { taskId: a.taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      yield* a.receiver.expect(Pdu.PullDataRsp)
      yield* eventually(() => askedA.length === 4)
      // B finds none free: its pull is relayed and nothing is asked ahead.
      b.receiver.send(pullReqPdu(1, { taskId: b.taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      const first = yield* b.receiver.expect(Pdu.PullDataRsp)
      expect(Buffer.from(first.msg.fileData).equals(data.subarray(0, BLOCK))).toBe(true)
      b.receiver.send(pullReqPdu(2, { taskId: b.taskId, userId: TO, offset: BLOCK, dataSize: BLOCK }))
      const second = yield* b.receiver.expect(Pdu.PullDataRsp)
      expect(second.seq).toBe(2)
      expect(askedB).toEqual([
        { offset: 0, seq: 1 },
        { offset: BLOCK, seq: 2 }
      ])

      // A ends (its receiver cancels): its memory goes back, and B's next pull reads ahead again.
      a.receiver.send(statePdu(3, { state: FileState.Cancel, taskId: a.taskId, userId: TO }))
      yield* eventually(() => server.registry.size() === 1)
      b.receiver.send(pullReqPdu(3, { taskId: b.taskId, userId: TO, offset: 2 * BLOCK, dataSize: BLOCK }))
      yield* b.receiver.expect(Pdu.PullDataRsp)
      yield* eventually(() => askedB.length === 6)
      expect(askedB.slice(2)).toEqual([
        { offset: 2 * BLOCK, seq: 3 },
        { offset: 3 * BLOCK, seq: 0 },
        { offset: 4 * BLOCK, seq: 0 },
        { offset: 5 * BLOCK, seq: 0 }
      ])
    })
  )

  it.scopedLive("a receiver that jumps around still gets exactly the bytes it pulls, with its seqs", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ onlineReadahead: 4 })
      const data = randomBytes(20 * BLOCK + 100)
      const { taskId, sender, receiver } = yield* bothIn(server, data.length)
      yield* Effect.fork(serveRaw(sender, { taskId, data }))
      const pulls = [
        [0, BLOCK],
        [BLOCK, BLOCK],
        [10 * BLOCK, BLOCK],
        [BLOCK, BLOCK],
        [2 * BLOCK, 1000],
        [11 * BLOCK, BLOCK],
        [12 * BLOCK, BLOCK],
        [20 * BLOCK, BLOCK],
        [5, 77]
      ] as const
      let seq = 100
      for (const [offset, size] of pulls) {
        seq++
        receiver.send(pullReqPdu(seq, { taskId, userId: TO, offset, dataSize: size }))
        const rsp = yield* receiver.expect(Pdu.PullDataRsp)
        expect(rsp.seq).toBe(seq)
        expect(rsp.msg.offset).toBe(offset)
        expect(Buffer.from(rsp.msg.fileData).equals(data.subarray(offset, Math.min(offset + size, data.length)))).toBe(true)
      }
    })
  )

  it.scopedLive("a wrong-length answer to a block read ahead closes the sender and cancels the receiver", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ onlineReadahead: 2, readaheadSegment: BLOCK })
      const data = randomBytes(8 * BLOCK)
      const { taskId, sender, receiver } = yield* bothIn(server, data.length)
      receiver.send(pullReqPdu(5, { taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      const pulled = yield* sender.expect(Pdu.PullDataReq)
      expect(pulled.seq).toBe(5)
      sender.send(pullRspPdu(5, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, BLOCK) }))
      expect((yield* receiver.expect(Pdu.PullDataRsp)).seq).toBe(5)
      const ahead = yield* sender.expect(Pdu.PullDataReq)
      expect(ahead.seq).toBe(0)
      expect(ahead.msg.offset).toBe(BLOCK)
      // One byte short of what the server asked for ahead.
      sender.send(pullRspPdu(0, { taskId, userId: FROM, offset: BLOCK, fileData: data.subarray(BLOCK, 2 * BLOCK - 1) }))
      yield* sender.expectClosed()
      const cancel = yield* receiver.expect(Pdu.State)
      expect(cancel.msg.state).toBe(FileState.Cancel)
      yield* receiver.expectClosed()
      yield* eventually(() => server.registry.size() === 0)
    })
  )

  it.scopedLive("the receiver leaving with blocks read ahead in memory ends the task and cancels the sender", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ onlineReadahead: 4, readaheadSegment: BLOCK })
      const data = randomBytes(8 * BLOCK)
      const { taskId, sender, receiver } = yield* bothIn(server, data.length)
      const asked: Array<number> = []
      yield* Effect.fork(serveRaw(sender, { taskId, data, onPull: (r) => asked.push(r.msg.offset) }).pipe(Effect.ignore))
      receiver.send(pullReqPdu(5, { taskId, userId: TO, offset: 0, dataSize: BLOCK }))
      yield* receiver.expect(Pdu.PullDataRsp)
      yield* eventually(() => asked.length === 5)
      receiver.destroy()
      yield* eventually(() => server.registry.size() === 0)
      yield* sender.expectClosed()
    })
  )
})
