import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { createServer } from "node:net"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import * as Client from "../../src/client/index.js"
import type { TransferMode } from "../../src/protocol/commands.js"
import { FileState } from "../../src/protocol/commands.js"

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url))

/**
 * The environment for a daemon or CLI process: this one's without its TTFS_* variables (the daemon refuses
 * unknown ones, and a test says which settings it means), plus `extra`.
 */
export const childEnv = (extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("TTFS_"))),
  ...extra
})

export interface Daemon {
  readonly process: ChildProcess
  readonly clientPort: number
  readonly msgPort: number
  /** The admin HTTP port; 0 when it is off (the default here). */
  readonly adminPort: number
  /** The daemon's own pid (npm start runs it as a child of npm). */
  readonly pid: number
  /** Every stdout line so far, parsed as JSON where it is JSON. */
  readonly logs: Array<Record<string, unknown>>
  /** Resolves with the exit code once the process has exited (null when a signal ended it). */
  readonly exited: Promise<number | null>
}

/** A port free on 127.0.0.1 now (the kernel's pick, released at once). */
export const freePort = Effect.async<number, Error>((resume) => {
  const server = createServer()
  server.once("error", (e) => resume(Effect.fail(e)))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    server.close(() => resume(typeof address === "object" && address ? Effect.succeed(address.port) : Effect.fail(new Error("no port"))))
  })
})

/**
 * The daemon's admin port: off (`--admin-port 0`) unless asked for, then a free port, so that
 * daemons started at once by parallel test files never contend for the default 8602. A test
 * passing its own `--admin-port` keeps it.
 */
const adminFlags = (flags: ReadonlyArray<string>, admin: boolean): Effect.Effect<ReadonlyArray<string>, Error> =>
  flags.includes("--admin-port")
    ? Effect.succeed([])
    : admin
      ? Effect.map(freePort, (port) => ["--admin-port", String(port)])
      : Effect.succeed(["--admin-port", "0"])

/**
 * Starts the daemon exactly as the README says (`npm start -- [flags]`) and
 * waits for its "listening" log lines; its process group gets SIGTERM (then
 * SIGKILL) when the scope closes, if it is still running.
 */
export const startDaemon = (flags: ReadonlyArray<string>, options: { readonly admin?: boolean } = {}): Effect.Effect<Daemon, Error, Scope.Scope> =>
  Effect.flatMap(adminFlags(flags, options.admin ?? false), (admin) => spawnDaemon([...admin, ...flags]))

const spawnDaemon = (flags: ReadonlyArray<string>): Effect.Effect<Daemon, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Daemon, Error>((resume) => {
      const adminOn = flags[flags.lastIndexOf("--admin-port") + 1] !== "0"
      const child = spawn("npm", ["start", "--silent", "--", "--client-host", "127.0.0.1", "--client-port", "0", "--msg-port", "0", ...flags], {
        cwd: repoRoot,
        env: childEnv(),
        stdio: ["ignore", "pipe", "pipe"],
        detached: true
      })
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
      const logs: Array<Record<string, unknown>> = []
      let clientPort = 0
      let msgPort = 0
      let adminPort = 0
      let pid = 0
      let stderr = ""
      child.stderr!.on("data", (d) => (stderr += String(d)))
      createInterface({ input: child.stdout! }).on("line", (line) => {
        let entry: Record<string, unknown>
        try {
          entry = JSON.parse(line) as Record<string, unknown>
        } catch {
          entry = { raw: line }
        }
        logs.push(entry)
        const a = entry.annotations as Record<string, unknown> | undefined
        if (entry.message === "started" && a) pid = Number(a.pid)
        if (entry.message === "listening" && a) {
          if (a.port === "client") clientPort = Number(a.bound)
          if (a.port === "msg") msgPort = Number(a.bound)
          if (a.port === "admin") adminPort = Number(a.bound)
          if (clientPort && msgPort && (adminPort || !adminOn)) resume(Effect.succeed({ process: child, pid, clientPort, msgPort, adminPort, logs, exited }))
        }
      })
      void exited.then((code) => resume(Effect.fail(new Error(`daemon exited with ${code} before listening: ${stderr}`))))
    }),
    (d) =>
      Effect.promise(async () => {
        if (d.process.exitCode !== null || d.process.signalCode !== null) return
        process.kill(-d.process.pid!, "SIGTERM")
        const timer = setTimeout(() => process.kill(-d.process.pid!, "SIGKILL"), 10_000)
        await d.exited
        clearTimeout(timer)
      })
  )

/**
 * Kills the daemon's node process with SIGKILL (no finalizer runs: a crash)
 * and waits for `npm start` above it to exit; returns npm's exit code (null:
 * npm ends itself with the signal that ended node). Fails if npm is still
 * running after `timeoutMs`.
 */
export const killDaemon = (daemon: Daemon, timeoutMs = 10_000): Effect.Effect<number | null, Error> =>
  Effect.gen(function* () {
    // pid 0 would signal our own process group: only a pid the daemon logged is killed.
    if (!(daemon.pid > 0)) return yield* Effect.fail(new Error(`the daemon did not log its pid (got ${daemon.pid})`))
    if (daemon.process.exitCode === null && daemon.process.signalCode === null) {
      yield* Effect.try({ try: () => process.kill(daemon.pid, "SIGKILL"), catch: (e) => new Error(`cannot kill the daemon (pid ${daemon.pid}): ${String(e)}`) })
    }
    return yield* Effect.promise(() => daemon.exited).pipe(
      Effect.timeoutFail({ duration: timeoutMs, onTimeout: () => new Error(`npm start did not exit within ${timeoutMs} ms of SIGKILL to pid ${daemon.pid}`) })
    )
  })

/** Where clients dial a daemon. */
export const clientOf = (d: Daemon) => ({ host: "127.0.0.1", port: d.clientPort })

/** Where msg_server dials a daemon. */
export const msgOf = (d: Daemon) => ({ host: "127.0.0.1", port: d.msgPort })

/** A task created on the daemon's msg port, as msg_server would; fails the test unless it is accepted. */
export const createDaemonTask = (
  d: Daemon,
  task: { readonly fromUserId: number; readonly toUserId: number; readonly fileSize: number; readonly mode: TransferMode; readonly fileName?: string }
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const link = yield* Client.connectMsgLink(msgOf(d))
      const rsp = yield* link.createTask({ fileName: "payload.bin", ...task })
      if (rsp.resultCode !== 0 || rsp.taskId === undefined) return yield* Effect.fail(new Error(`task creation refused: ${JSON.stringify(rsp)}`))
      return rsp.taskId
    })
  )

/** A whole offline file downloaded from a new connection with 4 pulls in flight: its bytes, once the server said DONE. */
export const downloadAll = (d: Daemon, task: { readonly taskId: string; readonly userId: number; readonly size: number }) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sock = yield* Client.connect(clientOf(d))
      const sink = Client.memorySink()
      const got = yield* Client.downloadFile(sock, { ...task, sink, window: 4 })
      if (got.finalState !== FileState.Done) return yield* Effect.fail(new Error(`download ended in state ${got.finalState}, not DONE`))
      return sink.bytes()
    })
  )
