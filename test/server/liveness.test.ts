import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { FileRole, FileState } from "../../src/protocol/commands.js"
import { HEADER_BYTES } from "../../src/protocol/header.js"
import { Pdu } from "../../src/protocol/messages.js"
import type { RawConn } from "../support/raw.js"
import { FROM, TO, heartbeatPdu, loginPdu, onlineTask, rawConnect, rawLogin, rawPair } from "../support/raw.js"
import { eventually, startServer } from "../support/server.js"

/** Sends a heartbeat and checks the echo: same seq, empty body, same bytes. */
const echo = (conn: RawConn, seq: number) =>
  Effect.gen(function* () {
    const hb = heartbeatPdu(seq)
    conn.send(hb)
    const got = yield* conn.expect(Pdu.HeartBeat)
    expect(got.seq).toBe(seq)
    expect(got.frame.raw.length).toBe(HEADER_BYTES)
    expect(got.frame.raw.equals(hb)).toBe(true)
  })

/** Heartbeats every `everyMs` for `forMs`, each one echoed. */
const keepAlive = (conn: RawConn, everyMs: number, forMs: number) =>
  Effect.gen(function* () {
    const until = Date.now() + forMs
    let seq = 1
    while (Date.now() < until) {
      yield* echo(conn, seq++)
      yield* Effect.sleep(everyMs)
    }
  })

describe("heartbeats", () => {
  it.scopedLive("the client port echoes heartbeats (same seq, empty body) before and after login", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const conn = yield* rawConnect(server.client)
      yield* echo(conn, 0)
      yield* echo(conn, 0xbeef)
      yield* echo(conn, 0xffff)
      const taskId = yield* onlineTask(server, 10)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      yield* echo(sender, 17)
      const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      yield* receiver.expect(Pdu.State)
      yield* echo(receiver, 18)
      yield* echo(sender, 19)
      // Several in one write, answered in order.
      sender.send(heartbeatPdu(100), heartbeatPdu(101), heartbeatPdu(102))
      for (const seq of [100, 101, 102]) expect((yield* sender.expect(Pdu.HeartBeat)).seq).toBe(seq)
    })
  )

  it.scopedLive("the msg port echoes heartbeats (same seq, empty body)", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const link = yield* rawConnect(server.msg)
      yield* echo(link, 0)
      yield* echo(link, 4321)
      link.send(heartbeatPdu(7), heartbeatPdu(8))
      expect((yield* link.expect(Pdu.HeartBeat)).seq).toBe(7)
      expect((yield* link.expect(Pdu.HeartBeat)).seq).toBe(8)
    })
  )
})

describe("client idle timeout", () => {
  it.scopedLive("a silent logged-in client is closed after clientIdleTimeoutMs, not before", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ clientIdleTimeoutMs: 500 })
      const taskId = yield* onlineTask(server, 10)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      yield* sender.expectQuiet(200)
      yield* sender.expectClosed(2000)
      // The task outlives its lone party's connection.
      expect(server.registry.size()).toBe(1)
    })
  )

  it.scopedLive("heartbeats keep a logged-in client alive; once they stop it is closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ clientIdleTimeoutMs: 300 })
      const taskId = yield* onlineTask(server, 10)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      yield* keepAlive(sender, 100, 900)
      expect(sender.isClosed()).toBe(false)
      yield* sender.expectClosed(2000)
    })
  )

  it.scopedLive("when the sender idles out, the heartbeating receiver gets CANCEL and is closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ clientIdleTimeoutMs: 300 })
      const taskId = yield* onlineTask(server, 10)
      const { sender, receiver } = yield* rawPair(server, taskId)
      // The receiver heartbeats; the sender says nothing.
      const beating = yield* Effect.fork(
        Effect.gen(function* () {
          for (let seq = 1; ; seq++) {
            receiver.send(heartbeatPdu(seq))
            yield* Effect.sleep(100)
          }
        })
      )
      yield* sender.expectClosed(2000)
      for (;;) {
        const frame = yield* receiver.next(2000)
        if (Pdu.HeartBeat.commandId === frame.commandId && frame.serviceId === Pdu.HeartBeat.serviceId) continue
        expect(frame.commandId).toBe(Pdu.State.commandId)
        const msg = Pdu.State.decodeBody(frame.raw.subarray(HEADER_BYTES))
        expect(msg).toMatchObject({ right: { state: FileState.Cancel, taskId } })
        break
      }
      yield* receiver.expectClosed(2000)
      yield* Fiber.interrupt(beating)
      yield* eventually(() => server.registry.size() === 0)
    })
  )
})

describe("login timeout", () => {
  it.scopedLive("a connection that never logs in is closed after loginTimeoutMs, not before", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ loginTimeoutMs: 500 })
      const conn = yield* rawConnect(server.client)
      yield* conn.expectQuiet(200)
      yield* conn.expectClosed(2000)
    })
  )

  it.scopedLive("heartbeats do not stand in for a login", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ loginTimeoutMs: 300 })
      const conn = yield* rawConnect(server.client)
      const beating = yield* Effect.fork(keepAlive(conn, 50, 5000).pipe(Effect.ignore))
      yield* eventually(() => conn.isClosed(), 2000)
      yield* Fiber.interrupt(beating)
    })
  )

  it.scopedLive("a logged-in connection is not closed by the login timeout", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ loginTimeoutMs: 200 })
      const taskId = yield* onlineTask(server, 10)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      yield* sender.expectQuiet(500)
      // And it still works.
      const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
      expect((yield* receiver.expect(Pdu.State)).msg.state).toBe(FileState.PeerReady)
    })
  )
})

describe("msg link idle timeout", () => {
  it.scopedLive("a silent msg link is closed after msgIdleTimeoutMs, not before", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ msgIdleTimeoutMs: 500 })
      const link = yield* rawConnect(server.msg)
      yield* link.expectQuiet(200)
      yield* link.expectClosed(2000)
    })
  )

  it.scopedLive("heartbeats keep a msg link alive; once they stop it is closed", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ msgIdleTimeoutMs: 300 })
      const link = yield* rawConnect(server.msg)
      yield* keepAlive(link, 100, 900)
      expect(link.isClosed()).toBe(false)
      yield* link.expectClosed(2000)
    })
  )

  it.scopedLive("the msg idle timeout does not apply to client connections", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ msgIdleTimeoutMs: 200, clientIdleTimeoutMs: 60_000 })
      const taskId = yield* onlineTask(server, 10)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      yield* sender.expectQuiet(500)
    })
  )
})

describe("task timeout", () => {
  it.scopedLive("an online task nobody connects to ends within a second of taskTimeoutMs, not before", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ taskTimeoutMs: 400 })
      const before = Date.now()
      const taskId = yield* onlineTask(server, 10)
      const created = Date.now()
      expect(server.registry.size()).toBe(1)
      yield* Effect.sleep(100)
      expect(server.registry.size()).toBe(1)
      yield* eventually(() => server.registry.size() === 0, 2000)
      const endedAt = Date.now()
      // Not before the deadline (the task was created between `before` and `created`)...
      expect(endedAt - before).toBeGreaterThanOrEqual(400)
      // ...and within a second of it.
      expect(endedAt - created).toBeLessThanOrEqual(1400)
      // An expired task cannot be joined.
      const sender = yield* rawConnect(server.client)
      sender.send(loginPdu(1, taskId, FROM, FileRole.Sender))
      expect((yield* sender.expect(Pdu.LoginRes)).msg.resultCode).toBe(1)
    })
  )

  it.scopedLive("a task with a party connected does not expire; once the party leaves the clock starts again", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ taskTimeoutMs: 200 })
      const taskId = yield* onlineTask(server, 10)
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      yield* sender.expectQuiet(600)
      expect(server.registry.size()).toBe(1)
      sender.destroy()
      const left = Date.now()
      yield* Effect.sleep(100)
      expect(server.registry.size()).toBe(1)
      yield* eventually(() => server.registry.size() === 0, 2000)
      expect(Date.now() - left).toBeGreaterThanOrEqual(190)
      expect(Date.now() - left).toBeLessThanOrEqual(1200)
    })
  )

  it.scopedLive("many idle tasks all expire", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ taskTimeoutMs: 1000 })
      yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => onlineTask(server, i), { concurrency: 5 })
      expect(server.registry.size()).toBe(20)
      yield* eventually(() => server.registry.size() === 0, 3000)
    })
  )
})
