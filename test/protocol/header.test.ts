import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { HEADER_BYTES, PDU_VERSION, patchSeq, readHeader, writeHeader } from "../../src/protocol/header.js"
import type { PduHeader } from "../../src/protocol/header.js"
import { refHeader, u16, u32 } from "./wire.js"

const headerArb: fc.Arbitrary<PduHeader> = fc.record({
  length: u32,
  version: u16,
  flag: u16,
  serviceId: u16,
  commandId: u16,
  seq: u16,
  reserved: u16
})

describe("PDU header", () => {
  it("is 16 bytes, version 1 (reference section 1)", () => {
    expect(HEADER_BYTES).toBe(16)
    expect(PDU_VERSION).toBe(1)
  })

  it("lays the fields out big-endian at offsets 0,4,6,8,10,12,14", () => {
    const buf = Buffer.alloc(16)
    writeHeader(buf, { length: 0x01020304, version: 1, flag: 0, serviceId: 5, commandId: 0x0501, seq: 0xabcd, reserved: 0x0e0f })
    expect(buf.toString("hex")).toBe("01020304" + "0001" + "0000" + "0005" + "0501" + "abcd" + "0e0f")
  })

  it.prop(
    "readHeader(writeHeader(h)) = h at any offset, touching only its 16 bytes",
    { h: headerArb, before: fc.nat(40), after: fc.nat(40), fill: fc.integer({ min: 0, max: 255 }) },
    ({ after, before, fill, h }) => {
      const buf = Buffer.alloc(before + HEADER_BYTES + after, fill)
      writeHeader(buf, h, before)
      expect(readHeader(buf, before)).toStrictEqual(h)
      // byte layout against an independent big-endian encoding
      expect(buf.subarray(before, before + HEADER_BYTES).toString("hex")).toBe(refHeader(h).toString("hex"))
      expect(buf.subarray(0, before).every((b) => b === fill)).toBe(true)
      expect(buf.subarray(before + HEADER_BYTES).every((b) => b === fill)).toBe(true)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "readHeader decodes any 16 bytes, and writing the result back gives the same bytes",
    { bytes: fc.uint8Array({ minLength: 16, maxLength: 16 }) },
    ({ bytes }) => {
      const src = Buffer.from(bytes)
      const h = readHeader(src)
      const out = Buffer.alloc(16)
      writeHeader(out, h)
      expect(out.equals(src)).toBe(true)
    }
  )

  it.prop(
    "patchSeq rewrites bytes 12-13 only",
    { h: headerArb, body: fc.uint8Array({ maxLength: 32 }), seq: u16 },
    ({ body, h, seq }) => {
      const pdu = Buffer.concat([refHeader(h), body])
      const original = Buffer.from(pdu)
      patchSeq(pdu, seq)
      expect(readHeader(pdu)).toStrictEqual({ ...h, seq })
      for (let i = 0; i < pdu.length; i++) if (i !== 12 && i !== 13) expect(pdu[i]).toBe(original[i])
    }
  )

  it.prop(
    "writeHeader refuses out-of-range values instead of truncating them",
    {
      h: headerArb,
      field: fc.constantFrom("length", "version", "flag", "serviceId", "commandId", "seq", "reserved"),
      negative: fc.integer({ min: -0xffffffff, max: -1 })
    },
    ({ field, h, negative }) => {
      const max = field === "length" ? 0xffffffff : 0xffff
      expect(() => writeHeader(Buffer.alloc(16), { ...h, [field]: max + 1 })).toThrow(RangeError)
      expect(() => writeHeader(Buffer.alloc(16), { ...h, [field]: negative })).toThrow(RangeError)
    }
  )
})
