import { FileCmd, ServiceId } from "./commands.js"
import { HEADER_BYTES, PDU_VERSION, writeHeader } from "./header.js"

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
