import { Data, Effect, FiberSet } from "effect"
import type { Scope } from "effect"
import { createServer } from "node:net"
import type { Socket } from "node:net"
import { peerAddress } from "./admission.js"

export class ListenError extends Data.TaggedError("ListenError")<{
  readonly host: string
  readonly port: number
  readonly cause: unknown
}> {
  override get message() {
    return `cannot listen on ${this.host}:${this.port}: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

const LISTEN_BACKLOG = 4096

export interface BoundAddress {
  readonly host: string
  readonly port: number
}

/** A listening port, with the handles a graceful shutdown needs. */
export interface Listener extends BoundAddress {
  /** Closes the listening socket (new connections are refused); open connections carry on. Idempotent. */
  readonly stopAccepting: Effect.Effect<void>
  /** Completes once every connection accepted here has ended. */
  readonly connectionsEnded: Effect.Effect<void>
}

/**
 * Listens on host:port for the life of the scope and runs `handle` for each
 * accepted socket as a fiber of that scope: closing the scope stops accepting
 * and interrupts every connection fiber (whose own scopes destroy the sockets).
 * A graceful shutdown stops accepting earlier, with `stopAccepting`.
 */
export const listen = <R>(
  host: string,
  port: number,
  handle: (socket: Socket) => Effect.Effect<void, never, R>,
  /** Decides on each new socket: a release function to call when it ends, or why it is refused. */
  admit: (address: string) => { readonly release: () => void } | string = () => ({ release: () => {} })
): Effect.Effect<Listener, ListenError, R | Scope.Scope> =>
  Effect.gen(function* () {
    const connections = yield* FiberSet.make<void, never>()
    const runFork = yield* FiberSet.runtime(connections)<R>()
    const server = createServer({ noDelay: true })
    server.on("connection", (socket) => {
      const address = peerAddress(socket.remoteAddress)
      const admitted = admit(address)
      if (typeof admitted === "string") {
        // Refused before anything is read: nothing of this peer is buffered.
        socket.destroy()
        runFork(Effect.logWarning("connection refused").pipe(Effect.annotateLogs({ remote: address, local: `${host}:${port}`, reason: admitted })))
        return
      }
      // A defect ends this connection (its scope destroys the socket), never the server.
      runFork(
        handle(socket).pipe(
          Effect.catchAllDefect((defect) => Effect.logError("connection failed").pipe(Effect.annotateLogs({ defect: String(defect) }))),
          Effect.ensuring(Effect.sync(admitted.release))
        )
      )
    })
    const bound = yield* Effect.async<BoundAddress, ListenError>((resume) => {
      const onError = (cause: Error) => resume(Effect.fail(new ListenError({ host, port, cause })))
      server.once("error", onError)
      // Node's default backlog (511) overflows when hundreds of clients connect at once: the
      // kernel then drops their handshakes and they stall for seconds. The kernel caps it at somaxconn.
      server.listen({ host, port, backlog: LISTEN_BACKLOG }, () => {
        server.off("error", onError)
        const address = server.address()
        resume(Effect.succeed({ host, port: typeof address === "object" && address ? address.port : port }))
      })
    })
    server.on("error", (cause) => runFork(Effect.logError("listener error", cause)))
    const stopAccepting = Effect.sync(() => {
      if (server.listening) server.close()
    })
    // Runs before the FiberSet's finalizer: stop accepting first, then the connections go.
    yield* Effect.addFinalizer(() => stopAccepting)
    return { ...bound, stopAccepting, connectionsEnded: FiberSet.awaitEmpty(connections) }
  })
