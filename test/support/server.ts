import { Context, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import * as AdminServer from "../../src/admin/server.js"
import { ListeningAddresses, ServerLive, serverWith } from "../../src/server/app.js"
import type { ServerSettings } from "../../src/server/config.js"
import { ServerConfig } from "../../src/server/config.js"
import { Lifecycle } from "../../src/server/lifecycle.js"
import type { BoundAddress } from "../../src/server/listener.js"
import { drain } from "../../src/server/shutdown.js"
import { TaskRegistry } from "../../src/task/registry.js"
import * as DiskStore from "../../src/storage/diskStore.js"
import { OfflineStore } from "../../src/storage/store.js"

export interface TestServer {
  readonly client: { readonly host: string; readonly port: number }
  readonly msg: { readonly host: string; readonly port: number }
  readonly registry: Context.Tag.Service<TaskRegistry>
  readonly dataDir: string
  /** Connections the server has open now, per port. */
  readonly openConnections: () => { readonly client: number; readonly msg: number }
  /** The admin HTTP port, when the server was started with `admin: true`. */
  readonly admin: BoundAddress | undefined
  readonly lifecycle: Context.Tag.Service<Lifecycle>
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
  startServerWith({ settings: overrides })

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

// ---- Servers on a chosen data dir, with a chosen store (offline tests) -----------

export type OfflineStoreService = Context.Tag.Service<OfflineStore>

export interface ServerOptions {
  /** Settings over the test defaults (127.0.0.1, free ports). */
  readonly settings?: Partial<ServerSettings>
  /** Run on this data directory, which outlives the server; default: a temp dir removed with the scope. */
  readonly dataDir?: string
  /** Replaces the offline store: given the disk store built for this server, returns the one it uses. */
  readonly store?: (disk: OfflineStoreService) => OfflineStoreService
  /**
   * Serve the admin HTTP port on a free port. Off by default: `adminPort` 0 turns it off, so
   * test servers never contend for the default port; this starts the same Layer on port 0.
   */
  readonly admin?: boolean
}

export interface TestServerWithStore extends TestServer {
  /** The store the server runs on (the wrapped one when `store` was given). */
  readonly store: OfflineStoreService
  /** The daemon's graceful stop (src/server/shutdown.ts) on this server; the scope still releases it. */
  readonly drain: Effect.Effect<void>
  readonly isDraining: () => boolean
}

/**
 * Like startServer, with a data dir of the caller's (to restart a server on
 * it) and optionally a wrapped store (to inject storage faults). Without
 * `store` this is exactly ServerLive.
 */
export const startServerWith = (options: ServerOptions = {}): Effect.Effect<TestServerWithStore, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const dataDir = options.dataDir ?? (yield* tempDir)
    const config = ServerConfig.layer({
      clientHosts: ["127.0.0.1"],
      clientPort: 0,
      msgHost: "127.0.0.1",
      msgPort: 0,
      dataDir,
      // The relay tests check TeamTalk's exact PDU exchange; read-ahead (the daemon's default)
      // adds server-originated pulls, and has tests of its own (test/server/readahead.test.ts).
      onlineReadahead: 0,
      adminPort: 0,
      ...options.settings
    })
    const logs = process.env.TTFS_TEST_LOGS ? Logger.minimumLogLevel(LogLevel.Debug) : Logger.minimumLogLevel(LogLevel.None)
    const wrap = options.store
    const live = wrap === undefined ? ServerLive : serverWith(Layer.effect(OfflineStore, Effect.map(DiskStore.make, wrap)))
    const context = yield* Layer.build(live.pipe(Layer.provide(config), Layer.provide(logs)))
    const addresses = Context.get(context, ListeningAddresses)
    const admin = options.admin
      ? Context.get(
          yield* Layer.build(AdminServer.layer("127.0.0.1", 0).pipe(Layer.provide(Layer.succeedContext(context)), Layer.provide(logs))),
          AdminServer.AdminAddress
        )
      : undefined
    return {
      drain: drain.pipe(Effect.provide(context), Effect.provide(config), Effect.provide(logs)),
      isDraining: Context.get(context, Lifecycle).isDraining,
      client: { host: "127.0.0.1", port: addresses.client[0]!.port },
      msg: addresses.msg,
      registry: Context.get(context, TaskRegistry),
      store: Context.get(context, OfflineStore),
      dataDir,
      openConnections: addresses.openConnections,
      admin,
      lifecycle: Context.get(context, Lifecycle)
    }
  })

/**
 * A server that the test can stop before its own scope ends (to restart
 * another on the same data dir): `stop` closes the server's scope, which
 * interrupts its tasks and closes every connection, as a crash would (minus
 * the page cache).
 */
export const startStoppableServer = (
  options: ServerOptions & { readonly dataDir: string }
): Effect.Effect<{ readonly server: TestServerWithStore; readonly stop: Effect.Effect<void> }, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const stop = Scope.close(scope, Exit.void)
    yield* Effect.addFinalizer(() => stop)
    const server = yield* startServerWith(options).pipe(Scope.extend(scope))
    return { server, stop }
  })
