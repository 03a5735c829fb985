import { Chunk, Effect, Option, Stream } from "effect"
import type { Scope } from "effect"
import { connect as netConnect } from "node:net"
import type { Socket } from "node:net"
import { socketFrames } from "../connection/frameSource.js"
import type { Frame } from "../protocol/frame.js"
import { DEFAULT_MAX_FRAME_BYTES } from "../protocol/frame.js"
import { ClientError } from "./errors.js"

export interface ConnectOptions {
  readonly host: string
  readonly port: number
  readonly maxFrameBytes?: number
}

/** A framed TCP connection to a file server or msg port, for one consumer. */
export interface PduSocket {
  readonly socket: Socket
  /** Queues bytes for sending (no wait). */
  readonly send: (bytes: Buffer) => void
  /** Queues several buffers so they leave in one writev. */
  readonly sendAll: (parts: ReadonlyArray<Buffer>) => void
  /** The frames that have arrived (at least one), waiting if none has. */
  readonly receive: Effect.Effect<ReadonlyArray<Frame>, ClientError>
  /** The next single frame. */
  readonly next: Effect.Effect<Frame, ClientError>
  /** Waits until everything sent so far has been handed to the kernel (so closing the scope cannot drop it). */
  readonly flushed: Effect.Effect<void>
}

const EMPTY = Buffer.alloc(0)

/** Opens a connection for the life of the scope; the socket is destroyed when the scope closes. */
export const connect = (options: ConnectOptions): Effect.Effect<PduSocket, ClientError, Scope.Scope> =>
  Effect.gen(function* () {
    const socket = yield* Effect.acquireRelease(
      Effect.async<Socket, ClientError>((resume) => {
        const s = netConnect({ host: options.host, port: options.port, noDelay: true })
        const onError = (e: Error) =>
          resume(Effect.fail(new ClientError({ reason: "Connect", message: `cannot connect to ${options.host}:${options.port}: ${e.message}` })))
        s.once("error", onError)
        s.once("connect", () => {
          s.off("error", onError)
          resume(Effect.succeed(s))
        })
      }),
      (s) => Effect.sync(() => s.destroy())
    )
    const pull = yield* Stream.toPull(socketFrames(socket, { maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES }))
    const receive = pull.pipe(
      Effect.map(Chunk.toReadonlyArray),
      Effect.mapError((e) =>
        Option.isNone(e)
          ? new ClientError({ reason: "Closed", message: "the server closed the connection" })
          : new ClientError({ reason: "Protocol", message: e.value.message })
      )
    )
    let buffered: ReadonlyArray<Frame> = []
    let index = 0
    const next: Effect.Effect<Frame, ClientError> = Effect.suspend(() => {
      if (index < buffered.length) return Effect.succeed(buffered[index++]!)
      return receive.pipe(
        Effect.flatMap((frames) => {
          buffered = frames
          index = 0
          return next
        })
      )
    })
    const takeBuffered = (): ReadonlyArray<Frame> | undefined => {
      if (index >= buffered.length) return undefined
      const rest = buffered.slice(index)
      buffered = []
      index = 0
      return rest
    }
    return {
      socket,
      send: (bytes) => {
        socket.write(bytes)
      },
      sendAll: (parts) => {
        socket.cork()
        for (const p of parts) socket.write(p)
        socket.uncork()
      },
      receive: Effect.suspend(() => {
        const rest = takeBuffered()
        return rest ? Effect.succeed(rest) : receive
      }),
      next,
      flushed: Effect.async<void>((resume) => {
        if (socket.destroyed || socket.writableEnded) return resume(Effect.void)
        socket.write(EMPTY, () => resume(Effect.void))
      })
    }
  })
