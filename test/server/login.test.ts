import { describe, expect, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import type { RawConn } from "../support/raw.js"
import {
  FROM,
  TO,
  heartbeatPdu,
  loginPdu,
  onlineTask,
  pullReqPdu,
  rawConnect,
  rawLogin,
  rawPdu,
  serveRaw,
  sha256
} from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { eventually, startServer } from "../support/server.js"

/** Runs a whole transfer of `data` between already logged-in SDK sockets, checks it arrived intact. */
const transfer = (sender: Client.PduSocket, receiver: Client.PduSocket, taskId: string, data: Buffer) =>
  Effect.gen(function* () {
    const sink = Client.memorySink()
    const [served, pulled] = yield* Effect.all(
      [
        Client.serveFile(sender, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) }),
        Client.receiveFile(receiver, { taskId, userId: TO, sink, size: data.length, window: 4 })
      ],
      { concurrency: 2 }
    )
    expect(pulled.bytes).toBe(data.length)
    expect(served.finalState).toBe(FileState.Done)
    expect(sha256(sink.bytes())).toBe(sha256(data))
  })

/** Sends one login on a fresh connection and checks it is refused (echoing seq and task id) and then closed. */
const expectRefused = (server: TestServer, taskId: string, userId: number, role: number, seq = 31) =>
  Effect.gen(function* () {
    const conn = yield* rawConnect(server.client)
    conn.send(loginPdu(seq, taskId, userId, role))
    const res = yield* conn.expect(Pdu.LoginRes)
    expect(res.msg.resultCode).toBe(ResultCode.Failed)
    expect(res.msg.taskId).toBe(taskId)
    expect(res.seq).toBe(seq)
    const rest = yield* conn.expectClosed()
    expect(rest).toEqual([])
    return conn
  })

describe("login", () => {
  for (const order of ["sender first", "receiver first"] as const) {
    it.scopedLive(`${order}: the receiver gets PEER_READY (user_id = from_user, seq 0) and the transfer completes`, () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const data = randomBytes(100_000)
        const taskId = yield* onlineTask(server, data.length)
        const first = order === "sender first" ? FileRole.Sender : FileRole.Receiver
        const a = yield* rawLogin(server, taskId, first === FileRole.Sender ? FROM : TO, first, 11)
        // Alone, nobody hears anything.
        yield* a.expectQuiet(100)
        const b = yield* rawLogin(server, taskId, first === FileRole.Sender ? TO : FROM, first === FileRole.Sender ? FileRole.Receiver : FileRole.Sender, 12)
        const [sender, receiver] = first === FileRole.Sender ? [a, b] : [b, a]

        const ready = yield* receiver.expect(Pdu.State)
        expect(ready.seq).toBe(0)
        expect(ready.msg).toMatchObject({ state: FileState.PeerReady, taskId, userId: FROM })
        // The sender is not told anything.
        yield* sender.expectQuiet(50)

        // The rest of the transfer, raw on both sides: pulls of 32 KiB, one at a time.
        const got = Buffer.alloc(data.length)
        const serving = yield* Effect.fork(serveRaw(sender, { taskId, data }))
        let seq = 100
        for (let offset = 0; offset < data.length; offset += 32768) {
          const size = Math.min(32768, data.length - offset)
          receiver.send(pullReqPdu(++seq, { taskId, userId: TO, offset, dataSize: size }))
          const rsp = yield* receiver.expect(Pdu.PullDataRsp)
          expect(rsp.seq).toBe(seq)
          expect(rsp.msg.offset).toBe(offset)
          expect(rsp.msg.fileData.length).toBe(size)
          Buffer.from(rsp.msg.fileData).copy(got, offset)
        }
        expect(sha256(got)).toBe(sha256(data))
        receiver.send(rawPdu(Pdu.State, 999, Pdu.State.encodeBody({ state: FileState.Done, taskId, userId: TO })))
        const done = yield* serving.await.pipe(Effect.flatten)
        expect(done.state).toBe(FileState.Done)
        yield* sender.expectClosed()
        yield* receiver.expectClosed()
        yield* eventually(() => server.registry.size() === 0)
      })
    )
  }

  it.scopedLive("the SDK login works in both orders too", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      for (const senderFirst of [true, false]) {
        const data = randomBytes(70_000)
        const taskId = yield* onlineTask(server, data.length)
        const sender = yield* Client.connect(server.client)
        const receiver = yield* Client.connect(server.client)
        if (senderFirst) {
          yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender })
          yield* Client.login(receiver, { taskId, userId: TO, role: FileRole.Receiver })
        } else {
          yield* Client.login(receiver, { taskId, userId: TO, role: FileRole.Receiver })
          yield* Client.login(sender, { taskId, userId: FROM, role: FileRole.Sender })
        }
        yield* transfer(sender, receiver, taskId, data)
      }
      yield* eventually(() => server.registry.size() === 0)
    })
  )
})

describe("login refusals", () => {
  it.scopedLive("a role that does not fit an online task (uploader, downloader) is refused and closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      yield* expectRefused(server, taskId, FROM, FileRole.Uploader)
      yield* expectRefused(server, taskId, TO, FileRole.Downloader)
      // The task is untouched: a proper pair can still use it.
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      expect((yield* receiver.expect(Pdu.State)).msg.state).toBe(FileState.PeerReady)
      yield* sender.expectQuiet(20)
    })
  )

  it.scopedLive("an unknown role number (0, 5) is refused, echoing the task id as sent, and closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      yield* expectRefused(server, taskId, FROM, 5)
      yield* expectRefused(server, taskId, TO, 0)
      yield* rawLogin(server, taskId, FROM, FileRole.Sender)
    })
  )

  it.scopedLive("the wrong user for the role is refused and closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      // The receiver's id as sender, the sender's id as receiver, a stranger in either role.
      yield* expectRefused(server, taskId, TO, FileRole.Sender)
      yield* expectRefused(server, taskId, FROM, FileRole.Receiver)
      yield* expectRefused(server, taskId, 4242, FileRole.Sender)
      yield* expectRefused(server, taskId, 4242, FileRole.Receiver)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      yield* sender.expectQuiet(20)
    })
  )

  it.scopedLive("an unknown task id is refused and closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      yield* onlineTask(server, 10)
      yield* expectRefused(server, "0b7c9a52-1f3e-4d6a-9a6b-2c1d0e5f4a3b", FROM, FileRole.Sender)
      yield* expectRefused(server, "0b7c9a52-1f3e-4d6a-9a6b-2c1d0e5f4a3b", TO, FileRole.Receiver)
      expect(server.registry.size()).toBe(1)
    })
  )

  it.scopedLive("a malformed task id is refused, echoed exactly as sent, and closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      for (const bad of ["", "not-a-task", "../../etc/passwd", taskId.toUpperCase(), ` ${taskId}`, `${taskId}\n`, "é ✓ ünïcödé", "x".repeat(300)]) {
        yield* expectRefused(server, bad, FROM, FileRole.Sender)
      }
      expect(server.registry.size()).toBe(1)
    })
  )

  for (const role of [FileRole.Sender, FileRole.Receiver] as const) {
    const name = role === FileRole.Sender ? "sender" : "receiver"
    it.scopedLive(`a duplicate ${name} login is refused and closed, and the original session still completes the transfer`, () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const data = randomBytes(150_000)
        const taskId = yield* onlineTask(server, data.length)
        const userId = role === FileRole.Sender ? FROM : TO
        const original = yield* Client.connect(server.client)
        yield* Client.login(original, { taskId, userId, role })
        // Duplicate while waiting for the peer...
        yield* expectRefused(server, taskId, userId, role, 21)
        const other = yield* Client.connect(server.client)
        const otherRole = role === FileRole.Sender ? FileRole.Receiver : FileRole.Sender
        yield* Client.login(other, { taskId, userId: role === FileRole.Sender ? TO : FROM, role: otherRole })
        // ...and once both are in.
        yield* expectRefused(server, taskId, userId, role, 22)
        const [sender, receiver] = role === FileRole.Sender ? [original, other] : [other, original]
        yield* transfer(sender, receiver, taskId, data)
        yield* eventually(() => server.registry.size() === 0)
      })
    )
  }

  it.scopedLive("a login after the task has ended is refused as an unknown task", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 0)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      yield* receiver.expect(Pdu.State)
      receiver.send(rawPdu(Pdu.State, 3, Pdu.State.encodeBody({ state: FileState.Done, taskId, userId: TO })))
      yield* sender.expect(Pdu.State)
      yield* eventually(() => server.registry.size() === 0)
      yield* expectRefused(server, taskId, FROM, FileRole.Sender)
    })
  )
})

describe("several PDUs in one write", () => {
  it.scopedLive("LOGIN_REQ + PULL_DATA_REQ in one write: login answered, PEER_READY, then the pull is served", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const data = randomBytes(5000)
      const taskId = yield* onlineTask(server, data.length)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      const serving = yield* Effect.fork(serveRaw(sender, { taskId, data }))
      const receiver = yield* rawConnect(server.client)
      receiver.send(loginPdu(41, taskId, TO, FileRole.Receiver), pullReqPdu(42, { taskId, userId: TO, offset: 0, dataSize: data.length }))
      const res = yield* receiver.expect(Pdu.LoginRes)
      expect(res.seq).toBe(41)
      expect(res.msg).toMatchObject({ resultCode: ResultCode.Ok, taskId })
      const ready = yield* receiver.expect(Pdu.State)
      expect(ready.msg.state).toBe(FileState.PeerReady)
      const rsp = yield* receiver.expect(Pdu.PullDataRsp)
      expect(rsp.seq).toBe(42)
      expect(sha256(rsp.msg.fileData)).toBe(sha256(data))
      receiver.send(rawPdu(Pdu.State, 43, Pdu.State.encodeBody({ state: FileState.Done, taskId, userId: TO })))
      expect((yield* serving.await.pipe(Effect.flatten)).state).toBe(FileState.Done)
      yield* eventually(() => server.registry.size() === 0)
    })
  )

  it.scopedLive("heartbeat + LOGIN_REQ + heartbeat in one write are answered in order", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      const conn = yield* rawConnect(server.client)
      conn.send(heartbeatPdu(51), loginPdu(52, taskId, FROM, FileRole.Sender), heartbeatPdu(53))
      expect((yield* conn.expect(Pdu.HeartBeat)).seq).toBe(51)
      const res = yield* conn.expect(Pdu.LoginRes)
      expect(res.seq).toBe(52)
      expect(res.msg.resultCode).toBe(ResultCode.Ok)
      expect((yield* conn.expect(Pdu.HeartBeat)).seq).toBe(53)
      yield* conn.expectQuiet(50)
    })
  )

  const failingLogins = (conn: RawConn, taskId: string) =>
    Effect.gen(function* () {
      conn.send(
        loginPdu(61, "not-a-task-1", FROM, FileRole.Sender),
        loginPdu(62, "not-a-task-2", FROM, FileRole.Sender),
        loginPdu(63, taskId, 4242, FileRole.Sender)
      )
      const first = yield* conn.expect(Pdu.LoginRes)
      expect(first.seq).toBe(61)
      expect(first.msg).toEqual(expect.objectContaining({ resultCode: ResultCode.Failed, taskId: "not-a-task-1" }))
      // The connection is closed after the first refusal; anything answered before it is in order.
      const rest = yield* conn.expectClosed()
      const seqs = rest.map((f) => f.seq)
      expect([62, 63].slice(0, seqs.length)).toEqual(seqs)
    })

  it.scopedLive("several failing logins in one write: the first is answered first, then the connection is closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      yield* failingLogins(yield* rawConnect(server.client), taskId)
      // The task itself is unaffected.
      expect(server.registry.size()).toBe(1)
      yield* rawLogin(server, taskId, FROM, FileRole.Sender)
    })
  )

  it.scopedLive("a refused login before a good one in the same write: refused, closed, the good one is not honoured", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      const conn = yield* rawConnect(server.client)
      conn.send(loginPdu(71, taskId, 4242, FileRole.Sender), loginPdu(72, taskId, FROM, FileRole.Sender))
      const first = yield* conn.expect(Pdu.LoginRes)
      expect(first.seq).toBe(71)
      expect(first.msg.resultCode).toBe(ResultCode.Failed)
      const rest = yield* conn.expectClosed()
      // The second login was not accepted on a connection being closed.
      for (const f of rest) {
        if (f.seq === 72) expect(Pdu.LoginRes.decodeBody(f.raw.subarray(16))).toMatchObject({ right: { resultCode: ResultCode.Failed } })
      }
      // And the sender slot is free: the rightful sender can log in.
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender).pipe(
        Effect.retry({ times: 20, schedule: Schedule.spaced("20 millis") })
      )
      yield* sender.expectQuiet(20)
    })
  )
})

describe("concurrent logins", () => {
  it.scopedLive("both parties logging in at the same moment: each receiver gets exactly one PEER_READY", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const tasks = yield* Effect.forEach(Array.from({ length: 20 }), () => onlineTask(server, 10))
      const pairs = yield* Effect.forEach(
        tasks,
        (taskId) =>
          Effect.all([rawLogin(server, taskId, FROM, FileRole.Sender), rawLogin(server, taskId, TO, FileRole.Receiver)], {
            concurrency: 2
          }).pipe(Effect.map(([sender, receiver]) => ({ taskId, sender, receiver }))),
        { concurrency: "unbounded" }
      )
      for (const { taskId, receiver } of pairs) {
        const ready = yield* receiver.expect(Pdu.State)
        expect(ready.msg).toMatchObject({ state: FileState.PeerReady, taskId, userId: FROM })
        expect(ready.seq).toBe(0)
      }
      for (const { sender, receiver } of pairs) {
        yield* receiver.expectQuiet(0)
        yield* sender.expectQuiet(0)
      }
      yield* Effect.sleep(50)
      for (const { sender, receiver } of pairs) {
        expect(receiver.pending()).toEqual([])
        expect(sender.pending()).toEqual([])
      }
    })
  )

  it.scopedLive("two connections racing for the sender role: exactly one is accepted", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      for (let round = 0; round < 10; round++) {
        const taskId = yield* onlineTask(server, 10)
        const conns = yield* Effect.all([rawConnect(server.client), rawConnect(server.client), rawConnect(server.client)])
        for (const c of conns) c.send(loginPdu(round + 1, taskId, FROM, FileRole.Sender))
        const results = yield* Effect.forEach(conns, (c) => c.expect(Pdu.LoginRes).pipe(Effect.map((r) => r.msg.resultCode)))
        expect(results.filter((r) => r === ResultCode.Ok).length).toBe(1)
        for (const [i, c] of conns.entries()) {
          if (results[i] !== ResultCode.Ok) yield* c.expectClosed()
        }
        // The winner is the sender: a receiver gets PEER_READY.
        const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
        expect((yield* receiver.expect(Pdu.State)).msg.state).toBe(FileState.PeerReady)
      }
    })
  )

  it.scopedLive("a party that logs in and disconnects at once leaves its slot free", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const taskId = yield* onlineTask(server, 10)
      for (let i = 0; i < 5; i++) {
        const conn = yield* rawConnect(server.client)
        conn.send(loginPdu(1, taskId, FROM, FileRole.Sender))
        conn.destroy()
      }
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender).pipe(
        Effect.retry({ times: 50, schedule: Schedule.spaced("20 millis") })
      )
      const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      expect((yield* receiver.expect(Pdu.State)).msg.state).toBe(FileState.PeerReady)
      yield* sender.expectQuiet(20)
      expect(server.registry.size()).toBe(1)
    })
  )
})
