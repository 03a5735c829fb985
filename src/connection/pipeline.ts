import { Effect, Stream } from "effect"
import type { Chunk } from "effect"
import type { Frame, FrameError } from "../protocol/frame.js"
import type { Connection } from "./connection.js"
import type { FastPath } from "./frameSource.js"
import { socketFrames } from "./frameSource.js"

/**
 * A connection's pipeline, socket -> frames -> `handle` (a batch of frames per
 * call), until the peer closes; frames `fast` takes on arrival never reach
 * `handle`. A framing or socket error is logged and closes the connection;
 * either way this returns, for the caller's own cleanup.
 */
export const runPipeline = (
  conn: Connection,
  maxFrameBytes: number,
  handle: (frames: Chunk.Chunk<Frame>) => Effect.Effect<void>,
  /** Told of a framing error (a length out of bounds), for the metrics. */
  onFrameError: (error: FrameError) => void,
  fast?: FastPath
): Effect.Effect<void> =>
  socketFrames(conn.socket, { maxFrameBytes, fast }).pipe(
    Stream.runForEachChunk(handle),
    Effect.tapError((error) => Effect.sync(() => error._tag === "FrameError" && onFrameError(error))),
    Effect.catchAll((error) =>
      Effect.logWarning("connection error").pipe(
        Effect.annotateLogs({ error: error.message }),
        Effect.zipRight(Effect.sync(() => conn.close(error.message)))
      )
    )
  )
