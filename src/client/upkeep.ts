import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { sendHeartbeat } from "./fileClient.js"
import type { PduSocket } from "./pduSocket.js"

/** TeamTalk clients heartbeat every 30 s; the server closes a client silent for --idle-timeout (default 120 s). */
export const HEARTBEAT_INTERVAL = Duration.seconds(30)

/**
 * Sends a heartbeat every `interval` for the life of the scope, so that a
 * client waiting for its peer (a sender before the receiver arrives) is not
 * closed as idle. The SDK's receive loops skip the echoes.
 */
export const keepAlive = (sock: PduSocket, interval: Duration.DurationInput = HEARTBEAT_INTERVAL): Effect.Effect<void, never, Scope.Scope> =>
  Effect.sync(() => sendHeartbeat(sock)).pipe(
    Effect.delay(interval),
    Effect.forever,
    Effect.forkScoped,
    Effect.asVoid
  )

/**
 * Flushes what was queued (a final FILE_STATE DONE, say) and half-closes the
 * connection, then waits for the socket to close, at most `timeout`. Closing
 * the scope instead destroys the socket and may drop a write still queued in
 * user space.
 */
export const closeGracefully = (sock: PduSocket, timeout: Duration.DurationInput = Duration.seconds(5)): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const s = sock.socket
    if (s.destroyed || s.closed) return resume(Effect.void)
    const done = () => resume(Effect.void)
    s.once("close", done)
    // Nobody reads the socket any more: let the server's FIN and anything after it drain.
    s.resume()
    s.end()
    return Effect.sync(() => s.off("close", done))
  }).pipe(Effect.timeoutOption(timeout), Effect.asVoid)
