import { Effect } from "effect"
import type { Scope } from "effect"

/** When a connection last received a PDU; the watchdog reads it. */
export interface Activity {
  last: number
}

/**
 * A plain timer for the life of the scope, not a fiber: connections are the
 * many, and a timer is the cheapest way to hold a deadline. `arm` is given a
 * function that sets the timer (again); the last one set is cleared with the scope.
 */
const scopedTimer = (arm: (set: (ms: number, f: () => void) => void) => void): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let timer: ReturnType<typeof setTimeout> | undefined
      arm((ms, f) => {
        timer = setTimeout(f, ms)
      })
      return () => clearTimeout(timer)
    }),
    (clear) => Effect.sync(clear)
  ).pipe(Effect.asVoid)

/** Calls `f` after `ms` unless the scope closes first. */
export const afterTimeout = (ms: number, f: () => void): Effect.Effect<void, never, Scope.Scope> => scopedTimer((set) => set(ms, f))

/**
 * Calls `onIdle` once no activity has been seen for `timeoutMs`. The timer
 * fires only at the earliest possible deadline, so activity costs a timestamp
 * write, not a timer reset.
 */
export const watchIdle = (activity: Activity, timeoutMs: number, onIdle: () => void): Effect.Effect<void, never, Scope.Scope> =>
  scopedTimer((set) => {
    const check = () => {
      const idleFor = Date.now() - activity.last
      if (idleFor >= timeoutMs) onIdle()
      else set(timeoutMs - idleFor, check)
    }
    set(timeoutMs, check)
  })
