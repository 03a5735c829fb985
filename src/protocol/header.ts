/**
 * The 16-byte PDU header (all integers big-endian), see docs/protocol.md.
 */
export const HEADER_BYTES = 16
export const PDU_VERSION = 1

export interface PduHeader {
  /** Whole PDU length, header included. */
  readonly length: number
  readonly version: number
  readonly flag: number
  readonly serviceId: number
  readonly commandId: number
  readonly seq: number
  readonly reserved: number
}

export const writeHeader = (buf: Buffer, header: PduHeader, offset = 0): void => {
  buf.writeUInt32BE(header.length, offset)
  buf.writeUInt16BE(header.version, offset + 4)
  buf.writeUInt16BE(header.flag, offset + 6)
  buf.writeUInt16BE(header.serviceId, offset + 8)
  buf.writeUInt16BE(header.commandId, offset + 10)
  buf.writeUInt16BE(header.seq, offset + 12)
  buf.writeUInt16BE(header.reserved, offset + 14)
}

export const readHeader = (buf: Buffer, offset = 0): PduHeader => ({
  length: buf.readUInt32BE(offset),
  version: buf.readUInt16BE(offset + 4),
  flag: buf.readUInt16BE(offset + 6),
  serviceId: buf.readUInt16BE(offset + 8),
  commandId: buf.readUInt16BE(offset + 10),
  seq: buf.readUInt16BE(offset + 12),
  reserved: buf.readUInt16BE(offset + 14)
})

/** Rewrites the seq of an encoded PDU in place (forwarding keeps the body bytes untouched). */
export const patchSeq = (pdu: Buffer, seq: number): void => {
  pdu.writeUInt16BE(seq, 12)
}
