import { Effect, Fiber, Layer, Option, Runtime } from "effect"
import type { Scope } from "effect"
import { TaskRegistry } from "../task/registry.js"
import { ListeningAddresses } from "./app.js"
import { ServerConfig } from "./config.js"
import { Lifecycle } from "./lifecycle.js"

/** How long peers get, once their tasks are over, to read the last PDUs and hang up; the rest are then cut. */
const CLOSE_WAIT_MS = 5000

/**
 * A signal this soon after the first is the same request: one sent to the process group
 * (Ctrl-C in a terminal, systemd's default) reaches the daemon twice under `npm start`,
 * once itself and once forwarded by npm.
 */
export const SAME_REQUEST_MS = 1000

/** Exit status when a second signal cuts the drain short: transfers were dropped without a CANCEL. */
const FORCED_EXIT_CODE = 1

/**
 * The graceful stop (docs/shutdown.md): no new connections, no new tasks, transfers in
 * flight may finish for up to `drainTimeoutMs`, then every task still live is cancelled
 * (its parties get FILE_STATE CANCEL) and its connections are closed once flushed.
 * Completes when it is safe to release the server: connections not closed by then are
 * cut when the listeners' scopes close.
 */
export const drain: Effect.Effect<void, never, ListeningAddresses | TaskRegistry | Lifecycle | ServerConfig> = Effect.gen(function* () {
  const config = yield* ServerConfig
  const lifecycle = yield* Lifecycle
  const ports = yield* ListeningAddresses
  const registry = yield* TaskRegistry
  const startedAt = Date.now()
  for (const listener of [...ports.client, ports.msg]) yield* listener.stopAccepting
  yield* lifecycle.startDrain
  yield* Effect.logInfo("draining").pipe(Effect.annotateLogs({ transfers: registry.busy(), timeoutMs: config.drainTimeoutMs }))
  const finished = yield* registry.whenIdle.pipe(Effect.timeoutOption(config.drainTimeoutMs))
  if (Option.isNone(finished)) {
    yield* Effect.logWarning("drain timeout: cancelling transfers").pipe(Effect.annotateLogs({ transfers: registry.busy() }))
  }
  yield* registry.shutdownAll
  yield* Effect.forEach(ports.client, (listener) => listener.connectionsEnded, { concurrency: "unbounded", discard: true }).pipe(
    Effect.timeoutOption(CLOSE_WAIT_MS)
  )
  yield* Effect.logInfo("drained").pipe(Effect.annotateLogs({ durationMs: Date.now() - startedAt }))
})

/**
 * For the life of the scope, a second SIGINT or SIGTERM (SAME_REQUEST_MS or more after the
 * first) exits at once with FORCED_EXIT_CODE. The first is NodeRuntime.runMain's: it
 * interrupts the program, whose finalizer drains (runUntilStopped). While this listener is
 * installed, Node does not end the process on a signal by itself.
 */
export const exitOnSecondSignal: Effect.Effect<void, never, Scope.Scope> = Effect.gen(function* () {
  const runSync = Runtime.runSync(yield* Effect.runtime<never>())
  let first: number | undefined
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now()
    if (first === undefined) {
      first = now
      runSync(Effect.logInfo("stop requested").pipe(Effect.annotateLogs({ signal })))
    } else if (now - first >= SAME_REQUEST_MS) {
      runSync(Effect.logWarning("second signal: stopping at once").pipe(Effect.annotateLogs({ signal, exitCode: FORCED_EXIT_CODE })))
      process.exit(FORCED_EXIT_CODE)
    }
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)
    }),
    () =>
      Effect.sync(() => {
        process.off("SIGINT", onSignal)
        process.off("SIGTERM", onSignal)
      })
  )
})

/**
 * Runs `server` until this fiber is interrupted, then drains it before its layers are
 * released (finalizers run in reverse order: the drain first, the signal listener last).
 */
export const runUntilStopped = <E, R>(
  server: Layer.Layer<ListeningAddresses | TaskRegistry | Lifecycle, E, R>
): Effect.Effect<never, E, Exclude<R, Scope.Scope> | ServerConfig> =>
  Effect.scoped(
    Effect.gen(function* () {
      yield* exitOnSecondSignal
      const context = yield* Layer.build(server)
      // Finalizers run uninterruptibly, and the drain's timeouts must interrupt what they cut
      // short: it runs in a fiber of its own, which the finalizer waits for.
      yield* Effect.addFinalizer(() => drain.pipe(Effect.provide(context), Effect.interruptible, Effect.fork, Effect.flatMap(Fiber.join)))
      return yield* Effect.never
    })
  )
