/**
 * The servers the bench drives with the same client: our daemon, started as
 * the README says, and the bare relay (the ceiling). Each is a child process
 * for the life of the scope.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { randomUUID } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Client from "../src/client/index.js"
import { TransferMode } from "../src/protocol/commands.js"
import type { ServerProcess } from "./child.js"
import { DAEMON_NODE_FLAGS } from "../src/cli/nodeFlags.js"
import { spawnServer } from "./child.js"
import { BenchError, fail } from "./errors.js"
import type { NewTask } from "../src/task/registry.js"
import { createTaskId, openMsgPipe } from "./msgPipe.js"

export type TargetName = "daemon" | "bare"

export interface Address {
  readonly host: string
  readonly port: number
}

export interface TaskSpec {
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly fileSize: number
}

/** Creates tasks (online, or offline where the server stores files) and returns their ids. */
export type TaskMaker = (task: NewTask) => Effect.Effect<string, BenchError>

export interface Target {
  readonly name: TargetName
  readonly process: ServerProcess
  readonly client: Address
  /** A task id for an online transfer, as a msg_server would obtain it. */
  readonly newOnlineTask: (task: TaskSpec) => Effect.Effect<string, BenchError>
  /** For many tasks at once: a maker for the life of the scope (the daemon's is one pipelined msg link). */
  readonly openTasks: Effect.Effect<TaskMaker, BenchError, Scope.Scope>
}

/** The daemon also stores offline files (the bare relay has no storage). */
export interface DaemonTarget extends Target {
  readonly name: "daemon"
  /** Its --data-dir (temporary, removed with the scope). */
  readonly dataDir: string
  /** A task id for an offline (store-and-forward) transfer. */
  readonly newOfflineTask: (task: TaskSpec) => Effect.Effect<string, BenchError>
}

const HOST = "127.0.0.1"
const daemonScript = fileURLToPath(new URL("../src/cli/main.js", import.meta.url))
const relayScript = fileURLToPath(new URL("./bareRelay.js", import.meta.url))

const clientError = (what: string) => (e: Client.ClientError) => new BenchError({ message: `${what}: ${e.message}` })

export interface DaemonOptions {
  /** Flags for node itself (e.g. --cpu-prof), after those the daemon is always run with (DAEMON_NODE_FLAGS). */
  readonly nodeFlags?: ReadonlyArray<string>
  /** Extra `serve` flags (e.g. tuning flags under comparison). */
  readonly serveArgs?: ReadonlyArray<string>
}

/** The daemon on free ports of 127.0.0.1, with a temporary data directory removed afterwards. */
export const startDaemon = (options: DaemonOptions = {}): Effect.Effect<DaemonTarget, BenchError, Scope.Scope> =>
  Effect.gen(function* () {
    const dataDir = yield* Effect.acquireRelease(
      Effect.promise(() => mkdtemp(join(tmpdir(), "ttfs-bench-"))),
      (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
    )
    const proc = yield* spawnServer({
      name: "daemon",
      args: [
        ...DAEMON_NODE_FLAGS,
        ...(options.nodeFlags ?? []),
        daemonScript,
        "serve",
        "--client-host", HOST,
        "--client-port", "0",
        "--msg-host", HOST,
        "--msg-port", "0",
        "--data-dir", dataDir,
        "--log-level", "info",
        // Daemons of a run may overlap, and one may already hold the default admin port.
        "--admin-port", "0",
        ...(options.serveArgs ?? [])
      ],
      ports: ["client", "msg"]
    })
    const msg = { host: HOST, port: proc.ports.msg! }
    const newTask = (task: TaskSpec, mode: TransferMode) =>
      Effect.scoped(
        Effect.gen(function* () {
          const link = yield* Client.connectMsgLink(msg)
          const rsp = yield* link.createTask({ ...task, mode })
          if (rsp.resultCode !== 0 || !rsp.taskId) {
            return yield* new BenchError({ message: `the daemon refused to create a task (result ${rsp.resultCode})` })
          }
          return rsp.taskId
        })
      ).pipe(Effect.mapError((e) => (e instanceof BenchError ? e : clientError("task creation")(e))))
    return {
      name: "daemon",
      process: proc,
      client: { host: HOST, port: proc.ports.client! },
      dataDir,
      newOnlineTask: (task) => newTask(task, TransferMode.Online),
      newOfflineTask: (task) => newTask(task, TransferMode.Offline),
      openTasks: openMsgPipe(msg).pipe(Effect.map(createTaskId))
    } satisfies DaemonTarget
  })

/** The bare relay (bench/bareRelay.ts): no msg port, any task id goes. */
export const startBareRelay = (options: { readonly nodeFlags?: ReadonlyArray<string> } = {}): Effect.Effect<Target, BenchError, Scope.Scope> =>
  Effect.gen(function* () {
    const proc = yield* spawnServer({
      name: "bare",
      args: [...(options.nodeFlags ?? []), relayScript, "--host", HOST, "--port", "0"],
      ports: ["client"]
    })
    return {
      name: "bare",
      process: proc,
      client: { host: HOST, port: proc.ports.client! },
      newOnlineTask: () => Effect.sync(() => randomUUID()),
      openTasks: Effect.succeed((task) =>
        task.mode === TransferMode.Online ? Effect.sync(() => randomUUID()) : Effect.fail(fail("the bare relay has no offline transfers"))
      )
    } satisfies Target
  })
