/**
 * Small checked transfers through the SDK, one at a time per call, for the
 * load script and the concurrent cases: a task from the msg port (or a
 * made-up id for the bare relay), connect, log in, move the bytes, and
 * check the sha256 of what arrived against the source.
 */
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as Client from "../src/client/index.js"
import { FileRole, FileState, TransferMode } from "../src/protocol/commands.js"
import type { BenchError } from "./errors.js"
import { asBench, fail } from "./errors.js"
import type { NewTask } from "../src/task/registry.js"
import type { Address } from "./targets.js"

/** A sink that hashes what arrives in offset order (blocks ahead of the next offset wait, copied). */
export const hashingSink = () => {
  const hash = createHash("sha256")
  const ahead = new Map<number, Buffer>()
  let next = 0
  let bytes = 0
  const sink: Client.BlockSink = {
    write: (offset, data) =>
      Effect.sync(() => {
        bytes += data.length
        if (offset !== next) {
          ahead.set(offset, Buffer.from(data))
          return
        }
        hash.update(data)
        next += data.length
        for (let b = ahead.get(next); b !== undefined; b = ahead.get(next)) {
          ahead.delete(next)
          hash.update(b)
          next += b.length
        }
      })
  }
  return { sink, bytes: () => bytes, digest: () => (ahead.size > 0 ? `gap (${ahead.size} blocks waiting at ${next})` : hash.digest("hex")) }
}

export interface Source {
  readonly data: Buffer
  readonly sha256: string
}

export const makeSources = (count: number, size: number): Array<Source> =>
  Array.from({ length: count }, () => {
    const data = randomBytes(size)
    return { data, sha256: createHash("sha256").update(data).digest("hex") }
  })

export interface TransferCtx {
  readonly client: Address
  /** A task id for transfer i's task; fails when the task cannot be had. */
  readonly createTask: (task: NewTask) => Effect.Effect<string, BenchError>
  readonly sources: ReadonlyArray<Source>
  readonly window: number
  readonly size: number
}

/** For a refused login: how long the TRANSFER_RSP took, and how long after it the refusal came. */
const timing = (t: { req: number; rsp: number }) => (e: BenchError) =>
  / refused the login/.test(e.message)
    ? fail(`${e.message} (TRANSFER_RSP ${Math.round(t.rsp - t.req)} ms after the REQ; refusal ${Math.round(performance.now() - t.rsp)} ms after the RSP)`)
    : e

/** Creates the task, noting in `t` when it was asked for and when it came. */
const createTimed = (ctx: TransferCtx, task: Omit<NewTask, "fileSize">, t: { req: number; rsp: number }) =>
  Effect.suspend(() => {
    t.req = performance.now()
    return ctx.createTask({ ...task, fileSize: ctx.size })
  }).pipe(Effect.tap(() => Effect.sync(() => (t.rsp = performance.now()))))

export const onlineOnce = (ctx: TransferCtx, i: number): Effect.Effect<void, BenchError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const src = ctx.sources[i % ctx.sources.length]!
      const fromUserId = 2 * i + 1
      const toUserId = 2 * i + 2
      // Connect first, so that the logins follow the task creation at once (the task times out unused after 5 s).
      const [sender, receiver] = yield* Effect.all([Client.connect(ctx.client), Client.connect(ctx.client)], { concurrency: 2 }).pipe(
        Effect.mapError(asBench("online connect"))
      )
      const t = { req: 0, rsp: 0 }
      const taskId = yield* createTimed(ctx, { fromUserId, toUserId, mode: TransferMode.Online, fileName: `online-${i}.bin` }, t)
      const sink = hashingSink()
      const [served, pulled] = yield* Effect.all(
        [
          Client.login(sender, { taskId, userId: fromUserId, role: FileRole.Sender }).pipe(
            Effect.zipRight(Client.serveFile(sender, { taskId, userId: fromUserId, source: Client.sourceFromBuffer(src.data) })),
            Effect.mapError(asBench("online sender")),
            Effect.mapError(timing(t))
          ),
          Client.login(receiver, { taskId, userId: toUserId, role: FileRole.Receiver }).pipe(
            Effect.zipRight(Client.receiveFile(receiver, { taskId, userId: toUserId, sink: sink.sink, size: ctx.size, window: ctx.window })),
            Effect.mapError(asBench("online receiver"))
          )
        ],
        { concurrency: 2 }
      )
      if (served.finalState !== FileState.Done) return yield* fail(`online sender ended with state ${served.finalState}`)
      if (pulled.bytes !== ctx.size || sink.bytes() !== ctx.size) return yield* fail(`online: received ${pulled.bytes}/${sink.bytes()} of ${ctx.size}`)
      const digest = sink.digest()
      if (digest !== src.sha256) return yield* fail(`online: sha256 ${digest} is not the source's ${src.sha256}`)
    })
  )

/** Offline transfer i's source (another one than online transfer i's). */
const offlineSource = (ctx: TransferCtx, i: number) => ctx.sources[(i * 7) % ctx.sources.length]!

/** Uploads transfer i's source to a new offline task; returns the task id. */
export const offlineUploadOnce = (ctx: TransferCtx, i: number): Effect.Effect<string, BenchError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const fromUserId = 2 * i + 1
      const toUserId = 2 * i + 2
      const up = yield* Client.connect(ctx.client).pipe(Effect.mapError(asBench("offline connect")))
      const t = { req: 0, rsp: 0 }
      const taskId = yield* createTimed(ctx, { fromUserId, toUserId, mode: TransferMode.Offline, fileName: `offline-${i}.bin` }, t)
      const served = yield* Client.uploadFile(up, { taskId, userId: fromUserId, source: Client.sourceFromBuffer(offlineSource(ctx, i).data) }).pipe(
        Effect.mapError(asBench("offline upload")),
        Effect.mapError(timing(t))
      )
      if (served.bytes !== ctx.size) return yield* fail(`offline upload: the server asked for ${served.bytes} of ${ctx.size} bytes`)
      return taskId
    })
  )

/** Downloads what transfer i uploaded to `taskId` and checks its sha256. */
export const offlineDownloadOnce = (ctx: TransferCtx, i: number, taskId: string): Effect.Effect<void, BenchError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const src = offlineSource(ctx, i)
      const toUserId = 2 * i + 2
      const down = yield* Client.connect(ctx.client).pipe(Effect.mapError(asBench("offline connect")))
      const sink = hashingSink()
      const got = yield* Client.downloadFile(down, { taskId, userId: toUserId, sink: sink.sink, size: ctx.size, window: ctx.window }).pipe(
        Effect.mapError(asBench("offline download"))
      )
      if (got.bytes !== ctx.size || sink.bytes() !== ctx.size) return yield* fail(`offline download: ${got.bytes}/${sink.bytes()} of ${ctx.size}`)
      const digest = sink.digest()
      if (digest !== src.sha256) return yield* fail(`offline: sha256 ${digest} is not the source's ${src.sha256}`)
    })
  )

/** An upload, then a download of it. */
export const offlineOnce = (ctx: TransferCtx, i: number): Effect.Effect<void, BenchError> =>
  offlineUploadOnce(ctx, i).pipe(Effect.flatMap((taskId) => offlineDownloadOnce(ctx, i, taskId)))

/** A failure's message with task ids and numbers masked, to count failures by kind. */
export const errorKind = (message: string): string => message.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<task>").replace(/\d+/g, "N")
