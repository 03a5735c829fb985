import { Data } from "effect"
import { HEADER_BYTES, PDU_VERSION, writeHeader } from "./header.js"

/**
 * Bytes in the pieces they arrived in: views into socket reads, in order.
 * A PDU that straddled two reads stays two pieces, so the per-block path
 * never copies a block to make it contiguous.
 */
export type Bytes = ReadonlyArray<Buffer>

export const bytesLength = (bytes: Bytes): number => {
  let n = 0
  for (const b of bytes) n += b.length
  return n
}

/** Bytes [start, end) of `bytes`, as views into its pieces (never copied). */
export const sliceBytes = (bytes: Bytes, start: number, end: number): Bytes => {
  const out: Array<Buffer> = []
  let at = 0
  for (const piece of bytes) {
    const from = Math.max(start - at, 0)
    const to = Math.min(end - at, piece.length)
    if (from < to) out.push(from === 0 && to === piece.length ? piece : piece.subarray(from, to))
    at += piece.length
    if (at >= end) break
  }
  return out
}

/** The bytes as one buffer: the piece itself when there is one, else a copy (off the per-block path). */
export const contiguous = (bytes: Bytes): Buffer => (bytes.length === 1 ? bytes[0]! : Buffer.concat(bytes as Array<Buffer>))

/**
 * One PDU as received. `parts` is the whole PDU (header included) as views
 * into the socket reads it arrived in, so a frame is forwarded without
 * copying it; the first part always holds at least the header.
 */
export class Frame {
  private whole: Buffer | undefined
  constructor(
    readonly parts: Bytes,
    readonly length: number,
    readonly serviceId: number,
    readonly commandId: number,
    readonly seq: number
  ) {}

  /** The PDU as one buffer (copied once if it straddled reads). */
  get raw(): Buffer {
    return (this.whole ??= contiguous(this.parts))
  }
}

export const frameBody = (frame: { readonly raw: Buffer }): Buffer => frame.raw.subarray(HEADER_BYTES)

export const DEFAULT_MAX_FRAME_BYTES = 2 * 1024 * 1024

export class FrameError extends Data.TaggedError("FrameError")<{
  readonly reason: "TooShort" | "TooLong"
  readonly length: number
}> {
  override get message() {
    return this.reason === "TooShort"
      ? `PDU length ${this.length} is below the ${HEADER_BYTES}-byte header`
      : `PDU length ${this.length} exceeds the maximum frame size`
  }
}

const makeFrame = (parts: Bytes, length: number): Frame => {
  const head = parts[0]!
  return new Frame(parts, length, head.readUInt16BE(8), head.readUInt16BE(10), head.readUInt16BE(12))
}

/**
 * A frame that straddled reads is kept in pieces when it is large; a small one
 * is copied (cheap), and so are the first bytes when the first piece is short,
 * so that the header and the fields before a block's data are in one piece.
 */
const COPY_BELOW = 1024
export const FIRST_PIECE_MIN = 256

const assemble = (pieces: Array<Buffer>, length: number): Frame => {
  if (length <= COPY_BELOW) return makeFrame([Buffer.concat(pieces, length)], length)
  if (pieces[0]!.length >= FIRST_PIECE_MIN) return makeFrame(pieces, length)
  // Move the first FIRST_PIECE_MIN bytes into one small buffer; the rest stays in views.
  const head = Buffer.allocUnsafe(FIRST_PIECE_MIN)
  let filled = 0
  let i = 0
  let rest: Buffer | undefined
  while (filled < FIRST_PIECE_MIN) {
    const p = pieces[i++]!
    const take = Math.min(p.length, FIRST_PIECE_MIN - filled)
    p.copy(head, filled, 0, take)
    filled += take
    if (take < p.length) rest = p.subarray(take)
  }
  const parts: Array<Buffer> = [head]
  if (rest !== undefined) parts.push(rest)
  for (; i < pieces.length; i++) parts.push(pieces[i]!)
  return makeFrame(parts, length)
}

const checkLength = (length: number, max: number): FrameError | undefined =>
  length < HEADER_BYTES
    ? new FrameError({ reason: "TooShort", length })
    : length > max
    ? new FrameError({ reason: "TooLong", length })
    : undefined

/** Reads a big-endian uint32 spread over the first bytes of several buffers. */
const peekLength = (buffers: ReadonlyArray<Buffer>): number => {
  let value = 0
  let got = 0
  for (const b of buffers) {
    for (let i = 0; i < b.length && got < 4; i++, got++) value = value * 256 + b[i]!
    if (got === 4) break
  }
  return value
}

/**
 * Incremental PDU framer. Frames are returned as views into the chunks they
 * arrived in (a frame split across chunks as one view per chunk). The length is
 * checked as soon as its 4 bytes are in, so an oversized or undersized frame
 * fails before any of its body is buffered.
 */
export class FrameDecoder {
  private pending: Array<Buffer> = []
  private pendingBytes = 0
  /** Length of the frame being assembled in `pending`, or -1 until its 4 length bytes are in. */
  private need = -1

  constructor(readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.pendingBytes
  }

  /** Appends the frames completed by `chunk` to `out`; returns the error that stops the stream, if any. */
  push(chunk: Buffer, out: Array<Frame>): FrameError | undefined {
    if (chunk.length === 0) return undefined
    if (this.pendingBytes === 0) return this.scan(chunk, 0, out)
    this.pending.push(chunk)
    this.pendingBytes += chunk.length
    if (this.need < 0) {
      if (this.pendingBytes < 4) return undefined
      const length = peekLength(this.pending)
      const error = checkLength(length, this.maxFrameBytes)
      if (error) return this.fail(error)
      this.need = length
    }
    if (this.pendingBytes < this.need) return undefined
    const fromChunk = this.need - (this.pendingBytes - chunk.length)
    const parts = this.pending
    parts[parts.length - 1] = chunk.subarray(0, fromChunk)
    out.push(assemble(parts, this.need))
    this.reset()
    return this.scan(chunk, fromChunk, out)
  }

  private scan(chunk: Buffer, start: number, out: Array<Frame>): FrameError | undefined {
    let offset = start
    while (chunk.length - offset >= 4) {
      const length = chunk.readUInt32BE(offset)
      const error = checkLength(length, this.maxFrameBytes)
      if (error) return this.fail(error)
      if (chunk.length - offset < length) {
        this.need = length
        break
      }
      out.push(makeFrame([chunk.subarray(offset, offset + length)], length))
      offset += length
    }
    if (offset < chunk.length) {
      this.pending = [chunk.subarray(offset)]
      this.pendingBytes = chunk.length - offset
    }
    return undefined
  }

  private fail(error: FrameError): FrameError {
    this.reset()
    return error
  }

  private reset() {
    this.pending = []
    this.pendingBytes = 0
    this.need = -1
  }
}

/** Encodes a PDU around an already-encoded body. */
export const encodeFrame = (serviceId: number, commandId: number, seq: number, body: Uint8Array): Buffer => {
  const length = HEADER_BYTES + body.length
  const buf = Buffer.allocUnsafe(length)
  writeHeader(buf, { length, version: PDU_VERSION, flag: 0, serviceId, commandId, seq, reserved: 0 })
  buf.set(body, HEADER_BYTES)
  return buf
}
