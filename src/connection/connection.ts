import { Deferred, Effect } from "effect"
import type { Socket } from "node:net"

/** After a graceful close, how long a peer gets to read what was written and hang up. */
const LINGER_MS = 5000

let nextConnectionId = 1

/**
 * A live TCP connection as the rest of the server sees it: writes are
 * synchronous hand-offs to the socket (Node queues them), so a task actor can
 * write to several connections in one step; `close` flushes first.
 */
export interface Connection {
  readonly id: number
  readonly remote: string
  readonly socket: Socket
  /** Completes when the socket is closed, however that happened. */
  readonly closed: Deferred.Deferred<void>
  readonly isClosing: () => boolean
  /** Writes at once. */
  readonly write: (bytes: Buffer) => void
  /** Holds bytes until `flush`, so one actor step's writes leave together (one writev when several). */
  readonly queue: (bytes: Buffer) => void
  /** Bytes queued and not flushed yet. */
  readonly queuedBytes: () => number
  readonly flush: () => void
  /** Waits until the socket's write buffer is below its high-water mark (or the socket closed). */
  readonly awaitDrain: Effect.Effect<void>
  /** Flushes pending writes, then ends the connection; `reason` is kept for the close log. */
  readonly close: (reason: string) => void
  /** Drops the connection at once, whatever is still queued (a peer that does not read). */
  readonly abort: (reason: string) => void
  readonly closeReason: () => string | undefined
}

export const makeConnection = (socket: Socket): Effect.Effect<Connection> =>
  Effect.gen(function* () {
    const closed = yield* Deferred.make<void>()
    const id = nextConnectionId++
    const remote = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? 0}`
    let closeReason: string | undefined
    let pending: Array<Buffer> = []
    let pendingBytes = 0
    socket.setNoDelay(true)
    socket.once("close", () => Deferred.unsafeDone(closed, Effect.void))
    const conn: Connection = {
      id,
      remote,
      socket,
      closed,
      isClosing: () => closeReason !== undefined || socket.destroyed,
      write: (bytes) => {
        if (!socket.destroyed && !socket.writableEnded) socket.write(bytes)
      },
      queue: (bytes) => {
        pending.push(bytes)
        pendingBytes += bytes.length
      },
      queuedBytes: () => pendingBytes,
      flush: () => {
        if (pending.length === 0) return
        const parts = pending
        pending = []
        pendingBytes = 0
        if (socket.destroyed || socket.writableEnded) return
        if (parts.length === 1) {
          socket.write(parts[0]!)
          return
        }
        socket.cork()
        for (const p of parts) socket.write(p)
        socket.uncork()
      },
      awaitDrain: Effect.async<void>((resume) => {
        if (!socket.writableNeedDrain || socket.destroyed) return resume(Effect.void)
        const detach = () => {
          socket.off("drain", done)
          socket.off("close", done)
        }
        const done = () => {
          detach()
          resume(Effect.void)
        }
        socket.on("drain", done)
        socket.on("close", done)
        return Effect.sync(detach)
      }),
      close: (reason) => {
        if (closeReason !== undefined) return
        closeReason = reason
        conn.flush()
        if (socket.destroyed) return
        socket.end()
        const timer = setTimeout(() => socket.destroy(), LINGER_MS)
        timer.unref()
        socket.once("close", () => clearTimeout(timer))
      },
      abort: (reason) => {
        closeReason ??= reason
        pending = []
        pendingBytes = 0
        socket.destroy()
      },
      closeReason: () => closeReason
    }
    return conn
  })
