import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import type { RawConn } from "../support/raw.js"
import { FROM, TO, onlineTask, pullReqPdu, pullRspPdu, rawLogin, rawPair, statePdu } from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { eventually, startServer } from "../support/server.js"

const stateName = (s: FileState) => (s === FileState.Cancel ? "CANCEL" : s === FileState.Refuse ? "REFUSE" : "DONE")

/** `from` sends `state` with `seq`; `to` gets exactly those bytes; both are closed; the registry empties. */
const endWith = (server: TestServer, taskId: string, from: RawConn, fromUser: number, to: RawConn, state: FileState, seq: number) =>
  Effect.gen(function* () {
    const pdu = statePdu(seq, { state, taskId, userId: fromUser })
    from.send(pdu)
    const got = yield* to.expect(Pdu.State)
    expect(got.seq).toBe(seq)
    expect(got.msg).toMatchObject({ state, taskId, userId: fromUser })
    expect(got.frame.raw.equals(pdu)).toBe(true)
    const toRest = yield* to.expectClosed()
    expect(toRest).toEqual([])
    const fromRest = yield* from.expectClosed()
    expect(fromRest).toEqual([])
    yield* eventually(() => server.registry.size() === 0)
  })

describe("CANCEL and REFUSE", () => {
  for (const state of [FileState.Cancel, FileState.Refuse] as const) {
    for (const side of ["sender", "receiver"] as const) {
      it.scopedLive(`${stateName(state)} from the ${side} before any pull is forwarded unchanged, then both are closed`, () =>
        Effect.gen(function* () {
          const server = yield* startServer()
          const taskId = yield* onlineTask(server, 100_000)
          const { sender, receiver } = yield* rawPair(server, taskId)
          if (side === "sender") yield* endWith(server, taskId, sender, FROM, receiver, state, 0x1234)
          else yield* endWith(server, taskId, receiver, TO, sender, state, 0xfedc)
        })
      )

      it.scopedLive(`${stateName(state)} from the ${side} mid-transfer is forwarded unchanged, then both are closed`, () =>
        Effect.gen(function* () {
          const server = yield* startServer()
          const data = randomBytes(100_000)
          const taskId = yield* onlineTask(server, data.length)
          const { sender, receiver } = yield* rawPair(server, taskId)
          // One block through, a second pull left outstanding.
          receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 32768 }))
          yield* sender.expect(Pdu.PullDataReq)
          sender.send(pullRspPdu(500, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, 32768) }))
          yield* receiver.expect(Pdu.PullDataRsp)
          receiver.send(pullReqPdu(2, { taskId, userId: TO, offset: 32768, dataSize: 32768 }))
          yield* sender.expect(Pdu.PullDataReq)
          if (side === "sender") yield* endWith(server, taskId, sender, FROM, receiver, state, 77)
          else yield* endWith(server, taskId, receiver, TO, sender, state, 78)
        })
      )
    }
  }

  it.scopedLive("REFUSE from the receiver before the sender arrives ends the task; the sender is then refused", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      receiver.send(statePdu(9, { state: FileState.Refuse, taskId, userId: TO }))
      yield* receiver.expectClosed()
      yield* eventually(() => server.registry.size() === 0)
      const sender = yield* Client.connect(server.client)
      const refused = yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender }).pipe(Effect.flip)
      expect(refused.reason).toBe("Refused")
    })
  )

  it.scopedLive("the SDK sees the peer's CANCEL as a cancelled transfer", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 100_000)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      const receiver = yield* Client.connect(server.client)
      yield* Client.login(receiver, { taskId, userId: TO, role: FileRole.Receiver })
      const receiving = yield* Effect.fork(Client.receiveFile(receiver, { taskId, userId: TO, sink: Client.memorySink(), size: 100_000 }))
      yield* sender.expect(Pdu.PullDataReq)
      sender.send(statePdu(3, { state: FileState.Cancel, taskId, userId: FROM }))
      const error = yield* receiving.await.pipe(Effect.flatten, Effect.flip)
      expect(error.reason).toBe("Cancelled")
      yield* eventually(() => server.registry.size() === 0)
    })
  )
})

describe("a party disconnecting", () => {
  for (const leaver of ["sender", "receiver"] as const) {
    for (const how of ["destroy", "end"] as const) {
      it.scopedLive(`the ${leaver} going away mid-transfer (${how}): the other gets CANCEL and is closed, the task ends`, () =>
        Effect.gen(function* () {
          const server = yield* startServer()
          const data = randomBytes(200_000)
          const taskId = yield* onlineTask(server, data.length)
          const { sender, receiver } = yield* rawPair(server, taskId)
          receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 32768 }))
          yield* sender.expect(Pdu.PullDataReq)
          sender.send(pullRspPdu(1, { taskId, userId: FROM, offset: 0, fileData: data.subarray(0, 32768) }))
          yield* receiver.expect(Pdu.PullDataRsp)
          // A pull outstanding when the party goes.
          receiver.send(pullReqPdu(2, { taskId, userId: TO, offset: 32768, dataSize: 32768 }))
          yield* sender.expect(Pdu.PullDataReq)
          const [gone, other] = leaver === "sender" ? [sender, receiver] : [receiver, sender]
          if (how === "destroy") gone.destroy()
          else gone.socket.end()
          const state = yield* other.expect(Pdu.State)
          expect(state.msg.state).toBe(FileState.Cancel)
          expect(state.msg.taskId).toBe(taskId)
          yield* other.expectClosed()
          yield* eventually(() => server.registry.size() === 0)
        })
      )
    }
  }

  it.scopedLive("the receiver going away after PEER_READY, before any pull: the sender gets CANCEL", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      const { sender, receiver } = yield* rawPair(server, taskId)
      receiver.destroy()
      const state = yield* sender.expect(Pdu.State)
      expect(state.msg.state).toBe(FileState.Cancel)
      yield* sender.expectClosed()
      yield* eventually(() => server.registry.size() === 0)
    })
  )

  it.scopedLive("the SDK sender sees the receiver's disconnect as a cancelled transfer", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const data = randomBytes(100_000)
      const taskId = yield* onlineTask(server, data.length)
      const sender = yield* Client.connect(server.client)
      yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender })
      const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      yield* receiver.expect(Pdu.State)
      const serving = yield* Effect.fork(Client.serveFile(sender, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) }))
      receiver.send(pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 32768 }))
      yield* receiver.expect(Pdu.PullDataRsp)
      receiver.destroy()
      const result = yield* serving.await.pipe(Effect.flatten)
      expect(result.finalState).toBe(FileState.Cancel)
      yield* eventually(() => server.registry.size() === 0)
    })
  )

  it.scopedLive("a lone party leaving before the peer arrives frees its slot; the task lives on and completes later", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const data = randomBytes(50_000)
      const taskId = yield* onlineTask(server, data.length)
      const early = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      early.destroy()
      // The slot is freed asynchronously; the second sender gets in once it is.
      yield* Effect.sleep(100)
      expect(server.registry.size()).toBe(1)
      const sender = yield* Client.connect(server.client)
      yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender })
      const receiver = yield* Client.connect(server.client)
      yield* Client.login(receiver, { taskId, userId: TO, role: FileRole.Receiver })
      const sink = Client.memorySink()
      yield* Effect.all(
        [
          Client.serveFile(sender, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) }),
          Client.receiveFile(receiver, { taskId, userId: TO, sink, size: data.length })
        ],
        { concurrency: 2 }
      )
      expect(sink.bytes().equals(data)).toBe(true)
      yield* eventually(() => server.registry.size() === 0)
    })
  )
})

describe("FILE_STATE that does not check out", () => {
  for (const [what, patch] of [
    ["the wrong user", { userId: FROM }],
    ["another task id", { taskId: "00000000-0000-4000-8000-000000000000" }]
  ] as const) {
    it.scopedLive(`a CANCEL naming ${what} is not forwarded: its sender is closed, the peer gets the server's CANCEL`, () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const taskId = yield* onlineTask(server, 10)
        const { sender, receiver } = yield* rawPair(server, taskId)
        receiver.send(statePdu(55, Object.assign({ state: FileState.Cancel, taskId, userId: TO }, patch)))
        yield* receiver.expectClosed()
        const got = yield* sender.expect(Pdu.State)
        expect(got.msg).toMatchObject({ state: FileState.Cancel, taskId })
        // Server-originated, not the forwarded bad PDU.
        expect(got.seq).toBe(0)
        yield* sender.expectClosed()
        yield* eventually(() => server.registry.size() === 0)
      })
    )
  }
})
