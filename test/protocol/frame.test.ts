import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FIRST_PIECE_MIN, FrameDecoder, FrameError, frameBody, sliceBytes } from "../../src/protocol/frame.js"
import type { Frame } from "../../src/protocol/frame.js"
import { HEADER_BYTES } from "../../src/protocol/header.js"
import { filled, refHeader, sliceAt, u16 } from "./wire.js"

// ---------------------------------------------------------------------------
// Generators

interface FrameSpec {
  readonly serviceId: number
  readonly commandId: number
  readonly seq: number
  readonly body: Buffer
}

/** Body sizes: mostly 0..3000 (edges near the header size included), occasionally a large one. */
const bodySize = (maxBody: number): fc.Arbitrary<number> =>
  fc.oneof(
    { weight: 2, arbitrary: fc.constantFrom(0, 1, 2, 3, 4, 11, 12, 15, 16, 17).filter((n) => n <= maxBody) },
    { weight: 12, arbitrary: fc.integer({ min: 0, max: Math.min(3000, maxBody) }) },
    { weight: 1, arbitrary: fc.integer({ min: Math.min(3001, maxBody), max: Math.min(150_000, maxBody) }) }
  )

const frameSpecArb = (maxBody = DEFAULT_MAX_FRAME_BYTES - HEADER_BYTES): fc.Arbitrary<FrameSpec> =>
  fc
    .record({ serviceId: u16, commandId: u16, seq: u16, size: bodySize(maxBody), seed: fc.nat() })
    .map(({ commandId, seed, seq, serviceId, size }) => ({ serviceId, commandId, seq, body: filled(size, seed) }))

type Chunking =
  | { readonly _tag: "cuts"; readonly cuts: ReadonlyArray<number> }
  | { readonly _tag: "fixed"; readonly size: number }
  | { readonly _tag: "bytes" }
  | { readonly _tag: "boundaries"; readonly deltas: ReadonlyArray<number> }

const chunkingArb: fc.Arbitrary<Chunking> = fc.oneof(
  fc.record({ _tag: fc.constant("cuts" as const), cuts: fc.array(fc.nat(), { maxLength: 40 }) }),
  fc.record({ _tag: fc.constant("fixed" as const), size: fc.integer({ min: 1, max: 5000 }) }),
  fc.record({ _tag: fc.constant("bytes" as const) }),
  fc.record({ _tag: fc.constant("boundaries" as const), deltas: fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 6 }) })
)

/**
 * Splits `stream` into chunks; cut points may repeat, which yields empty
 * chunks. `starts` are the frame start offsets (for cuts around them).
 */
const split = (stream: Buffer, chunking: Chunking, starts: ReadonlyArray<number>): Array<Buffer> => {
  const n = stream.length
  let cuts: Array<number>
  switch (chunking._tag) {
    case "cuts":
      cuts = chunking.cuts.map((c) => c % (n + 1))
      break
    case "fixed":
    case "bytes": {
      // 1-byte chunks over a large stream would only slow the run down; 997 bytes still splits every header
      const size = chunking._tag === "fixed" ? chunking.size : n <= 40_000 ? 1 : 997
      cuts = []
      for (let at = size; at < n; at += size) cuts.push(at)
      break
    }
    case "boundaries":
      cuts = starts.flatMap((s) => chunking.deltas.map((d) => Math.min(n, Math.max(0, s + d))))
      break
  }
  return sliceAt(stream, cuts.sort((a, b) => a - b))
}

const layout = (frames: ReadonlyArray<Buffer>) => {
  const starts: Array<number> = []
  const ends: Array<number> = []
  let at = 0
  for (const f of frames) {
    starts.push(at)
    at += f.length
    ends.push(at)
  }
  return { starts, ends, total: at }
}

const fail = (message: string): never => {
  throw new Error(message)
}

/**
 * Feeds `chunks` and checks, after every push, that exactly the frames whose
 * last byte has arrived were emitted, that the decoder holds exactly the
 * bytes of the incomplete frame, and that a frame lying inside one chunk is a
 * view into that chunk (no copy). Stops at the first error and returns it.
 */
const feed = (
  decoder: FrameDecoder,
  chunks: ReadonlyArray<Buffer>,
  ends: ReadonlyArray<number>,
  starts: ReadonlyArray<number>,
  errorAt = Infinity
): { frames: Array<Frame>; error: FrameError | undefined; fedWhenFailed: number } => {
  const out: Array<Frame> = []
  let fed = 0
  for (const chunk of chunks) {
    const chunkStart = fed
    const before = out.length
    const error = decoder.push(chunk, out)
    fed += chunk.length
    let complete = 0
    while (complete < ends.length && ends[complete]! <= Math.min(fed, errorAt)) complete++
    if (out.length !== complete) fail(`after ${fed} bytes: ${out.length} frames emitted, ${complete} complete`)
    for (let i = before; i < out.length; i++) {
      if (starts[i]! < chunkStart) continue
      const raw = out[i]!.raw
      if (raw.buffer !== chunk.buffer || raw.byteOffset !== chunk.byteOffset + (starts[i]! - chunkStart)) {
        fail(`frame ${i} lies inside one chunk but was copied`)
      }
    }
    if (error !== undefined || fed >= errorAt) {
      if (error === undefined) fail(`no error once the bad length was in (${fed} bytes fed, bad length ends at ${errorAt})`)
      if (decoder.buffered !== 0) fail(`${decoder.buffered} bytes still buffered after the error`)
      return { frames: out, error, fedWhenFailed: fed }
    }
    const consumed = complete === 0 ? 0 : ends[complete - 1]!
    if (decoder.buffered !== fed - consumed) fail(`after ${fed} bytes: buffered ${decoder.buffered}, expected ${fed - consumed}`)
  }
  return { frames: out, error: undefined, fedWhenFailed: -1 }
}

const summary = (f: Frame) => ({ serviceId: f.serviceId, commandId: f.commandId, seq: f.seq, length: f.raw.length })

const expectSameFrames = (actual: ReadonlyArray<Frame>, expected: ReadonlyArray<Buffer>) => {
  expect(actual.length).toBe(expected.length)
  actual.forEach((f, i) => {
    const e = expected[i]!
    expect(summary(f)).toStrictEqual({
      serviceId: e.readUInt16BE(8),
      commandId: e.readUInt16BE(10),
      seq: e.readUInt16BE(12),
      length: e.length
    })
    if (!f.raw.equals(e)) fail(`frame ${i}: raw bytes differ`)
    // The pieces are the frame; the first holds the header and the fields that follow it.
    if (!Buffer.concat(f.parts as Array<Buffer>).equals(e)) fail(`frame ${i}: its pieces differ from its bytes`)
    if (f.parts[0]!.length < Math.min(e.length, FIRST_PIECE_MIN)) fail(`frame ${i}: first piece of ${f.parts[0]!.length} bytes is too short`)
  })
}

const lengthBytes = (n: number) => Buffer.from([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff])

// ---------------------------------------------------------------------------

describe("sliceBytes", () => {
  it.prop(
    "any range of bytes in pieces is the same range of their concatenation, as views that share its memory",
    {
      pieces: fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }),
      a: fc.nat(),
      b: fc.nat()
    },
    ({ a, b, pieces }) => {
      const bytes = pieces.map((p) => Buffer.from(p))
      const whole = Buffer.concat(bytes)
      const start = a % (whole.length + 1)
      const end = start + (b % (whole.length - start + 1))
      const slice = sliceBytes(bytes, start, end)
      expect(Buffer.concat(slice).equals(whole.subarray(start, end))).toBe(true)
      expect(slice.every((piece) => piece.length > 0 && bytes.some((b) => b.buffer === piece.buffer))).toBe(true)
    }
  )
})

describe("encodeFrame", () => {
  it.prop(
    "writes the section-1 header around the body",
    { spec: frameSpecArb(5000) },
    ({ spec }) => {
      const pdu = encodeFrame(spec.serviceId, spec.commandId, spec.seq, spec.body)
      const header = refHeader({
        length: HEADER_BYTES + spec.body.length,
        version: 1,
        flag: 0,
        serviceId: spec.serviceId,
        commandId: spec.commandId,
        seq: spec.seq,
        reserved: 0
      })
      expect(pdu.subarray(0, HEADER_BYTES).toString("hex")).toBe(header.toString("hex"))
      expect(pdu.subarray(HEADER_BYTES).equals(spec.body)).toBe(true)
      const decoded: Array<Frame> = []
      expect(new FrameDecoder().push(pdu, decoded)).toBeUndefined()
      expect(decoded.map(summary)).toStrictEqual([
        { serviceId: spec.serviceId, commandId: spec.commandId, seq: spec.seq, length: pdu.length }
      ])
      expect(frameBody(decoded[0]!).equals(spec.body)).toBe(true)
    }
  )
})

describe("FrameDecoder", () => {
  it.prop(
    "any re-chunking of a stream of valid frames yields the same frames as one chunk",
    { specs: fc.array(frameSpecArb(), { maxLength: 12 }), chunking: chunkingArb },
    ({ chunking, specs }) => {
      const pdus = specs.map((s) => encodeFrame(s.serviceId, s.commandId, s.seq, s.body))
      const stream = Buffer.concat(pdus)
      const { ends, starts } = layout(pdus)

      const whole = feed(new FrameDecoder(), [stream], ends, starts)
      expect(whole.error).toBeUndefined()
      expectSameFrames(whole.frames, pdus)

      const decoder = new FrameDecoder()
      const chunked = feed(decoder, split(stream, chunking, starts), ends, starts)
      expect(chunked.error).toBeUndefined()
      expect(decoder.buffered).toBe(0)
      expectSameFrames(chunked.frames, whole.frames.map((f) => f.raw))
    },
    { fastCheck: { numRuns: 150 } }
  )

  it.prop(
    "a length < 16 or > maxFrameBytes fails as soon as its 4 bytes are in; earlier frames are still emitted",
    {
      c: fc.integer({ min: HEADER_BYTES, max: 4096 }).chain((maxFrameBytes) =>
        fc.record({
          maxFrameBytes: fc.constant(maxFrameBytes),
          before: fc.array(frameSpecArb(maxFrameBytes - HEADER_BYTES), { maxLength: 5 }),
          badLength: fc.oneof(
            fc.integer({ min: 0, max: HEADER_BYTES - 1 }),
            fc.integer({ min: maxFrameBytes + 1, max: 0xffffffff }),
            fc.constantFrom(maxFrameBytes + 1, 0xffffffff)
          ),
          // what follows the bad length: part of its body at most (the rest never arrives)
          rest: fc.uint8Array({ maxLength: 64 }),
          chunking: chunkingArb
        })
      )
    },
    ({ c }) => {
      const pdus = c.before.map((s) => encodeFrame(s.serviceId, s.commandId, s.seq, s.body))
      const { ends, starts, total } = layout(pdus)
      const stream = Buffer.concat([...pdus, lengthBytes(c.badLength), c.rest])
      const errorAt = total + 4
      const decoder = new FrameDecoder(c.maxFrameBytes)
      const result = feed(decoder, split(stream, c.chunking, [...starts, total]), ends, starts, errorAt)

      expect(result.error).toBeInstanceOf(FrameError)
      expect(result.error?.reason).toBe(c.badLength < HEADER_BYTES ? "TooShort" : "TooLong")
      expect(result.error?.length).toBe(c.badLength)
      // not before the 4 length bytes were in (feed() already failed if it came any later)
      expect(result.fedWhenFailed).toBeGreaterThanOrEqual(errorAt)
      expectSameFrames(result.frames, pdus)
      expect(decoder.buffered).toBe(0)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("refuses every length 0..15 as TooShort, whole or byte by byte", () => {
    for (let n = 0; n < HEADER_BYTES; n++) {
      const pdu = Buffer.concat([lengthBytes(n), Buffer.alloc(HEADER_BYTES)])
      const err = new FrameDecoder().push(pdu, [])
      expect(err).toBeInstanceOf(FrameError)
      expect({ reason: err?.reason, length: err?.length }).toStrictEqual({ reason: "TooShort", length: n })

      const d = new FrameDecoder()
      const out: Array<Frame> = []
      for (let i = 0; i < 3; i++) {
        expect(d.push(pdu.subarray(i, i + 1), out)).toBeUndefined()
        expect(d.buffered).toBe(i + 1)
      }
      expect(d.push(pdu.subarray(3, 4), out)?.reason).toBe("TooShort")
      expect(d.buffered).toBe(0)
      expect(out).toStrictEqual([])
    }
  })

  it("accepts a 16-byte PDU with an empty body", () => {
    const out: Array<Frame> = []
    expect(new FrameDecoder().push(encodeFrame(7, 0x0701, 9, new Uint8Array(0)), out)).toBeUndefined()
    expect(out.map(summary)).toStrictEqual([{ serviceId: 7, commandId: 0x0701, seq: 9, length: 16 }])
  })

  for (const max of [HEADER_BYTES, 100, 32 * 1024, DEFAULT_MAX_FRAME_BYTES]) {
    it(`accepts exactly maxFrameBytes (${max}) and refuses maxFrameBytes + 1`, () => {
      const pdu = encodeFrame(5, 0x0505, 1, filled(max - HEADER_BYTES, max))
      const out: Array<Frame> = []
      expect(new FrameDecoder(max).push(pdu, out)).toBeUndefined()
      expect(out.length).toBe(1)
      expect(out[0]!.raw.length).toBe(max)

      // split in the middle too
      const d = new FrameDecoder(max)
      const split2: Array<Frame> = []
      expect(d.push(pdu.subarray(0, max >> 1), split2)).toBeUndefined()
      expect(d.push(pdu.subarray(max >> 1), split2)).toBeUndefined()
      expect(split2.length).toBe(1)
      expect(split2[0]!.raw.equals(pdu)).toBe(true)

      // one byte more is refused from its header alone, with nothing kept
      const over = new FrameDecoder(max)
      const err = over.push(refHeader({ length: max + 1, version: 1, flag: 0, serviceId: 5, commandId: 0x0505, seq: 1, reserved: 0 }), [])
      expect({ reason: err?.reason, length: err?.length }).toStrictEqual({ reason: "TooLong", length: max + 1 })
      expect(over.buffered).toBe(0)
    })
  }

  it("uses a 2 MiB limit by default", () => {
    expect(DEFAULT_MAX_FRAME_BYTES).toBe(2 * 1024 * 1024)
    expect(new FrameDecoder().maxFrameBytes).toBe(DEFAULT_MAX_FRAME_BYTES)
  })

  it("refuses a 4 GiB length (0xFFFFFFFF) with nothing buffered", () => {
    const four = lengthBytes(0xffffffff)
    const d1 = new FrameDecoder()
    const e1 = d1.push(four, [])
    expect({ reason: e1?.reason, length: e1?.length }).toStrictEqual({ reason: "TooLong", length: 0xffffffff })
    expect(d1.buffered).toBe(0)

    // byte by byte: at most the 3 length bytes are ever held
    const d2 = new FrameDecoder()
    for (let i = 0; i < 3; i++) {
      expect(d2.push(four.subarray(i, i + 1), [])).toBeUndefined()
      expect(d2.buffered).toBe(i + 1)
    }
    expect(d2.push(Buffer.concat([four.subarray(3), Buffer.alloc(1000)]), [])?.reason).toBe("TooLong")
    expect(d2.buffered).toBe(0)

    // after a partial valid frame whose completing chunk carries the bad length
    const ok = encodeFrame(5, 0x0503, 2, filled(40, 3))
    const d3 = new FrameDecoder()
    const out: Array<Frame> = []
    expect(d3.push(ok.subarray(0, 20), out)).toBeUndefined()
    expect(d3.buffered).toBe(20)
    const e3 = d3.push(Buffer.concat([ok.subarray(20), four, Buffer.alloc(100)]), out)
    expect(e3?.reason).toBe("TooLong")
    expect(out.length).toBe(1)
    expect(out[0]!.raw.equals(ok)).toBe(true)
    expect(d3.buffered).toBe(0)
  })

  it("keeps a large frame that straddles reads in pieces: views into each read, only its first bytes copied", () => {
    const pdu = encodeFrame(5, 0x0505, 9, filled(40_000, 3))
    const stream = Buffer.concat([encodeFrame(1, 2, 3, Buffer.alloc(10)), pdu])
    // 26 bytes of the first frame, then cuts that leave the big one 40 bytes in its first read.
    const reads = [stream.subarray(0, 66), stream.subarray(66, 30_000), stream.subarray(30_000)]
    const out: Array<Frame> = []
    const decoder = new FrameDecoder()
    for (const r of reads) expect(decoder.push(r, out)).toBeUndefined()
    expect(out.length).toBe(2)
    const big = out[1]!
    expect(big.length).toBe(pdu.length)
    expect(big.parts[0]!.length).toBe(FIRST_PIECE_MIN)
    const views = big.parts.slice(1)
    expect(views.map((v) => v.buffer)).toEqual([stream.buffer, stream.buffer])
    expect(views[views.length - 1]!.byteOffset).toBe(stream.byteOffset + 30_000)
    expect(Buffer.concat(big.parts as Array<Buffer>).equals(pdu)).toBe(true)
  })

  it("ignores empty chunks", () => {
    const d = new FrameDecoder()
    const out: Array<Frame> = []
    const pdu = encodeFrame(5, 0x0501, 3, filled(10, 1))
    expect(d.push(Buffer.alloc(0), out)).toBeUndefined()
    expect(d.push(pdu.subarray(0, 2), out)).toBeUndefined()
    expect(d.push(Buffer.alloc(0), out)).toBeUndefined()
    expect(d.buffered).toBe(2)
    expect(d.push(pdu.subarray(2), out)).toBeUndefined()
    expect(out.length).toBe(1)
    expect(d.buffered).toBe(0)
  })
})
