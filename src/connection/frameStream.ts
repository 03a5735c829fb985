import { Channel, Chunk, Stream } from "effect"
import type { Frame, FrameError } from "../protocol/frame.js"
import { FrameDecoder } from "../protocol/frame.js"

/**
 * Stream transform bytes -> frames. One input chunk (a batch of socket reads)
 * becomes one output chunk of frames, so downstream handles a whole read per
 * step. Frames completed before a framing error are emitted, then the stream
 * fails with it.
 */
export const decodeFrames =
  (maxFrameBytes: number) =>
  <E, R>(self: Stream.Stream<Buffer, E, R>): Stream.Stream<Frame, E | FrameError, R> =>
    Stream.suspend(() => {
      const decoder = new FrameDecoder(maxFrameBytes)
      const loop: Channel.Channel<Chunk.Chunk<Frame>, Chunk.Chunk<Buffer>, E | FrameError, E, unknown, unknown> =
        Channel.readWithCause({
          onInput: (input: Chunk.Chunk<Buffer>) => {
            const out: Array<Frame> = []
            let error: FrameError | undefined
            for (const bytes of input) {
              error = decoder.push(bytes, out)
              if (error) break
            }
            const next = error ? Channel.fail(error) : loop
            return out.length === 0 ? next : Channel.zipRight(Channel.write(Chunk.unsafeFromArray(out)), next)
          },
          onFailure: (cause) => Channel.failCause(cause),
          onDone: () => Channel.void
        })
      return Stream.pipeThroughChannel(self, loop)
    })
