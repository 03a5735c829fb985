import { Effect, Stream } from "effect"
import type { Chunk } from "effect"
import type { Frame, FrameError } from "../protocol/frame.js"
import type { Connection } from "./connection.js"
import { decodeFrames } from "./frameStream.js"
import { socketChunks } from "./socketSource.js"

/**
 * A connection's pipeline, socket -> frames -> `handle` (one read's frames per
 * call), until the peer closes. A framing or socket error is logged and closes
 * the connection; either way this returns, for the caller's own cleanup.
 */
export const runPipeline = (
  conn: Connection,
  maxFrameBytes: number,
  handle: (frames: Chunk.Chunk<Frame>) => Effect.Effect<void>,
  /** Told of a framing error (a length out of bounds), for the metrics. */
  onFrameError: (error: FrameError) => void
): Effect.Effect<void> =>
  socketChunks(conn.socket).pipe(
    decodeFrames(maxFrameBytes),
    Stream.runForEachChunk(handle),
    Effect.tapError((error) => Effect.sync(() => error._tag === "FrameError" && onFrameError(error))),
    Effect.catchAll((error) =>
      Effect.logWarning("connection error").pipe(
        Effect.annotateLogs({ error: error.message }),
        Effect.zipRight(Effect.sync(() => conn.close(error.message)))
      )
    )
  )
