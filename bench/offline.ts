/**
 * Measured offline (store-and-forward) transfers against the daemon, through
 * the SDK in this process:
 *
 * - upload: a stop-and-wait uploader (`Client.uploadFile`: serveFile answers
 *   each PULL_DATA_REQ as it comes) serving an in-memory buffer; timed from
 *   the login to the server's FILE_STATE DONE, which comes after the file is
 *   fsynced and renamed into place. The stored sha256 (the sidecar) is then
 *   checked against the source, outside the measurement.
 * - download: `Client.downloadFile` with a pull window, of a file stored by
 *   an upload to the same daemon (the latest one of that size, normally the
 *   upload case of the same round, so still in memory: no load-and-verify);
 *   timed from the login to the DONE after the last block. The sink counts
 *   bytes and spot-checks each block's ends, as online.
 */
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import * as Client from "../src/client/index.js"
import { FileState } from "../src/protocol/commands.js"
import { BenchError } from "./errors.js"
import type { Measurement } from "./online.js"
import { checkingSink, measureTransfer, RECEIVER, SENDER, transferTimeout } from "./online.js"
import type { DaemonTarget } from "./targets.js"

const fail = (message: string) => new BenchError({ message })
const clientError = (what: string) => (e: Client.ClientError) => fail(`${what} failed: ${e.message}`)

const sourceHashes = new WeakMap<Buffer, string>()
const sha256Of = (source: Buffer) => {
  let h = sourceHashes.get(source)
  if (h === undefined) {
    h = createHash("sha256").update(source).digest("hex")
    sourceHashes.set(source, h)
  }
  return h
}

/** The task of the latest complete upload of `size` bytes to each daemon (by pid), for the downloads. */
const stored = new Map<string, string>()
const storedKey = (target: DaemonTarget, size: number) => `${target.process.pid}:${size}`

/** Checks the sidecar the daemon wrote next to the stored file: its sha256 must be the source's. */
const checkStored = (target: DaemonTarget, taskId: string, source: Buffer) =>
  Effect.tryPromise({
    try: () => readFile(join(target.dataDir, "offline_file", taskId.slice(0, 2), `${taskId}.json`), "utf8"),
    catch: (e) => fail(`cannot read the metadata of the stored file: ${String(e)}`)
  }).pipe(
    Effect.flatMap((text) => {
      const sha256 = (JSON.parse(text) as { sha256?: unknown }).sha256
      return sha256 === sha256Of(source) ? Effect.void : Effect.fail(fail(`the stored file's sha256 ${String(sha256)} is not the source's ${sha256Of(source)}`))
    })
  )

/** Uploads `source` to a new offline task; returns its id and the seconds from login to DONE. */
export const upload = (target: DaemonTarget, source: Buffer) =>
  Effect.gen(function* () {
    const size = source.length
    const taskId = yield* target.newOfflineTask({ fromUserId: SENDER, toUserId: RECEIVER, fileName: "bench.bin", fileSize: size })
    const seconds = yield* Effect.scoped(
      Effect.gen(function* () {
        const sock = yield* Client.connect(target.client)
        const start = performance.now()
        const served = yield* Client.uploadFile(sock, { taskId, userId: SENDER, source: Client.sourceFromBuffer(source) })
        const seconds = (performance.now() - start) / 1000
        if (served.finalState !== FileState.Done) return yield* fail(`the upload ended with state ${served.finalState}, not DONE`)
        if (served.bytes !== size) return yield* fail(`the uploader was asked for ${served.bytes} bytes of ${size}`)
        return seconds
      })
    ).pipe(
      Effect.mapError((e) => (e instanceof BenchError ? e : clientError("the upload")(e))),
      Effect.timeoutFail({ duration: transferTimeout(size), onTimeout: () => fail("the offline upload did not finish in time") })
    )
    return { taskId, seconds }
  })

export const offlineUpload = (target: DaemonTarget, source: Buffer): Effect.Effect<Measurement, BenchError> =>
  Effect.gen(function* () {
    let taskId = ""
    const measurement = yield* measureTransfer(
      target.process.pid,
      source.length,
      upload(target, source).pipe(
        Effect.map((r) => {
          taskId = r.taskId
          return r.seconds
        })
      )
    )
    yield* checkStored(target, taskId, source)
    stored.set(storedKey(target, source.length), taskId)
    return measurement
  })

export interface DownloadOptions {
  readonly window: number
  readonly blockSize: number
}

export const offlineDownload = (target: DaemonTarget, source: Buffer, options: DownloadOptions): Effect.Effect<Measurement, BenchError> =>
  Effect.gen(function* () {
    const size = source.length
    let taskId = stored.get(storedKey(target, size))
    if (taskId === undefined) {
      // Nothing of this size stored on this daemon yet: store it first, unmeasured.
      taskId = (yield* upload(target, source)).taskId
      yield* checkStored(target, taskId, source)
      stored.set(storedKey(target, size), taskId)
    }
    const id = taskId
    const check = checkingSink(source)
    return yield* measureTransfer(
      target.process.pid,
      size,
      Effect.scoped(
        Effect.gen(function* () {
          const sock = yield* Client.connect(target.client)
          const start = performance.now()
          const got = yield* Client.downloadFile(sock, { taskId: id, userId: RECEIVER, sink: check.sink, size, window: options.window, blockSize: options.blockSize })
          const seconds = (performance.now() - start) / 1000
          if (got.bytes !== size || check.bytes() !== size) return yield* fail(`downloaded ${got.bytes} bytes (sink counted ${check.bytes()}) of ${size}`)
          const mismatch = check.mismatch()
          if (mismatch !== undefined) return yield* fail(mismatch)
          return seconds
        })
      ).pipe(
        Effect.mapError((e) => (e instanceof BenchError ? e : clientError("the download")(e))),
        Effect.timeoutFail({ duration: transferTimeout(size), onTimeout: () => fail("the offline download did not finish in time") })
      )
    )
  })
