import { Effect, Either } from "effect"
import type { Socket } from "node:net"
import { makeConnection } from "../connection/connection.js"
import { runPipeline } from "../connection/pipeline.js"
import { makeUnknownPduLog } from "../connection/unknownPdu.js"
import { watchIdle } from "../connection/watchdog.js"
import { countFrameError, Metrics } from "../observability/metrics.js"
import { OtherCmd, ResultCode, ServiceId } from "../protocol/commands.js"
import type { Frame } from "../protocol/frame.js"
import { frameBody } from "../protocol/frame.js"
import type { IpAddr, TransferReq } from "../protocol/messages.js"
import { encodePdu, Pdu } from "../protocol/messages.js"
import { TaskRegistry } from "../task/registry.js"
import { shortTaskId } from "../task/spec.js"
import { ServerConfig } from "./config.js"
import { Lifecycle } from "./lifecycle.js"

const EMPTY = new Uint8Array(0)

/**
 * One msg_server link: IP list requests, task creation, heartbeats. A bad
 * request gets result_code 1 and the link stays open; only a framing error
 * (or 30 s of silence) closes it. While the server drains, every task
 * creation gets result_code 1: nobody could connect to a new task.
 */
export const handleMsgConnection =
  (advertised: ReadonlyArray<IpAddr>) =>
  (socket: Socket): Effect.Effect<void, never, TaskRegistry | ServerConfig | Metrics | Lifecycle> =>
    Effect.gen(function* () {
      const config = yield* ServerConfig
      const registry = yield* TaskRegistry
      const rejected = (yield* Metrics).framesRejected.msg
      const lifecycle = yield* Lifecycle
      const conn = yield* makeConnection(socket)
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
      const activity = { last: Date.now() }
      const logUnknown = makeUnknownPduLog(rejected["unknown-pdu"])
      yield* watchIdle(activity, config.msgIdleTimeoutMs, () => conn.close("idle timeout"))
      yield* Effect.logInfo("msg_server connected")

      const transfer = (frame: Frame): Effect.Effect<void> =>
        Effect.gen(function* () {
          const decoded = Pdu.TransferReq.decodeBody(frameBody(frame))
          const fail = (req: Partial<TransferReq>, reason: string) =>
            Effect.sync(() =>
              conn.write(
                encodePdu(Pdu.TransferRsp, frame.seq, {
                  resultCode: ResultCode.Failed,
                  fromUserId: req.fromUserId ?? 0,
                  toUserId: req.toUserId ?? 0,
                  ...(req.fileName !== undefined ? { fileName: req.fileName } : {}),
                  ...(req.fileSize !== undefined ? { fileSize: req.fileSize } : {}),
                  taskId: "",
                  ...(req.transMode !== undefined ? { transMode: req.transMode } : {}),
                  attachData: req.attachData ?? EMPTY
                })
              )
            ).pipe(Effect.zipRight(Effect.logWarning("task creation refused").pipe(Effect.annotateLogs({ reason }))))
          if (Either.isLeft(decoded)) {
            rejected.malformed.inc()
            return yield* fail({}, decoded.left.message)
          }
          const req = decoded.right
          if (lifecycle.isDraining()) return yield* fail(req, "the server is shutting down")
          const created = yield* registry
            .create({ fromUserId: req.fromUserId, toUserId: req.toUserId, fileName: req.fileName, fileSize: req.fileSize, mode: req.transMode })
            .pipe(Effect.either)
          if (Either.isLeft(created)) return yield* fail(req, created.left.reason)
          conn.write(
            encodePdu(Pdu.TransferRsp, frame.seq, {
              resultCode: ResultCode.Ok,
              fromUserId: req.fromUserId,
              toUserId: req.toUserId,
              fileName: req.fileName,
              fileSize: req.fileSize,
              taskId: created.right.taskId,
              transMode: req.transMode,
              attachData: req.attachData ?? EMPTY
            })
          )
          yield* Effect.logDebug("transfer request answered").pipe(Effect.annotateLogs({ task: shortTaskId(created.right.taskId) }))
        })

      const handleFrames = (frames: Iterable<Frame>): Effect.Effect<void> =>
        Effect.gen(function* () {
          activity.last = Date.now()
          for (const frame of frames) {
            if (conn.isClosing()) break
            if (frame.serviceId === ServiceId.Other) {
              if (frame.commandId === OtherCmd.HeartBeat) {
                conn.write(frame.raw)
                continue
              }
              if (frame.commandId === OtherCmd.FileServerIpReq) {
                conn.write(encodePdu(Pdu.ServerIpRsp, frame.seq, { ipAddrList: advertised }))
                continue
              }
              if (frame.commandId === OtherCmd.FileTransferReq) {
                yield* transfer(frame)
                continue
              }
            }
            yield* logUnknown(frame)
          }
        })

      yield* runPipeline(conn, config.maxFrameBytes, handleFrames, countFrameError(rejected))
      yield* Effect.logInfo("msg_server disconnected").pipe(
        Effect.annotateLogs({
          reason: conn.closeReason() ?? "peer closed",
          ...(logUnknown.count() > 0 ? { unexpectedPdus: logUnknown.count() } : {})
        })
      )
    }).pipe(Effect.scoped, Effect.annotateLogs({ port: "msg", remote: `${socket.remoteAddress}:${socket.remotePort}` }))
