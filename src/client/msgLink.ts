import { Effect, Either } from "effect"
import type { Scope } from "effect"
import type { TransferMode } from "../protocol/commands.js"
import { frameBody } from "../protocol/frame.js"
import type { IpAddr, PduType, TransferRsp } from "../protocol/messages.js"
import { encodePdu, isPdu, Pdu } from "../protocol/messages.js"
import { ClientError } from "./errors.js"
import { makeSeq } from "./fileClient.js"
import type { ConnectOptions, PduSocket } from "./pduSocket.js"
import { connect } from "./pduSocket.js"

export interface CreateTask {
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly fileSize: number
  readonly mode: TransferMode
  readonly attachData?: Uint8Array
}

/** What a msg_server does on the file server's msg port: ask for its addresses, create tasks. */
export interface MsgLink {
  readonly socket: PduSocket
  readonly serverAddresses: Effect.Effect<ReadonlyArray<IpAddr>, ClientError>
  /** Asks for a task; the response's result_code says whether it was created. */
  readonly createTask: (task: CreateTask) => Effect.Effect<TransferRsp, ClientError>
}

export const connectMsgLink = (options: ConnectOptions): Effect.Effect<MsgLink, ClientError, Scope.Scope> =>
  Effect.gen(function* () {
    const sock = yield* connect(options)
    const nextSeq = makeSeq()
    const request = <A>(bytes: Buffer, seq: number, expected: PduType<A>): Effect.Effect<A, ClientError> =>
      Effect.gen(function* () {
        sock.send(bytes)
        for (;;) {
          const frame = yield* sock.next
          if (!isPdu(frame, expected) || frame.seq !== seq) continue
          const d = expected.decodeBody(frameBody(frame))
          if (Either.isLeft(d)) return yield* new ClientError({ reason: "Protocol", message: d.left.message })
          return d.right
        }
      })
    return {
      socket: sock,
      serverAddresses: Effect.suspend(() => {
        const seq = nextSeq()
        return request(encodePdu(Pdu.ServerIpReq, seq, {}), seq, Pdu.ServerIpRsp).pipe(Effect.map((r) => r.ipAddrList))
      }),
      createTask: (task) =>
        Effect.suspend(() => {
          const seq = nextSeq()
          const bytes = encodePdu(Pdu.TransferReq, seq, {
            fromUserId: task.fromUserId,
            toUserId: task.toUserId,
            fileName: task.fileName,
            fileSize: task.fileSize,
            transMode: task.mode,
            ...(task.attachData ? { attachData: task.attachData } : {})
          })
          return request(bytes, seq, Pdu.TransferRsp)
        })
    }
  })
