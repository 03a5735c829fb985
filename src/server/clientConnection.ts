import { Deferred, Effect, Either } from "effect"
import type { Socket } from "node:net"
import { makeConnection } from "../connection/connection.js"
import type { FastPath } from "../connection/frameSource.js"
import { runPipeline } from "../connection/pipeline.js"
import { makeUnknownPduLog } from "../connection/unknownPdu.js"
import { afterTimeout, watchIdle } from "../connection/watchdog.js"
import type { Counter } from "../observability/metrics.js"
import { countFrameError, Metrics } from "../observability/metrics.js"
import { FileCmd, OtherCmd, ResultCode, ServiceId } from "../protocol/commands.js"
import { decodeDataBlock, encodePullDataRspHead } from "../protocol/dataBlock.js"
import type { Frame } from "../protocol/frame.js"
import { frameBody } from "../protocol/frame.js"
import { encodePdu, Pdu, peekStringField } from "../protocol/messages.js"
import type { LoginResult, Mail } from "../task/actor.js"
import type { TaskHandle } from "../task/registry.js"
import { TaskRegistry } from "../task/registry.js"
import { isCanonicalTaskId, shortTaskId } from "../task/spec.js"
import { ServerConfig } from "./config.js"

/** FILE_SERVER_ERRNO_PULL_DATA_WITH_INVALID_TASK_ID: the answer to a pull the server cannot make sense of. */
const INVALID_PULL = 5

/** The PULL_DATA_RSP refusing an undecodable pull: its seq, what could be read of its task id, no data. */
const pullRefusal = (frame: Frame): Buffer =>
  encodePullDataRspHead({ seq: frame.seq, resultCode: INVALID_PULL, taskId: peekStringField(frameBody(frame), 1), userId: 0, offset: 0, dataLength: 0 })

const roleName = (role: number) =>
  role === 1 ? "sender" : role === 2 ? "receiver" : role === 3 ? "uploader" : role === 4 ? "downloader" : `role-${role}`

/**
 * One client connection: socket -> frames -> PDUs. Before login only LOGIN_REQ
 * and heartbeats are accepted; after it, transfer PDUs are decoded, checked for
 * shape and posted to the task actor, which applies the protocol rules: as they
 * arrive (`fast`), or a batch at a time by this connection's fiber.
 */
export const handleClientConnection = (socket: Socket): Effect.Effect<void, never, TaskRegistry | ServerConfig | Metrics> =>
  Effect.gen(function* () {
    const config = yield* ServerConfig
    const registry = yield* TaskRegistry
    const rejected = (yield* Metrics).framesRejected.client
    const conn = yield* makeConnection(socket)
    yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
    const startedAt = Date.now()
    const activity = { last: startedAt }
    /** The task this connection posted a login to: it must hear when the connection goes. */
    let joined: TaskHandle | undefined
    let session: { readonly task: TaskHandle; readonly userId: number; readonly role: number } | undefined
    const logUnknown = makeUnknownPduLog(rejected["unknown-pdu"])

    yield* watchIdle(activity, config.clientIdleTimeoutMs, () => conn.close("idle timeout"))
    yield* afterTimeout(config.loginTimeoutMs, () => session === undefined && conn.close("login timeout"))

    /** `counter`: the rejected-frames count of a LOGIN_REQ refused before it reached a task. */
    const refuseLogin = (seq: number, taskId: string, reason: string, counter?: Counter) =>
      Effect.sync(() => {
        counter?.inc()
        conn.write(encodePdu(Pdu.LoginRes, seq, { resultCode: ResultCode.Failed, taskId }))
        conn.close(`login refused: ${reason}`)
      }).pipe(Effect.zipRight(Effect.logInfo("login refused").pipe(Effect.annotateLogs({ reason }))))

    const login = (frame: Frame): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (joined !== undefined) {
          rejected["duplicate-login"].inc()
          return conn.close("second LOGIN_REQ on one connection")
        }
        const decoded = Pdu.LoginReq.decodeBody(frameBody(frame))
        if (Either.isLeft(decoded)) return yield* refuseLogin(frame.seq, peekStringField(frameBody(frame), 2), decoded.left.message, rejected.malformed)
        const req = decoded.right
        if (!isCanonicalTaskId(req.taskId)) return yield* refuseLogin(frame.seq, req.taskId, "malformed task id", rejected.malformed)
        const task = yield* registry.find(req.taskId)
        if (task === undefined) return yield* refuseLogin(frame.seq, req.taskId, "unknown task", rejected["unknown-task"])
        const reply = yield* Deferred.make<LoginResult>()
        const posted = yield* task.post({
          _tag: "Login",
          conn: conn.id,
          seq: frame.seq,
          userId: req.userId,
          role: req.fileRole,
          connection: conn,
          taskIdAsSent: req.taskId,
          reply
        })
        if (!posted) return yield* refuseLogin(frame.seq, req.taskId, "task has ended")
        joined = task
        const result = yield* Effect.raceFirst(
          Deferred.await(reply),
          Deferred.await(conn.closed).pipe(Effect.as<LoginResult>({ ok: false, reason: "connection closed" }))
        )
        const details = { task: shortTaskId(req.taskId), user: req.userId, role: roleName(req.fileRole) }
        if (result.ok) {
          session = { task, userId: req.userId, role: req.fileRole }
          yield* Effect.logInfo("login").pipe(Effect.annotateLogs(details))
        } else {
          yield* Effect.logInfo("login refused").pipe(Effect.annotateLogs({ ...details, reason: result.reason }))
        }
      })

    const transferMail = (frame: Frame): Mail | string => {
      if (session === undefined) return "transfer PDU before login"
      switch (frame.commandId) {
        case FileCmd.PullDataReq: {
          const d = Pdu.PullDataReq.decodeBody(frameBody(frame))
          return Either.isLeft(d) ? d.left.message : { _tag: "PullReq", conn: conn.id, seq: frame.seq, msg: d.right, raw: frame.parts }
        }
        case FileCmd.PullDataRsp: {
          const d = decodeDataBlock(frame)
          return Either.isLeft(d) ? d.left.message : { _tag: "PullRsp", conn: conn.id, seq: frame.seq, msg: d.right, raw: frame.parts }
        }
        default: {
          const d = Pdu.State.decodeBody(frameBody(frame))
          return Either.isLeft(d) ? d.left.message : { _tag: "State", conn: conn.id, seq: frame.seq, msg: d.right, raw: frame.parts }
        }
      }
    }

    const isTransferPdu = (frame: Frame) =>
      frame.serviceId === ServiceId.File &&
      (frame.commandId === FileCmd.PullDataReq || frame.commandId === FileCmd.PullDataRsp || frame.commandId === FileCmd.State)

    /**
     * The per-block path, taken as frames arrive without waking this connection's fiber: a
     * logged-in party's transfer PDU that decodes goes straight into its task's mailbox.
     * Anything else (a login, a heartbeat, a malformed or unknown PDU, a peer that is not
     * reading what it asked for, a full mailbox) is declined, and `handleFrames` takes it, in order.
     */
    const fast: FastPath = (frame) => {
      if (session === undefined || socket.writableNeedDrain || conn.isClosing() || !isTransferPdu(frame)) return false
      const mail = transferMail(frame)
      if (typeof mail === "string" || !session.task.tryPost(mail)) return false
      activity.last = Date.now()
      return true
    }

    const handleFrames = (frames: Iterable<Frame>): Effect.Effect<void> =>
      Effect.gen(function* () {
        activity.last = Date.now()
        // A peer that is not reading what it asked for gets no more of its requests read:
        // its socket stays paused, and TCP stops it sending more.
        if (socket.writableNeedDrain) yield* conn.awaitDrain
        const mail: Array<Mail> = []
        for (const frame of frames) {
          if (conn.isClosing()) break
          if (frame.serviceId === ServiceId.Other && frame.commandId === OtherCmd.HeartBeat) {
            for (const part of frame.parts) conn.write(part)
            continue
          }
          if (frame.serviceId === ServiceId.File) {
            if (frame.commandId === FileCmd.LoginReq) {
              yield* login(frame)
              continue
            }
            if (isTransferPdu(frame)) {
              const m = transferMail(frame)
              if (typeof m === "string") {
                rejected[session === undefined ? "before-login" : "malformed"].inc()
                yield* Effect.logWarning("protocol error").pipe(Effect.annotateLogs({ reason: m }))
                // A pull has an error reply in the protocol: PULL_DATA_RSP with a non-zero result.
                if (frame.commandId === FileCmd.PullDataReq) conn.write(pullRefusal(frame))
                conn.close(m)
                break
              }
              mail.push(m)
              continue
            }
          }
          yield* logUnknown(frame)
        }
        if (mail.length > 0 && session !== undefined && !(yield* session.task.postAll(mail))) conn.close("task has ended")
      })

    yield* runPipeline(conn, config.maxFrameBytes, handleFrames, countFrameError(rejected), fast)
    if (joined !== undefined) yield* joined.post({ _tag: "Left", conn: conn.id })
    yield* Effect.logInfo("client disconnected").pipe(
      Effect.annotateLogs({
        reason: conn.closeReason() ?? "peer closed",
        durationMs: Date.now() - startedAt,
        bytesIn: socket.bytesRead,
        bytesOut: socket.bytesWritten,
        ...(logUnknown.count() > 0 ? { unexpectedPdus: logUnknown.count() } : {}),
        ...(session ? { task: shortTaskId(session.task.spec.taskId), user: session.userId, role: roleName(session.role) } : {})
      })
    )
  }).pipe(Effect.scoped, Effect.annotateLogs({ port: "client", remote: `${socket.remoteAddress}:${socket.remotePort}` }))
