import { Effect, Either } from "effect"
import type { FileRole } from "../protocol/commands.js"
import { FileState, OtherCmd, ResultCode, ServiceId, TransferMode } from "../protocol/commands.js"
import { encodePullDataRspHead } from "../protocol/dataBlock.js"
import type { Frame } from "../protocol/frame.js"
import { frameBody } from "../protocol/frame.js"
import type { PduType } from "../protocol/messages.js"
import { encodePdu, isPdu, Pdu } from "../protocol/messages.js"
import type { BlockSink, BlockSource } from "./blocks.js"
import { ClientError } from "./errors.js"
import type { PduSocket } from "./pduSocket.js"

/** The default pull size: TeamTalk's 32 KiB segment. */
export const DEFAULT_BLOCK_SIZE = 32 * 1024

const protocolError = (message: string) => new ClientError({ reason: "Protocol", message })

const decode = <A>(type: PduType<A>, frame: Frame): Effect.Effect<A, ClientError> => {
  const d = type.decodeBody(frameBody(frame))
  return Either.isLeft(d) ? Effect.fail(protocolError(d.left.message)) : Effect.succeed(d.right)
}

const isHeartbeat = (f: Frame) => f.serviceId === ServiceId.Other && f.commandId === OtherCmd.HeartBeat

const stateName = (s: number) => (s === FileState.Cancel ? "CANCEL" : s === FileState.Refuse ? "REFUSE" : s === FileState.Done ? "DONE" : "PEER_READY")

/** Seqs this client stamps on its requests: 16-bit, never 0 (0 marks server-originated PDUs). */
export const makeSeq = () => {
  let seq = 0
  return () => {
    seq = (seq % 0xffff) + 1
    return seq
  }
}

export interface LoginOptions {
  readonly taskId: string
  readonly userId: number
  readonly role: FileRole
}

/** Logs in to a task; fails with reason "Refused" when the server says no. */
export const login = (sock: PduSocket, options: LoginOptions, seq = 1): Effect.Effect<void, ClientError> =>
  Effect.gen(function* () {
    sock.send(encodePdu(Pdu.LoginReq, seq, { userId: options.userId, taskId: options.taskId, fileRole: options.role }))
    for (;;) {
      const frame = yield* sock.next
      if (isHeartbeat(frame)) continue
      if (!isPdu(frame, Pdu.LoginRes)) return yield* protocolError(`expected LOGIN_RES, got command 0x${frame.commandId.toString(16)}`)
      const rsp = yield* decode(Pdu.LoginRes, frame)
      if (rsp.resultCode !== ResultCode.Ok) {
        return yield* new ClientError({ reason: "Refused", message: `the server refused the login to task ${options.taskId}` })
      }
      return
    }
  })

export const sendState = (sock: PduSocket, state: FileState, taskId: string, userId: number, seq = 0): void =>
  sock.send(encodePdu(Pdu.State, seq, { state, taskId, userId }))

export const sendHeartbeat = (sock: PduSocket, seq = 0): void => sock.send(encodePdu(Pdu.HeartBeat, seq, {}))

/** Waits for FILE_STATE PEER_READY (the receiver's go-ahead); CANCEL or REFUSE fail. */
export const awaitPeerReady = (sock: PduSocket): Effect.Effect<void, ClientError> =>
  Effect.gen(function* () {
    for (;;) {
      const frame = yield* sock.next
      if (!isPdu(frame, Pdu.State)) continue
      const msg = yield* decode(Pdu.State, frame)
      if (msg.state === FileState.PeerReady) return
      return yield* new ClientError({ reason: "Cancelled", message: `the transfer ended with ${stateName(msg.state)} before it began` })
    }
  })

export interface PullOptions {
  readonly taskId: string
  readonly userId: number
  readonly mode: TransferMode
  readonly sink: BlockSink
  /** Pulls in flight at once (default 1, as TeamTalk clients). */
  readonly window?: number
  readonly blockSize?: number
  /**
   * The file size, when known. Without it the transfer ends at the first
   * block shorter than asked: the server clamps pulls to the end of the file.
   */
  readonly size?: number
  /** Where to start pulling (to resume into a partial file); default 0. */
  readonly offset?: number
  /** Called after each block, with the bytes received so far. */
  readonly onProgress?: (bytes: number) => void
}

export interface PullResult {
  readonly bytes: number
  /** The FILE_STATE the server sent at the end, if any (offline downloads end with DONE). */
  readonly finalState: FileState | undefined
}

/**
 * Pulls a whole file with `window` requests in flight, writing each block to
 * the sink at its offset. Responses are matched to requests by seq and their
 * offsets checked. Does not send DONE: the caller decides (see receiveFile).
 */
export const pullFile = (sock: PduSocket, options: PullOptions): Effect.Effect<PullResult, ClientError> =>
  Effect.gen(function* () {
    const window = Math.max(1, options.window ?? 1)
    const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE
    const nextSeq = makeSeq()
    const inFlight = new Map<number, { offset: number; size: number }>()
    let end = options.size
    const start = options.offset ?? 0
    let requested = start
    let received = 0
    let finalState: FileState | undefined
    const fill = () => {
      const parts: Array<Buffer> = []
      while (inFlight.size < window && (end === undefined || requested < end)) {
        const size = end === undefined ? blockSize : Math.min(blockSize, end - requested)
        const seq = nextSeq()
        inFlight.set(seq, { offset: requested, size })
        parts.push(
          encodePdu(Pdu.PullDataReq, seq, { taskId: options.taskId, userId: options.userId, transMode: options.mode, offset: requested, dataSize: size })
        )
        requested += size
      }
      if (parts.length > 0) sock.sendAll(parts)
    }
    if (end !== undefined && start >= end) return { bytes: 0, finalState: undefined }
    fill()
    while (inFlight.size > 0) {
      const frames = yield* sock.receive
      for (const frame of frames) {
        if (isPdu(frame, Pdu.PullDataRsp)) {
          const rsp = yield* decode(Pdu.PullDataRsp, frame)
          const req = inFlight.get(frame.seq)
          if (req === undefined) return yield* protocolError(`PULL_DATA_RSP with seq ${frame.seq} answers no request`)
          inFlight.delete(frame.seq)
          if (rsp.resultCode !== 0) return yield* protocolError(`the server answered the pull at ${req.offset} with error ${rsp.resultCode}`)
          if (rsp.offset !== req.offset) return yield* protocolError(`asked for offset ${req.offset}, got ${rsp.offset}`)
          if (rsp.fileData.length > req.size) return yield* protocolError(`asked for ${req.size} bytes, got ${rsp.fileData.length}`)
          if (rsp.fileData.length > 0) yield* options.sink.write(rsp.offset, rsp.fileData)
          received += rsp.fileData.length
          if (rsp.fileData.length < req.size) {
            const short = req.offset + rsp.fileData.length
            if (options.size !== undefined) return yield* protocolError(`the file ended at ${short}, before the expected ${options.size} bytes`)
            end = end === undefined ? short : Math.min(end, short)
          }
          options.onProgress?.(start + received)
        } else if (isPdu(frame, Pdu.State)) {
          const msg = yield* decode(Pdu.State, frame)
          if (msg.state === FileState.Done) finalState = msg.state
          else if (msg.state !== FileState.PeerReady) {
            return yield* new ClientError({ reason: "Cancelled", message: `the peer sent ${stateName(msg.state)}` })
          }
        }
      }
      fill()
    }
    if (end !== undefined && start + received !== end) return yield* protocolError(`received ${start + received} bytes of ${end}`)
    return { bytes: received, finalState }
  })

export interface ServeOptions {
  readonly taskId: string
  readonly userId: number
  readonly source: BlockSource
  readonly onProgress?: (bytes: number) => void
}

export interface ServeResult {
  readonly bytes: number
  /** What the peer ended the transfer with: DONE on success. */
  readonly finalState: FileState
}

/**
 * Answers the server's PULL_DATA_REQs from `source` until a FILE_STATE ends
 * the transfer (an online sender, or an offline uploader). Each response
 * echoes its request's seq and goes out as header + data without copying the data.
 */
export const serveFile = (sock: PduSocket, options: ServeOptions): Effect.Effect<ServeResult, ClientError> =>
  Effect.gen(function* () {
    let sent = 0
    for (;;) {
      const frames = yield* sock.receive
      const parts: Array<Buffer> = []
      for (const frame of frames) {
        if (isPdu(frame, Pdu.PullDataReq)) {
          const req = yield* decode(Pdu.PullDataReq, frame)
          const data = yield* options.source.read(req.offset, req.dataSize)
          parts.push(
            encodePullDataRspHead({ seq: frame.seq, resultCode: 0, taskId: options.taskId, userId: options.userId, offset: req.offset, dataLength: data.length }),
            data
          )
          sent += data.length
        } else if (isPdu(frame, Pdu.State)) {
          const msg = yield* decode(Pdu.State, frame)
          if (msg.state === FileState.PeerReady) continue
          if (parts.length > 0) sock.sendAll(parts)
          return { bytes: sent, finalState: msg.state }
        } else if (isHeartbeat(frame)) {
          continue
        }
      }
      if (parts.length > 0) {
        sock.sendAll(parts)
        options.onProgress?.(sent)
      }
    }
  })

/** Online receiver: waits for PEER_READY, pulls the whole file, then tells the sender DONE. */
export const receiveFile = (sock: PduSocket, options: Omit<PullOptions, "mode">): Effect.Effect<PullResult, ClientError> =>
  Effect.gen(function* () {
    yield* awaitPeerReady(sock)
    const result = yield* pullFile(sock, { ...options, mode: TransferMode.Online })
    sendState(sock, FileState.Done, options.taskId, options.userId)
    // The DONE must reach the server even if the caller closes the connection right away.
    yield* sock.flushed
    return result
  })


const requireDone = (state: FileState | undefined, what: string): Effect.Effect<void, ClientError> =>
  state === FileState.Done
    ? Effect.void
    : Effect.fail(new ClientError({ reason: "Cancelled", message: `the ${what} ended with ${state === undefined ? "no FILE_STATE" : stateName(state)}` }))

/**
 * Offline uploader: logs in (role 3) and answers the server's pulls until it
 * says DONE (the file is stored). Logging in again to an interrupted task
 * resumes: the server asks only for what it does not have.
 */
export const uploadFile = (sock: PduSocket, options: ServeOptions): Effect.Effect<ServeResult, ClientError> =>
  Effect.gen(function* () {
    yield* login(sock, { taskId: options.taskId, userId: options.userId, role: 3 })
    const result = yield* serveFile(sock, options)
    yield* requireDone(result.finalState, "upload")
    return result
  })

/**
 * Offline downloader: logs in (role 4), pulls the stored file from
 * `offset` (0, or where a partial copy ends), and waits for the server's
 * FILE_STATE DONE that ends every download.
 */
export const downloadFile = (sock: PduSocket, options: Omit<PullOptions, "mode">): Effect.Effect<PullResult, ClientError> =>
  Effect.gen(function* () {
    yield* login(sock, { taskId: options.taskId, userId: options.userId, role: 4 })
    // Nothing left to fetch (an empty file, or a copy already whole): one pull at the end still
    // fetches the empty last block, after which the server says DONE.
    const { size, ...rest } = options
    const atEnd = size !== undefined && (options.offset ?? 0) >= size
    const result = yield* pullFile(sock, { ...rest, ...(atEnd || size === undefined ? {} : { size }), mode: TransferMode.Offline })
    let finalState = result.finalState
    while (finalState === undefined) {
      const frame = yield* sock.next
      if (isPdu(frame, Pdu.State)) finalState = (yield* decode(Pdu.State, frame)).state
    }
    yield* requireDone(finalState, "download")
    return { ...result, finalState }
  })
