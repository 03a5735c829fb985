import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import type { Scope } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { ListeningAddresses, ServerLive } from "../../src/server/app.js"
import type { ServerSettings } from "../../src/server/config.js"
import { ServerConfig } from "../../src/server/config.js"
import { TaskRegistry } from "../../src/task/registry.js"

export interface TestServer {
  readonly client: { readonly host: string; readonly port: number }
  readonly msg: { readonly host: string; readonly port: number }
  readonly registry: Context.Tag.Service<TaskRegistry>
  readonly dataDir: string
}

/** A temporary directory removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "ttfs-test-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

/**
 * The real server, in-process, on 127.0.0.1 with free ports, for the life of
 * the scope. Logs are silenced unless TTFS_TEST_LOGS is set. Use it under
 * `it.scopedLive`: the server runs on the clock of the fiber that builds it.
 */
export const startServer = (overrides: Partial<ServerSettings> = {}): Effect.Effect<TestServer, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const dataDir = yield* tempDir
    const config = ServerConfig.layer({
      clientHosts: ["127.0.0.1"],
      clientPort: 0,
      msgHost: "127.0.0.1",
      msgPort: 0,
      dataDir,
      ...overrides
    })
    const logs = process.env.TTFS_TEST_LOGS ? Logger.minimumLogLevel(LogLevel.Debug) : Logger.minimumLogLevel(LogLevel.None)
    const context = yield* Layer.build(ServerLive.pipe(Layer.provide(config), Layer.provide(logs)))
    const addresses = Context.get(context, ListeningAddresses)
    return {
      client: { host: "127.0.0.1", port: addresses.client[0]!.port },
      msg: addresses.msg,
      registry: Context.get(context, TaskRegistry),
      dataDir
    }
  })

/** Creates a task through the msg port, as a msg_server would. */
export const createTask = (server: TestServer, task: Client.CreateTask) =>
  Effect.scoped(
    Effect.gen(function* () {
      const link = yield* Client.connectMsgLink(server.msg)
      const rsp = yield* link.createTask(task)
      if (rsp.resultCode !== 0 || !rsp.taskId) return yield* Effect.fail(new Error(`task creation failed: ${rsp.resultCode}`))
      return rsp.taskId
    })
  )

/** Polls until `check` holds (the server acts on a disconnect asynchronously). */
export const eventually = <A>(check: () => A | undefined | false, timeoutMs = 5000): Effect.Effect<A, Error> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const v = check()
      if (v !== undefined && v !== false) return v
      if (Date.now() > deadline) return yield* Effect.fail(new Error("condition not reached in time"))
      yield* Effect.sleep(10)
    }
  })
