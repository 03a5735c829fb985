/**
 * TeamTalk's offline-file header: 960 bytes of six NUL-padded ASCII fields
 * in front of the file's bytes (docs/storage.md). Pure, so it round-trips
 * under property tests.
 */
export const HEADER_BYTES = 960

const FIELDS = [
  ["taskId", 128],
  ["fromUserId", 64],
  ["toUserId", 64],
  ["createTime", 128],
  ["fileName", 512],
  ["fileSize", 64]
] as const

export interface StoredHeader {
  readonly taskId: string
  readonly fromUserId: number
  readonly toUserId: number
  /** Unix seconds. */
  readonly createTime: number
  readonly fileName: string
  readonly fileSize: number
}

export class HeaderError extends Error {}

/** A field's text cut to fit its slot with a NUL left over; a file name is cut on a UTF-8 character boundary. */
const fit = (text: string, width: number): Buffer => {
  let bytes = Buffer.from(text, "utf8")
  if (bytes.length <= width - 1) return bytes
  bytes = bytes.subarray(0, width - 1)
  let end = bytes.length
  // drop a trailing partial UTF-8 sequence
  let i = end - 1
  while (i >= 0 && (bytes[i]! & 0xc0) === 0x80) i--
  if (i >= 0) {
    const lead = bytes[i]!
    const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1
    if (end - i < need) end = i
  }
  return bytes.subarray(0, end)
}

export const encodeHeader = (h: StoredHeader): Buffer => {
  const buf = Buffer.alloc(HEADER_BYTES)
  const values: Record<(typeof FIELDS)[number][0], string> = {
    taskId: h.taskId,
    fromUserId: String(h.fromUserId),
    toUserId: String(h.toUserId),
    createTime: String(h.createTime),
    fileName: h.fileName,
    fileSize: String(h.fileSize)
  }
  let offset = 0
  for (const [name, width] of FIELDS) {
    fit(values[name], width).copy(buf, offset)
    offset += width
  }
  return buf
}

const DECIMAL = /^\d{1,20}$/

export const decodeHeader = (buf: Uint8Array): StoredHeader => {
  if (buf.length < HEADER_BYTES) throw new HeaderError(`header is ${buf.length} bytes, expected ${HEADER_BYTES}`)
  const text: Record<string, string> = {}
  let offset = 0
  for (const [name, width] of FIELDS) {
    const slot = Buffer.from(buf.buffer, buf.byteOffset + offset, width)
    const nul = slot.indexOf(0)
    text[name] = slot.subarray(0, nul < 0 ? width : nul).toString("utf8")
    offset += width
  }
  const number = (name: string): number => {
    const v = text[name]!
    if (!DECIMAL.test(v)) throw new HeaderError(`header field ${name} is not a decimal number: ${JSON.stringify(v.slice(0, 40))}`)
    const n = Number(v)
    if (!Number.isSafeInteger(n)) throw new HeaderError(`header field ${name} is out of range`)
    return n
  }
  return {
    taskId: text.taskId!,
    fromUserId: number("fromUserId"),
    toUserId: number("toUserId"),
    createTime: number("createTime"),
    fileName: text.fileName!,
    fileSize: number("fileSize")
  }
}
