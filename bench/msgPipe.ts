/**
 * The msg port as a msg_server uses it, pipelined: any number of
 * TRANSFER_REQs in flight on one connection, answers matched by seq (the
 * SDK's msg link waits for each answer before the next request).
 */
import { Deferred, Duration, Effect, Either } from "effect"
import type { Scope } from "effect"
import * as Client from "../src/client/index.js"
import { frameBody } from "../src/protocol/frame.js"
import type { TransferRsp } from "../src/protocol/messages.js"
import type { NewTask } from "../src/task/registry.js"
import { encodePdu, isPdu, Pdu } from "../src/protocol/messages.js"
import { asBench, BenchError, fail } from "./errors.js"
import type { Address } from "./targets.js"

export interface MsgPipe {
  readonly createTask: (task: NewTask) => Effect.Effect<TransferRsp, BenchError>
}

export const openMsgPipe = (msg: Address): Effect.Effect<MsgPipe, BenchError, Scope.Scope> =>
  Effect.gen(function* () {
    const sock = yield* Client.connect(msg).pipe(Effect.mapError(asBench("msg port")))
    const pending = new Map<number, Deferred.Deferred<TransferRsp, BenchError>>()
    let seq = 0
    let closed: BenchError | undefined
    const failAll = (e: BenchError) => {
      closed = e
      for (const d of pending.values()) Deferred.unsafeDone(d, Effect.fail(e))
      pending.clear()
    }
    yield* sock.receive.pipe(
      Effect.flatMap((frames) =>
        Effect.sync(() => {
          for (const f of frames) {
            if (!isPdu(f, Pdu.TransferRsp)) continue
            const d = pending.get(f.seq)
            if (d === undefined) continue
            pending.delete(f.seq)
            const body = Pdu.TransferRsp.decodeBody(frameBody(f))
            Deferred.unsafeDone(d, Either.isLeft(body) ? Effect.fail(fail(`TRANSFER_RSP undecodable: ${body.left.message}`)) : Effect.succeed(body.right))
          }
        })
      ),
      Effect.forever,
      Effect.catchAll((e) => Effect.sync(() => failAll(fail(`msg link: [${e.reason}] ${e.message}`)))),
      Effect.forkScoped
    )
    // A msg_server heartbeats its link; without it the daemon closes an idle one (--msg-idle-timeout).
    yield* Client.keepAlive(sock, Duration.seconds(10))
    return {
      createTask: (task) =>
        Effect.gen(function* () {
          if (closed) return yield* closed
          do seq = (seq % 0xffff) + 1
          while (pending.has(seq))
          const d = yield* Deferred.make<TransferRsp, BenchError>()
          pending.set(seq, d)
          sock.send(
            encodePdu(Pdu.TransferReq, seq, {
              fromUserId: task.fromUserId,
              toUserId: task.toUserId,
              fileName: task.fileName,
              fileSize: task.fileSize,
              transMode: task.mode
            })
          )
          return yield* Deferred.await(d)
        })
    }
  })

/** A task id from the pipe; a refusal (result_code not 0) is an error. */
export const createTaskId = (pipe: MsgPipe) => (task: NewTask): Effect.Effect<string, BenchError> =>
  pipe.createTask(task).pipe(
    Effect.flatMap((rsp) =>
      rsp.resultCode === 0 && rsp.taskId ? Effect.succeed(rsp.taskId) : Effect.fail(fail(`task creation refused (result ${rsp.resultCode})`))
    )
  )
