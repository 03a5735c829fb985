import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Client from "../../src/client/index.js"
import { TransferMode } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import { heartbeatPdu, rawConnect } from "../support/raw.js"
import { eventually, startServer } from "../support/server.js"

const task = { fromUserId: 1, toUserId: 2, fileName: "f", fileSize: 10, mode: TransferMode.Online } as const

describe("connection limits", () => {
  it.scopedLive("--max-connections-per-ip: one more from the same address is closed on accept; closing one makes room", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxConnectionsPerIp: 2 })
      const a = yield* rawConnect(server.client)
      const b = yield* rawConnect(server.client)
      // Both are served (a heartbeat is echoed) and counted.
      a.send(heartbeatPdu(1))
      b.send(heartbeatPdu(2))
      yield* a.expect(Pdu.HeartBeat)
      yield* b.expect(Pdu.HeartBeat)
      expect(server.openConnections().client).toBe(2)
      const c = yield* rawConnect(server.client)
      yield* c.expectClosed()
      expect(server.openConnections().client).toBe(2)
      a.destroy()
      yield* eventually(() => server.openConnections().client === 1)
      const d = yield* rawConnect(server.client)
      d.send(heartbeatPdu(3))
      expect((yield* d.expect(Pdu.HeartBeat)).seq).toBe(3)
    })
  )

  it.scopedLive("--max-connections counts every client connection; the msg port is counted apart", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxConnections: 1 })
      const a = yield* rawConnect(server.client)
      a.send(heartbeatPdu(1))
      yield* a.expect(Pdu.HeartBeat)
      const b = yield* rawConnect(server.client)
      yield* b.expectClosed()
      // msg_server still gets in.
      const link = yield* Client.connectMsgLink(server.msg)
      expect((yield* link.createTask(task)).resultCode).toBe(0)
      expect(server.openConnections()).toEqual({ client: 1, msg: 1 })
    })
  )

  it.scopedLive("--max-tasks: task creation beyond it gets result_code 1, the link stays open, room comes back when tasks end", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxTasks: 2, taskTimeoutMs: 300 })
      const link = yield* Client.connectMsgLink(server.msg)
      expect((yield* link.createTask(task)).resultCode).toBe(0)
      expect((yield* link.createTask(task)).resultCode).toBe(0)
      const refused = yield* link.createTask(task)
      expect(refused.resultCode).toBe(1)
      expect(refused.taskId).toBe("")
      yield* eventually(() => server.registry.size() === 0)
      expect((yield* link.createTask(task)).resultCode).toBe(0)
    })
  )
})

describe("msg_server port allow-list", () => {
  it.scopedLive("a peer outside --msg-allow is refused on accept; the client port is not affected", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ msgAllow: ["10.0.0.0/8"] })
      const outsider = yield* rawConnect(server.msg)
      yield* outsider.expectClosed()
      expect(server.openConnections().msg).toBe(0)
      const client = yield* rawConnect(server.client)
      client.send(heartbeatPdu(4))
      yield* client.expect(Pdu.HeartBeat)
    })
  )

  it.scopedLive("the default allows loopback only, and a listed address or block gets in", () =>
    Effect.gen(function* () {
      for (const msgAllow of [undefined, ["127.0.0.1"], ["127.0.0.0/8", "2001:db8::/32"]]) {
        const server = yield* startServer(msgAllow === undefined ? {} : { msgAllow })
        const link = yield* Client.connectMsgLink(server.msg)
        expect((yield* link.serverAddresses).length).toBe(1)
      }
    })
  )
})
