/**
 * A receiver that stops reading, against the daemon: it moves a few MiB
 * normally, then sends `window` more pulls and stops reading its socket
 * (paused: the kernel buffers fill, then TCP stops the server). The daemon
 * must not buffer more of the sender's data (online) or of the stored file
 * (offline) than those pulls ask for, plus its read-ahead. Its RSS is read
 * after a forced GC just before the pulls and again `stallSeconds` later;
 * then the receiver reads again, to see whether the server kept the
 * connection (it cuts off one with more than --max-write-queue-bytes queued).
 */
import { Duration, Effect, Either } from "effect"
import { randomBytes } from "node:crypto"
import * as Client from "../src/client/index.js"
import { READ_HIGH_WATER_MARK } from "../src/connection/frameSource.js"
import { FileRole, TransferMode } from "../src/protocol/commands.js"
import { encodePdu, isPdu, Pdu } from "../src/protocol/messages.js"
import { asBench } from "./errors.js"
import type { BenchError } from "./errors.js"
import { forcedGc } from "./gc.js"
import { upload } from "./offline.js"
import { checkingSink, RECEIVER, SENDER } from "./online.js"
import { peakRssMiB, resetPeakRss, rssMiB } from "./procStats.js"
import type { DaemonTarget } from "./targets.js"

const MiB = 1024 * 1024
/** Moved normally before the stall, so the transfer is under way (and the daemon warm). */
const LEAD_BYTES = 4 * MiB
/** Pulls in flight while the lead moves. */
const LEAD_WINDOW = 16
/** How long the receiver waits for the stalled pulls' answers once it reads again. */
const DRAIN_TIMEOUT = Duration.seconds(10)

export type StallMode = "online" | "offline"

export interface StallOptions {
  readonly mode: StallMode
  /** Pulls sent before the receiver stops reading. */
  readonly window: number
  readonly blockSize: number
  readonly stallSeconds: number
  /** The daemon's --online-readahead (blocks it asks the sender for ahead; online only). */
  readonly readahead: number
  /** The daemon's --max-write-queue-bytes. */
  readonly maxWriteQueueBytes: number
}

export interface StallBound {
  readonly bytes: number
  readonly formula: string
}

/**
 * How much the daemon may hold for a stalled receiver: the blocks its pulls
 * ask for (at most the write queue it allows), the blocks read ahead, and
 * one unread socket read buffer per connection of the task.
 */
export const stallBound = (o: Pick<StallOptions, "mode" | "window" | "blockSize" | "readahead" | "maxWriteQueueBytes">): StallBound => {
  const pulled = Math.min(o.window * o.blockSize, o.maxWriteQueueBytes)
  const ahead = o.mode === "online" ? o.readahead * o.blockSize : 0
  const connections = o.mode === "online" ? 2 : 1
  const kib = (n: number) => `${n / 1024} KiB`
  const pulledText = pulled < o.window * o.blockSize ? `write queue ${kib(pulled)}` : `${o.window} x ${kib(o.blockSize)}`
  const aheadText = o.mode === "online" ? ` + read-ahead ${o.readahead} x ${kib(o.blockSize)}` : ""
  return {
    bytes: pulled + ahead + connections * READ_HIGH_WATER_MARK,
    formula: `${pulledText}${aheadText} + ${connections} x ${kib(READ_HIGH_WATER_MARK)} read buffer`
  }
}

export interface StallMeasurement {
  readonly mode: StallMode
  readonly window: number
  readonly blockSize: number
  readonly stallSeconds: number
  readonly rssBeforeMiB: number
  readonly rssAfterMiB: number
  /** RSS after the stall minus before: what the target bounds. */
  readonly growthMiB: number
  /** Peak RSS (VmHWM) during the stall minus the RSS before it. */
  readonly peakGrowthMiB: number
  /** Buffers the daemon still references after forced GCs, before and after the stall (NaN if unknown). */
  readonly arrayBuffersBeforeMiB: number
  readonly arrayBuffersAfterMiB: number
  readonly boundMiB: number
  readonly boundFormula: string
  /** Answers to the stalled pulls the receiver got once it read again. */
  readonly answered: number
  /** The server closed the receiver's connection during the stall. */
  readonly closedByServer: boolean
  readonly closeMessage: string | undefined
  /** Daemon log lines cutting a connection off for not reading, during the case. */
  readonly cutOffLogged: number
}

const cutOffs = (target: DaemonTarget) =>
  Object.entries(target.process.messageCounts())
    .filter(([key]) => /not reading/.test(key))
    .reduce((sum, [, n]) => sum + n, 0)

/** Reads again until every stalled pull is answered, the connection closes, or the wait runs out. */
const drain = (sock: Client.PduSocket, expected: number) =>
  Effect.gen(function* () {
    sock.socket.resume()
    let answered = 0
    const counted = Effect.gen(function* () {
      while (answered < expected) {
        for (const frame of yield* sock.receive) if (isPdu(frame, Pdu.PullDataRsp)) answered++
      }
    })
    const end = yield* counted.pipe(Effect.timeoutFail({ duration: DRAIN_TIMEOUT, onTimeout: () => "timeout" as const }), Effect.either)
    return {
      answered,
      closedByServer: Either.isLeft(end) && end.left !== "timeout",
      closeMessage: Either.isLeft(end) ? (end.left === "timeout" ? `no more answers within ${Duration.format(DRAIN_TIMEOUT)}` : end.left.message) : undefined
    }
  })

/** Logs in and moves the lead: the receiver (online, after PEER_READY) or the downloader (offline). */
const startReceiving = (target: DaemonTarget, options: StallOptions, source: Buffer) =>
  Effect.gen(function* () {
    const { mode } = options
    const taskSpec = { fromUserId: SENDER, toUserId: RECEIVER, fileName: "stall.bin", fileSize: source.length }
    let taskId: string
    if (mode === "online") {
      taskId = yield* target.newOnlineTask(taskSpec)
      const sender = yield* Client.connect(target.client).pipe(Effect.mapError(asBench("stall sender")))
      yield* Client.login(sender, { taskId, userId: SENDER, role: FileRole.Sender }).pipe(Effect.mapError(asBench("stall sender")))
      // The sender answers whatever the daemon asks; it ends with the scope.
      yield* Client.serveFile(sender, { taskId, userId: SENDER, source: Client.sourceFromBuffer(source) }).pipe(Effect.ignore, Effect.forkScoped)
    } else {
      taskId = (yield* upload(target, source)).taskId
    }
    const id = taskId
    const receiver = yield* Client.connect(target.client).pipe(Effect.mapError(asBench("stall receiver")))
    const transMode = mode === "online" ? TransferMode.Online : TransferMode.Offline
    yield* Client.login(receiver, { taskId: id, userId: RECEIVER, role: mode === "online" ? FileRole.Receiver : FileRole.Downloader }).pipe(
      Effect.zipRight(mode === "online" ? Client.awaitPeerReady(receiver) : Effect.void),
      Effect.zipRight(
        Client.pullFile(receiver, {
          taskId: id,
          userId: RECEIVER,
          mode: transMode,
          sink: checkingSink(source).sink,
          size: LEAD_BYTES,
          window: LEAD_WINDOW,
          blockSize: options.blockSize
        })
      ),
      Effect.mapError(asBench("stall receiver"))
    )
    return { taskId: id, receiver, transMode }
  })

export const stalledReceiver = (target: DaemonTarget, options: StallOptions): Effect.Effect<StallMeasurement, BenchError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const pid = target.process.pid
      const source = randomBytes(LEAD_BYTES + options.window * options.blockSize)
      const { receiver, taskId, transMode } = yield* startReceiving(target, options, source)
      const cutOffsBefore = cutOffs(target)
      const gcBefore = yield* forcedGc(target)
      const rssBefore = rssMiB(pid)
      resetPeakRss(pid)

      receiver.socket.pause()
      receiver.sendAll(
        Array.from({ length: options.window }, (_, k) =>
          encodePdu(Pdu.PullDataReq, (k % 0xffff) + 1, {
            taskId,
            userId: RECEIVER,
            transMode,
            offset: LEAD_BYTES + k * options.blockSize,
            dataSize: options.blockSize
          })
        )
      )
      yield* Effect.sleep(Duration.seconds(options.stallSeconds))
      const rssAfter = rssMiB(pid)
      const peak = peakRssMiB(pid)
      const gcAfter = yield* forcedGc(target)
      const drained = yield* drain(receiver, options.window)
      const bound = stallBound(options)
      return {
        mode: options.mode,
        window: options.window,
        blockSize: options.blockSize,
        stallSeconds: options.stallSeconds,
        rssBeforeMiB: rssBefore,
        rssAfterMiB: rssAfter,
        growthMiB: rssAfter - rssBefore,
        peakGrowthMiB: peak - rssBefore,
        arrayBuffersBeforeMiB: gcBefore?.arrayBuffersMiB ?? Number.NaN,
        arrayBuffersAfterMiB: gcAfter?.arrayBuffersMiB ?? Number.NaN,
        boundMiB: bound.bytes / MiB,
        boundFormula: bound.formula,
        ...drained,
        cutOffLogged: cutOffs(target) - cutOffsBefore
      }
    })
  )
