import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode } from "../../src/protocol/commands.js"
import { HEADER_BYTES } from "../../src/protocol/header.js"
import { encodePdu, Pdu } from "../../src/protocol/messages.js"
import type { RawConn } from "../support/raw.js"
import {
  FROM,
  TO,
  decodeAs,
  headerOnly,
  heartbeatPdu,
  loginPdu,
  onlineTask,
  pullReqPdu,
  rawConnect,
  rawPair,
  rawPdu,
  sha256
} from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { eventually, startServer } from "../support/server.js"

const SIZE = 1024 * 1024

/**
 * Runs `attacks` while an honest transfer on the same server is stopped
 * half-way (its receiver holds a block until the attacks are done), then
 * lets the transfer finish and checks it arrived intact.
 */
const withBystander = <E>(server: TestServer, attacks: Effect.Effect<void, E, Scope.Scope>) =>
  Effect.gen(function* () {
    const data = randomBytes(SIZE)
    const taskId = yield* onlineTask(server, SIZE, "bystander.bin")
    const sender = yield* Client.connect(server.client)
    const receiver = yield* Client.connect(server.client)
    yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender })
    yield* Client.login(receiver, { taskId, userId: TO, role: FileRole.Receiver })
    const halfway = yield* Deferred.make<void>()
    const attacksDone = yield* Deferred.make<void>()
    const mem = Client.memorySink()
    const sink: Client.BlockSink = {
      write: (offset, bytes) =>
        offset === SIZE / 2
          ? Deferred.succeed(halfway, undefined).pipe(Effect.zipRight(Deferred.await(attacksDone)), Effect.zipRight(mem.write(offset, bytes)))
          : mem.write(offset, bytes)
    }
    const transfer = yield* Effect.fork(
      Effect.all(
        [
          Client.serveFile(sender, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) }),
          Client.receiveFile(receiver, { taskId, userId: TO, sink, size: SIZE, window: 4 })
        ],
        { concurrency: 2 }
      )
    )
    yield* Deferred.await(halfway)
    yield* attacks
    yield* Deferred.succeed(attacksDone, undefined)
    const [served, pulled] = yield* transfer.await.pipe(Effect.flatten)
    expect(served.finalState).toBe(FileState.Done)
    expect(pulled.bytes).toBe(SIZE)
    expect(sha256(mem.bytes())).toBe(sha256(data))
  })

/** The server closes `conn`; whatever it said before must be a failed LOGIN_RES (or nothing). */
const closedWithoutAcceptance = (conn: RawConn) =>
  Effect.gen(function* () {
    const rest = yield* conn.expectClosed()
    // At most the protocol's error reply: a failed LOGIN_RES, or a PULL_DATA_RSP with an error and no data.
    for (const f of rest) {
      if (f.commandId === Pdu.PullDataRsp.commandId) {
        const rsp = yield* decodeAs(Pdu.PullDataRsp, f)
        expect(rsp.resultCode).not.toBe(0)
        expect(rsp.fileData.length).toBe(0)
        continue
      }
      expect(f.commandId).toBe(Pdu.LoginRes.commandId)
      expect((yield* decodeAs(Pdu.LoginRes, f)).resultCode).toBe(ResultCode.Failed)
    }
  })

describe("malformed input closes only the offending connection", () => {
  it.scopedLive("LOGIN_REQ with a garbage body: refused (result_code 1, its seq) and closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      yield* withBystander(
        server,
        Effect.gen(function* () {
          for (const body of [Buffer.from([0x0a, 0xff]), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]), randomBytes(64)]) {
            const conn = yield* rawConnect(server.client)
            conn.send(rawPdu(Pdu.LoginReq, 0x3131, body))
            const res = yield* conn.expect(Pdu.LoginRes)
            expect(res.seq).toBe(0x3131)
            expect(res.msg.resultCode).toBe(ResultCode.Failed)
            yield* conn.expectClosed()
          }
          // Required fields missing (task id only).
          const conn = yield* rawConnect(server.client)
          conn.send(rawPdu(Pdu.LoginReq, 5, Buffer.from([0x12, 0x01, 0x41])))
          const res = yield* conn.expect(Pdu.LoginRes)
          expect(res.msg.resultCode).toBe(ResultCode.Failed)
          yield* conn.expectClosed()
        })
      )
    })
  )

  it.scopedLive("a PULL_DATA_REQ missing required fields after login: PULL_DATA_RSP with an error, the receiver is closed, its sender gets CANCEL", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      yield* withBystander(
        server,
        Effect.gen(function* () {
          const taskId = yield* onlineTask(server, 100_000)
          const { sender, receiver } = yield* rawPair(server, taskId)
          // task_id, user_id, trans_mode, offset, but no data_size.
          const full = Pdu.PullDataReq.encodeBody({ taskId, userId: TO, transMode: 1, offset: 0, dataSize: 100 })
          receiver.send(rawPdu(Pdu.PullDataReq, 9, full.subarray(0, full.length - 2)))
          // The protocol's error reply first: PULL_DATA_RSP, same seq, a non-zero result, no data.
          const refusal = yield* receiver.expect(Pdu.PullDataRsp)
          expect(refusal.seq).toBe(9)
          expect(refusal.msg.resultCode).not.toBe(0)
          expect(refusal.msg.taskId).toBe(taskId)
          expect(refusal.msg.fileData.length).toBe(0)
          yield* receiver.expectClosed()
          const state = yield* sender.expect(Pdu.State)
          expect(state.msg.state).toBe(FileState.Cancel)
          yield* sender.expectClosed()
          yield* eventually(() => server.registry.get(taskId) === undefined)
        })
      )
    })
  )

  it.scopedLive("a malformed PULL_DATA_RSP or FILE_STATE after login closes that party; the peer gets CANCEL", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      yield* withBystander(
        server,
        Effect.gen(function* () {
          const t1 = yield* onlineTask(server, 100_000)
          const p1 = yield* rawPair(server, t1)
          p1.receiver.send(pullReqPdu(1, { taskId: t1, userId: TO, offset: 0, dataSize: 100 }))
          yield* p1.sender.expect(Pdu.PullDataReq)
          p1.sender.send(rawPdu(Pdu.PullDataRsp, 1, Buffer.from([0x08, 0x00, 0x12, 0x50])))
          yield* p1.sender.expectClosed()
          expect((yield* p1.receiver.expect(Pdu.State)).msg.state).toBe(FileState.Cancel)
          yield* p1.receiver.expectClosed()

          const t2 = yield* onlineTask(server, 100_000)
          const p2 = yield* rawPair(server, t2)
          // state 9 is no ClientFileState.
          p2.receiver.send(rawPdu(Pdu.State, 2, Buffer.from([0x08, 0x09, 0x12, 0x00, 0x18, 0x01])))
          yield* p2.receiver.expectClosed()
          expect((yield* p2.sender.expect(Pdu.State)).msg.state).toBe(FileState.Cancel)
          yield* p2.sender.expectClosed()
          yield* eventually(() => server.registry.get(t1) === undefined && server.registry.get(t2) === undefined)
        })
      )
    })
  )

  it.scopedLive("transfer PDUs before login close the connection", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      yield* withBystander(
        server,
        Effect.gen(function* () {
          const taskId = yield* onlineTask(server, 100)
          for (const pdu of [
            pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 10 }),
            encodePdu(Pdu.PullDataRsp, 1, { resultCode: 0, taskId, userId: FROM, offset: 0, fileData: Buffer.alloc(10) }),
            encodePdu(Pdu.State, 1, { state: FileState.Cancel, taskId, userId: FROM })
          ]) {
            const conn = yield* rawConnect(server.client)
            conn.send(pdu)
            yield* closedWithoutAcceptance(conn)
          }
          // The task they named is untouched.
          expect(server.registry.get(taskId)).toBeDefined()
        })
      )
    })
  )

  it.scopedLive("an unknown command is ignored; the connection stays open", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const conn = yield* rawConnect(server.client)
      conn.send(rawPdu({ serviceId: 5, commandId: 0x0599 }, 1, randomBytes(100)), rawPdu({ serviceId: 99, commandId: 1 }, 2, Buffer.alloc(0)))
      conn.send(heartbeatPdu(3))
      expect((yield* conn.expect(Pdu.HeartBeat)).seq).toBe(3)
      yield* conn.expectQuiet(50)
    })
  )
})

describe("bad length headers close only that connection", () => {
  const lengths = [
    ["just above maxFrameBytes", 2 * 1024 * 1024 + 1],
    ["4 GiB - 1", 0xffffffff],
    ["below the header size", 5],
    ["zero", 0]
  ] as const

  it.scopedLive("on the client port, before and after login, whole or byte by byte", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      yield* withBystander(
        server,
        Effect.gen(function* () {
          for (const [, length] of lengths) {
            // Whole header in one write, before login.
            const a = yield* rawConnect(server.client)
            a.send(headerOnly(length))
            yield* closedWithoutAcceptance(a)
            // Byte by byte: the length is judged as soon as its 4 bytes are in.
            const b = yield* rawConnect(server.client)
            const h = headerOnly(length)
            for (let i = 0; i < 4; i++) {
              b.send(h.subarray(i, i + 1))
              yield* Effect.sleep(5)
            }
            yield* b.expectClosed()
            // After a good PDU in the same write.
            const c = yield* rawConnect(server.client)
            c.send(heartbeatPdu(1), headerOnly(length))
            const rest = yield* c.expectClosed()
            expect(rest.map((f) => f.seq)).toEqual([1])
          }
          // Logged in to a live task: the peer gets CANCEL.
          const taskId = yield* onlineTask(server, 1000)
          const { sender, receiver } = yield* rawPair(server, taskId)
          receiver.send(headerOnly(0xffffffff, Pdu.PullDataReq))
          yield* receiver.expectClosed()
          expect((yield* sender.expect(Pdu.State)).msg.state).toBe(FileState.Cancel)
          yield* sender.expectClosed()
        })
      )
    })
  )

  it.scopedLive("on the msg port: the link is closed, other links keep working", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      yield* withBystander(
        server,
        Effect.gen(function* () {
          const other = yield* rawConnect(server.msg)
          for (const [, length] of lengths) {
            const link = yield* rawConnect(server.msg)
            link.send(headerOnly(length, Pdu.TransferReq))
            yield* link.expectClosed()
          }
          other.send(encodePdu(Pdu.ServerIpReq, 77, {}))
          expect((yield* other.expect(Pdu.ServerIpRsp)).seq).toBe(77)
          const created = yield* onlineTask(server, 5)
          expect(server.registry.get(created)).toBeDefined()
        })
      )
    })
  )

  it.scopedLive("a configured maxFrameBytes: a frame of exactly the maximum passes, one byte more closes", () =>
    Effect.gen(function* () {
      const max = 40 * 1024
      const server = yield* startServer({ maxFrameBytes: max })
      // 32 KiB blocks still fit, so transfers work.
      yield* withBystander(
        server,
        Effect.gen(function* () {
          const ok = yield* rawConnect(server.client)
          ok.send(rawPdu(Pdu.HeartBeat, 1, Buffer.alloc(max - HEADER_BYTES)))
          const echoed = yield* ok.next()
          expect([echoed.commandId, echoed.seq]).toEqual([Pdu.HeartBeat.commandId, 1])
          yield* ok.expectQuiet(30)
          const bad = yield* rawConnect(server.client)
          bad.send(headerOnly(max + 1, Pdu.HeartBeat))
          yield* bad.expectClosed()
          const badMsg = yield* rawConnect(server.msg)
          badMsg.send(headerOnly(max + 1, Pdu.HeartBeat))
          yield* badMsg.expectClosed()
        })
      )
    })
  )

  it.scopedLive("a pull larger than the configured maximum block closes the receiver", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxFrameBytes: 40 * 1024 })
      const taskId = yield* onlineTask(server, 1024 * 1024)
      const { sender, receiver } = yield* rawPair(server, taskId)
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 40 * 1024 }))
      yield* receiver.expectClosed()
      expect((yield* sender.expect(Pdu.State)).msg.state).toBe(FileState.Cancel)
      yield* eventually(() => server.registry.size() === 0)
    })
  )
})

describe("garbage logins in bulk", () => {
  it.scopedLive("many bad connections at once leave the server serving", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      yield* withBystander(
        server,
        Effect.forEach(
          Array.from({ length: 30 }, (_, i) => i),
          (i) =>
            Effect.gen(function* () {
              const conn = yield* rawConnect(server.client)
              conn.send(
                i % 3 === 0 ? headerOnly(0xffffffff) : i % 3 === 1 ? rawPdu(Pdu.LoginReq, i, randomBytes(20)) : loginPdu(i, "nope", 1, 1)
              )
              yield* closedWithoutAcceptance(conn)
            }),
          { concurrency: "unbounded", discard: true }
        )
      )
    })
  )
})
