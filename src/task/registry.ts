import { Chunk, Clock, Context, Data, Deferred, Effect, Exit, FiberId, FiberMap, FiberRef, FiberSet, HashMap, Layer, Mailbox, Option } from "effect"
import { randomUUID } from "node:crypto"
import { maxBlockBytes } from "../protocol/dataBlock.js"
import { TransferMode } from "../protocol/commands.js"
import { Metrics, recordTaskEnd } from "../observability/metrics.js"
import { ServerConfig } from "../server/config.js"
import type { Mail, TaskSummary } from "./actor.js"
import { runTask } from "./actor.js"
import type { TaskMachine } from "./machines.js"
import { offlineMachine, onlineMachine } from "./machines.js"
import { MemoryBudget } from "./memoryBudget.js"
import { OfflineStore } from "../storage/store.js"
import type { TaskSpec } from "./spec.js"
import { isCanonicalTaskId, shortTaskId } from "./spec.js"

/** How long tasks get to end on Shutdown before they are interrupted. */
const SHUTDOWN_GRACE_MS = 5000

/** Mail a task holds before connections posting to it wait (backpressure on their sockets). */
const MAILBOX_CAPACITY = 256

export interface NewTask {
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly fileSize: number
  readonly mode: TransferMode
}

export interface TaskSnapshot {
  readonly taskId: string
  readonly mode: TransferMode
  readonly phase: string
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileSize: number
  /** Online: bytes relayed. Offline: bytes stored plus bytes served. */
  readonly bytes: number
  /** Parties connected: while there are any, the task has a transfer in flight. */
  readonly parties: number
  readonly createdAt: number
}

export interface TaskHandle {
  readonly spec: TaskSpec
  /** Posts mail to the task; false when the task has already ended. Waits while the mailbox is full. */
  readonly post: (mail: Mail) => Effect.Effect<boolean>
  readonly postAll: (mail: Iterable<Mail>) => Effect.Effect<boolean>
  /**
   * Posts mail on the spot if the task's actor runs and its mailbox has room: true when
   * posted. Otherwise nothing happens (the caller posts it with `post`, which waits or
   * finds the task ended).
   */
  readonly tryPost: (mail: Mail) => boolean
}

export class TaskCreateError extends Data.TaggedError("TaskCreateError")<{ readonly reason: string }> {}

export class TaskRegistry extends Context.Tag("tt-file-server/TaskRegistry")<
  TaskRegistry,
  {
    readonly create: (task: NewTask) => Effect.Effect<TaskSpec, TaskCreateError>
    /** The live task with this id; an offline task not in memory is loaded from the store (after a restart, say). */
    readonly find: (taskId: string) => Effect.Effect<TaskHandle | undefined>
    /** The live task with this id, without looking in the store. */
    readonly get: (taskId: string) => TaskHandle | undefined
    readonly size: () => number
    readonly snapshots: () => ReadonlyArray<TaskSnapshot>
    /**
     * Tasks with a transfer in flight: somebody is connected to them (an online party, an
     * uploader, a downloader). Tasks nobody has joined, or everybody has left, do not count.
     */
    readonly busy: () => number
    /** Completes once no task has a transfer in flight (at once if none has). */
    readonly whenIdle: Effect.Effect<void>
    /**
     * Ends every task (a graceful shutdown's last step): each party still connected gets
     * FILE_STATE CANCEL and its connection is closed once its writes are flushed; partial
     * uploads stay for a resume, stored files stay. Completes when every task actor has
     * ended; from then on no task starts (a login gets "task has ended").
     */
    readonly shutdownAll: Effect.Effect<void>
  }
>() {}

const accepted = <E>(exit: Exit.Exit<boolean, E>) => Exit.isSuccess(exit) && exit.value

export const make = Effect.gen(function* () {
  const config = yield* ServerConfig
  const store = yield* OfflineStore
  const metrics = yield* Metrics
  // Memory tasks may hold on behalf of their peers, each kind within its budget however many tasks run.
  const readahead = new MemoryBudget(config.readaheadMemoryBytes)
  const uploads = new MemoryBudget(config.uploadMemoryBytes)
  const actors = yield* FiberMap.make<string, TaskSummary | undefined, never>()
  const runFork = yield* FiberSet.makeRuntime<never, void, never>()
  const tasks = new Map<
    string,
    { handle: TaskHandle; snapshot: TaskSnapshot; busy: boolean; cancelTimer: () => void; shutdown: Effect.Effect<void> }
  >()
  // Tasks never joined hold a timer, not a fiber: clear them when the registry goes.
  yield* Effect.addFinalizer(() => Effect.sync(() => tasks.forEach((t) => t.cancelTimer())))
  const loading = new Map<string, Deferred.Deferred<TaskHandle | undefined>>()
  /** Set by shutdownAll: no actor starts any more. */
  let closing = false
  let busyCount = 0
  /** Completed (and dropped) when busyCount falls to 0; made by the first waiter. */
  let idle: Deferred.Deferred<void> | undefined

  const setBusy = (entry: { busy: boolean }, busy: boolean) => {
    if (entry.busy === busy) return
    entry.busy = busy
    busyCount += busy ? 1 : -1
    if (busyCount === 0 && idle !== undefined) {
      Deferred.unsafeDone(idle, Exit.void)
      idle = undefined
    }
  }

  const maxBlock = (taskId: string) => maxBlockBytes(config.maxFrameBytes, Buffer.byteLength(taskId))
  const offlineLimits = (taskId: string) => ({
    maxBlockBytes: maxBlock(taskId),
    uploadSegment: Math.min(config.uploadSegment, maxBlock(taskId)),
    uploadWindow: config.uploadWindow,
    deleteAfterDownload: config.deleteAfterDownload
  })

  /** `ran`: whether the task's actor ran (its duration is then measured). */
  const taskEnded = (summary: TaskSummary, ran: boolean) =>
    Effect.logInfo("task ended").pipe(
      Effect.tap(() => recordTaskEnd(metrics, summary.spec.mode, summary.outcome, ran ? summary.durationMs : undefined)),
      Effect.annotateLogs({
        task: shortTaskId(summary.spec.taskId),
        mode: summary.spec.mode === TransferMode.Online ? "online" : "offline",
        fromUser: summary.spec.fromUserId,
        toUser: summary.spec.toUserId,
        outcome: summary.outcome,
        reason: summary.reason,
        bytes: summary.bytes,
        durationMs: summary.durationMs
      })
    )

  /**
   * Makes a task findable. Its actor fiber starts with the first mail (a login): a task
   * nobody ever joins costs a mailbox and a timer, not a fiber, and ends at its deadline.
   */
  const spawn = <S>(spec: TaskSpec, machine: TaskMachine<S>) =>
    Effect.gen(function* () {
      const snapshotOf = (state: S): TaskSnapshot => {
        const view = machine.view(state)
        return {
          taskId: spec.taskId,
          mode: spec.mode,
          phase: view.phase,
          fromUserId: spec.fromUserId,
          toUserId: spec.toUserId,
          fileSize: spec.fileSize,
          bytes: view.bytes,
          parties: view.parties,
          createdAt: spec.createdAt
        }
      }
      const actor = (mailbox: Mailbox.Mailbox<Mail>) =>
        runTask({
          spec,
          machine,
          mailbox,
          taskTimeoutMs: config.taskTimeoutMs,
          maxWriteQueueBytes: config.maxWriteQueueBytes,
          onState: (state) => {
            entry.snapshot = snapshotOf(state)
            setBusy(entry, entry.snapshot.parties > 0)
          }
        }).pipe(
          Effect.tap((summary) => taskEnded(summary, true)),
          // A defect ends this task (its connections are closed by the actor's finalizer), never the server.
          Effect.catchAllDefect((defect) =>
            Effect.logError("task failed").pipe(
              Effect.annotateLogs({ task: shortTaskId(spec.taskId), defect: String(defect) }),
              Effect.tap(() => recordTaskEnd(metrics, spec.mode, "defect", undefined)),
              Effect.as(undefined)
            )
          ),
          Effect.ensuring(
            Effect.sync(() => {
              tasks.delete(spec.taskId)
              setBusy(entry, false)
            })
          ),
          Effect.provideService(OfflineStore, store),
          Effect.provideService(Metrics, metrics),
          // The actor outlives the connection that created it: its logs must not carry that connection's annotations.
          Effect.locally(FiberRef.currentLogAnnotations, HashMap.empty())
        )
      let mailbox: Mailbox.Mailbox<Mail> | undefined
      const start: Effect.Effect<Mailbox.Mailbox<Mail>> = Effect.suspend(() => {
        if (mailbox !== undefined) return Effect.succeed(mailbox)
        if (closing) return Effect.interrupt
        // Made synchronously, so a second poster (even one interleaved with this fiber) finds
        // the mailbox and waits in it for the one actor.
        const q = Effect.runSync(Mailbox.make<Mail>({ capacity: MAILBOX_CAPACITY }))
        mailbox = q
        clearTimeout(unused)
        return FiberMap.run(actors, spec.taskId, actor(q)).pipe(Effect.as(q))
      })
      // A closed mailbox (task ended) refuses the mail; no mailbox while the registry closes is a refusal too.
      const offer = (send: (q: Mailbox.Mailbox<Mail>) => Effect.Effect<boolean>) => start.pipe(Effect.flatMap(send), Effect.exit, Effect.map(accepted))
      const entry = {
        handle: {
          spec,
          post: (mail: Mail) => offer((q) => q.offer(mail)),
          postAll: (mail: Iterable<Mail>) => offer((q) => Effect.map(q.offerAll(mail), Chunk.isEmpty)),
          tryPost: (mail: Mail) => {
            const size = mailbox?.unsafeSize()
            return size !== undefined && Option.isSome(size) && size.value < MAILBOX_CAPACITY && mailbox!.unsafeOffer(mail)
          }
        },
        snapshot: snapshotOf(machine.initial),
        busy: false,
        cancelTimer: () => clearTimeout(unused),
        // A task never joined has no actor to tell: it just goes. An actor whose mailbox is
        // already shut has ended by itself.
        shutdown: Effect.suspend(() => {
          if (mailbox !== undefined) return Effect.asVoid(mailbox.offer({ _tag: "Shutdown" }))
          clearTimeout(unused)
          tasks.delete(spec.taskId)
          return Effect.void
        })
      }
      const unused = setTimeout(() => {
        if (mailbox !== undefined || tasks.get(spec.taskId) !== entry) return
        tasks.delete(spec.taskId)
        runFork(
          taskEnded({ spec, outcome: "expired", reason: "nobody connected before the task timeout", bytes: 0, durationMs: config.taskTimeoutMs }, false)
        )
      }, config.taskTimeoutMs)
      tasks.set(spec.taskId, entry)
      return entry.handle
    })

  const create = (task: NewTask): Effect.Effect<TaskSpec, TaskCreateError> =>
    Effect.gen(function* () {
      if (tasks.size >= config.maxTasks) {
        return yield* new TaskCreateError({ reason: `${tasks.size} tasks alive (--max-tasks ${config.maxTasks})` })
      }
      if (task.fileSize > config.maxFileSize) {
        return yield* new TaskCreateError({ reason: `file size ${task.fileSize} exceeds the limit of ${config.maxFileSize} bytes` })
      }
      // Quotas cost a pass over every stored file: only when one is set.
      if (task.mode === TransferMode.Offline && (Number.isFinite(config.maxStoreBytes) || Number.isFinite(config.maxUserStoreBytes))) {
        const used = storeUsage(task.fromUserId)
        if (used.total + task.fileSize > config.maxStoreBytes) {
          return yield* new TaskCreateError({ reason: `offline storage is full (${used.total} of ${config.maxStoreBytes} bytes taken)` })
        }
        if (used.user + task.fileSize > config.maxUserStoreBytes) {
          return yield* new TaskCreateError({
            reason: `user ${task.fromUserId} has ${used.user} of ${config.maxUserStoreBytes} bytes of offline storage taken`
          })
        }
      }
      let taskId = randomUUID()
      while (tasks.has(taskId)) taskId = randomUUID()
      const spec: TaskSpec = { taskId, ...task, createdAt: yield* Clock.currentTimeMillis }
      yield* spec.mode === TransferMode.Online
        ? spawn(spec, onlineMachine(spec, {
              maxBlockBytes: maxBlock(taskId),
              maxPullsInFlight: config.maxPullsInFlight,
              readahead: config.onlineReadahead,
              readaheadSegment: config.readaheadSegment
            }, readahead))
        : spawn(spec, offlineMachine(spec, { state: "none" }, offlineLimits(taskId), uploads))
      yield* Effect.logInfo("task created").pipe(
        Effect.annotateLogs({
          task: shortTaskId(taskId),
          mode: spec.mode === TransferMode.Online ? "online" : "offline",
          from: spec.fromUserId,
          to: spec.toUserId,
          size: spec.fileSize
        })
      )
      return spec
    })

  /**
   * Bytes counted against the quotas: every task with something stored, plus offline
   * tasks announced and not yet on disk (their size is reserved when they are created).
   */
  const storeUsage = (userId: number) => {
    const sizes = new Map(store.usage())
    for (const { handle } of tasks.values()) {
      if (handle.spec.mode === TransferMode.Offline && !sizes.has(handle.spec.taskId)) sizes.set(handle.spec.taskId, handle.spec)
    }
    let total = 0
    let user = 0
    for (const entry of sizes.values()) {
      total += entry.fileSize
      if (entry.fromUserId === userId) user += entry.fileSize
    }
    return { total, user }
  }

  /** Brings an offline task back from the store; concurrent logins to it share one load. */
  const load = (taskId: string): Effect.Effect<TaskHandle | undefined> =>
    Effect.gen(function* () {
      const inFlight = loading.get(taskId)
      if (inFlight !== undefined) return yield* Deferred.await(inFlight)
      const done = yield* Deferred.make<TaskHandle | undefined>()
      loading.set(taskId, done)
      const handle = yield* store.load(taskId).pipe(
        Effect.flatMap(
          Option.match({
            onNone: () => Effect.succeed(undefined),
            onSome: (stored) => {
              const m = stored.meta
              const spec: TaskSpec = {
                taskId,
                fromUserId: m.fromUserId,
                toUserId: m.toUserId,
                fileName: m.fileName,
                fileSize: m.fileSize,
                mode: TransferMode.Offline,
                createdAt: m.createdAt
              }
              return Effect.logInfo("task loaded from the store").pipe(
                Effect.annotateLogs({ task: shortTaskId(taskId), state: stored.state, size: m.fileSize }),
                Effect.zipRight(
                  spawn(
                    spec,
                    offlineMachine(spec, stored.state === "partial" ? { state: "partial", received: stored.received } : { state: "complete" }, offlineLimits(taskId), uploads)
                  )
                )
              )
            }
          })
        ),
        Effect.catchAll((e) =>
          Effect.logWarning("stored task cannot be loaded").pipe(Effect.annotateLogs({ task: shortTaskId(taskId), error: e.message }), Effect.as(undefined))
        ),
        // Whoever waits on this load hears how it ended, even if it was interrupted.
        Effect.onExit((exit) =>
          Effect.sync(() => loading.delete(taskId)).pipe(
            Effect.zipRight(Deferred.succeed(done, Exit.isSuccess(exit) ? exit.value : undefined))
          )
        )
      )
      return handle
    })

  return TaskRegistry.of({
    create,
    find: (taskId) => {
      const live = tasks.get(taskId)?.handle
      return live !== undefined || !isCanonicalTaskId(taskId) ? Effect.succeed(live) : load(taskId)
    },
    get: (taskId) => tasks.get(taskId)?.handle,
    size: () => tasks.size,
    snapshots: () => [...tasks.values()].map((t) => t.snapshot),
    busy: () => busyCount,
    whenIdle: Effect.suspend(() => {
      if (busyCount === 0) return Effect.void
      idle ??= Deferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(idle)
    }),
    shutdownAll: Effect.gen(function* () {
      closing = true
      // An actor busy with storage (a long hash, a slow fsync) or with a full mailbox gets a
      // grace period to take its Shutdown; then it is interrupted (its finalizer closes its connections).
      const ended = yield* Effect.forEach([...tasks.values()], (entry) => entry.shutdown, { discard: true }).pipe(
        Effect.zipRight(FiberMap.awaitEmpty(actors)),
        Effect.timeoutOption(SHUTDOWN_GRACE_MS)
      )
      if (Option.isNone(ended)) {
        yield* Effect.logWarning("tasks still busy after the shutdown grace period: interrupted").pipe(
          Effect.annotateLogs({ tasks: yield* FiberMap.size(actors), graceMs: SHUTDOWN_GRACE_MS })
        )
        yield* FiberMap.clear(actors)
      }
    })
  })
})

export const layer = Layer.scoped(TaskRegistry, make)
