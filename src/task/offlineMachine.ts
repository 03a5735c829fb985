/**
 * The offline (store-and-forward) state machine, pure like the online one:
 * `stepOffline(state, event, limits) -> [state, commands]`. The server drives
 * the upload (it asks the uploader for each block, in offset order, and
 * stores it); downloaders pull the stored file at any offset. Storage work is
 * done by the actor, which feeds the outcome back as an event.
 */
import { FileRole, FileState } from "../protocol/commands.js"
import type { Bytes } from "../protocol/frame.js"
import type { Command, ConnId, Outcome, TaskEvent } from "./machine.js"
import type { TaskSpec } from "./spec.js"

/** PULL_DATA_RSP result code when a stored block cannot be read (FILE_SERVER_ERRNO_PULL_DATA_OPEN_FILE_ERROR). */
export const READ_FILE_ERROR = 8

export type OfflinePhase =
  /** Not (or no longer) uploading and not complete: waits for the uploader. */
  | "Ready"
  /** An uploader's login is accepted once the store has opened the partial file. */
  | "Opening"
  | "Uploading"
  /** Every byte is in; the store is making the file durable. */
  | "Finishing"
  /** Complete: downloaders may log in. */
  | "Stored"
  | "Ended"

export interface OfflineState {
  readonly spec: TaskSpec
  readonly phase: OfflinePhase
  readonly uploader: ConnId | undefined
  /** The uploader login waiting for the store (phase Opening). */
  readonly pendingLogin: { readonly conn: ConnId; readonly seq: number } | undefined
  readonly downloaders: ReadonlyArray<ConnId>
  /** Bytes written to the partial file, in order from offset 0. */
  readonly received: number
  /** The next offset to ask the uploader for. */
  readonly requested: number
  /**
   * Blocks asked for and not yet stored, in offset order. A block that came
   * before an earlier one holds its data here until the gap is filled, so the
   * partial file is always an exact prefix of the file (what a resume relies on).
   */
  readonly outstanding: ReadonlyArray<{ readonly offset: number; readonly size: number; readonly data?: Bytes }>
  /** Downloaders that were sent the block that ends the file, and DONE. */
  readonly finished: ReadonlyArray<ConnId>
  /** Stored bytes deleted (after a download, with --delete-after-download): no new downloads. */
  readonly deleted: boolean
  readonly bytesStored: number
  readonly bytesServed: number
  readonly outcome: Outcome | undefined
}

export interface OfflineLimits {
  readonly maxBlockBytes: number
  /** Bytes asked for per PULL_DATA_REQ of an upload. */
  readonly uploadSegment: number
  /** Upload requests in flight at once. */
  readonly uploadWindow: number
  /**
   * Bytes of upload blocks the task may have asked for and not yet stored, now (its share of
   * --upload-memory); one block is always asked for, so an upload never stalls for want of it.
   */
  readonly uploadAllowance?: number
  readonly deleteAfterDownload: boolean
}

export type Step = readonly [OfflineState, ReadonlyArray<Command>]

/** A task as it starts: new, resumed from a partial file holding `received` bytes, or complete on disk. */
export const initialOfflineState = (
  spec: TaskSpec,
  stored: { readonly state: "none" } | { readonly state: "partial"; readonly received: number } | { readonly state: "complete" }
): OfflineState => {
  const received = stored.state === "partial" ? stored.received : stored.state === "complete" ? spec.fileSize : 0
  return {
    spec,
    phase: stored.state === "complete" ? "Stored" : "Ready",
    uploader: undefined,
    pendingLogin: undefined,
    downloaders: [],
    received,
    requested: received,
    outstanding: [],
    finished: [],
    deleted: false,
    bytesStored: 0,
    bytesServed: 0,
    outcome: undefined
  }
}

/** The uploader (also while its login waits for the store) and the downloaders. */
export const parties = (s: OfflineState) => (s.uploader !== undefined ? 1 : 0) + (s.pendingLogin !== undefined ? 1 : 0) + s.downloaders.length

/** The parties with a transfer still going: a downloader that was sent the end and DONE is done, connected or not. */
export const partiesInFlight = (s: OfflineState) => parties(s) - s.downloaders.filter((c) => s.finished.includes(c)).length

const end = (s: OfflineState, outcome: Outcome, reason: string, commands: Array<Command>): Step => {
  for (const conn of [s.uploader, s.pendingLogin?.conn, ...s.downloaders]) {
    if (conn !== undefined) commands.push({ _tag: "Close", conn, reason })
  }
  if (s.uploader !== undefined || s.phase === "Opening" || s.phase === "Finishing") commands.push({ _tag: "CloseUpload" })
  commands.push({ _tag: "End", outcome, reason })
  return [
    { ...s, phase: "Ended", uploader: undefined, pendingLogin: undefined, downloaders: [], outstanding: [], outcome },
    commands
  ]
}

/** Bytes of upload blocks asked for and not stored yet (held in memory once they arrive). */
export const outstandingBytes = (s: OfflineState): number => {
  let n = 0
  for (const o of s.outstanding) n += o.size
  return n
}

/** Asks the uploader for blocks until the window or the allowance is full, or the whole file has been asked for. */
const fillWindow = (s: OfflineState, limits: OfflineLimits, commands: Array<Command>): OfflineState => {
  if (s.uploader === undefined) return s
  let requested = s.requested
  const outstanding = [...s.outstanding]
  const allowance = limits.uploadAllowance ?? Number.POSITIVE_INFINITY
  let held = outstandingBytes(s)
  while (outstanding.length < limits.uploadWindow && requested < s.spec.fileSize) {
    const size = Math.min(limits.uploadSegment, s.spec.fileSize - requested)
    if (outstanding.length > 0 && held + size > allowance) break
    held += size
    commands.push({ _tag: "RequestBlock", to: s.uploader, offset: requested, size })
    outstanding.push({ offset: requested, size })
    requested += size
  }
  return { ...s, requested, outstanding }
}

/** The uploader is gone (left, failed or broke the protocol): its bytes stay for a resume. */
const uploaderGone = (s: OfflineState, commands: Array<Command>): Step => {
  // Every byte is in and being made durable: that carries on without the uploader.
  if (s.phase === "Finishing") return [{ ...s, uploader: undefined }, commands]
  commands.push({ _tag: "CloseUpload" })
  return [{ ...s, phase: "Ready", uploader: undefined, requested: s.received, outstanding: [] }, commands]
}

const uploadViolation = (s: OfflineState, conn: ConnId, reason: string): Step =>
  uploaderGone(s, [{ _tag: "Close", conn, reason }])

const dropDownloader = (s: OfflineState, conn: ConnId, commands: Array<Command>, reason?: string): Step => {
  if (reason !== undefined) commands.push({ _tag: "Close", conn, reason })
  return [{ ...s, downloaders: s.downloaders.filter((d) => d !== conn) }, commands]
}

const login = (s: OfflineState, e: Extract<TaskEvent, { _tag: "Login" }>): Step => {
  const refuse = (reason: string): Step => [s, [{ _tag: "LoginRefused", conn: e.conn, seq: e.seq, reason }]]
  if (e.role === FileRole.Uploader) {
    if (e.userId !== s.spec.fromUserId) return refuse(`user ${e.userId} is not this task's sender`)
    if (s.phase === "Stored" || s.phase === "Finishing") return refuse("the upload is already complete")
    if (s.phase !== "Ready") return refuse("uploader already connected")
    return [{ ...s, phase: "Opening", pendingLogin: { conn: e.conn, seq: e.seq } }, [{ _tag: "OpenUpload" }]]
  }
  if (e.role === FileRole.Downloader) {
    if (e.userId !== s.spec.toUserId) return refuse(`user ${e.userId} is not this task's receiver`)
    if (s.phase !== "Stored") return refuse("the upload is not complete")
    if (s.deleted) return refuse("the file was deleted after its download")
    return [
      { ...s, downloaders: [...s.downloaders, e.conn] },
      [{ _tag: "LoginOk", conn: e.conn, seq: e.seq, role: FileRole.Downloader }]
    ]
  }
  return refuse(`role ${e.role} does not fit an offline task`)
}

const uploadOpened = (s: OfflineState, received: number, limits: OfflineLimits): Step => {
  const pending = s.pendingLogin
  if (pending === undefined) {
    // The uploader left while the file was being opened.
    return [{ ...s, phase: "Ready", received, requested: received }, [{ _tag: "CloseUpload" }]]
  }
  const commands: Array<Command> = [{ _tag: "LoginOk", conn: pending.conn, seq: pending.seq, role: FileRole.Uploader }]
  const opened: OfflineState = {
    ...s,
    phase: "Uploading",
    uploader: pending.conn,
    pendingLogin: undefined,
    received,
    requested: received,
    outstanding: []
  }
  if (received >= s.spec.fileSize) {
    commands.push({ _tag: "FinishUpload" })
    return [{ ...opened, phase: "Finishing" }, commands]
  }
  return [fillWindow(opened, limits, commands), commands]
}

const uploadFailed = (s: OfflineState, reason: string): Step => {
  if (s.phase === "Opening") {
    const commands: Array<Command> = [{ _tag: "CloseUpload" }]
    if (s.pendingLogin) commands.unshift({ _tag: "LoginRefused", conn: s.pendingLogin.conn, seq: s.pendingLogin.seq, reason })
    return [{ ...s, phase: "Ready", pendingLogin: undefined }, commands]
  }
  if (s.phase !== "Uploading" && s.phase !== "Finishing") return [s, []]
  const commands: Array<Command> = []
  if (s.uploader !== undefined) {
    commands.push(
      { _tag: "SendState", to: s.uploader, state: FileState.Cancel, userId: s.spec.fromUserId },
      { _tag: "Close", conn: s.uploader, reason: `upload failed: ${reason}` }
    )
  }
  commands.push({ _tag: "CloseUpload" })
  // What reached the partial file stays there: a new login of the uploader resumes from it.
  return [{ ...s, phase: "Ready", uploader: undefined, requested: s.received, outstanding: [] }, commands]
}

const uploadBlock = (s: OfflineState, e: Extract<TaskEvent, { _tag: "PullRsp" }>, limits: OfflineLimits): Step => {
  if (e.conn !== s.uploader) {
    // A downloader has no business answering pulls; anything else is mail from an uploader already gone.
    return s.downloaders.includes(e.conn) ? dropDownloader(s, e.conn, [], "PULL_DATA_RSP from a downloader") : [s, []]
  }
  if (s.phase !== "Uploading") return uploadViolation(s, e.conn, "PULL_DATA_RSP while no block is asked for")
  const { msg } = e
  if (msg.taskId !== s.spec.taskId) return uploadViolation(s, e.conn, "PULL_DATA_RSP for another task")
  if (msg.userId !== s.spec.fromUserId) return uploadViolation(s, e.conn, "PULL_DATA_RSP from the wrong user")
  const index = s.outstanding.findIndex((o) => o.offset === msg.offset && o.data === undefined)
  if (index < 0) return uploadViolation(s, e.conn, `PULL_DATA_RSP at offset ${msg.offset} answers no outstanding request`)
  if (msg.resultCode !== 0) return uploadViolation(s, e.conn, `the uploader answered with error ${msg.resultCode}`)
  const asked = s.outstanding[index]!
  if (msg.dataLength !== asked.size) {
    return uploadViolation(s, e.conn, `PULL_DATA_RSP carries ${msg.dataLength} bytes where ${asked.size} were asked`)
  }
  const outstanding = s.outstanding.map((o, i) => (i === index ? { ...o, data: msg.data } : o))
  // Store every block that now continues the file without a gap.
  const commands: Array<Command> = []
  let received = s.received
  let first = 0
  for (; first < outstanding.length && outstanding[first]!.data !== undefined; first++) {
    const block = outstanding[first]!
    commands.push({ _tag: "StoreBlock", data: block.data! })
    received += block.size
  }
  const stored: OfflineState = {
    ...s,
    received,
    outstanding: outstanding.slice(first),
    bytesStored: s.bytesStored + (received - s.received)
  }
  if (stored.received >= s.spec.fileSize) {
    commands.push({ _tag: "FinishUpload" })
    return [{ ...stored, phase: "Finishing" }, commands]
  }
  return [fillWindow(stored, limits, commands), commands]
}

const download = (s: OfflineState, e: Extract<TaskEvent, { _tag: "PullReq" }>, limits: OfflineLimits): Step => {
  if (!s.downloaders.includes(e.conn)) {
    return e.conn === s.uploader
      ? uploadViolation(s, e.conn, "PULL_DATA_REQ from the uploader")
      : [s, [{ _tag: "Close", conn: e.conn, reason: "PULL_DATA_REQ from a connection outside the task" }]]
  }
  const { msg } = e
  if (msg.taskId !== s.spec.taskId) return dropDownloader(s, e.conn, [], "PULL_DATA_REQ for another task")
  if (msg.userId !== s.spec.toUserId) return dropDownloader(s, e.conn, [], "PULL_DATA_REQ from the wrong user")
  // Past the end there is nothing to read: an empty block, as for an online pull (a client
  // pulling ahead without knowing the size overshoots). DONE follows the block that reaches the end.
  const size = Math.max(0, Math.min(msg.dataSize, s.spec.fileSize - msg.offset, limits.maxBlockBytes))
  // At or past the end there is nothing more to fetch: DONE, so no client waits for it forever.
  const last = msg.offset + size >= s.spec.fileSize
  const commands: Array<Command> = [{ _tag: "ServeBlock", to: e.conn, seq: e.seq, offset: msg.offset, size, last }]
  const finished = last && !s.finished.includes(e.conn) ? [...s.finished, e.conn] : s.finished
  return [{ ...s, bytesServed: s.bytesServed + size, finished }, commands]
}

/**
 * A downloader goes (it left, or ended its download with a FILE_STATE). With
 * --delete-after-download, one that was sent the end of the file and DONE has
 * had the whole download: the stored file goes.
 */
const downloaderGone = (s: OfflineState, conn: ConnId, commands: Array<Command>, limits: OfflineLimits): Step => {
  const [next] = dropDownloader(s, conn, commands)
  const finished = next.finished.filter((c) => c !== conn)
  if (limits.deleteAfterDownload && !next.deleted && s.finished.includes(conn)) {
    commands.push({ _tag: "RemoveStored" })
    return [{ ...next, finished, deleted: true }, commands]
  }
  return [{ ...next, finished }, commands]
}

const fileState = (s: OfflineState, e: Extract<TaskEvent, { _tag: "State" }>, limits: OfflineLimits): Step => {
  const { msg } = e
  if (e.conn === s.uploader) {
    if (msg.taskId !== s.spec.taskId || msg.userId !== s.spec.fromUserId) return uploadViolation(s, e.conn, "FILE_STATE that does not match the task")
    if (msg.state === FileState.PeerReady || msg.state === FileState.Done) return [s, []]
    // The sender withdrew the file (CANCEL or REFUSE): nothing of it is kept.
    return end(s, "cancelled", "uploader withdrew the file", [{ _tag: "RemoveStored" }])
  }
  if (s.downloaders.includes(e.conn)) {
    if (msg.state === FileState.PeerReady) return [s, []]
    return downloaderGone(s, e.conn, [{ _tag: "Close", conn: e.conn, reason: "downloader ended its download" }], limits)
  }
  return [s, [{ _tag: "Close", conn: e.conn, reason: "FILE_STATE from a connection outside the task" }]]
}

const left = (s: OfflineState, conn: ConnId, limits: OfflineLimits): Step => {
  if (conn === s.uploader) return uploaderGone(s, [])
  if (s.pendingLogin?.conn === conn) {
    return [{ ...s, pendingLogin: undefined }, [{ _tag: "LoginRefused", conn, seq: s.pendingLogin.seq, reason: "connection closed" }]]
  }
  if (s.downloaders.includes(conn)) return downloaderGone(s, conn, [], limits)
  return [s, []]
}

const expired = (s: OfflineState): Step => {
  if (parties(s) > 0) return [s, []]
  // The store is still at work: look again after another timeout.
  if (s.phase === "Opening" || s.phase === "Finishing") return [s, [{ _tag: "ArmIdleTimer" }]]
  if (s.phase === "Stored") return end(s, s.deleted ? "done" : "idle", s.deleted ? "delivered and deleted" : "nobody connected; the file stays stored", [])
  if (s.received > 0) return end(s, "idle", "upload paused; the partial file stays for a resume", [])
  return end(s, "expired", "no upload began before the task timeout", [{ _tag: "RemoveStored" }])
}

const inner = (s: OfflineState, e: TaskEvent, limits: OfflineLimits): Step => {
  switch (e._tag) {
    case "Login":
      return login(s, e)
    case "UploadOpened":
      return uploadOpened(s, e.received, limits)
    case "UploadFailed":
      return uploadFailed(s, e.reason)
    case "UploadStored": {
      if (s.phase !== "Finishing") return [s, []]
      const commands: Array<Command> = [{ _tag: "CloseUpload" }]
      if (s.uploader !== undefined) {
        commands.push(
          { _tag: "SendState", to: s.uploader, state: FileState.Done, userId: s.spec.fromUserId },
          { _tag: "Close", conn: s.uploader, reason: "upload complete" }
        )
      }
      return [{ ...s, phase: "Stored", uploader: undefined, outstanding: [] }, commands]
    }
    case "PullRsp":
      return uploadBlock(s, e, limits)
    case "PullReq":
      return download(s, e, limits)
    case "ServeFailed":
      return dropDownloader(
        s,
        e.conn,
        [{ _tag: "SendPullError", to: e.conn, seq: e.seq, offset: e.offset, code: READ_FILE_ERROR }],
        `cannot read the stored file: ${e.reason}`
      )
    case "State":
      return fileState(s, e, limits)
    case "Left":
      return left(s, e.conn, limits)
    case "Expired":
      return expired(s)
    case "Shutdown": {
      const commands: Array<Command> = []
      for (const to of [s.uploader, ...s.downloaders]) {
        if (to !== undefined) commands.push({ _tag: "SendState", to, state: FileState.Cancel, userId: s.spec.fromUserId })
      }
      return end(s, "shutdown", "server shutting down", commands)
    }
  }
}

export const isOfflineTerminal = (s: OfflineState): boolean => s.phase === "Ended"

/** Offline transitions; the idle timer runs exactly while nobody is connected (and the task is not over). */
export const stepOffline = (s: OfflineState, e: TaskEvent, limits: OfflineLimits, allowance?: number): Step => {
  if (isOfflineTerminal(s)) {
    return e._tag === "Login" ? [s, [{ _tag: "LoginRefused", conn: e.conn, seq: e.seq, reason: "task has ended" }]] : [s, []]
  }
  const [next, commands] = inner(s, e, allowance === undefined ? limits : { ...limits, uploadAllowance: allowance })
  if (isOfflineTerminal(next)) return [next, [...commands, { _tag: "DisarmIdleTimer" }]]
  const before = parties(s)
  const after = parties(next)
  if (before === 0 && after > 0) return [next, [{ _tag: "DisarmIdleTimer" }, ...commands]]
  if (before > 0 && after === 0) return [next, [...commands, { _tag: "ArmIdleTimer" }]]
  return [next, commands]
}
