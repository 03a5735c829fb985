/**
 * One measured online transfer: a task from the target, a sender serving an
 * in-memory buffer and a receiver pulling it with a window, both through the
 * SDK in this process. The receiver's sink only counts bytes and spot-checks
 * each block's first and last byte against the source.
 */
import { Duration, Effect } from "effect"
import * as Client from "../src/client/index.js"
import { FileRole, FileState } from "../src/protocol/commands.js"
import { BenchError } from "./errors.js"
import { cpuTimes, peakRssMiB, resetPeakRss } from "./procStats.js"
import type { Target } from "./targets.js"

export interface OnlineOptions {
  readonly window: number
  readonly blockSize: number
}

/** What a server process (and this client process) spent on a piece of work. */
export interface ServerCost {
  /** CPU the server process used for the work (task creation to teardown): user + system. */
  readonly serverCpuSeconds: number
  readonly serverUserSeconds: number
  readonly serverSystemSeconds: number
  /** The server's peak RSS during the work (or its life, if the peak cannot be reset). */
  readonly serverPeakRssMiB: number
  readonly peakRssReset: boolean
  /** CPU this process (all the clients) used. */
  readonly clientCpuSeconds: number
}

export interface Measurement extends ServerCost {
  readonly bytes: number
  /** Wall time from the first login to the last byte received. */
  readonly seconds: number
  readonly mibPerSec: number
}

const MiB = 1024 * 1024
export const SENDER = 1
export const RECEIVER = 2
/** Time for the server to finish tearing the task down before its CPU is read. */
const SETTLE = Duration.millis(100)

const fail = (message: string) => new BenchError({ message })
const clientError = (e: Client.ClientError) => fail(`transfer failed: ${e.message}`)

/** A sink that keeps no data: counts bytes and checks each block's ends against the source. */
export const checkingSink = (source: Buffer) => {
  let bytes = 0
  let mismatch: string | undefined
  const sink: Client.BlockSink = {
    write: (offset, data) =>
      Effect.sync(() => {
        bytes += data.length
        const last = data.length - 1
        if (mismatch === undefined && (data[0] !== source[offset] || data[last] !== source[offset + last])) {
          mismatch = `the block at ${offset} does not match the source`
        }
      })
  }
  return { sink, bytes: () => bytes, mismatch: () => mismatch }
}

/**
 * Runs `work` against the server process `pid` and says what it cost: the
 * server's CPU is read before it starts and after a short settle, its peak
 * RSS reset before it.
 */
export const measureServer = <A>(pid: number, work: Effect.Effect<A, BenchError>): Effect.Effect<{ readonly result: A; readonly cost: ServerCost }, BenchError> =>
  Effect.gen(function* () {
    const peakRssReset = resetPeakRss(pid)
    const cpuBefore = cpuTimes(pid)
    const clientCpuBefore = process.cpuUsage()
    const result = yield* work
    yield* Effect.sleep(SETTLE)
    const clientCpu = process.cpuUsage(clientCpuBefore)
    const cpuAfter = cpuTimes(pid)
    // Whole ticks, so round away the float noise of the subtraction.
    const user = Math.round((cpuAfter.user - cpuBefore.user) * 1000) / 1000
    const system = Math.round((cpuAfter.system - cpuBefore.system) * 1000) / 1000
    return {
      result,
      cost: {
        serverCpuSeconds: Math.round((user + system) * 1000) / 1000,
        serverUserSeconds: user,
        serverSystemSeconds: system,
        serverPeakRssMiB: peakRssMiB(pid),
        peakRssReset,
        clientCpuSeconds: (clientCpu.user + clientCpu.system) / 1e6
      }
    }
  })

/** Measures one transfer of `bytes`: `transfer` returns its own wall time in seconds (the part that counts). */
export const measureTransfer = (
  pid: number,
  bytes: number,
  transfer: Effect.Effect<number, BenchError>
): Effect.Effect<Measurement, BenchError> =>
  measureServer(pid, transfer).pipe(Effect.map(({ cost, result: seconds }) => ({ bytes, seconds, mibPerSec: bytes / MiB / seconds, ...cost })))

/** How long a transfer of `size` bytes may take before the bench gives up on it. */
export const transferTimeout = (size: number) => Duration.seconds(30 + size / (2 * MiB))

export const onlineTransfer = (target: Target, source: Buffer, options: OnlineOptions): Effect.Effect<Measurement, BenchError> =>
  measureTransfer(
    target.process.pid,
    source.length,
    Effect.gen(function* () {
      const size = source.length
      const taskId = yield* target.newOnlineTask({ fromUserId: SENDER, toUserId: RECEIVER, fileName: "bench.bin", fileSize: size })
      const check = checkingSink(source)
      return yield* Effect.scoped(
        Effect.gen(function* () {
          const sender = yield* Client.connect(target.client)
          const receiver = yield* Client.connect(target.client)
          const start = performance.now()
          yield* Client.login(sender, { taskId, userId: SENDER, role: FileRole.Sender })
          yield* Client.login(receiver, { taskId, userId: RECEIVER, role: FileRole.Receiver })
          const [served, pulled] = yield* Effect.all(
            [
              Client.serveFile(sender, { taskId, userId: SENDER, source: Client.sourceFromBuffer(source) }),
              Client.receiveFile(receiver, { taskId, userId: RECEIVER, sink: check.sink, size, window: options.window, blockSize: options.blockSize }).pipe(
                Effect.map((r) => ({ ...r, seconds: (performance.now() - start) / 1000 }))
              )
            ],
            { concurrency: 2 }
          )
          if (served.finalState !== FileState.Done) return yield* fail(`the sender ended with state ${served.finalState}, not DONE`)
          if (pulled.bytes !== size || check.bytes() !== size) {
            return yield* fail(`received ${pulled.bytes} bytes (sink counted ${check.bytes()}) of ${size}`)
          }
          const mismatch = check.mismatch()
          if (mismatch !== undefined) return yield* fail(mismatch)
          return pulled.seconds
        })
      ).pipe(
        Effect.mapError((e) => (e instanceof BenchError ? e : clientError(e))),
        Effect.timeoutFail({
          duration: transferTimeout(size),
          onTimeout: () => fail(`the transfer through ${target.name} did not finish in time`)
        })
      )
    })
  )
