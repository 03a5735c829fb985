/**
 * Test-only helpers for the protocol tests: fast-check arbitraries, and an
 * independent reference encoding of the TeamTalk wire format written from
 * /work/shared/reference/teamtalk-file-protocol.md sections 1 and 3 (not from
 * src/ or proto/), so the codecs under test are checked against the contract
 * rather than against themselves.
 */
import { FastCheck as fc } from "effect"

// ---------------------------------------------------------------------------
// Integers

/** uint32 biased towards the varint width boundaries and the extremes. */
export const VARINT_EDGES: ReadonlyArray<number> = [
  0, 1, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1
]
export const u32: fc.Arbitrary<number> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(...VARINT_EDGES) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) }
)
export const u16: fc.Arbitrary<number> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 0xffff }) }
)

/** Well-formed strings: ASCII, full unicode (astral planes included) and long ones (2-byte length prefix). */
export const wireString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.uuid() },
  { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 60, maxLength: 200 }) }
)

export const wireBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 120, maxLength: 400 }) }
)

/** Deterministic pseudo-random filler, cheaper than generating big arrays element by element. */
export const filled = (size: number, seed: number): Buffer => {
  const b = Buffer.allocUnsafe(size)
  let x = (seed >>> 0) || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    b[i] = x & 0xff
  }
  return b
}

// ---------------------------------------------------------------------------
// Reference wire encoding

export const varint = (n: number): Array<number> => {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not a uint32: ${n}`)
  const out: Array<number> = []
  let v = n
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return out
}

/** Big-endian 16-byte header, written byte by byte (section 1). */
export const refHeader = (h: {
  length: number
  version: number
  flag: number
  serviceId: number
  commandId: number
  seq: number
  reserved: number
}): Buffer => {
  const be32 = (n: number) => [Math.floor(n / 2 ** 24) % 256, Math.floor(n / 2 ** 16) % 256, Math.floor(n / 256) % 256, n % 256]
  const be16 = (n: number) => [Math.floor(n / 256) % 256, n % 256]
  return Buffer.from([
    ...be32(h.length),
    ...be16(h.version),
    ...be16(h.flag),
    ...be16(h.serviceId),
    ...be16(h.commandId),
    ...be16(h.seq),
    ...be16(h.reserved)
  ])
}

export type Kind =
  | { readonly _tag: "uint32" }
  | { readonly _tag: "string" }
  | { readonly _tag: "bytes" }
  | { readonly _tag: "enum"; readonly values: ReadonlyArray<number> }
  | { readonly _tag: "message"; readonly fields: MessageSchema }

export interface FieldSchema {
  readonly name: string
  readonly no: number
  readonly rule: "required" | "optional" | "repeated"
  readonly kind: Kind
}
export type MessageSchema = ReadonlyArray<FieldSchema>

const UINT32: Kind = { _tag: "uint32" }
const STRING: Kind = { _tag: "string" }
const BYTES: Kind = { _tag: "bytes" }
const enumOf = (...values: Array<number>): Kind => ({ _tag: "enum", values })
const msg = (fields: MessageSchema): Kind => ({ _tag: "message", fields })
const req = (name: string, no: number, kind: Kind): FieldSchema => ({ name, no, rule: "required", kind })
const opt = (name: string, no: number, kind: Kind): FieldSchema => ({ name, no, rule: "optional", kind })
const rep = (name: string, no: number, kind: Kind): FieldSchema => ({ name, no, rule: "repeated", kind })

// Enums (IM.BaseDefine)
const TransferFileType = enumOf(1, 2)
const ClientFileState = enumOf(0, 1, 2, 3)
const ClientFileRole = enumOf(1, 2, 3, 4)

// Shared messages (IM.BaseDefine)
export const IpAddr: MessageSchema = [req("ip", 1, STRING), req("port", 2, UINT32)]
export const OfflineFileInfo: MessageSchema = [
  req("fromUserId", 1, UINT32),
  req("taskId", 2, STRING),
  req("fileName", 3, STRING),
  req("fileSize", 4, UINT32)
]

export interface PduSpec {
  readonly serviceId: number
  readonly commandId: number
  readonly fields: MessageSchema
}

/** Section 2 (ids) and section 3 (fields), keyed like `Pdu` in src/protocol/messages.ts. */
export const SPECS = {
  LoginReq: {
    serviceId: 5,
    commandId: 0x0501,
    fields: [req("userId", 1, UINT32), req("taskId", 2, STRING), req("fileRole", 3, ClientFileRole)]
  },
  LoginRes: { serviceId: 5, commandId: 0x0502, fields: [req("resultCode", 1, UINT32), req("taskId", 2, STRING)] },
  State: {
    serviceId: 5,
    commandId: 0x0503,
    fields: [req("state", 1, ClientFileState), req("taskId", 2, STRING), req("userId", 3, UINT32)]
  },
  PullDataReq: {
    serviceId: 5,
    commandId: 0x0504,
    fields: [
      req("taskId", 1, STRING),
      req("userId", 2, UINT32),
      req("transMode", 3, TransferFileType),
      req("offset", 4, UINT32),
      req("dataSize", 5, UINT32)
    ]
  },
  PullDataRsp: {
    serviceId: 5,
    commandId: 0x0505,
    fields: [
      req("resultCode", 1, UINT32),
      req("taskId", 2, STRING),
      req("userId", 3, UINT32),
      req("offset", 4, UINT32),
      req("fileData", 5, BYTES)
    ]
  },
  Request: {
    serviceId: 5,
    commandId: 0x0506,
    fields: [
      req("fromUserId", 1, UINT32),
      req("toUserId", 2, UINT32),
      req("fileName", 3, STRING),
      req("fileSize", 4, UINT32),
      req("transMode", 5, TransferFileType)
    ]
  },
  Response: {
    serviceId: 5,
    commandId: 0x0507,
    fields: [
      req("resultCode", 1, UINT32),
      req("fromUserId", 2, UINT32),
      req("toUserId", 3, UINT32),
      req("fileName", 4, STRING),
      req("taskId", 5, STRING),
      rep("ipAddrList", 6, msg(IpAddr)),
      req("transMode", 7, TransferFileType)
    ]
  },
  Notify: {
    serviceId: 5,
    commandId: 0x0508,
    fields: [
      req("fromUserId", 1, UINT32),
      req("toUserId", 2, UINT32),
      req("fileName", 3, STRING),
      req("fileSize", 4, UINT32),
      req("taskId", 5, STRING),
      rep("ipAddrList", 6, msg(IpAddr)),
      req("transMode", 7, TransferFileType),
      req("offlineReady", 8, UINT32)
    ]
  },
  HasOfflineReq: {
    serviceId: 5,
    commandId: 0x0509,
    fields: [req("userId", 1, UINT32), opt("attachData", 20, BYTES)]
  },
  HasOfflineRes: {
    serviceId: 5,
    commandId: 0x050a,
    fields: [
      req("userId", 1, UINT32),
      rep("offlineFileList", 2, msg(OfflineFileInfo)),
      rep("ipAddrList", 3, msg(IpAddr)),
      opt("attachData", 20, BYTES)
    ]
  },
  AddOfflineReq: {
    serviceId: 5,
    commandId: 0x050b,
    fields: [
      req("fromUserId", 1, UINT32),
      req("toUserId", 2, UINT32),
      req("taskId", 3, STRING),
      req("fileName", 4, STRING),
      req("fileSize", 5, UINT32)
    ]
  },
  DelOfflineReq: {
    serviceId: 5,
    commandId: 0x050c,
    fields: [req("fromUserId", 1, UINT32), req("toUserId", 2, UINT32), req("taskId", 3, STRING)]
  },
  HeartBeat: { serviceId: 7, commandId: 0x0701, fields: [] },
  TransferReq: {
    serviceId: 7,
    commandId: 0x0731,
    fields: [
      req("fromUserId", 1, UINT32),
      req("toUserId", 2, UINT32),
      req("fileName", 3, STRING),
      req("fileSize", 4, UINT32),
      req("transMode", 5, TransferFileType),
      opt("attachData", 20, BYTES)
    ]
  },
  TransferRsp: {
    serviceId: 7,
    commandId: 0x0732,
    fields: [
      req("resultCode", 1, UINT32),
      req("fromUserId", 2, UINT32),
      req("toUserId", 3, UINT32),
      opt("fileName", 4, STRING),
      opt("fileSize", 5, UINT32),
      opt("taskId", 6, STRING),
      opt("transMode", 7, TransferFileType),
      opt("attachData", 20, BYTES)
    ]
  },
  ServerIpReq: { serviceId: 7, commandId: 0x0733, fields: [] },
  ServerIpRsp: { serviceId: 7, commandId: 0x0734, fields: [rep("ipAddrList", 1, msg(IpAddr))] }
} as const satisfies Record<string, PduSpec>

export type SpecName = keyof typeof SPECS
export const SPEC_NAMES = Object.keys(SPECS) as Array<SpecName>

export type Msg = Record<string, unknown>

const wireType = (kind: Kind): number => (kind._tag === "uint32" || kind._tag === "enum" ? 0 : 2)

const encodeValue = (kind: Kind, value: unknown): Array<number> => {
  switch (kind._tag) {
    case "uint32":
    case "enum":
      return varint(value as number)
    case "string": {
      const b = Buffer.from(value as string, "utf8")
      return [...varint(b.length), ...b]
    }
    case "bytes": {
      const b = value as Uint8Array
      return [...varint(b.length), ...b]
    }
    case "message": {
      const b = refEncode(kind.fields, value as Msg)
      return [...varint(b.length), ...b]
    }
  }
}

/**
 * proto2 encoding of `message` in field-number order (what protobufjs does).
 * Fields absent from `message` are not written, whatever their rule, so a
 * required field can be dropped on purpose.
 */
export const refEncode = (fields: MessageSchema, message: Msg): Buffer => {
  const out: Array<number> = []
  for (const f of [...fields].sort((a, b) => a.no - b.no)) {
    const v = message[f.name]
    if (v === undefined) continue
    const values = f.rule === "repeated" ? (v as ReadonlyArray<unknown>) : [v]
    for (const x of values) out.push(...varint(f.no * 8 + wireType(f.kind)), ...encodeValue(f.kind, x))
  }
  return Buffer.from(out)
}

// ---------------------------------------------------------------------------
// Arbitrary messages

const kindArb = (kind: Kind): fc.Arbitrary<unknown> => {
  switch (kind._tag) {
    case "uint32":
      return u32
    case "string":
      return wireString
    case "bytes":
      return wireBytes
    case "enum":
      return fc.constantFrom(...kind.values)
    case "message":
      return messageArb(kind.fields)
  }
}

/** Valid messages: every required field set, repeated fields 0..3 long, optional fields sometimes absent (key omitted). */
export const messageArb = (fields: MessageSchema): fc.Arbitrary<Msg> => {
  const model: Record<string, fc.Arbitrary<unknown>> = {}
  for (const f of fields) model[f.name] = f.rule === "repeated" ? fc.array(kindArb(f.kind), { maxLength: 3 }) : kindArb(f.kind)
  const requiredKeys = fields.filter((f) => f.rule !== "optional").map((f) => f.name)
  return fc.record(model, { requiredKeys }) as fc.Arbitrary<Msg>
}

// ---------------------------------------------------------------------------
// Comparison

/**
 * Plain, comparable form of a message: own enumerable keys only (protobufjs
 * keeps defaults on the prototype), bytes as hex whatever their class
 * (decoded bytes are Buffer views into the body).
 */
export const normalise = (v: unknown): unknown => {
  if (v instanceof Uint8Array) return { hex: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") }
  if (Array.isArray(v)) return v.map(normalise)
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>
    return Object.fromEntries(Object.keys(o).sort().map((k) => [k, normalise(o[k])]))
  }
  return v
}

/** Slices `bytes` at `points` (ascending; a repeated point yields an empty slice). */
export const sliceAt = (bytes: Buffer, points: ReadonlyArray<number>): Array<Buffer> => {
  const out: Array<Buffer> = []
  let prev = 0
  for (const p of points) {
    out.push(bytes.subarray(prev, p))
    prev = p
  }
  out.push(bytes.subarray(prev))
  return out
}
