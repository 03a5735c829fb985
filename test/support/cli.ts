import { afterAll, beforeAll } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { join } from "node:path"
import type { Daemon } from "./daemon.js"
import { childEnv, repoRoot, startDaemon } from "./daemon.js"
import { tempDir } from "./server.js"

/** The built CLI (`npm test` builds first), run as its own process: what a user runs. */
export const cliPath = join(repoRoot, "dist", "src", "cli", "main.js")

export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface CliProcess {
  readonly process: ChildProcess
  /** Resolves once the process has exited. */
  readonly result: Effect.Effect<CliResult>
}

const collect = (child: ChildProcess): Effect.Effect<CliResult> => {
  let stdout = ""
  let stderr = ""
  child.stdout?.on("data", (d) => (stdout += String(d)))
  child.stderr?.on("data", (d) => (stderr += String(d)))
  const done = new Promise<CliResult>((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })))
  return Effect.promise(() => done)
}

/**
 * Starts `node ...args` in the repository with `env` added to the environment (TTFS_* variables are only those
 * of `env`); it is killed when the scope closes if it still runs.
 */
export const spawnNode = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}): Effect.Effect<CliProcess, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, args, { cwd: repoRoot, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] })
      return { process: child, result: collect(child) }
    }),
    ({ process: child }) =>
      Effect.sync(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
  )

/** Starts `node dist/src/cli/main.js ...args`, as spawnNode. */
export const spawnCli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}): Effect.Effect<CliProcess, never, Scope.Scope> =>
  spawnNode([cliPath, ...args], env)

/** Runs `node ...args` to completion: stdout and stderr are pipes (not a terminal). */
export const runNode = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}): Effect.Effect<CliResult> =>
  Effect.scoped(Effect.flatMap(spawnNode(args, env), (p) => p.result))

/** Runs the CLI to completion: stdout and stderr are pipes (not a terminal). */
export const runCli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}): Effect.Effect<CliResult> =>
  runNode([cliPath, ...args], env)

/** util-linux `script` runs a command on a pseudo-terminal; without it the terminal test is skipped. */
export const hasScript = spawnSync("sh", ["-c", "command -v script"]).status === 0

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** Runs the CLI on a pseudo-terminal (stdout and stderr both are the terminal): `output` is what the terminal got. */
export const runCliOnTerminal = (args: ReadonlyArray<string>): Effect.Effect<{ readonly code: number | null; readonly output: string }> =>
  Effect.scoped(
    Effect.gen(function* () {
      const command = [process.execPath, cliPath, ...args].map(quote).join(" ")
      const child = yield* Effect.acquireRelease(
        Effect.sync(() => spawn("script", ["-qfec", command, "/dev/null"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] })),
        (c) => Effect.sync(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"))
      )
      const r = yield* collect(child)
      return { code: r.code, output: r.stdout }
    })
  )

/** The JSON summary: the last line of stdout. */
export const jsonOf = <A = Record<string, unknown>>(r: CliResult): A => {
  const lines = r.stdout.trim().split("\n")
  return JSON.parse(lines[lines.length - 1]!) as A
}

export interface SuiteDaemon {
  readonly daemon: Daemon
  /** A temporary directory of the suite (the daemon's data is in `data/` under it). */
  readonly dir: string
  readonly server: string
  readonly msg: string
}

/**
 * One daemon (`npm start`) for all the tests of a describe block: started
 * before the first, stopped after the last. Starting a daemon costs seconds,
 * so tests that do not restart it share one.
 */
export const suiteDaemon = (flags: ReadonlyArray<string> = []): { readonly get: () => SuiteDaemon } => {
  const scope = Effect.runSync(Scope.make())
  let current: SuiteDaemon | undefined
  beforeAll(async () => {
    current = await Effect.runPromise(
      Effect.gen(function* () {
        const dir = yield* tempDir
        const daemon = yield* startDaemon(["--data-dir", join(dir, "data"), ...flags])
        return { daemon, dir, server: `127.0.0.1:${daemon.clientPort}`, msg: `127.0.0.1:${daemon.msgPort}` }
      }).pipe(Scope.extend(scope))
    )
  })
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))
  return {
    get: () => {
      if (current === undefined) throw new Error("the suite's daemon has not started")
      return current
    }
  }
}
