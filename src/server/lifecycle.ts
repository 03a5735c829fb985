import { Context, Deferred, Effect, Layer } from "effect"

/**
 * Where the daemon is in its life: serving, or draining (a stop was asked for: no new
 * connections, transfers in flight may finish). Readiness checks and the shutdown
 * sequence share it.
 */
export class Lifecycle extends Context.Tag("tt-file-server/Lifecycle")<
  Lifecycle,
  {
    readonly isDraining: () => boolean
    /** Marks the daemon as draining; idempotent. */
    readonly startDrain: Effect.Effect<void>
    /** Completes once draining has started. */
    readonly draining: Effect.Effect<void>
  }
>() {
  static readonly layer = Layer.effect(
    Lifecycle,
    Effect.gen(function* () {
      const started = yield* Deferred.make<void>()
      let draining = false
      return {
        isDraining: () => draining,
        startDrain: Effect.suspend(() => {
          draining = true
          return Deferred.succeed(started, undefined)
        }).pipe(Effect.asVoid),
        draining: Deferred.await(started)
      }
    })
  )
}
