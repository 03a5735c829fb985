/**
 * The online-transfer state machine, as a pure function
 * `step(state, event) -> [state, commands]`. It knows connections only by id;
 * the task actor (actor.ts) feeds it events and carries out its commands.
 * See docs/architecture.md for the states and docs/protocol.md for the rules.
 */
import { FileRole, FileState, TransferMode } from "../protocol/commands.js"
import type { DataBlock } from "../protocol/dataBlock.js"
import type { Bytes } from "../protocol/frame.js"
import type { FileStateMsg, PullDataReq } from "../protocol/messages.js"
import type { TaskSpec } from "./spec.js"

export type ConnId = number

export type Phase =
  | "Ready"
  | "WaitingReceiver"
  | "WaitingSender"
  | "WaitingTransfer"
  | "Transferring"
  | "Ended"

/** Why a task ended; also the label of the "failed/completed by reason" figures. */
export type Outcome =
  | "done"
  | "cancelled"
  | "refused"
  | "peer-left"
  | "protocol-error"
  | "expired"
  | "shutdown"
  /** An offline task unloaded from memory while its file stays on disk (a paused upload, or a stored file). */
  | "idle"

export interface PendingPull {
  readonly offset: number
  readonly size: number
  readonly seq: number
}

/**
 * A block the server asked the sender for ahead of the receiver (read-ahead):
 * in flight until `raw` holds the sender's PULL_DATA_RSP. A `discard`ed one
 * is dropped when it arrives (the receiver went elsewhere).
 */
export interface Prefetch {
  readonly offset: number
  readonly size: number
  readonly raw: Bytes | undefined
  readonly discard: boolean
}

export interface TaskState {
  readonly spec: TaskSpec
  readonly phase: Phase
  readonly sender: ConnId | undefined
  readonly receiver: ConnId | undefined
  /** Pulls forwarded to the sender and not yet answered, oldest first. */
  readonly pulls: ReadonlyArray<PendingPull>
  /** Read-ahead blocks, in the order they were asked for. */
  readonly ahead: ReadonlyArray<Prefetch>
  /** Where the next read-ahead block starts. */
  readonly aheadEnd: number
  readonly bytesRelayed: number
  readonly outcome: Outcome | undefined
}

export interface Limits {
  /** Largest file_data a forwarded PULL_DATA_RSP can carry. */
  readonly maxBlockBytes: number
  /** Pulls a receiver may have outstanding at once. */
  readonly maxPullsInFlight: number
  /** Blocks asked for ahead of the receiver (0: relay only what it pulls, as TeamTalk). */
  readonly readahead: number
}

export type TaskEvent =
  | { readonly _tag: "Login"; readonly conn: ConnId; readonly seq: number; readonly userId: number; readonly role: number }
  | { readonly _tag: "PullReq"; readonly conn: ConnId; readonly seq: number; readonly msg: PullDataReq; readonly raw: Bytes }
  | { readonly _tag: "PullRsp"; readonly conn: ConnId; readonly seq: number; readonly msg: DataBlock; readonly raw: Bytes }
  | { readonly _tag: "State"; readonly conn: ConnId; readonly seq: number; readonly msg: FileStateMsg; readonly raw: Bytes }
  | { readonly _tag: "Left"; readonly conn: ConnId }
  | { readonly _tag: "Expired" }
  | { readonly _tag: "Shutdown" }
  // Results of the storage commands of an offline task, fed back by the actor.
  | { readonly _tag: "UploadOpened"; readonly received: number }
  | { readonly _tag: "UploadFailed"; readonly reason: string }
  | { readonly _tag: "UploadStored" }
  | { readonly _tag: "ServeFailed"; readonly conn: ConnId; readonly seq: number; readonly offset: number; readonly reason: string }

export type Command =
  | { readonly _tag: "LoginOk"; readonly conn: ConnId; readonly seq: number; readonly role: FileRole }
  | { readonly _tag: "LoginRefused"; readonly conn: ConnId; readonly seq: number; readonly reason: string }
  /** Write `raw` (a received PDU) to `to` with its seq set to `seq`. */
  | { readonly _tag: "Forward"; readonly to: ConnId; readonly raw: Bytes; readonly seq: number; readonly dataBytes: number }
  /** A pull the server had to shorten: re-encoded with the clamped size, the receiver's seq kept. */
  | { readonly _tag: "SendPull"; readonly to: ConnId; readonly seq: number; readonly msg: PullDataReq }
  /** An empty block answering a pull at or past the end of the file. */
  | { readonly _tag: "SendEmptyBlock"; readonly to: ConnId; readonly seq: number; readonly offset: number }
  | { readonly _tag: "SendState"; readonly to: ConnId; readonly state: FileState; readonly userId: number }
  | { readonly _tag: "Close"; readonly conn: ConnId; readonly reason: string }
  | { readonly _tag: "ArmIdleTimer" }
  | { readonly _tag: "DisarmIdleTimer" }
  | { readonly _tag: "End"; readonly outcome: Outcome; readonly reason: string }
  // Offline tasks: the store, and blocks the server itself asks for or serves.
  /** Open (or reopen) the partial file; answers with UploadOpened or UploadFailed. */
  | { readonly _tag: "OpenUpload" }
  /** A PULL_DATA_REQ from the server to the uploader (seq 0, as TeamTalk). */
  | { readonly _tag: "RequestBlock"; readonly to: ConnId; readonly offset: number; readonly size: number }
  /** Append the next block to the partial file; UploadFailed if it cannot be written. */
  | { readonly _tag: "StoreBlock"; readonly data: Bytes }
  /** Make the upload durable and visible; answers with UploadStored or UploadFailed. */
  | { readonly _tag: "FinishUpload" }
  /** Release the partial file (its bytes stay for a resume). */
  | { readonly _tag: "CloseUpload" }
  /** Read a stored block and answer a downloader's pull (then FILE_STATE DONE when `last`); ServeFailed on a read error. */
  | { readonly _tag: "ServeBlock"; readonly to: ConnId; readonly seq: number; readonly offset: number; readonly size: number; readonly last: boolean }
  /** A PULL_DATA_RSP carrying an error code and no data. */
  | { readonly _tag: "SendPullError"; readonly to: ConnId; readonly seq: number; readonly offset: number; readonly code: number }
  /** Delete what is stored for the task. */
  | { readonly _tag: "RemoveStored" }

export type Step = readonly [TaskState, ReadonlyArray<Command>]

export const initialState = (spec: TaskSpec): TaskState => ({
  spec,
  phase: "Ready",
  sender: undefined,
  receiver: undefined,
  pulls: [],
  ahead: [],
  aheadEnd: 0,
  bytesRelayed: 0,
  outcome: undefined
})

/** Commands to run when the actor starts: nobody is connected yet, so the idle clock runs. */
export const startCommands: ReadonlyArray<Command> = [{ _tag: "ArmIdleTimer" }]

export const isTerminal = (s: TaskState): boolean => s.phase === "Ended"

const bothIn = (s: TaskState) => s.sender !== undefined && s.receiver !== undefined

const end = (s: TaskState, outcome: Outcome, reason: string, commands: Array<Command>): Step => {
  for (const conn of [s.sender, s.receiver]) {
    if (conn !== undefined) commands.push({ _tag: "Close", conn, reason })
  }
  commands.push({ _tag: "DisarmIdleTimer" }, { _tag: "End", outcome, reason })
  return [{ ...s, phase: "Ended", sender: undefined, receiver: undefined, pulls: [], ahead: [], outcome }, commands]
}

/** A party left (or was thrown out): once both were in, the other side is told CANCEL and the task ends. */
const partyGone = (s: TaskState, conn: ConnId, reason: string, commands: Array<Command>, outcome: Outcome = "peer-left"): Step => {
  const isSender = conn === s.sender
  if (!isSender && conn !== s.receiver) return [s, commands]
  const other = isSender ? s.receiver : s.sender
  if (other !== undefined) {
    const leaver = isSender ? s.spec.fromUserId : s.spec.toUserId
    commands.push({ _tag: "SendState", to: other, state: FileState.Cancel, userId: leaver })
    return end(isSender ? { ...s, sender: undefined } : { ...s, receiver: undefined }, outcome, reason, commands)
  }
  commands.push({ _tag: "ArmIdleTimer" })
  return [{ ...s, phase: "Ready", sender: undefined, receiver: undefined, pulls: [], ahead: [], aheadEnd: 0 }, commands]
}

const violation = (s: TaskState, conn: ConnId, reason: string): Step =>
  partyGone(s, conn, reason, [{ _tag: "Close", conn, reason }], "protocol-error")

const login = (s: TaskState, e: Extract<TaskEvent, { _tag: "Login" }>): Step => {
  const refuse = (reason: string): Step => [s, [{ _tag: "LoginRefused", conn: e.conn, seq: e.seq, reason }]]
  if (isTerminal(s)) return refuse("task has ended")
  if (s.spec.mode !== TransferMode.Online) return refuse("offline transfers are not served by this task")
  if (e.role !== FileRole.Sender && e.role !== FileRole.Receiver) return refuse(`role ${e.role} does not fit an online task`)
  const isSender = e.role === FileRole.Sender
  if (e.userId !== (isSender ? s.spec.fromUserId : s.spec.toUserId)) return refuse(`user ${e.userId} is not this task's ${isSender ? "sender" : "receiver"}`)
  if ((isSender ? s.sender : s.receiver) !== undefined) return refuse(`${isSender ? "sender" : "receiver"} already connected`)
  const next: TaskState = isSender ? { ...s, sender: e.conn } : { ...s, receiver: e.conn }
  const commands: Array<Command> = [{ _tag: "LoginOk", conn: e.conn, seq: e.seq, role: e.role }]
  if (s.sender === undefined && s.receiver === undefined) commands.push({ _tag: "DisarmIdleTimer" })
  if (bothIn(next)) {
    commands.push({ _tag: "SendState", to: next.receiver!, state: FileState.PeerReady, userId: s.spec.fromUserId })
    return [{ ...next, phase: "WaitingTransfer" }, commands]
  }
  return [{ ...next, phase: isSender ? "WaitingReceiver" : "WaitingSender" }, commands]
}

/** Bytes a task holds or has asked for ahead of its receiver (what read-ahead costs it in memory). */
export const aheadBytes = (s: TaskState): number => {
  let n = 0
  for (const p of s.ahead) n += p.size
  return n
}

/**
 * Asks the sender for the blocks after `from`, `blockSize` each, until
 * `limits.readahead` are waiting, `allowance` bytes are ahead, or the file
 * ends, skipping nothing: a block already asked for (by a pull) stops the
 * read-ahead until the next pull. At most N blocks are ever held in memory (`raw`).
 */
const readAhead = (s: TaskState, from: number, blockSize: number, limits: Limits, allowance: number, commands: Array<Command>): TaskState => {
  if (limits.readahead === 0 || s.sender === undefined) return s
  const ahead = [...s.ahead]
  let next = Math.max(s.aheadEnd, from)
  let live = ahead.filter((p) => !p.discard).length
  let bytes = aheadBytes(s)
  // Blocks still coming for a pull the receiver did not make count too: at most 2N records.
  while (live < limits.readahead && ahead.length < 2 * limits.readahead && next < s.spec.fileSize) {
    const offset = next
    if (s.pulls.some((p) => p.offset === offset) || ahead.some((p) => p.offset === offset)) break
    const size = Math.min(blockSize, s.spec.fileSize - offset)
    if (bytes + size > allowance) break
    bytes += size
    ahead.push({ offset, size, raw: undefined, discard: false })
    commands.push({
      _tag: "SendPull",
      to: s.sender,
      seq: 0,
      msg: { taskId: s.spec.taskId, userId: s.spec.toUserId, transMode: s.spec.mode, offset, dataSize: size }
    })
    next += size
    live++
  }
  return { ...s, ahead, aheadEnd: next }
}

const pullReq = (s: TaskState, e: Extract<TaskEvent, { _tag: "PullReq" }>, limits: Limits, allowance: number): Step => {
  if (e.conn !== s.receiver) return violation(s, e.conn, "PULL_DATA_REQ from a party that is not the receiver")
  const { msg } = e
  if (msg.taskId !== s.spec.taskId) return violation(s, e.conn, "PULL_DATA_REQ for another task")
  if (msg.userId !== s.spec.toUserId) return violation(s, e.conn, "PULL_DATA_REQ from the wrong user")
  if (!bothIn(s)) return violation(s, e.conn, "PULL_DATA_REQ before the sender is connected")
  if (msg.dataSize > limits.maxBlockBytes) return violation(s, e.conn, `PULL_DATA_REQ of ${msg.dataSize} bytes exceeds the largest block`)
  const state: TaskState = { ...s, phase: "Transferring" }
  if (msg.offset >= s.spec.fileSize || msg.dataSize === 0) {
    return [state, [{ _tag: "SendEmptyBlock", to: e.conn, seq: e.seq, offset: msg.offset }]]
  }
  if (s.pulls.length >= limits.maxPullsInFlight) return violation(s, e.conn, "too many pulls in flight")
  const size = Math.min(msg.dataSize, s.spec.fileSize - msg.offset)
  const commands: Array<Command> = []
  const hit = s.ahead.findIndex((p) => p.offset === msg.offset && !p.discard)
  const prefetched = hit >= 0 && s.ahead[hit]!.size === size ? s.ahead[hit]! : undefined
  let next: TaskState
  if (prefetched !== undefined) {
    const ahead = [...s.ahead.slice(0, hit), ...s.ahead.slice(hit + 1)]
    if (prefetched.raw !== undefined) {
      // Answered from memory, with the receiver's own seq.
      commands.push({ _tag: "Forward", to: e.conn, raw: prefetched.raw, seq: e.seq, dataBytes: size })
      next = { ...state, ahead, bytesRelayed: s.bytesRelayed + size }
    } else {
      // Already asked for: its response goes to this pull.
      next = { ...state, ahead, pulls: [...s.pulls, { offset: msg.offset, size, seq: e.seq }] }
    }
  } else {
    commands.push(
      size === msg.dataSize
        ? { _tag: "Forward", to: s.sender!, raw: e.raw, seq: e.seq, dataBytes: 0 }
        : { _tag: "SendPull", to: s.sender!, seq: e.seq, msg: { ...msg, dataSize: size } }
    )
    // The receiver did not pull what was read ahead: drop what arrived, ignore what is still coming.
    const ahead = s.ahead.filter((p) => p.raw === undefined).map((p) => (p.discard ? p : { ...p, discard: true }))
    next = { ...state, ahead, aheadEnd: msg.offset + size, pulls: [...s.pulls, { offset: msg.offset, size, seq: e.seq }] }
  }
  return [readAhead(next, msg.offset + size, msg.dataSize, limits, allowance, commands), commands]
}

const pullRsp = (s: TaskState, e: Extract<TaskEvent, { _tag: "PullRsp" }>): Step => {
  if (e.conn !== s.sender) return violation(s, e.conn, "PULL_DATA_RSP from a party that is not the sender")
  const { msg } = e
  if (msg.taskId !== s.spec.taskId) return violation(s, e.conn, "PULL_DATA_RSP for another task")
  if (msg.userId !== s.spec.fromUserId) return violation(s, e.conn, "PULL_DATA_RSP from the wrong user")
  const wrongSize = (size: number) =>
    msg.resultCode === 0 && msg.dataLength !== size
      ? violation(s, e.conn, `PULL_DATA_RSP carries ${msg.dataLength} bytes where ${size} were asked`)
      : undefined
  // A read-ahead block at this offset was asked for before any pull still waiting for it.
  const a = s.ahead.findIndex((p) => p.offset === msg.offset && p.raw === undefined)
  if (a >= 0) {
    const prefetch = s.ahead[a]!
    const bad = wrongSize(prefetch.size)
    if (bad) return bad
    const keep = !prefetch.discard && msg.resultCode === 0
    const ahead = keep
      ? s.ahead.map((p, i) => (i === a ? { ...p, raw: e.raw } : p))
      : [...s.ahead.slice(0, a), ...s.ahead.slice(a + 1)]
    return [{ ...s, ahead }, []]
  }
  const index = s.pulls.findIndex((p) => p.offset === msg.offset)
  if (index < 0) return violation(s, e.conn, `PULL_DATA_RSP at offset ${msg.offset} answers no outstanding pull`)
  const pull = s.pulls[index]!
  const bad = wrongSize(pull.size)
  if (bad) return bad
  const pulls = index === 0 ? s.pulls.slice(1) : [...s.pulls.slice(0, index), ...s.pulls.slice(index + 1)]
  return [
    { ...s, pulls, bytesRelayed: s.bytesRelayed + msg.dataLength },
    [{ _tag: "Forward", to: s.receiver!, raw: e.raw, seq: pull.seq, dataBytes: msg.dataLength }]
  ]
}

const fileState = (s: TaskState, e: Extract<TaskEvent, { _tag: "State" }>): Step => {
  const isSender = e.conn === s.sender
  if (!isSender && e.conn !== s.receiver) return violation(s, e.conn, "FILE_STATE from a connection outside the task")
  const { msg } = e
  if (msg.taskId !== s.spec.taskId) return violation(s, e.conn, "FILE_STATE for another task")
  if (msg.userId !== (isSender ? s.spec.fromUserId : s.spec.toUserId)) return violation(s, e.conn, "FILE_STATE from the wrong user")
  if (msg.state === FileState.PeerReady) return [s, []]
  const other = isSender ? s.receiver : s.sender
  const commands: Array<Command> = []
  if (other !== undefined) commands.push({ _tag: "Forward", to: other, raw: e.raw, seq: e.seq, dataBytes: 0 })
  const outcome: Outcome = msg.state === FileState.Done ? "done" : msg.state === FileState.Refuse ? "refused" : "cancelled"
  const who = isSender ? "sender" : "receiver"
  return end(s, outcome, `${who} sent ${outcome === "done" ? "DONE" : outcome === "refused" ? "REFUSE" : "CANCEL"}`, commands)
}

/**
 * One event. `allowance` is how many bytes the task may have ahead after it (its share of
 * the server's read-ahead memory); read-ahead stops short of it, and resumes with the next
 * pull when there is room again.
 */
export const step = (s: TaskState, e: TaskEvent, limits: Limits, allowance: number = Number.POSITIVE_INFINITY): Step => {
  if (isTerminal(s)) {
    return e._tag === "Login" ? [s, [{ _tag: "LoginRefused", conn: e.conn, seq: e.seq, reason: "task has ended" }]] : [s, []]
  }
  switch (e._tag) {
    case "Login":
      return login(s, e)
    case "PullReq":
      return pullReq(s, e, limits, allowance)
    case "PullRsp":
      return pullRsp(s, e)
    case "State":
      return fileState(s, e)
    case "Left":
      return partyGone(s, e.conn, "connection closed", [])
    case "Expired":
      return s.sender === undefined && s.receiver === undefined ? end(s, "expired", "nobody connected before the task timeout", []) : [s, []]
    case "Shutdown": {
      const commands: Array<Command> = []
      const note = (to: ConnId | undefined, userId: number) => {
        if (to !== undefined) commands.push({ _tag: "SendState", to, state: FileState.Cancel, userId })
      }
      note(s.receiver, s.spec.fromUserId)
      note(s.sender, s.spec.toUserId)
      return end(s, "shutdown", "server shutting down", commands)
    }
    case "UploadOpened":
    case "UploadFailed":
    case "UploadStored":
    case "ServeFailed":
      return [s, []]
  }
}
