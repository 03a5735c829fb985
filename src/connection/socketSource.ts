import { Chunk, Data, Effect, Option, Stream } from "effect"
import type { Socket } from "node:net"

export class SocketError extends Data.TaggedError("SocketError")<{
  readonly reason: "Read" | "Write" | "Open"
  readonly cause: unknown
}> {
  override get message() {
    return `socket ${this.reason.toLowerCase()} error: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/**
 * Bytes a connection may hold unread before its socket is paused. The kernel
 * buffers beyond this, then TCP flow control stops the peer.
 */
export const READ_HIGH_WATER_MARK = 256 * 1024

/**
 * A socket's incoming chunks as a pull-based Stream: each pull hands over
 * every chunk that arrived since the last one (one Stream chunk per batch),
 * and the socket is paused while `highWaterMark` bytes wait unread. So a
 * consumer that stops pulling stops the peer (Effect 3's `socket.run` never
 * pauses).
 */
export const socketChunks = (
  socket: Socket,
  highWaterMark: number = READ_HIGH_WATER_MARK
): Stream.Stream<Buffer, SocketError> =>
  Stream.unwrapScoped(
    Effect.acquireRelease(
      Effect.sync(() => {
        let chunks: Array<Buffer> = []
        let bytes = 0
        let paused = false
        let done: Option.Option<SocketError> | undefined
        let wake: (() => void) | undefined

        const notify = () => {
          const w = wake
          wake = undefined
          w?.()
        }
        const onData = (chunk: Buffer) => {
          chunks.push(chunk)
          bytes += chunk.length
          if (bytes >= highWaterMark && !paused) {
            paused = true
            socket.pause()
          }
          notify()
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

        const takeNow = (): Effect.Effect<Chunk.Chunk<Buffer>, Option.Option<SocketError>> | undefined => {
          if (chunks.length > 0) {
            const batch = chunks
            chunks = []
            bytes = 0
            if (paused) {
              paused = false
              socket.resume()
            }
            return Effect.succeed(Chunk.unsafeFromArray(batch))
          }
          if (done !== undefined) return Effect.fail(done)
          return undefined
        }
        const pull: Effect.Effect<Chunk.Chunk<Buffer>, Option.Option<SocketError>> = Effect.suspend(
          () =>
            takeNow() ??
            Effect.async<Chunk.Chunk<Buffer>, Option.Option<SocketError>>((resume) => {
              wake = () => resume(takeNow() ?? pull)
              return Effect.sync(() => {
                wake = undefined
              })
            })
        )
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
