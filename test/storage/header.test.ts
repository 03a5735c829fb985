/**
 * TeamTalk's 960-byte offline-file header (reference section 6,
 * src/storage/header.ts): six NUL-padded fields at fixed offsets. Encoding
 * and decoding round-trip for every value the server stores; a file name
 * longer than its slot is cut on a UTF-8 character boundary; any garbage
 * decodes or throws HeaderError, never anything else.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import type { StoredHeader } from "../../src/storage/header.js"
import { decodeHeader, encodeHeader, HEADER_BYTES, HeaderError } from "../../src/storage/header.js"

const NAME_BYTES = 511
const u32 = fc.integer({ min: 0, max: 0xffffffff })
const utf8Length = (s: string) => Buffer.byteLength(s, "utf8")

/** Characters of every UTF-8 length (1 to 4 bytes), never NUL: a NUL ends a field. */
const nameChar = fc.oneof(
  fc.integer({ min: 0x01, max: 0x7f }),
  fc.integer({ min: 0x80, max: 0x7ff }),
  fc.integer({ min: 0x800, max: 0xd7ff }),
  fc.integer({ min: 0xe000, max: 0xffff }),
  fc.integer({ min: 0x10000, max: 0x10ffff })
).map((cp) => String.fromCodePoint(cp))

/** File names of any length up to well past the slot. */
const anyName = fc.array(nameChar, { maxLength: 300 }).map((cs) => cs.join(""))
/** File names that fit the slot, many of them right at its limit. */
const fittingName = fc.oneof(
  anyName.filter((n) => utf8Length(n) <= NAME_BYTES),
  anyName.map((n) => {
    let s = n
    while (utf8Length(s) < NAME_BYTES) s += "a"
    return s
  }),
  fc.constant("a".repeat(NAME_BYTES)),
  fc.constant("€".repeat(170) + "a"),
  fc.constant("")
)

/** Task ids: ours (canonical UUIDs), or any ASCII text without NUL that fits the 128-byte slot. */
const taskIdArb = fc.oneof(
  fc.uuid(),
  fc.stringOf(fc.integer({ min: 0x01, max: 0x7f }).map((c) => String.fromCharCode(c)), { maxLength: 127 })
)

const headerArb = (name: fc.Arbitrary<string>): fc.Arbitrary<StoredHeader> =>
  fc.record({
    taskId: taskIdArb,
    fromUserId: u32,
    toUserId: u32,
    createTime: fc.oneof(fc.integer({ min: 0, max: 2 ** 34 }), fc.maxSafeNat()),
    fileName: name,
    fileSize: fc.oneof(u32, fc.constantFrom(0, 1, 0xffffffff))
  })

/** A field read straight from its offset: the text up to the first NUL. */
const field = (buf: Buffer, offset: number, width: number) => {
  const slot = buf.subarray(offset, offset + width)
  const nul = slot.indexOf(0)
  return slot.subarray(0, nul < 0 ? width : nul).toString("utf8")
}

describe("offline-file header codec", () => {
  it("lays the fields out at TeamTalk's offsets (0, 128, 192, 256, 384, 896), NUL-padded, 960 bytes in all", () => {
    const h: StoredHeader = {
      taskId: "3fa85f64-5717-4562-b3fc-2c963f66afa6",
      fromUserId: 4294967295,
      toUserId: 7,
      createTime: 1_700_000_000,
      fileName: "报告 ✓.pdf",
      fileSize: 123456
    }
    const buf = encodeHeader(h)
    expect(buf.length).toBe(HEADER_BYTES)
    expect(HEADER_BYTES).toBe(960)
    expect(field(buf, 0, 128)).toBe(h.taskId)
    expect(field(buf, 128, 64)).toBe("4294967295")
    expect(field(buf, 192, 64)).toBe("7")
    expect(field(buf, 256, 128)).toBe("1700000000")
    expect(field(buf, 384, 512)).toBe(h.fileName)
    expect(field(buf, 896, 64)).toBe("123456")
    // Everything after each field's text is NUL.
    const used = new Set<number>()
    for (const [offset, text] of [
      [0, h.taskId],
      [128, "4294967295"],
      [192, "7"],
      [256, "1700000000"],
      [384, h.fileName],
      [896, "123456"]
    ] as const) {
      for (let i = 0; i < Buffer.byteLength(text); i++) used.add(offset + i)
    }
    for (let i = 0; i < HEADER_BYTES; i++) if (!used.has(i)) expect(buf[i]).toBe(0)
  })

  it.prop(
    "decodeHeader(encodeHeader(h)) = h for task ids, uint32 user ids, create times, names up to 511 bytes, sizes up to 2^32-1",
    { h: headerArb(fittingName) },
    ({ h }) => {
      const buf = encodeHeader(h)
      expect(buf.length).toBe(HEADER_BYTES)
      expect(decodeHeader(buf)).toStrictEqual(h)
      // Decoding does not depend on where the bytes sit in memory, nor on what follows them.
      const shifted = Buffer.concat([Buffer.from([1, 2, 3]), buf, Buffer.from("trailing file data")]).subarray(3)
      expect(decodeHeader(shifted)).toStrictEqual(h)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "a longer name is cut to at most 511 bytes on a UTF-8 character boundary: a prefix of the name, short of the limit by less than one character",
    { h: headerArb(anyName) },
    ({ h }) => {
      const decoded = decodeHeader(encodeHeader(h))
      expect({ ...decoded, fileName: h.fileName }).toStrictEqual(h)
      const name = decoded.fileName
      if (utf8Length(h.fileName) <= NAME_BYTES) {
        expect(name).toBe(h.fileName)
        return
      }
      expect(utf8Length(name)).toBeLessThanOrEqual(NAME_BYTES)
      expect(h.fileName.startsWith(name)).toBe(true)
      // Whole characters only: no replacement character appeared, and the next character would not have fitted.
      expect(name.includes("\ufffd")).toBe(false)
      const next = String.fromCodePoint(h.fileName.codePointAt(name.length)!)
      expect(utf8Length(name) + utf8Length(next)).toBeGreaterThan(NAME_BYTES)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("names cut at each UTF-8 length: 1-, 2-, 3- and 4-byte characters straddling byte 511", () => {
    for (const [pad, ch] of [
      [510, "é"],
      [510, "€"],
      [509, "€"],
      [510, "😀"],
      [509, "😀"],
      [508, "😀"],
      [511, "x"]
    ] as const) {
      const name = "a".repeat(pad) + ch + "tail"
      const cut = decodeHeader(encodeHeader({ taskId: "t", fromUserId: 1, toUserId: 2, createTime: 3, fileName: name, fileSize: 4 })).fileName
      const expected = pad + utf8Length(ch) <= NAME_BYTES ? "a".repeat(pad) + ch : "a".repeat(pad)
      expect(cut).toBe(expected)
    }
  })

  it.prop(
    "any bytes at all decode or throw HeaderError, never anything else",
    { bytes: fc.uint8Array({ maxLength: 1100 }) },
    ({ bytes }) => {
      try {
        decodeHeader(bytes)
      } catch (e) {
        expect(e).toBeInstanceOf(HeaderError)
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "a valid header with bytes overwritten decodes or throws HeaderError; what decodes has decimal fields in range",
    {
      h: headerArb(fittingName),
      edits: fc.array(fc.record({ at: fc.integer({ min: 0, max: HEADER_BYTES - 1 }), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 12 })
    },
    ({ edits, h }) => {
      const buf = encodeHeader(h)
      for (const e of edits) buf[e.at] = e.value
      let decoded: StoredHeader
      try {
        decoded = decodeHeader(buf)
      } catch (e) {
        expect(e).toBeInstanceOf(HeaderError)
        return
      }
      for (const n of [decoded.fromUserId, decoded.toUserId, decoded.createTime, decoded.fileSize]) {
        expect(Number.isSafeInteger(n) && n >= 0).toBe(true)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("throws HeaderError for short buffers, non-decimal, empty, signed, over-long and unsafe numbers", () => {
    const good = encodeHeader({ taskId: "x", fromUserId: 1, toUserId: 2, createTime: 3, fileName: "n", fileSize: 4 })
    expect(() => decodeHeader(good.subarray(0, HEADER_BYTES - 1))).toThrow(HeaderError)
    expect(() => decodeHeader(new Uint8Array(0))).toThrow(HeaderError)
    const withField = (offset: number, width: number, text: string) => {
      const b = Buffer.from(good)
      b.fill(0, offset, offset + width)
      b.write(text, offset, "latin1")
      return b
    }
    for (const bad of ["", "-1", "+1", "1.5", "1e3", " 1", "0x10", "12345678901234567890123", "99999999999999999999", "1".repeat(64)]) {
      expect(() => decodeHeader(withField(896, 64, bad))).toThrow(HeaderError)
      expect(() => decodeHeader(withField(128, 64, bad))).toThrow(HeaderError)
    }
    expect(() => decodeHeader(Buffer.alloc(HEADER_BYTES))).toThrow(HeaderError)
    expect(() => decodeHeader(Buffer.alloc(HEADER_BYTES, 0xff))).toThrow(HeaderError)
  })
})
