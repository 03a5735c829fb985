import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { HEADER_BYTES, readHeader } from "../../src/protocol/header.js"
import { BodyDecodeError, encodePdu, isPdu, Pdu } from "../../src/protocol/messages.js"
import type { PduType } from "../../src/protocol/messages.js"
import { messageArb, normalise, refEncode, SPEC_NAMES, SPECS, u16, varint } from "./wire.js"
import type { FieldSchema, Kind, MessageSchema, Msg, SpecName } from "./wire.js"

/** The PduType under test, seen through the untyped message shape the generators produce. */
const pduOf = (name: SpecName): PduType<Msg> => Pdu[name] as unknown as PduType<Msg>

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")

const decodeRight = (name: SpecName, body: Uint8Array): Msg => {
  const r = pduOf(name).decodeBody(body)
  if (Either.isLeft(r)) throw new Error(`${name}: expected Right, got ${r.left.message}`)
  return r.right
}

const expectLeft = (name: SpecName, body: Uint8Array) => {
  const r = pduOf(name).decodeBody(body)
  expect(Either.isLeft(r)).toBe(true)
  if (Either.isLeft(r)) {
    expect(r.left).toBeInstanceOf(BodyDecodeError)
    expect(r.left._tag).toBe("BodyDecodeError")
    expect(r.left.type).toBe(Pdu[name].name)
  }
}

const requiredFields = (fields: MessageSchema) => fields.filter((f) => f.rule === "required")

const checkKind = (kind: Kind, v: unknown, path: string) => {
  switch (kind._tag) {
    case "uint32":
      if (!(Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff)) throw new Error(`${path}: not a uint32: ${String(v)}`)
      return
    case "enum":
      if (!kind.values.includes(v as number)) throw new Error(`${path}: ${String(v)} is not one of ${kind.values.join(",")}`)
      return
    case "string":
      if (typeof v !== "string") throw new Error(`${path}: not a string`)
      return
    case "bytes":
      if (!(v instanceof Uint8Array)) throw new Error(`${path}: not a Uint8Array`)
      return
    case "message":
      checkMessage(kind.fields, v as Msg, path)
  }
}

/** A decoded message carries every required field (as its own property) with a value of its declared type. */
const checkMessage = (fields: MessageSchema, m: Msg, path: string) => {
  for (const f of fields) {
    const own = Object.prototype.hasOwnProperty.call(m, f.name)
    if (f.rule === "required" && !own) throw new Error(`${path}.${f.name}: required field missing`)
    if (!own) continue
    const v = m[f.name]
    if (f.rule === "repeated") {
      if (!Array.isArray(v)) throw new Error(`${path}.${f.name}: not an array`)
      v.forEach((x, i) => checkKind(f.kind, x, `${path}.${f.name}[${i}]`))
    } else checkKind(f.kind, v, `${path}.${f.name}`)
  }
}

describe("Pdu table", () => {
  it("has the service and command ids of reference section 2, and nothing untested", () => {
    expect(Object.keys(Pdu).sort()).toStrictEqual([...SPEC_NAMES].sort())
    for (const name of SPEC_NAMES) {
      expect({ name, serviceId: Pdu[name].serviceId, commandId: Pdu[name].commandId }).toStrictEqual({
        name,
        serviceId: SPECS[name].serviceId,
        commandId: SPECS[name].commandId
      })
    }
  })

  it.prop(
    "encodePdu frames the body under the type's ids and the given seq",
    { seq: u16, userId: fc.integer({ min: 0, max: 0xffffffff }), taskId: fc.string() },
    ({ seq, taskId, userId }) => {
      const message = { userId, taskId, fileRole: 2 as const }
      const pdu = encodePdu(Pdu.LoginReq, seq, message)
      const body = Pdu.LoginReq.encodeBody(message)
      expect(readHeader(pdu)).toStrictEqual({
        length: HEADER_BYTES + body.length,
        version: 1,
        flag: 0,
        serviceId: 5,
        commandId: 0x0501,
        seq,
        reserved: 0
      })
      expect(hex(pdu.subarray(HEADER_BYTES))).toBe(hex(body))
      const frame = { serviceId: pdu.readUInt16BE(8), commandId: pdu.readUInt16BE(10) }
      expect(isPdu(frame, Pdu.LoginReq)).toBe(true)
      expect(isPdu(frame, Pdu.LoginRes)).toBe(false)
      expect(isPdu(frame, { serviceId: 7, commandId: 0x0501 })).toBe(false)
    }
  )
})

describe("message bodies, hand-encoded from the reference", () => {
  // Every byte below was worked out by hand from section 3's field numbers.
  const cases: ReadonlyArray<{ name: SpecName; message: Msg; bytes: string; why: string }> = [
    {
      name: "LoginReq",
      message: { userId: 1, taskId: "ab", fileRole: 4 },
      bytes: "0801" + "12026162" + "1804",
      why: "IM.File: user_id=1 varint, task_id=2 string, file_role=3 enum"
    },
    {
      name: "PullDataRsp",
      message: { resultCode: 0, taskId: "x", userId: 7, offset: 128, fileData: new Uint8Array([1, 2, 3]) },
      bytes: "0800" + "120178" + "1807" + "208001" + "2a03010203",
      why: "IM.File: required result_code 0 is still written; offset 128 is a 2-byte varint; file_data=5 bytes"
    },
    {
      name: "HasOfflineRes",
      message: {
        userId: 5,
        offlineFileList: [{ fromUserId: 1, taskId: "t", fileName: "n", fileSize: 0xffffffff }],
        ipAddrList: []
      },
      bytes: "0805" + "120e" + "0801" + "120174" + "1a016e" + "20ffffffff0f",
      why: "IM.File + IM.BaseDefine.OfflineFileInfo: nested message, 5-byte varint for 2^32-1, empty repeated omitted"
    },
    {
      name: "TransferReq",
      message: { fromUserId: 300, toUserId: 2, fileName: "f", fileSize: 0, transMode: 2, attachData: new Uint8Array([0xde, 0xad]) },
      bytes: "08ac02" + "1002" + "1a0166" + "2000" + "2802" + "a20102dead",
      why: "IM.Server: attach_data=20 has the 2-byte tag a2 01"
    },
    {
      name: "TransferRsp",
      message: { resultCode: 1, fromUserId: 2, toUserId: 3 },
      bytes: "0801" + "1002" + "1803",
      why: "IM.Server: absent optional fields are not written"
    },
    {
      name: "ServerIpRsp",
      message: { ipAddrList: [{ ip: "1.2.3.4", port: 8600 }, { ip: "", port: 0 }] },
      bytes: "0a0c" + "0a07312e322e332e34" + "109843" + "0a04" + "0a00" + "1000",
      why: "IM.Server + IM.BaseDefine.IpAddr: ip_addr_list=1, ip=1, port=2"
    },
    { name: "HeartBeat", message: {}, bytes: "", why: "IM.Other: empty message" },
    { name: "ServerIpReq", message: {}, bytes: "", why: "IM.Server: empty message" }
  ]

  for (const c of cases) {
    it(`${c.name}: ${c.why}`, () => {
      expect(hex(pduOf(c.name).encodeBody(c.message))).toBe(c.bytes)
      expect(hex(refEncode(SPECS[c.name].fields, c.message))).toBe(c.bytes)
      expect(normalise(decodeRight(c.name, Buffer.from(c.bytes, "hex")))).toStrictEqual(normalise(c.message))
    })
  }
})

describe("message bodies, every PduType", () => {
  for (const name of SPEC_NAMES) {
    const spec = SPECS[name]
    const fields: MessageSchema = spec.fields
    const arb = messageArb(fields)

    describe(name, () => {
      it.prop(
        "decodeBody(encodeBody(x)) = x, and the bytes match the reference encoding",
        { x: arb },
        ({ x }) => {
          const pdu = pduOf(name)
          const body = pdu.encodeBody(x)
          expect(hex(body)).toBe(hex(refEncode(fields, x)))
          const decoded = decodeRight(name, body)
          expect(normalise(decoded)).toStrictEqual(normalise(x))
          checkMessage(fields, decoded, name)
          // a plain Uint8Array (not a Buffer) decodes the same
          expect(normalise(decodeRight(name, new Uint8Array(body)))).toStrictEqual(normalise(x))
        },
        { fastCheck: { numRuns: 120 } }
      )

      it.prop(
        "unknown fields (numbers 9..19, 21..100) are skipped",
        {
          x: arb,
          unknown: fc.array(
            fc.record({
              no: fc.oneof(fc.integer({ min: 9, max: 19 }), fc.integer({ min: 21, max: 100 })),
              wire: fc.constantFrom(0, 1, 2, 5),
              value: fc.integer({ min: 0, max: 0xffffffff }),
              bytes: fc.uint8Array({ maxLength: 20 })
            }),
            { minLength: 1, maxLength: 4 }
          )
        },
        ({ unknown, x }) => {
          const extra = unknown.flatMap((u) => {
            const tag = varint(u.no * 8 + u.wire)
            switch (u.wire) {
              case 0:
                return [...tag, ...varint(u.value)]
              case 1:
                return [...tag, 1, 2, 3, 4, 5, 6, 7, 8]
              case 5:
                return [...tag, 1, 2, 3, 4]
              default:
                return [...tag, ...varint(u.bytes.length), ...u.bytes]
            }
          })
          // only fields this message does not have
          if (unknown.some((u) => fields.some((f) => f.no === u.no))) return
          const body = Buffer.concat([refEncode(fields, x), Buffer.from(extra)])
          expect(normalise(decodeRight(name, body))).toStrictEqual(normalise(x))
        },
        { fastCheck: { numRuns: 40 } }
      )

      const required = requiredFields(fields)
      if (required.length > 0) {
        it.prop(
          "a body missing any required field decodes to Left(BodyDecodeError)",
          { x: arb, pick: fc.nat() },
          ({ pick, x }) => {
            const field = required[pick % required.length]!
            const { [field.name]: _dropped, ...rest } = x
            expectLeft(name, refEncode(fields, rest))
          },
          { fastCheck: { numRuns: 60 } }
        )
      }

      const enums = fields.filter((f): f is FieldSchema & { kind: { _tag: "enum" } } => f.kind._tag === "enum")
      for (const f of enums) {
        it.prop(
          `an out-of-range ${f.name} is dropped (proto2 closed enum)${f.rule === "required" ? ", so the body is refused" : ""}`,
          {
            x: arb,
            // the neighbours of the defined values first: that is where an extra enum value would hide
            bad: fc
              .oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0x7fffffff }))
              .filter((n) => !f.kind.values.includes(n))
          },
          ({ bad, x }) => {
            const body = refEncode(fields, { ...x, [f.name]: bad })
            if (f.rule === "required") expectLeft(name, body)
            else expect(Object.prototype.hasOwnProperty.call(decodeRight(name, body), f.name)).toBe(false)
          },
          { fastCheck: { numRuns: 40 } }
        )
      }

      it.prop(
        "garbage never throws; whatever decodes has every required field with its declared type",
        {
          body: fc.oneof(
            fc.uint8Array({ maxLength: 200 }),
            // damaged valid bodies reach deeper into the decoder than pure noise
            fc
              .record({ x: arb, cut: fc.nat(), flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }) })
              .map(({ cut, flips, x }) => {
                const b = Buffer.from(refEncode(fields, x))
                for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v
                return b.subarray(0, b.length === 0 ? 0 : b.length - (cut % (b.length + 1)))
              })
          )
        },
        ({ body }) => {
          let r: Either.Either<Msg, BodyDecodeError> | undefined
          expect(() => {
            r = pduOf(name).decodeBody(body)
          }).not.toThrow()
          expect(Either.isEither(r)).toBe(true)
          if (r !== undefined && Either.isRight(r)) checkMessage(fields, r.right, name)
          if (r !== undefined && Either.isLeft(r)) expect(r.left).toBeInstanceOf(BodyDecodeError)
        },
        { fastCheck: { numRuns: 150 } }
      )
    })
  }
})

describe("hostile bodies", () => {
  it("deeply nested groups are refused, not a stack overflow", () => {
    // 0x0b = field 1, wire type 3 (start group), repeated 100k times
    for (const name of ["LoginReq", "HeartBeat", "ServerIpRsp"] as const) expectLeft(name, Buffer.alloc(100_000, 0x0b))
  })

  it("a nested IpAddr or OfflineFileInfo missing a required field makes the whole body Left", () => {
    const ipNoPort = [0x0a, 0x03, 0x0a, 0x01, 0x61] // ip_addr_list { ip: "a" }
    expectLeft("ServerIpRsp", Buffer.from(ipNoPort))
    const okRsp = refEncode(SPECS.Response.fields, {
      resultCode: 0,
      fromUserId: 1,
      toUserId: 2,
      fileName: "f",
      taskId: "t",
      ipAddrList: [],
      transMode: 1
    })
    expectLeft("Response", Buffer.concat([okRsp, Buffer.from([0x32, 0x02, 0x10, 0x01])])) // ip_addr_list { port: 1 }
    // offline_file_list { from_user_id: 1, file_name: "n", file_size: 2 }  (task_id missing)
    expectLeft("HasOfflineRes", Buffer.from([0x08, 0x01, 0x12, 0x07, 0x08, 0x01, 0x1a, 0x01, 0x6e, 0x20, 0x02]))
  })

  it("a length prefix running past the end is refused", () => {
    expectLeft("LoginRes", Buffer.from([0x08, 0x00, 0x12, 0x05, 0x61, 0x62])) // task_id says 5 bytes, 2 present
    expectLeft("PullDataRsp", Buffer.from([0x08, 0x00, 0x12, 0x00, 0x18, 0x00, 0x20, 0x00, 0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f]))
  })
})

describe("absent optional fields", () => {
  // The message interfaces declare these fields optional (`attachData?: Uint8Array`, ...),
  // so code reading a decoded message tests them against undefined. decodeBody returns the
  // protobufjs message itself, whose prototype supplies proto defaults for absent fields
  // ("" / 0 / 1 for trans_mode / a frozen plain Array for bytes), so these fail as of writing.
  const cases: ReadonlyArray<{ name: SpecName; message: Msg; optional: ReadonlyArray<string> }> = [
    {
      name: "TransferRsp",
      message: { resultCode: 0, fromUserId: 1, toUserId: 2 },
      optional: ["fileName", "fileSize", "taskId", "transMode", "attachData"]
    },
    { name: "TransferReq", message: { fromUserId: 1, toUserId: 2, fileName: "f", fileSize: 3, transMode: 1 }, optional: ["attachData"] },
    { name: "HasOfflineReq", message: { userId: 1 }, optional: ["attachData"] },
    { name: "HasOfflineRes", message: { userId: 1, offlineFileList: [], ipAddrList: [] }, optional: ["attachData"] }
  ]
  for (const c of cases) {
    it(`${c.name}: read as undefined when absent from the body`, () => {
      const decoded = decodeRight(c.name, refEncode(SPECS[c.name].fields, c.message))
      const seen = Object.fromEntries(c.optional.map((k) => [k, decoded[k]]))
      expect(seen).toStrictEqual(Object.fromEntries(c.optional.map((k) => [k, undefined])))
    })
  }
})
