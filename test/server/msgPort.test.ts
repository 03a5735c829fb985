import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { networkInterfaces } from "node:os"
import * as Client from "../../src/client/index.js"
import { FileRole, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { HEADER_BYTES } from "../../src/protocol/header.js"
import type { TransferReq, TransferRsp } from "../../src/protocol/messages.js"
import { encodePdu, Pdu } from "../../src/protocol/messages.js"
import type { RawConn } from "../support/raw.js"
import { heartbeatPdu, loginPdu, rawConnect, rawLogin, rawPdu } from "../support/raw.js"
import { startServer } from "../support/server.js"

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const ipRequest = (link: RawConn, seq: number) =>
  Effect.gen(function* () {
    link.send(encodePdu(Pdu.ServerIpReq, seq, {}))
    const rsp = yield* link.expect(Pdu.ServerIpRsp)
    expect(rsp.seq).toBe(seq)
    return rsp.msg.ipAddrList.map((a) => ({ ip: a.ip, port: a.port }))
  })

const transferRequest = (link: RawConn, seq: number, req: TransferReq) =>
  Effect.gen(function* () {
    link.send(encodePdu(Pdu.TransferReq, seq, req))
    const rsp = yield* link.expect(Pdu.TransferRsp)
    expect(rsp.seq).toBe(seq)
    return rsp
  })

const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k)

const expectFailed = (msg: TransferRsp) => {
  expect(msg.resultCode).toBe(ResultCode.Failed)
  expect(msg.taskId ?? "").toBe("")
}

describe("msg port: FILE_SERVER_IP_REQ", () => {
  it.scopedLive("answers with the client listener (127.0.0.1 and its bound port) and the request's seq", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const link = yield* rawConnect(server.msg)
      expect(yield* ipRequest(link, 0x2345)).toEqual([{ ip: "127.0.0.1", port: server.client.port }])
      expect(yield* ipRequest(link, 0)).toEqual([{ ip: "127.0.0.1", port: server.client.port }])
    })
  )

  it.scopedLive("answers with the advertise entries when set; an entry without a port takes the client port", () =>
    Effect.gen(function* () {
      const server = yield* startServer({
        advertise: [
          { ip: "203.0.113.7", port: 9000 },
          { ip: "files.example.org", port: undefined }
        ]
      })
      const link = yield* rawConnect(server.msg)
      expect(yield* ipRequest(link, 9)).toEqual([
        { ip: "203.0.113.7", port: 9000 },
        { ip: "files.example.org", port: server.client.port }
      ])
    })
  )

  it.scopedLive("with two client listeners, the list names both; a sender on one and a receiver on the other complete a transfer", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ clientHosts: ["127.0.0.1", "127.0.0.2"] })
      const link = yield* rawConnect(server.msg)
      const list = yield* ipRequest(link, 1)
      expect(list.map((a) => a.ip)).toEqual(["127.0.0.1", "127.0.0.2"])
      expect(list[0]!.port).toBe(server.client.port)
      const data = randomBytes(70_000)
      const rsp = yield* transferRequest(link, 2, { fromUserId: 1, toUserId: 2, fileName: "x", fileSize: data.length, transMode: TransferMode.Online })
      const taskId = rsp.msg.taskId!
      const sender = yield* Client.connect({ host: list[0]!.ip, port: list[0]!.port })
      const receiver = yield* Client.connect({ host: list[1]!.ip, port: list[1]!.port })
      yield* Client.login(sender, { taskId, userId: 1, role: FileRole.Sender })
      yield* Client.login(receiver, { taskId, userId: 2, role: FileRole.Receiver })
      const sink = Client.memorySink()
      yield* Effect.all(
        [
          Client.serveFile(sender, { taskId, userId: 1, source: Client.sourceFromBuffer(data) }),
          Client.receiveFile(receiver, { taskId, userId: 2, sink, size: data.length })
        ],
        { concurrency: 2 }
      )
      expect(sink.bytes().equals(data)).toBe(true)
    })
  )

  it.scopedLive("a wildcard client listener (0.0.0.0) is advertised as a concrete IPv4 address of this machine", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ clientHosts: ["0.0.0.0"] })
      const link = yield* rawConnect(server.msg)
      const list = yield* ipRequest(link, 1)
      expect(list.length).toBe(1)
      expect(list[0]!.port).toBe(server.client.port)
      const own = Object.values(networkInterfaces())
        .flatMap((a) => a ?? [])
        .filter((a) => a.family === "IPv4")
        .map((a) => a.address)
      expect(list[0]!.ip).not.toBe("0.0.0.0")
      expect(own).toContain(list[0]!.ip)
    })
  )

  it.scopedLive("the SDK msg link reads the same list", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const link = yield* Client.connectMsgLink(server.msg)
      const list = yield* link.serverAddresses
      expect(list.map((a) => ({ ip: a.ip, port: a.port }))).toEqual([{ ip: "127.0.0.1", port: server.client.port }])
    })
  )
})

describe("msg port: FILE_TRANSFER_REQ", () => {
  it.scopedLive("creates a task with a canonical lowercase UUID and echoes every field and the seq; attach_data present and empty when none was sent", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const link = yield* rawConnect(server.msg)
      const req = { fromUserId: 11, toUserId: 22, fileName: "report.pdf", fileSize: 123_456, transMode: TransferMode.Online }
      const rsp = yield* transferRequest(link, 0x7001, req)
      expect(rsp.msg).toMatchObject({ resultCode: ResultCode.Ok, ...req })
      expect(rsp.msg.taskId).toMatch(CANONICAL_UUID)
      // attach_data is on the wire (field 20, empty), not merely defaulted by the decoder.
      expect(hasOwn(rsp.msg, "attachData")).toBe(true)
      expect(rsp.msg.attachData?.length).toBe(0)
      expect(rsp.frame.raw.subarray(HEADER_BYTES).subarray(-3).equals(Buffer.from([0xa2, 0x01, 0x00]))).toBe(true)
      // The task exists, as asked.
      expect(server.registry.size()).toBe(1)
      const task = server.registry.get(rsp.msg.taskId!)
      expect(task?.spec).toMatchObject({ fromUserId: 11, toUserId: 22, fileName: "report.pdf", fileSize: 123_456, mode: TransferMode.Online })
      // And clients can log in to it.
      yield* rawLogin(server, rsp.msg.taskId!, 11, FileRole.Sender)
    })
  )

  it.scopedLive("echoes attach_data byte for byte", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const link = yield* rawConnect(server.msg)
      const attachData = Buffer.from([0, 1, 2, 0xff, 0x80, 0x7f, 0])
      const rsp = yield* transferRequest(link, 3, {
        fromUserId: 1,
        toUserId: 2,
        fileName: "a",
        fileSize: 1,
        transMode: TransferMode.Online,
        attachData
      })
      expect(rsp.msg.resultCode).toBe(ResultCode.Ok)
      expect(Buffer.from(rsp.msg.attachData ?? []).equals(attachData)).toBe(true)
    })
  )

  it.scopedLive("echoes extreme values: a non-ASCII file name, the largest uint32 size and user ids", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const link = yield* rawConnect(server.msg)
      const req = { fromUserId: 0xffffffff, toUserId: 0, fileName: "文件 ✓ ünï.txt", fileSize: 0xffffffff, transMode: TransferMode.Online }
      const rsp = yield* transferRequest(link, 0xffff, req)
      expect(rsp.msg).toMatchObject({ resultCode: ResultCode.Ok, ...req })
      expect(rsp.msg.taskId).toMatch(CANONICAL_UUID)
    })
  )

  it.scopedLive("every task gets a fresh id", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const link = yield* Client.connectMsgLink(server.msg)
      const ids = new Set<string>()
      for (let i = 0; i < 50; i++) {
        const rsp = yield* link.createTask({ fromUserId: 1, toUserId: 2, fileName: `f${i}`, fileSize: i, mode: TransferMode.Online })
        expect(rsp.resultCode).toBe(ResultCode.Ok)
        expect(rsp.taskId).toMatch(CANONICAL_UUID)
        ids.add(rsp.taskId!)
      }
      expect(ids.size).toBe(50)
      expect(server.registry.size()).toBe(50)
    })
  )

  for (const [name, body] of [
    ["an empty body (required fields missing)", Buffer.alloc(0)],
    ["garbage bytes", Buffer.from([0xff, 0xff, 0xff, 0xff])],
    ["a truncated field", Buffer.from([0x08, 0x01, 0x10, 0x02, 0x1a, 0x10, 0x41])],
    ["a body without file_size", Buffer.from(Pdu.Request.encodeBody({ fromUserId: 1, toUserId: 2, fileName: "x", fileSize: 1, transMode: 1 })).subarray(0, 7)]
  ] as const) {
    it.scopedLive(`an undecodable TRANSFER_REQ (${name}) gets result_code 1 with its seq; the link stays open`, () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const link = yield* rawConnect(server.msg)
        link.send(rawPdu(Pdu.TransferReq, 0x0a0b, body))
        const rsp = yield* link.expect(Pdu.TransferRsp)
        expect(rsp.seq).toBe(0x0a0b)
        expectFailed(rsp.msg)
        expect(server.registry.size()).toBe(0)
        // Still open and serving.
        expect(yield* ipRequest(link, 0x0a0c)).toEqual([{ ip: "127.0.0.1", port: server.client.port }])
        const ok = yield* transferRequest(link, 0x0a0d, { fromUserId: 1, toUserId: 2, fileName: "x", fileSize: 5, transMode: TransferMode.Online })
        expect(ok.msg.resultCode).toBe(ResultCode.Ok)
      })
    )
  }

  for (const transMode of [0, 3, 0x7fffffff]) {
    it.scopedLive(`trans_mode ${transMode} gets result_code 1 with its seq; no task; the link stays open`, () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const link = yield* rawConnect(server.msg)
        const rsp = yield* transferRequest(link, 0x0b00 + (transMode & 0xff), {
          fromUserId: 1,
          toUserId: 2,
          fileName: "x",
          fileSize: 5,
          transMode: transMode as TransferMode
        })
        expectFailed(rsp.msg)
        expect(server.registry.size()).toBe(0)
        expect(yield* ipRequest(link, 1)).toEqual([{ ip: "127.0.0.1", port: server.client.port }])
      })
    )
  }

  it.scopedLive("a batch of requests in one write is answered in order, each with its own seq", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const link = yield* rawConnect(server.msg)
      const good = { fromUserId: 5, toUserId: 6, fileName: "g", fileSize: 10, transMode: TransferMode.Online }
      link.send(
        encodePdu(Pdu.ServerIpReq, 1, {}),
        encodePdu(Pdu.TransferReq, 2, good),
        heartbeatPdu(3),
        rawPdu(Pdu.TransferReq, 4, Buffer.from([0xff])),
        // Unexpected on this port: ignored.
        loginPdu(5, "x", 1, 1),
        encodePdu(Pdu.TransferReq, 6, { ...good, fileName: "h" }),
        encodePdu(Pdu.ServerIpReq, 7, {})
      )
      expect((yield* link.expect(Pdu.ServerIpRsp)).seq).toBe(1)
      const a = yield* link.expect(Pdu.TransferRsp)
      expect(a.seq).toBe(2)
      expect(a.msg).toMatchObject({ resultCode: 0, fileName: "g" })
      expect((yield* link.expect(Pdu.HeartBeat)).seq).toBe(3)
      const b = yield* link.expect(Pdu.TransferRsp)
      expect(b.seq).toBe(4)
      expectFailed(b.msg)
      const c = yield* link.expect(Pdu.TransferRsp)
      expect(c.seq).toBe(6)
      expect(c.msg).toMatchObject({ resultCode: 0, fileName: "h" })
      expect((yield* link.expect(Pdu.ServerIpRsp)).seq).toBe(7)
      yield* link.expectQuiet(50)
      expect(server.registry.size()).toBe(2)
    })
  )

  it.scopedLive("several msg links at once are served independently", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const links = yield* Effect.all([rawConnect(server.msg), rawConnect(server.msg), rawConnect(server.msg)])
      for (const [i, link] of links.entries()) link.send(encodePdu(Pdu.ServerIpReq, 100 + i, {}))
      for (const [i, link] of links.entries()) expect((yield* link.expect(Pdu.ServerIpRsp)).seq).toBe(100 + i)
    })
  )
})
