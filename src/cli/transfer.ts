/** What the four transfer commands (send, recv, upload, download) share: the session, resume tracking, the summary. */
import { Console, Duration, Effect } from "effect"
import type { Scope } from "effect"
import * as Client from "../client/index.js"
import type { ClientError } from "../client/errors.js"
import type { CommandFailed, Role } from "./failure.js"
import { explain } from "./failure.js"
import { formatBytes, formatRate } from "./format.js"
import type { Endpoint } from "./options.js"

/**
 * Connects to the file server for the life of the scope and keeps the
 * connection alive while `use` runs; SDK errors become one-line CommandFailed
 * messages for this role (`after` is appended, to say what can be resumed).
 */
export const withSession = <A, R>(
  endpoint: Endpoint,
  role: Role,
  use: (sock: Client.PduSocket) => Effect.Effect<A, ClientError, R | Scope.Scope>,
  after = ""
): Effect.Effect<A, CommandFailed, Exclude<R, Scope.Scope>> =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(endpoint.server)
      yield* Client.keepAlive(sock)
      return yield* use(sock)
    })
  ).pipe(Effect.mapError(explain(endpoint, role, after)))

/**
 * A source that reports where it is being read (the end of the furthest
 * block served) and where the first read began: the server decides what to
 * pull, so this is how a sender learns that an upload resumed.
 */
export const trackedSource = (source: Client.BlockSource, onRead: (position: number) => void) => {
  let first: number | undefined
  let position = 0
  const tracked: Client.BlockSource = {
    size: source.size,
    read: (offset, length) =>
      source.read(offset, length).pipe(
        Effect.tap((data) =>
          Effect.sync(() => {
            first ??= offset
            position = Math.max(position, offset + data.length)
            onRead(position)
          })
        )
      )
  }
  return { source: tracked, firstOffset: () => first ?? source.size }
}

export interface TransferSummary {
  readonly verb: "sent" | "received" | "uploaded" | "downloaded"
  readonly taskId: string
  readonly path: string
  /** Bytes moved by this run. */
  readonly bytes: number
  /** Where this run started in the file (non-zero for a resume). */
  readonly offset: number
  /** The whole file's size. */
  readonly size: number
  readonly elapsed: Duration.Duration
  readonly sha256: string
}

/** One line on stdout: JSON with `--json` (bytes, seconds, sha256 and the rest), a sentence otherwise. */
export const printTransfer = (json: boolean, s: TransferSummary): Effect.Effect<void> => {
  const seconds = Duration.toMillis(s.elapsed) / 1000
  if (json) {
    return Console.log(
      JSON.stringify({
        task_id: s.taskId,
        path: s.path,
        bytes: s.bytes,
        offset: s.offset,
        size: s.size,
        seconds: Number(seconds.toFixed(3)),
        sha256: s.sha256
      })
    )
  }
  const resumed = s.offset > 0 ? ` (resumed at ${formatBytes(s.offset)})` : ""
  const rate = seconds > 0 ? `, ${formatRate(s.bytes / seconds)}` : ""
  return Console.log(`${s.verb} ${formatBytes(s.bytes)}${resumed} in ${seconds.toFixed(2)} s${rate}: ${s.path} (${formatBytes(s.size)}) sha256 ${s.sha256}`)
}

/** A run stopped by Ctrl-C or SIGTERM did not transfer its file: exit 1 (main.ts), and say what is left. */
export const failOnInterrupt = (message: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  self.pipe(
    Effect.onInterrupt(() =>
      Effect.sync(() => {
        process.exitCode = 1
        console.error(`tt-file-server: interrupted; ${message}`)
      })
    )
  )
