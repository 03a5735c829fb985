/**
 * Raw-socket helpers for server tests: `node:net` plus the protocol codecs, no
 * client SDK in between, so a test controls every byte and seq it sends and
 * sees every frame the server writes, and when the server closes.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { createHash } from "node:crypto"
import { connect as netConnect } from "node:net"
import type { Socket } from "node:net"
import { FileRole, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { encodeFrame, Frame, frameBody, FrameDecoder } from "../../src/protocol/frame.js"
import { HEADER_BYTES, PDU_VERSION, writeHeader } from "../../src/protocol/header.js"
import type { FileStateMsg, PduType, PullDataReq, PullDataRsp } from "../../src/protocol/messages.js"
import { encodePdu, isPdu, Pdu } from "../../src/protocol/messages.js"
import type { TestServer } from "./server.js"
import { createTask } from "./server.js"

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

/** Default wait for something the server should do promptly. */
export const WAIT_MS = 3000

export interface Received<A> {
  readonly frame: Frame
  readonly seq: number
  readonly msg: A
}

export interface RawConn {
  readonly socket: Socket
  /** Writes the PDUs concatenated, in one socket write. */
  readonly send: (...pdus: ReadonlyArray<Buffer>) => void
  /** The next frame the server sent; fails when the connection closes first or nothing comes in time. */
  readonly next: (timeoutMs?: number) => Effect.Effect<Frame, Error>
  /** The next frame, which must be a `type` PDU with a decodable body. */
  readonly expect: <A>(type: PduType<A>, timeoutMs?: number) => Effect.Effect<Received<A>, Error>
  /**
   * Waits until the server has closed the connection (FIN or reset) and
   * returns the frames that arrived before and were not read.
   */
  readonly expectClosed: (timeoutMs?: number) => Effect.Effect<ReadonlyArray<Frame>, Error>
  /** Fails if any frame arrives or the connection closes within `ms`. */
  readonly expectQuiet: (ms: number) => Effect.Effect<void, Error>
  readonly isClosed: () => boolean
  /** Frames received and not read yet. */
  readonly pending: () => ReadonlyArray<Frame>
  readonly destroy: () => void
}

const describeFrame = (f: Frame) =>
  `service ${f.serviceId} command 0x${f.commandId.toString(16).padStart(4, "0")} seq ${f.seq} (${f.raw.length} bytes)`

type Check<A> = () => { readonly value: A } | { readonly error: Error } | undefined

/** Opens a raw connection for the life of the scope (destroyed when it closes). */
export const rawConnect = (address: { readonly host: string; readonly port: number }): Effect.Effect<RawConn, Error, Scope.Scope> =>
  Effect.gen(function* () {
    const socket = yield* Effect.acquireRelease(
      Effect.async<Socket, Error>((resume) => {
        const s = netConnect({ host: address.host, port: address.port, noDelay: true })
        const onError = (e: Error) => resume(Effect.fail(e))
        s.once("error", onError)
        s.once("connect", () => {
          s.off("error", onError)
          resume(Effect.succeed(s))
        })
      }),
      (s) => Effect.sync(() => s.destroy())
    )
    const decoder = new FrameDecoder(64 * 1024 * 1024)
    const queue: Array<Frame> = []
    let closed = false
    let failure: Error | undefined
    const waiters = new Set<() => void>()
    const notify = () => {
      for (const w of [...waiters]) w()
    }
    socket.on("data", (chunk: Buffer) => {
      const out: Array<Frame> = []
      const error = decoder.push(chunk, out)
      // Copy: the chunk may be reused by nobody, but tests keep frames around.
      for (const f of out) queue.push(new Frame([Buffer.from(f.raw)], f.length, f.serviceId, f.commandId, f.seq))
      if (error) {
        failure = new Error(`the server sent a bad frame: ${error.message}`)
        socket.destroy()
      }
      notify()
    })
    const onClosed = () => {
      closed = true
      notify()
    }
    socket.on("end", onClosed)
    socket.on("close", onClosed)
    socket.on("error", onClosed)

    const waitUntil = <A>(check: Check<A>, timeoutMs: number, what: string): Effect.Effect<A, Error> =>
      Effect.async<A, Error>((resume) => {
        const settle = (r: { readonly value: A } | { readonly error: Error }) =>
          resume("value" in r ? Effect.succeed(r.value) : Effect.fail(r.error))
        const first = check()
        if (first !== undefined) return settle(first)
        const waiter = () => {
          const r = check()
          if (r !== undefined) {
            cleanup()
            settle(r)
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          resume(Effect.fail(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)))
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          waiters.delete(waiter)
        }
        waiters.add(waiter)
        return Effect.sync(cleanup)
      })

    const next = (timeoutMs = WAIT_MS) =>
      waitUntil<Frame>(
        () => {
          const f = queue.shift()
          if (f !== undefined) return { value: f }
          if (failure) return { error: failure }
          if (closed) return { error: new Error("the connection closed while a frame was expected") }
          return undefined
        },
        timeoutMs,
        "a frame"
      )

    const expect = <A>(type: PduType<A>, timeoutMs = WAIT_MS) =>
      Effect.gen(function* () {
        const frame = yield* next(timeoutMs)
        if (!isPdu(frame, type)) return yield* Effect.fail(new Error(`expected ${type.name}, got ${describeFrame(frame)}`))
        const msg = yield* decodeAs(type, frame)
        return { frame, seq: frame.seq, msg }
      })

    const expectClosed = (timeoutMs = WAIT_MS) =>
      waitUntil<ReadonlyArray<Frame>>(
        () => (closed ? { value: queue.splice(0, queue.length) } : undefined),
        timeoutMs,
        "the server to close the connection"
      )

    const expectQuiet = (ms: number) =>
      Effect.sleep(ms).pipe(
        Effect.zipRight(
          Effect.suspend(() =>
            queue.length > 0
              ? Effect.fail(new Error(`expected nothing, got ${queue.map(describeFrame).join("; ")}`))
              : closed
              ? Effect.fail(new Error("expected the connection to stay open, but it closed"))
              : Effect.void
          )
        )
      )

    return {
      socket,
      send: (...pdus) => {
        socket.write(pdus.length === 1 ? pdus[0]! : Buffer.concat(pdus))
      },
      next,
      expect,
      expectClosed,
      expectQuiet,
      isClosed: () => closed,
      pending: () => [...queue],
      destroy: () => socket.destroy()
    } satisfies RawConn
  })

export const decodeAs = <A>(type: PduType<A>, frame: Frame): Effect.Effect<A, Error> =>
  Effect.suspend(() => {
    const d = type.decodeBody(frameBody(frame))
    return d._tag === "Left" ? Effect.fail(new Error(d.left.message)) : Effect.succeed(d.right)
  })

// ---- PDU builders -----------------------------------------------------------

export const loginPdu = (seq: number, taskId: string, userId: number, role: number): Buffer =>
  encodePdu(Pdu.LoginReq, seq, { taskId, userId, fileRole: role as FileRole })

export const statePdu = (seq: number, msg: FileStateMsg): Buffer => encodePdu(Pdu.State, seq, msg)

export const pullReqPdu = (seq: number, msg: Omit<PullDataReq, "transMode"> & { readonly transMode?: TransferMode }): Buffer =>
  encodePdu(Pdu.PullDataReq, seq, { transMode: TransferMode.Online, ...msg })

export const pullRspPdu = (seq: number, msg: Omit<PullDataRsp, "resultCode"> & { readonly resultCode?: number }): Buffer =>
  encodePdu(Pdu.PullDataRsp, seq, { resultCode: 0, ...msg })

export const heartbeatPdu = (seq: number): Buffer => encodePdu(Pdu.HeartBeat, seq, {})

/** A PDU of any kind around an arbitrary body (e.g. garbage). */
export const rawPdu = (type: { readonly serviceId: number; readonly commandId: number }, seq: number, body: Uint8Array): Buffer =>
  encodeFrame(type.serviceId, type.commandId, seq, body)

/** A bare 16-byte header announcing `length` bytes (which never follow). */
export const headerOnly = (length: number, type: { readonly serviceId: number; readonly commandId: number } = Pdu.LoginReq): Buffer => {
  const buf = Buffer.alloc(HEADER_BYTES)
  writeHeader(buf, { length, version: PDU_VERSION, flag: 0, serviceId: type.serviceId, commandId: type.commandId, seq: 1, reserved: 0 })
  return buf
}

// ---- Task and login shortcuts ---------------------------------------------------

export const FROM = 1001
export const TO = 2002

/** Creates an online task FROM -> TO of `size` bytes through the msg port. */
export const onlineTask = (server: TestServer, size: number, fileName = "file.bin") =>
  createTask(server, { fromUserId: FROM, toUserId: TO, fileName, fileSize: size, mode: TransferMode.Online })

/** Connects and logs in; the LOGIN_RES must say OK, echo the seq and name the task. */
export const rawLogin = (server: TestServer, taskId: string, userId: number, role: FileRole, seq = 7) =>
  Effect.gen(function* () {
    const conn = yield* rawConnect(server.client)
    conn.send(loginPdu(seq, taskId, userId, role))
    const res = yield* conn.expect(Pdu.LoginRes)
    if (res.msg.resultCode !== ResultCode.Ok) return yield* Effect.fail(new Error(`login refused: ${JSON.stringify(res.msg)}`))
    if (res.seq !== seq) return yield* Effect.fail(new Error(`LOGIN_RES seq ${res.seq}, request seq ${seq}`))
    if (res.msg.taskId !== taskId) return yield* Effect.fail(new Error(`LOGIN_RES task ${res.msg.taskId}, expected ${taskId}`))
    return conn
  })

/** Sender then receiver logged in on raw connections; the receiver's PEER_READY has been read. */
export const rawPair = (server: TestServer, taskId: string) =>
  Effect.gen(function* () {
    const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
    const receiver = yield* rawLogin(server, taskId, TO, FileRole.Receiver)
    const ready = yield* receiver.expect(Pdu.State)
    if (ready.msg.state !== 0) return yield* Effect.fail(new Error(`expected PEER_READY, got state ${ready.msg.state}`))
    return { sender, receiver }
  })

/**
 * A raw sender loop serving `data`: answers each forwarded pull with the
 * requested slice. `seqFor` picks the response seq; `batch` decides when the
 * pending pulls are answered and in what order. Ends when a FILE_STATE
 * arrives (returned) or the connection closes.
 */
export const serveRaw = (
  conn: RawConn,
  options: {
    readonly taskId: string
    readonly data: Buffer
    readonly seqFor?: (n: number, req: Received<PullDataReq>) => number
    /** Given the pulls waiting, returns those to answer now, in order (default: all, as they came). */
    readonly batch?: (pending: ReadonlyArray<Received<PullDataReq>>) => ReadonlyArray<Received<PullDataReq>>
    readonly onPull?: (req: Received<PullDataReq>) => void
  }
) =>
  Effect.gen(function* () {
    let pending: Array<Received<PullDataReq>> = []
    let n = 0
    for (;;) {
      const frame = yield* conn.next(10_000)
      if (isPdu(frame, Pdu.State)) return yield* decodeAs(Pdu.State, frame)
      if (!isPdu(frame, Pdu.PullDataReq)) return yield* Effect.fail(new Error(`sender got ${describeFrame(frame)}`))
      const req = { frame, seq: frame.seq, msg: yield* decodeAs(Pdu.PullDataReq, frame) }
      options.onPull?.(req)
      pending.push(req)
      const now = options.batch ? options.batch(pending) : pending
      if (now.length === 0) continue
      const answered = new Set(now)
      pending = pending.filter((p) => !answered.has(p))
      conn.send(
        ...now.map((r) =>
          pullRspPdu(options.seqFor ? options.seqFor(n++, r) : r.seq, {
            taskId: options.taskId,
            userId: FROM,
            offset: r.msg.offset,
            fileData: options.data.subarray(r.msg.offset, r.msg.offset + r.msg.dataSize)
          })
        )
      )
    }
  })
