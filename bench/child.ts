/**
 * A server under test as a child process for the life of a scope. Its stdout
 * is JSON lines (the daemon's Logger.json; the bare relay mimics it); the
 * "listening" lines tell which ports it bound. Closing the scope stops it
 * (SIGTERM, then SIGKILL), and a last-resort exit hook kills it if the bench
 * dies without running its finalizers.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { createInterface } from "node:readline"
import { BenchError } from "./errors.js"

export interface ServerProcess {
  readonly name: string
  readonly pid: number
  /** Bound port per listener name ("client", "msg"), from the "listening" lines. */
  readonly ports: Readonly<Record<string, number>>
  /** WARN/ERROR/FATAL log lines seen so far (the first few). */
  readonly problems: () => ReadonlyArray<string>
  /** How many log lines had each message (with its "reason" annotation, if any). */
  readonly messageCounts: () => Readonly<Record<string, number>>
  /** The last lines of its stdout and stderr, for error messages. */
  readonly tail: () => string
}

export interface SpawnOptions {
  readonly name: string
  /** Arguments to `node` (flags, script, script arguments). */
  readonly args: ReadonlyArray<string>
  /** Listener names to wait for before the server counts as started. */
  readonly ports: ReadonlyArray<string>
  readonly startTimeoutMs?: number
}

const TAIL_LINES = 40
const MAX_PROBLEMS = 20
const MAX_MESSAGE_KEYS = 200
const STOP_GRACE_MS = 5000

interface LogLine {
  readonly message?: unknown
  readonly logLevel?: unknown
  readonly annotations?: { readonly port?: unknown; readonly bound?: unknown; readonly reason?: unknown }
}

const parse = (line: string): LogLine | undefined => {
  try {
    const v: unknown = JSON.parse(line)
    return typeof v === "object" && v !== null ? (v as LogLine) : undefined
  } catch {
    return undefined
  }
}

const stop = (child: ChildProcess): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS)
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    child.kill("SIGTERM")
  })

export const spawnServer = (options: SpawnOptions): Effect.Effect<ServerProcess, BenchError, Scope.Scope> =>
  Effect.gen(function* () {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const c = spawn(process.execPath, [...options.args], { stdio: ["ignore", "pipe", "pipe"] })
        const killOnExit = () => c.kill("SIGKILL")
        process.once("exit", killOnExit)
        c.once("exit", () => process.off("exit", killOnExit))
        return c
      }),
      stop
    )
    const tail: Array<string> = []
    const problems: Array<string> = []
    const ports: Record<string, number> = {}
    const counts: Record<string, number> = {}
    let onPort: (() => void) | undefined
    const remember = (line: string) => {
      tail.push(line)
      if (tail.length > TAIL_LINES) tail.shift()
    }
    createInterface({ input: child.stdout! }).on("line", (line) => {
      remember(line)
      const log = parse(line)
      if (log === undefined) return
      if (typeof log.message === "string") {
        const reason = log.annotations?.reason
        const key = typeof reason === "string" ? `${log.message}: ${reason.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<task>")}` : log.message
        if (key in counts || Object.keys(counts).length < MAX_MESSAGE_KEYS) counts[key] = (counts[key] ?? 0) + 1
      }
      if (log.logLevel === "WARN" || log.logLevel === "ERROR" || log.logLevel === "FATAL") {
        if (problems.length < MAX_PROBLEMS) problems.push(line)
      }
      const port = log.annotations?.port
      const bound = log.annotations?.bound
      if (log.message === "listening" && typeof port === "string" && typeof bound === "number") {
        ports[port] = bound
        onPort?.()
      }
    })
    createInterface({ input: child.stderr! }).on("line", remember)

    const describe = () => `${options.name} (node ${options.args.join(" ")})\n${tail.join("\n")}`
    yield* Effect.async<void, BenchError>((resume) => {
      const ready = () => options.ports.every((p) => p in ports)
      const finish = (effect: Effect.Effect<void, BenchError>) => {
        onPort = undefined
        child.off("exit", onExit)
        clearTimeout(timer)
        resume(effect)
      }
      const onExit = (code: number | null, signal: string | null) =>
        finish(Effect.fail(new BenchError({ message: `${options.name} exited (${signal ?? code}) before listening: ${describe()}` })))
      const timer = setTimeout(
        () => finish(Effect.fail(new BenchError({ message: `${options.name} did not report its ports in time: ${describe()}` }))),
        options.startTimeoutMs ?? 15_000
      )
      onPort = () => {
        if (ready()) finish(Effect.void)
      }
      child.once("exit", onExit)
      if (ready()) finish(Effect.void)
    })
    if (child.pid === undefined) return yield* new BenchError({ message: `${options.name} has no pid` })
    return {
      name: options.name,
      pid: child.pid,
      ports,
      problems: () => problems,
      messageCounts: () => counts,
      tail: () => tail.join("\n")
    }
  })
