import { Chunk, Data, Effect, Option, Stream } from "effect"
import type { Socket } from "node:net"
import type { Frame, FrameError } from "../protocol/frame.js"
import { FrameDecoder } from "../protocol/frame.js"

export class SocketError extends Data.TaggedError("SocketError")<{
  readonly reason: "Read" | "Write" | "Open"
  readonly cause: unknown
}> {
  override get message() {
    return `socket ${this.reason.toLowerCase()} error: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/**
 * Bytes of frames a connection may hold unread before its socket is paused.
 * The kernel buffers beyond this, then TCP flow control stops the peer.
 */
export const READ_HIGH_WATER_MARK = 256 * 1024

/**
 * Takes a frame on the spot, synchronously, or declines it (false). Frames taken this way
 * never wake the consuming fiber: it is the per-block path of a busy connection.
 */
export type FastPath = (frame: Frame) => boolean

const declineAll: FastPath = () => false

/**
 * A socket's frames as a pull-based Stream. Every read is cut into frames as it arrives.
 * Each frame is first offered to `fast`, unless frames wait for the Stream's consumer or it
 * is still busy with the last batch it pulled (order is kept: a frame never overtakes an
 * earlier one). The rest reach the Stream, one chunk per batch, and the socket is paused
 * while `highWaterMark` bytes of them wait unread, so a consumer that stops pulling stops
 * the peer (Effect 3's `socket.run` never pauses). Frames completed before a framing error
 * are delivered, then the Stream fails with it.
 */
export const socketFrames = (
  socket: Socket,
  options: { readonly maxFrameBytes: number; readonly fast?: FastPath | undefined; readonly highWaterMark?: number }
): Stream.Stream<Frame, SocketError | FrameError> =>
  Stream.unwrapScoped(
    Effect.acquireRelease(
      Effect.sync(() => {
        const fast = options.fast ?? declineAll
        const highWaterMark = options.highWaterMark ?? READ_HIGH_WATER_MARK
        const decoder = new FrameDecoder(options.maxFrameBytes)
        const decoded: Array<Frame> = []
        let waiting: Array<Frame> = []
        let waitingBytes = 0
        /** The consumer holds a batch it has not finished with (it has not pulled again). */
        let busy = false
        let paused = false
        let done: Option.Option<SocketError | FrameError> | undefined
        let wake: (() => void) | undefined

        const notify = () => {
          const w = wake
          wake = undefined
          w?.()
        }
        /**
         * This runs in the socket's event handler, outside any fiber: a fast path that throws
         * (a bug) declines the frame instead, and the consumer meets the same fault as a
         * defect of this connection alone, not of the process.
         */
        const takenFast = (frame: Frame) => {
          try {
            return fast(frame)
          } catch {
            return false
          }
        }
        const onData = (chunk: Buffer) => {
          if (done !== undefined) return
          const error = decoder.push(chunk, decoded)
          for (const frame of decoded) {
            if (waiting.length === 0 && !busy && takenFast(frame)) continue
            waiting.push(frame)
            waitingBytes += frame.length
          }
          decoded.length = 0
          if (error !== undefined) done = Option.some(error)
          if (waitingBytes >= highWaterMark && !paused) {
            paused = true
            socket.pause()
          }
          if (waiting.length > 0 || done !== undefined) notify()
        }
        const onEnd = () => {
          done ??= Option.none()
          notify()
        }
        const onError = (cause: Error) => {
          done ??= Option.some(new SocketError({ reason: "Read", cause }))
          notify()
        }
        socket.on("data", onData)
        socket.on("end", onEnd)
        socket.on("close", onEnd)
        socket.on("error", onError)

        const takeNow = (): Effect.Effect<Chunk.Chunk<Frame>, Option.Option<SocketError | FrameError>> | undefined => {
          if (waiting.length > 0) {
            const batch = waiting
            waiting = []
            waitingBytes = 0
            busy = true
            if (paused) {
              paused = false
              socket.resume()
            }
            return Effect.succeed(Chunk.unsafeFromArray(batch))
          }
          if (done !== undefined) return Effect.fail(done)
          return undefined
        }
        const pull: Effect.Effect<Chunk.Chunk<Frame>, Option.Option<SocketError | FrameError>> = Effect.suspend(() => {
          busy = false
          return (
            takeNow() ??
            Effect.async<Chunk.Chunk<Frame>, Option.Option<SocketError | FrameError>>((resume) => {
              wake = () => resume(takeNow() ?? pull)
              return Effect.sync(() => {
                wake = undefined
              })
            })
          )
        })
        const detach = () => {
          socket.off("data", onData)
          socket.off("end", onEnd)
          socket.off("close", onEnd)
          socket.off("error", onError)
        }
        return { pull, detach }
      }),
      ({ detach }) => Effect.sync(detach)
    ).pipe(Effect.map(({ pull }) => Stream.repeatEffectChunkOption(pull)))
  )
