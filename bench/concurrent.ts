/**
 * Many small transfers at once through one server, all from this process
 * through the SDK (bench/smallTransfers.ts: each checked by sha256):
 *
 * - online: N transfers started together, each creating its task, then its
 *   sender and receiver connecting, logging in and moving the bytes;
 * - offline: N uploads started together (each creating its task); when all
 *   have ended, the N downloads of what was stored, started together. So N
 *   connections are open at once in each phase; a download whose upload
 *   failed counts as a failure too.
 *
 * The wall time runs from the start to the last transfer's end (both phases
 * offline); a transfer's time includes its task creation and connects.
 */
import { Duration, Effect, Either } from "effect"
import { fail } from "./errors.js"
import type { BenchError } from "./errors.js"
import type { ServerCost } from "./online.js"
import { measureServer } from "./online.js"
import type { Source, TransferCtx } from "./smallTransfers.js"
import { errorKind, offlineDownloadOnce, offlineUploadOnce, onlineOnce } from "./smallTransfers.js"
import { percentile } from "./stats.js"
import type { DaemonTarget, Target } from "./targets.js"

const MiB = 1024 * 1024

export interface ConcurrentOptions {
  readonly concurrency: number
  /** Pull window of each receiver and downloader. */
  readonly window: number
  /** What the transfers carry (transfer i sends one of them); all the same size. */
  readonly sources: ReadonlyArray<Source>
}

export interface Phase {
  readonly name: "online" | "upload" | "download"
  readonly wallSeconds: number
  readonly failures: number
}

export interface ConcurrentMeasurement extends ServerCost {
  readonly concurrency: number
  /** Transfers attempted: N online; 2N offline (N uploads, then N downloads). */
  readonly transfers: number
  readonly failures: number
  readonly firstError: string | undefined
  /** Failures by message, task ids and numbers masked. */
  readonly errorKinds: Readonly<Record<string, number>>
  /** Bytes the completed transfers moved through the server. */
  readonly bytes: number
  readonly wallSeconds: number
  /** `bytes` over the wall time. */
  readonly mibPerSec: number
  /** Over the completed transfers. */
  readonly p50Seconds: number
  readonly p99Seconds: number
  readonly maxSeconds: number
  readonly phases: ReadonlyArray<Phase>
}

interface Ended<A> {
  readonly outcome: Either.Either<A, string>
  readonly seconds: number
}

/** Generous (all of them at 2 MiB/s): a transfer only takes this long when something is broken. */
const timeoutFor = (count: number, size: number) => Duration.seconds(60 + (count * size) / (2 * MiB))

/** Runs `one(i)` for every i at once; each ends in its outcome and its own time. */
const together = <A>(count: number, size: number, one: (i: number) => Effect.Effect<A, BenchError>) =>
  Effect.gen(function* () {
    const start = performance.now()
    const timeout = timeoutFor(count, size)
    const ended = yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) =>
        Effect.suspend(() => {
          const t0 = performance.now()
          return one(i).pipe(
            Effect.timeoutFail({ duration: timeout, onTimeout: () => fail(`transfer ${i} did not finish in ${Duration.format(timeout)}`) }),
            Effect.either,
            Effect.map((r): Ended<A> => ({ outcome: Either.mapLeft(r, (e) => e.message), seconds: (performance.now() - t0) / 1000 }))
          )
        }),
      { concurrency: "unbounded" }
    )
    return { ended, wallSeconds: (performance.now() - start) / 1000 }
  })

const failures = (ended: ReadonlyArray<Ended<unknown>>) => ended.filter((e) => Either.isLeft(e.outcome)).length

/** The figures of a case from all its transfers' ends. */
const summarizeEnds = (
  concurrency: number,
  size: number,
  ends: ReadonlyArray<Ended<unknown>>,
  phases: ReadonlyArray<Phase>,
  cost: ServerCost
): ConcurrentMeasurement => {
  const errors = ends.flatMap((e) => (Either.isLeft(e.outcome) ? [e.outcome.left] : []))
  const errorKinds: Record<string, number> = {}
  for (const e of errors) errorKinds[errorKind(e)] = (errorKinds[errorKind(e)] ?? 0) + 1
  const times = ends.filter((e) => Either.isRight(e.outcome)).map((e) => e.seconds).sort((a, b) => a - b)
  const wallSeconds = phases.reduce((sum, p) => sum + p.wallSeconds, 0)
  const bytes = times.length * size
  return {
    concurrency,
    transfers: ends.length,
    failures: errors.length,
    firstError: errors[0],
    errorKinds,
    bytes,
    wallSeconds,
    mibPerSec: bytes / MiB / wallSeconds,
    p50Seconds: percentile(times, 50),
    p99Seconds: percentile(times, 99),
    maxSeconds: times[times.length - 1] ?? Number.NaN,
    phases,
    ...cost
  }
}

const contextFor = (target: Target, options: ConcurrentOptions) =>
  target.openTasks.pipe(
    Effect.map((createTask): TransferCtx => ({ client: target.client, createTask, sources: options.sources, window: options.window, size: options.sources[0]!.data.length }))
  )

/** N online transfers at once through `target` (the daemon or the bare relay). */
export const concurrentOnline = (target: Target, options: ConcurrentOptions): Effect.Effect<ConcurrentMeasurement, BenchError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const ctx = yield* contextFor(target, options)
      const { cost, result } = yield* measureServer(target.process.pid, together(options.concurrency, ctx.size, (i) => onlineOnce(ctx, i)))
      const phase: Phase = { name: "online", wallSeconds: result.wallSeconds, failures: failures(result.ended) }
      return summarizeEnds(options.concurrency, ctx.size, result.ended, [phase], cost)
    })
  )

/** N offline uploads at once to the daemon, then the N downloads of what they stored at once. */
export const concurrentOffline = (target: DaemonTarget, options: ConcurrentOptions): Effect.Effect<ConcurrentMeasurement, BenchError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const ctx = yield* contextFor(target, options)
      const { cost, result } = yield* measureServer(
        target.process.pid,
        Effect.gen(function* () {
          const up = yield* together(options.concurrency, ctx.size, (i) => offlineUploadOnce(ctx, i))
          const down = yield* together(options.concurrency, ctx.size, (i) => {
            const uploaded = up.ended[i]!.outcome
            return Either.isRight(uploaded) ? offlineDownloadOnce(ctx, i, uploaded.right) : Effect.fail(fail("not attempted: its upload failed"))
          })
          return { up, down }
        })
      )
      const { down, up } = result
      const phases: Array<Phase> = [
        { name: "upload", wallSeconds: up.wallSeconds, failures: failures(up.ended) },
        { name: "download", wallSeconds: down.wallSeconds, failures: failures(down.ended) }
      ]
      return summarizeEnds(options.concurrency, ctx.size, [...up.ended, ...down.ended], phases, cost)
    })
  )
