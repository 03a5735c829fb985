/**
 * socketFrames over real sockets on 127.0.0.1: frames taken on arrival by the
 * fast path and frames consumed through the Stream together keep the order
 * they were sent in, whatever the chunking, the fast path's choices and the
 * consumer's pace; a consumer that stops pulling pauses the socket; a framing
 * error comes after the frames before it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, FastCheck as fc, Stream } from "effect"
import type { Socket } from "node:net"
import { connect, createServer } from "node:net"
import { socketFrames } from "../../src/connection/frameSource.js"
import type { Frame } from "../../src/protocol/frame.js"
import { encodeFrame, FrameError } from "../../src/protocol/frame.js"
import { headerOnly } from "../support/raw.js"
import { eventually } from "../support/server.js"

/** A connected pair: `local` is the side read through socketFrames, `remote` writes to it. */
const socketPair = Effect.acquireRelease(
  Effect.async<{ readonly local: Socket; readonly remote: Socket; readonly close: () => void }>((resume) => {
    const server = createServer((local) => resume(Effect.succeed({ local, remote, close: () => (local.destroy(), remote.destroy(), server.close()) })))
    let remote: Socket
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      if (address === null || typeof address === "string") throw new Error("no TCP address")
      remote = connect(address.port, "127.0.0.1")
    })
  }),
  (pair) => Effect.sync(pair.close)
)

const frameWithSeq = (seq: number, bodyBytes: number) => encodeFrame(5, 0x0504, seq, Buffer.alloc(bodyBytes, seq & 0xff))

const writeAll = (socket: Socket, bytes: Buffer) => Effect.async<void>((resume) => void socket.write(bytes, () => resume(Effect.void)))

describe("socketFrames", () => {
  it.live.prop(
    "every frame is seen once, in the order sent, by the fast path or the Stream's consumer",
    {
      sizes: fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 40 }),
      cuts: fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 10 }),
      takes: fc.array(fc.boolean(), { minLength: 1, maxLength: 7 }),
      slow: fc.array(fc.boolean(), { minLength: 1, maxLength: 5 })
    },
    ({ cuts, sizes, slow, takes }) =>
      Effect.scoped(
        Effect.gen(function* () {
          const { local, remote } = yield* socketPair
          const seen: Array<number> = []
          let offered = 0
          const fast = (frame: Frame) => {
            const take = takes[offered++ % takes.length]!
            if (take) seen.push(frame.seq)
            return take
          }
          let batches = 0
          const consumer = yield* socketFrames(local, { maxFrameBytes: 1 << 20, fast }).pipe(
            Stream.runForEachChunk((frames) =>
              Effect.gen(function* () {
                // A consumer still busy with its batch (as handleFrames is while a login is answered):
                // frames arriving meanwhile must wait behind it, so it records them only when done.
                if (slow[batches++ % slow.length]) yield* Effect.sleep("2 millis")
                for (const frame of frames) seen.push(frame.seq)
              })
            ),
            Effect.fork
          )
          const wire = Buffer.concat(sizes.map((size, seq) => frameWithSeq(seq, size)))
          for (let at = 0, i = 0; at < wire.length; i++) {
            const next = Math.min(wire.length, at + cuts[i % cuts.length]!)
            yield* writeAll(remote, wire.subarray(at, next))
            if (i % 3 === 0) yield* Effect.sleep("1 millis")
            at = next
          }
          remote.end()
          yield* Fiber.join(consumer)
          expect(seen).toEqual(sizes.map((_, seq) => seq))
        })
      ),
    { fastCheck: { numRuns: 40 } }
  )

  it.live("a consumer that stops pulling pauses the socket once the high-water mark waits unread", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const { local, remote } = yield* socketPair
        const pull = yield* Stream.toPull(socketFrames(local, { maxFrameBytes: 1 << 20, highWaterMark: 64 * 1024 }))
        remote.write(frameWithSeq(0, 10))
        expect(Chunk.toReadonlyArray(yield* pull).map((f) => f.seq)).toEqual([0])
        // Nobody pulls: 4 MiB of frames is sent; the reader stops at the mark and TCP holds the rest.
        remote.write(Buffer.concat(Array.from({ length: 1024 }, (_, i) => frameWithSeq(1 + i, 4096 - 16))))
        yield* eventually(() => local.isPaused())
        expect(local.bytesRead).toBeLessThan(1024 * 1024)
        const next = yield* pull
        expect(Chunk.unsafeGet(next, 0).seq).toBe(1)
        expect(local.isPaused()).toBe(false)
      })
    )
  )

  it.live("a fast path that throws declines the frame: the Stream's consumer gets it, in order, and the process carries on", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const { local, remote } = yield* socketPair
        const fast = (frame: Frame) => {
          if (frame.seq === 2) throw new Error("a bug in the fast path")
          return frame.seq === 1
        }
        remote.end(Buffer.concat([frameWithSeq(1, 5), frameWithSeq(2, 5), frameWithSeq(3, 5)]))
        const seqs = yield* socketFrames(local, { maxFrameBytes: 1 << 20, fast }).pipe(
          Stream.map((frame) => frame.seq),
          Stream.runCollect
        )
        expect(Chunk.toReadonlyArray(seqs)).toEqual([2, 3])
      })
    )
  )

  it.live("frames completed before a framing error are delivered, then the Stream fails with it", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const { local, remote } = yield* socketPair
        remote.write(Buffer.concat([frameWithSeq(1, 10), frameWithSeq(2, 0), headerOnly(1 << 21)]))
        const seqs: Array<number> = []
        const result = yield* socketFrames(local, { maxFrameBytes: 1 << 20 }).pipe(
          Stream.runForEach((frame) => Effect.sync(() => seqs.push(frame.seq))),
          Effect.either
        )
        expect(seqs).toEqual([1, 2])
        expect(Either.isLeft(result) && result.left instanceof FrameError && result.left.reason === "TooLong").toBe(true)
      })
    )
  )
})
