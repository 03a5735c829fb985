import { Either } from "effect"
import { FileCmd, ServiceId } from "./commands.js"
import type { Bytes, Frame } from "./frame.js"
import { frameBody } from "./frame.js"
import { HEADER_BYTES, PDU_VERSION, writeHeader } from "./header.js"
import type { BodyDecodeError } from "./messages.js"
import { Pdu } from "./messages.js"

/**
 * Hand-rolled encoder for the one PDU on the per-block path, PULL_DATA_RSP:
 * it builds the header and every field up to file_data's length prefix, so
 * the block itself is written after it (writev) instead of being copied
 * twice by a protobuf writer. Field order and encoding match protobufjs.
 */

const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5)

const writeVarint = (buf: Buffer, offset: number, n: number): number => {
  let v = n >>> 0
  while (v >= 0x80) {
    buf[offset++] = (v & 0x7f) | 0x80
    v >>>= 7
  }
  buf[offset++] = v
  return offset
}

export interface DataBlockHead {
  readonly seq: number
  readonly resultCode: number
  readonly taskId: string
  readonly userId: number
  readonly offset: number
  readonly dataLength: number
}

/** Bytes of a PULL_DATA_RSP frame before its data: header and fields 1-4 plus field 5's tag and length. */
export const encodePullDataRspHead = (h: DataBlockHead): Buffer => {
  const taskIdBytes = Buffer.byteLength(h.taskId)
  const bodyBeforeData =
    1 + varintSize(h.resultCode) +
    1 + varintSize(taskIdBytes) + taskIdBytes +
    1 + varintSize(h.userId) +
    1 + varintSize(h.offset) +
    1 + varintSize(h.dataLength)
  const headLength = HEADER_BYTES + bodyBeforeData
  const buf = Buffer.allocUnsafe(headLength)
  writeHeader(buf, {
    length: headLength + h.dataLength,
    version: PDU_VERSION,
    flag: 0,
    serviceId: ServiceId.File,
    commandId: FileCmd.PullDataRsp,
    seq: h.seq,
    reserved: 0
  })
  let o = HEADER_BYTES
  buf[o++] = 0x08
  o = writeVarint(buf, o, h.resultCode)
  buf[o++] = 0x12
  o = writeVarint(buf, o, taskIdBytes)
  o += buf.write(h.taskId, o)
  buf[o++] = 0x18
  o = writeVarint(buf, o, h.userId)
  buf[o++] = 0x20
  o = writeVarint(buf, o, h.offset)
  buf[o++] = 0x2a
  writeVarint(buf, o, h.dataLength)
  return buf
}

/**
 * The largest file_data a PULL_DATA_RSP can carry within `maxFrameBytes`
 * when its task id is `taskIdBytes` long (the other fields at their widest).
 */
export const maxBlockBytes = (maxFrameBytes: number, taskIdBytes: number): number =>
  maxFrameBytes - HEADER_BYTES - (1 + 5) - (1 + varintSize(taskIdBytes) + taskIdBytes) - (1 + 5) - (1 + 5) - (1 + 5)

/**
 * A PULL_DATA_RSP as the per-block path needs it: the fields, and the block
 * as views into the frame's pieces (never copied).
 */
export interface DataBlock {
  readonly resultCode: number
  readonly taskId: string
  readonly userId: number
  readonly offset: number
  readonly data: Bytes
  readonly dataLength: number
}

/** A varint of at most 5 bytes (uint32) at `at`: [value, next offset], or undefined if it runs past `end` or is longer. */
const readVarint = (buf: Buffer, at: number, end: number): readonly [number, number] | undefined => {
  let value = 0
  for (let i = 0; i < 5 && at + i < end; i++) {
    const b = buf[at + i]!
    value += (b & 0x7f) * 2 ** (7 * i)
    if (b < 0x80) return [value >>> 0, at + i + 1]
  }
  return undefined
}

/**
 * Reads fields 1-4 in order and field 5's tag and length from the first piece, as every
 * protobuf encoder writes them; undefined for any other layout (the caller then decodes
 * the contiguous body the slow way).
 */
const readFastPath = (frame: Frame): DataBlock | undefined => {
  const head = frame.parts[0]!
  const end = head.length
  let at = HEADER_BYTES
  const field = (tag: number): number | undefined => {
    if (head[at] !== tag) return undefined
    const v = readVarint(head, at + 1, end)
    if (v === undefined) return undefined
    at = v[1]
    return v[0]
  }
  const resultCode = field(0x08)
  if (resultCode === undefined) return undefined
  const taskIdLength = field(0x12)
  if (taskIdLength === undefined || at + taskIdLength > end) return undefined
  const taskId = head.toString("utf8", at, at + taskIdLength)
  at += taskIdLength
  const userId = field(0x18)
  const offset = field(0x20)
  const dataLength = field(0x2a)
  if (userId === undefined || offset === undefined || dataLength === undefined) return undefined
  // The block must be the rest of the frame exactly; anything after it is another layout.
  if (at + dataLength !== frame.length) return undefined
  const data: Array<Buffer> = []
  if (at < head.length) data.push(head.subarray(at))
  for (let i = 1; i < frame.parts.length; i++) data.push(frame.parts[i]!)
  return { resultCode, taskId, userId, offset, data, dataLength }
}

/** Decodes a PULL_DATA_RSP frame, checking it as strictly as the protobuf decoder (every required field present). */
export const decodeDataBlock = (frame: Frame): Either.Either<DataBlock, BodyDecodeError> => {
  const fast = readFastPath(frame)
  if (fast !== undefined) return Either.right(fast)
  return Either.map(Pdu.PullDataRsp.decodeBody(frameBody(frame)), (m) => ({
    resultCode: m.resultCode,
    taskId: m.taskId,
    userId: m.userId,
    offset: m.offset,
    data: m.fileData.length > 0 ? [Buffer.from(m.fileData.buffer, m.fileData.byteOffset, m.fileData.length)] : [],
    dataLength: m.fileData.length
  }))
}
