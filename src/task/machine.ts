/**
 * The online-transfer state machine, as a pure function
 * `step(state, event) -> [state, commands]`. It knows connections only by id;
 * the task actor (actor.ts) feeds it events and carries out its commands.
 * See docs/architecture.md for the states and docs/protocol.md for the rules.
 */
import { FileRole, FileState, TransferMode } from "../protocol/commands.js"
import type { DataBlock } from "../protocol/dataBlock.js"
import type { Bytes } from "../protocol/frame.js"
import { sliceBytes } from "../protocol/frame.js"
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
 * Part of the file the server asked the sender for ahead of the receiver
 * (read-ahead), one or more of the receiver's blocks long, in flight until
 * `data` holds the sender's answer. Pulls take its blocks in order: `claimed`
 * bytes from its start are taken, by pulls answered already or by `waiting`
 * ones (answered as it arrives). A `discard`ed one is dropped as it arrives,
 * once the pulls waiting on it are answered (the receiver went elsewhere).
 */
export interface Segment {
  readonly offset: number
  readonly size: number
  readonly data: Bytes | undefined
  readonly claimed: number
  readonly waiting: ReadonlyArray<PendingPull>
  readonly discard: boolean
}

export interface TaskState {
  readonly spec: TaskSpec
  readonly phase: Phase
  readonly sender: ConnId | undefined
  readonly receiver: ConnId | undefined
  /** Pulls forwarded to the sender and not yet answered, oldest first. */
  readonly pulls: ReadonlyArray<PendingPull>
  /** Read-ahead segments, in the order they were asked for. */
  readonly ahead: ReadonlyArray<Segment>
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
  /** Bytes asked for ahead in one pull to the sender: the nearest whole number of receiver blocks, at least one, at most `readahead`, within `maxBlockBytes`. */
  readonly readaheadSegment: number
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
  /** A PULL_DATA_RSP carrying `data` (part of a read-ahead segment), from the sender, with the receiver's seq. */
  | { readonly _tag: "SendBlock"; readonly to: ConnId; readonly seq: number; readonly offset: number; readonly data: Bytes; readonly dataBytes: number }
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

/** Receiver pulls waiting for the sender: forwarded ones, and those waiting on a read-ahead segment. */
const pullsInFlight = (s: TaskState): number => {
  let n = s.pulls.length
  for (const p of s.ahead) n += p.waiting.length
  return n
}

const without = <A>(items: ReadonlyArray<A>, index: number): ReadonlyArray<A> => [...items.slice(0, index), ...items.slice(index + 1)]
const replaced = <A>(items: ReadonlyArray<A>, index: number, item: A): ReadonlyArray<A> => items.map((p, i) => (i === index ? item : p))

/**
 * Asks the sender for what follows `from`, in segments of whole `blockSize` blocks, until
 * `limits.readahead` blocks' worth is ahead, `allowance` bytes are ahead, or the file ends,
 * skipping nothing: an offset already asked for (by a pull) stops the read-ahead until the
 * next pull. At most `readahead` blocks' worth is ever held in memory.
 */
const readAhead = (s: TaskState, from: number, blockSize: number, limits: Limits, allowance: number, commands: Array<Command>): TaskState => {
  if (limits.readahead === 0 || s.sender === undefined) return s
  const ahead = [...s.ahead]
  const depth = limits.readahead * blockSize
  // The nearest whole number of blocks (TeamTalk clients pull 32, 34 or 40 KiB), within one frame.
  const segmentBlocks = Math.min(limits.readahead, Math.max(1, Math.round(limits.readaheadSegment / blockSize)))
  const segmentBytes = Math.max(1, Math.min(segmentBlocks, Math.floor(limits.maxBlockBytes / blockSize))) * blockSize
  let next = Math.max(s.aheadEnd, from)
  let bytes = aheadBytes(s)
  let live = 0
  let liveBytes = 0
  for (const p of ahead) {
    if (p.discard) continue
    live++
    liveBytes += p.size
  }
  // Segments still coming for pulls the receiver did not make count too: at most 2N records.
  while (live < limits.readahead && ahead.length < 2 * limits.readahead && next < s.spec.fileSize) {
    const offset = next
    if (s.pulls.some((p) => p.offset === offset) || ahead.some((p) => p.offset === offset)) break
    const size = Math.min(segmentBytes, s.spec.fileSize - offset)
    if (liveBytes + size > depth || bytes + size > allowance) break
    bytes += size
    liveBytes += size
    ahead.push({ offset, size, data: undefined, claimed: 0, waiting: [], discard: false })
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
  if (pullsInFlight(s) >= limits.maxPullsInFlight) return violation(s, e.conn, "too many pulls in flight")
  const size = Math.min(msg.dataSize, s.spec.fileSize - msg.offset)
  const commands: Array<Command> = []
  // The next block of a segment read ahead (pulled in order, within it).
  const hit = s.ahead.findIndex((p) => !p.discard && msg.offset === p.offset + p.claimed && msg.offset + size <= p.offset + p.size)
  let next: TaskState
  if (hit >= 0) {
    const segment = s.ahead[hit]!
    const claimed = segment.claimed + size
    if (segment.data !== undefined) {
      // Answered from memory, with the receiver's own seq.
      const from = msg.offset - segment.offset
      commands.push({ _tag: "SendBlock", to: e.conn, seq: e.seq, offset: msg.offset, data: sliceBytes(segment.data, from, from + size), dataBytes: size })
      const ahead = claimed === segment.size ? without(s.ahead, hit) : replaced(s.ahead, hit, { ...segment, claimed })
      next = { ...state, ahead, bytesRelayed: s.bytesRelayed + size }
    } else {
      // Already asked for: this pull is answered as it arrives.
      const waiting = [...segment.waiting, { offset: msg.offset, size, seq: e.seq }]
      next = { ...state, ahead: replaced(s.ahead, hit, { ...segment, claimed, waiting }) }
    }
  } else {
    commands.push(
      size === msg.dataSize
        ? { _tag: "Forward", to: s.sender!, raw: e.raw, seq: e.seq, dataBytes: 0 }
        : { _tag: "SendPull", to: s.sender!, seq: e.seq, msg: { ...msg, dataSize: size } }
    )
    // The receiver did not pull what was read ahead: drop what arrived, ignore what is still
    // coming (once the pulls waiting on it are answered).
    const ahead = s.ahead.filter((p) => p.data === undefined).map((p) => (p.discard ? p : { ...p, discard: true }))
    next = { ...state, ahead, aheadEnd: msg.offset + size, pulls: [...s.pulls, { offset: msg.offset, size, seq: e.seq }] }
  }
  return [readAhead(next, msg.offset + size, msg.dataSize, limits, allowance, commands), commands]
}

/** The sender's answer to a read-ahead segment: the pulls waiting on it are answered, the rest kept for the next ones. */
const segmentArrived = (s: TaskState, index: number, msg: DataBlock): Step => {
  const segment = s.ahead[index]!
  const commands: Array<Command> = []
  let relayed = 0
  for (const pull of segment.waiting) {
    if (s.receiver === undefined) break
    if (msg.resultCode !== 0) {
      commands.push({ _tag: "SendPullError", to: s.receiver, seq: pull.seq, offset: pull.offset, code: msg.resultCode })
      continue
    }
    const from = pull.offset - segment.offset
    commands.push({ _tag: "SendBlock", to: s.receiver, seq: pull.seq, offset: pull.offset, data: sliceBytes(msg.data, from, from + pull.size), dataBytes: pull.size })
    relayed += pull.size
  }
  const keep = !segment.discard && msg.resultCode === 0 && segment.claimed < segment.size
  const ahead = keep ? replaced(s.ahead, index, { ...segment, data: msg.data, waiting: [] }) : without(s.ahead, index)
  return [{ ...s, ahead, bytesRelayed: s.bytesRelayed + relayed }, commands]
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
  // A read-ahead segment at this offset was asked for before any pull still waiting for it.
  const a = s.ahead.findIndex((p) => p.offset === msg.offset && p.data === undefined)
  if (a >= 0) return wrongSize(s.ahead[a]!.size) ?? segmentArrived(s, a, msg)
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
