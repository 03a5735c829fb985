import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { decodeDataBlock, encodePullDataRspHead, maxBlockBytes } from "../../src/protocol/dataBlock.js"
import { DEFAULT_MAX_FRAME_BYTES, FIRST_PIECE_MIN, FrameDecoder } from "../../src/protocol/frame.js"
import type { Frame } from "../../src/protocol/frame.js"
import { HEADER_BYTES, readHeader } from "../../src/protocol/header.js"
import { encodePdu, Pdu } from "../../src/protocol/messages.js"
import { filled, refEncode, refHeader, sliceAt, SPECS, u16, u32, varint, VARINT_EDGES, wireString } from "./wire.js"

const U32_MAX = 0xffffffff

/** Data lengths around the 1/2/3-byte varint boundaries of file_data's length prefix. */
const dataLength: fc.Arbitrary<number> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(0, 1, 127, 128, 129, 16383, 16384, 16385, 32 * 1024, 34 * 1024) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 5000 }) }
)

/** Task ids: UUIDs as the server makes them, any unicode, and long enough for a 2-byte length prefix. */
const taskId: fc.Arbitrary<string> = fc.oneof(
  fc.uuid(),
  wireString,
  fc.integer({ min: 120, max: 140 }).map((n) => "t".repeat(n))
)

describe("encodePullDataRspHead", () => {
  it.prop(
    "head + data is byte-identical to encodePdu(Pdu.PullDataRsp, ...)",
    { seq: u16, resultCode: u32, taskId, userId: u32, offset: u32, size: dataLength, seed: fc.nat() },
    ({ offset, resultCode, seed, seq, size, taskId, userId }) => {
      const data = filled(size, seed)
      const head = encodePullDataRspHead({ seq, resultCode, taskId, userId, offset, dataLength: data.length })
      const viaProtobuf = encodePdu(Pdu.PullDataRsp, seq, { resultCode, taskId, userId, offset, fileData: data })
      expect(head.length + data.length).toBe(viaProtobuf.length)
      expect(head.toString("hex")).toBe(viaProtobuf.subarray(0, head.length).toString("hex"))
      expect(viaProtobuf.subarray(head.length).equals(data)).toBe(true)

      // and it is a frame the decoder and the body codec accept as such
      const out: Array<Frame> = []
      expect(new FrameDecoder().push(Buffer.concat([head, data]), out)).toBeUndefined()
      expect(out.length).toBe(1)
      const decoded = Pdu.PullDataRsp.decodeBody(out[0]!.raw.subarray(HEADER_BYTES))
      expect(Either.isRight(decoded)).toBe(true)
      if (Either.isRight(decoded)) {
        const { fileData, ...fields } = decoded.right
        expect({ ...fields }).toStrictEqual({ resultCode, taskId, userId, offset })
        expect(Buffer.from(fileData).equals(data)).toBe(true)
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "matches the reference encoding for any data length, up to the uint32 frame length",
    {
      seq: u16,
      resultCode: u32,
      taskId,
      userId: u32,
      offset: u32,
      dataLength: fc.oneof(
        fc.constantFrom(...VARINT_EDGES),
        fc.integer({ min: 0, max: U32_MAX })
      )
    },
    ({ dataLength, offset, resultCode, seq, taskId, userId }) => {
      const fields = refEncode(SPECS.PullDataRsp.fields, { resultCode, taskId, userId, offset })
      const prefix = [...fields, 0x2a, ...varint(dataLength)]
      const length = HEADER_BYTES + prefix.length + dataLength
      fc.pre(length <= U32_MAX)
      const expected = Buffer.concat([
        refHeader({ length, version: 1, flag: 0, serviceId: 5, commandId: 0x0505, seq, reserved: 0 }),
        Buffer.from(prefix)
      ])
      const head = encodePullDataRspHead({ seq, resultCode, taskId, userId, offset, dataLength })
      expect(head.toString("hex")).toBe(expected.toString("hex"))
      expect(readHeader(head).length).toBe(length)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("writes the worst case: every varint 5 bytes wide", () => {
    const head = encodePullDataRspHead({ seq: 0xffff, resultCode: U32_MAX, taskId: "", userId: U32_MAX, offset: U32_MAX, dataLength: 2 ** 28 })
    expect(head.subarray(HEADER_BYTES).toString("hex")).toBe(
      "08ffffffff0f" + "1200" + "18ffffffff0f" + "20ffffffff0f" + "2a8080808001"
    )
    expect(readHeader(head).length).toBe(HEADER_BYTES + 26 + 2 ** 28)
  })
})

describe("maxBlockBytes", () => {
  it.prop(
    "a PULL_DATA_RSP carrying that many bytes with worst-case fields fits in maxFrameBytes",
    {
      maxFrameBytes: fc.oneof(fc.integer({ min: 16, max: 400 }), fc.integer({ min: 400, max: 256 * 1024 })),
      taskId: fc.oneof(taskId, fc.integer({ min: 0, max: 300 }).map((n) => "é".repeat(n)))
    },
    ({ maxFrameBytes, taskId }) => {
      const size = maxBlockBytes(maxFrameBytes, Buffer.byteLength(taskId))
      fc.pre(size >= 0)
      const worst = { resultCode: U32_MAX, taskId, userId: U32_MAX, offset: U32_MAX }
      const pdu = encodePdu(Pdu.PullDataRsp, 0xffff, { ...worst, fileData: Buffer.alloc(size) })
      expect(pdu.length).toBeLessThanOrEqual(maxFrameBytes)
      // the only slack is file_data's length prefix, counted as 5 bytes
      expect(maxFrameBytes - pdu.length).toBe(5 - varint(size).length)
      const head = encodePullDataRspHead({ seq: 0xffff, ...worst, dataLength: size })
      expect(head.length + size).toBe(pdu.length)
      expect(new FrameDecoder(maxFrameBytes).push(pdu, [])).toBeUndefined()
    },
    { fastCheck: { numRuns: 200 } }
  )

  it("leaves room for 34 KiB blocks (Windows client pulls) under the default limit", () => {
    const size = maxBlockBytes(DEFAULT_MAX_FRAME_BYTES, 36)
    expect(size).toBeGreaterThanOrEqual(34 * 1024)
    const pdu = encodePdu(Pdu.PullDataRsp, 1, {
      resultCode: U32_MAX,
      taskId: "0".repeat(36),
      userId: U32_MAX,
      offset: U32_MAX,
      fileData: Buffer.alloc(size)
    })
    expect(pdu.length).toBeLessThanOrEqual(DEFAULT_MAX_FRAME_BYTES)
    const out: Array<Frame> = []
    expect(new FrameDecoder().push(pdu, out)).toBeUndefined()
    expect(out.length).toBe(1)
  })
})

/** Splits `bytes` at the given cut points (taken modulo its length). */
const cutAt = (bytes: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> =>
  sliceAt(bytes, [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b))

const framesOf = (reads: ReadonlyArray<Buffer>): Array<Frame> => {
  const decoder = new FrameDecoder()
  const out: Array<Frame> = []
  for (const r of reads) expect(decoder.push(r, out)).toBeUndefined()
  return out
}

describe("decodeDataBlock", () => {
  it.prop(
    "agrees with the protobuf decoder on any PULL_DATA_RSP, however it was split across reads, without copying the block",
    {
      resultCode: u32,
      taskId,
      userId: u32,
      offset: u32,
      size: dataLength,
      seed: fc.nat(),
      cuts: fc.array(fc.nat(), { maxLength: 4 }),
      // Unusual but valid layouts fall back to the protobuf decoder: fields in another order, an unknown field.
      layout: fc.constantFrom("usual", "reordered", "unknown field")
    },
    ({ cuts, layout, offset, resultCode, seed, size, taskId, userId }) => {
      const data = filled(size, seed)
      const fields = { resultCode, taskId, userId, offset }
      let pdu: Buffer
      if (layout === "usual") {
        pdu = encodePdu(Pdu.PullDataRsp, 7, { ...fields, fileData: data })
      } else {
        const usual = encodePdu(Pdu.PullDataRsp, 7, { ...fields, fileData: data }).subarray(HEADER_BYTES)
        const extra = layout === "unknown field" ? Buffer.from([0x30, 0x01]) : Buffer.alloc(0)
        // offset (field 4) moved after file_data, or an unknown varint field 6 appended
        const body =
          layout === "reordered"
            ? Buffer.concat([refEncode(SPECS.PullDataRsp.fields, { resultCode, taskId, userId }), Buffer.from([0x2a, ...varint(size)]), data, Buffer.from([0x20, ...varint(offset)])])
            : Buffer.concat([usual, extra])
        const header = refHeader({ length: HEADER_BYTES + body.length, version: 1, flag: 0, serviceId: 5, commandId: 0x0505, seq: 7, reserved: 0 })
        pdu = Buffer.concat([header, body])
      }
      const [frame] = framesOf(cutAt(pdu, cuts))
      const fast = decodeDataBlock(frame!)
      const reference = Pdu.PullDataRsp.decodeBody(pdu.subarray(HEADER_BYTES))
      expect(Either.isRight(fast)).toBe(true)
      expect(Either.isRight(reference)).toBe(true)
      if (Either.isRight(fast) && Either.isRight(reference)) {
        const { data: pieces, dataLength: length, ...got } = fast.right
        const { fileData, ...want } = reference.right
        expect(got).toStrictEqual({ ...want })
        expect(length).toBe(fileData.length)
        expect(Buffer.concat(pieces as Array<Buffer>).equals(Buffer.from(fileData))).toBe(true)
        if (layout === "usual" && pdu.length > 1024) {
          // The block is views into the reads; at most the frame's first bytes were copied.
          const copied = pieces.filter((p) => p.buffer !== pdu.buffer).reduce((n, p) => n + p.length, 0)
          expect(copied).toBeLessThanOrEqual(FIRST_PIECE_MIN)
        }
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "refuses what the protobuf decoder refuses: a truncated or garbled body",
    { size: dataLength, seed: fc.nat(), cut: fc.nat(), garble: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }) },
    ({ cut, garble, seed, size }) => {
      const whole = encodePdu(Pdu.PullDataRsp, 1, { resultCode: 0, taskId: "t", userId: 2, offset: 3, fileData: filled(size, seed) })
      const bodyLength = cut % (whole.length - HEADER_BYTES + 1)
      const body = Buffer.from(whole.subarray(HEADER_BYTES, HEADER_BYTES + bodyLength))
      // Garbling only the field prefix keeps the test about field parsing, not about the block's bytes.
      for (const [at, value] of garble) if (body.length > 0) body[at % Math.min(body.length, 12)] = value
      const header = refHeader({ length: HEADER_BYTES + body.length, version: 1, flag: 0, serviceId: 5, commandId: 0x0505, seq: 1, reserved: 0 })
      const [frame] = framesOf([Buffer.concat([header, body])])
      const fast = decodeDataBlock(frame!)
      const reference = Pdu.PullDataRsp.decodeBody(body)
      expect(Either.isRight(fast)).toBe(Either.isRight(reference))
    },
    { fastCheck: { numRuns: 500 } }
  )
})
