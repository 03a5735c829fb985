import { Context, Data, Effect, Exit, FiberMap, FiberRef, HashMap, Layer, Queue } from "effect"
import { randomUUID } from "node:crypto"
import { maxBlockBytes } from "../protocol/dataBlock.js"
import type { TransferMode } from "../protocol/commands.js"
import { ServerConfig } from "../server/config.js"
import type { Mail, TaskSummary } from "./actor.js"
import { runTask } from "./actor.js"
import type { Phase, TaskState } from "./machine.js"
import type { TaskSpec } from "./spec.js"
import { shortTaskId } from "./spec.js"

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
  readonly phase: Phase
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileSize: number
  readonly bytesRelayed: number
  readonly createdAt: number
}

export interface TaskHandle {
  readonly spec: TaskSpec
  /** Posts mail to the task; false when the task has already ended. Waits while the mailbox is full. */
  readonly post: (mail: Mail) => Effect.Effect<boolean>
  readonly postAll: (mail: Iterable<Mail>) => Effect.Effect<boolean>
}

export class TaskCreateError extends Data.TaggedError("TaskCreateError")<{ readonly reason: string }> {}

export class TaskRegistry extends Context.Tag("tt-file-server/TaskRegistry")<
  TaskRegistry,
  {
    readonly create: (task: NewTask) => Effect.Effect<TaskSpec, TaskCreateError>
    readonly get: (taskId: string) => TaskHandle | undefined
    readonly size: () => number
    readonly snapshots: () => ReadonlyArray<TaskSnapshot>
  }
>() {}

const snapshotOf = (state: TaskState): TaskSnapshot => ({
  taskId: state.spec.taskId,
  mode: state.spec.mode,
  phase: state.phase,
  fromUserId: state.spec.fromUserId,
  toUserId: state.spec.toUserId,
  fileSize: state.spec.fileSize,
  bytesRelayed: state.bytesRelayed,
  createdAt: state.spec.createdAt
})

const accepted = <A, E>(exit: Exit.Exit<A, E>) => Exit.isSuccess(exit)

export const make = Effect.gen(function* () {
  const config = yield* ServerConfig
  const actors = yield* FiberMap.make<string, TaskSummary>()
  const tasks = new Map<string, { handle: TaskHandle; snapshot: TaskSnapshot }>()

  const logEnd = (summary: TaskSummary) =>
    Effect.logInfo("task ended").pipe(
      Effect.annotateLogs({
        task: shortTaskId(summary.spec.taskId),
        outcome: summary.outcome,
        reason: summary.reason,
        bytes: summary.bytesRelayed,
        durationMs: summary.durationMs
      })
    )

  const create = (task: NewTask): Effect.Effect<TaskSpec, TaskCreateError> =>
    Effect.gen(function* () {
      let taskId = randomUUID()
      while (tasks.has(taskId)) taskId = randomUUID()
      const spec: TaskSpec = { taskId, ...task, createdAt: Date.now() }
      const mailbox = yield* Queue.bounded<Mail>(MAILBOX_CAPACITY)
      const entry = {
        handle: {
          spec,
          // A shut-down mailbox (task ended) interrupts the offer; Exit turns that into `false`.
          post: (mail: Mail) => Queue.offer(mailbox, mail).pipe(Effect.exit, Effect.map(accepted)),
          postAll: (mail: Iterable<Mail>) => Queue.offerAll(mailbox, mail).pipe(Effect.exit, Effect.map(accepted))
        },
        snapshot: snapshotOf({ spec, phase: "Ready", sender: undefined, receiver: undefined, pulls: [], bytesRelayed: 0, outcome: undefined })
      }
      tasks.set(taskId, entry)
      const limits = {
        maxBlockBytes: maxBlockBytes(config.maxFrameBytes, Buffer.byteLength(taskId)),
        maxPullsInFlight: config.maxPullsInFlight
      }
      yield* FiberMap.run(
        actors,
        taskId,
        runTask({
          spec,
          mailbox,
          limits,
          taskTimeoutMs: config.taskTimeoutMs,
          onState: (state) => {
            entry.snapshot = snapshotOf(state)
          }
        }).pipe(
          Effect.tap(logEnd),
          Effect.ensuring(Effect.sync(() => tasks.delete(taskId))),
          // The actor outlives the msg_server link that created it: its logs must not carry that link's annotations.
          Effect.locally(FiberRef.currentLogAnnotations, HashMap.empty())
        )
      )
      yield* Effect.logInfo("task created").pipe(
        Effect.annotateLogs({
          task: shortTaskId(taskId),
          mode: spec.mode === 1 ? "online" : "offline",
          from: spec.fromUserId,
          to: spec.toUserId,
          size: spec.fileSize
        })
      )
      return spec
    })

  return TaskRegistry.of({
    create,
    get: (taskId) => tasks.get(taskId)?.handle,
    size: () => tasks.size,
    snapshots: () => [...tasks.values()].map((t) => t.snapshot)
  })
})

export const layer = Layer.scoped(TaskRegistry, make)
