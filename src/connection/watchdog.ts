import { Effect } from "effect"
import type { Scope } from "effect"

/** When a connection last received a PDU; the watchdog reads it. */
export interface Activity {
  last: number
}

/**
 * Calls `onIdle` once no activity has been seen for `timeoutMs`. One sleeping
 * fiber per connection, scoped to it: it wakes only at the earliest possible
 * deadline, so activity costs a timestamp write, not a timer reset.
 */
export const watchIdle = (activity: Activity, timeoutMs: number, onIdle: () => void): Effect.Effect<void, never, Scope.Scope> => {
  const check: Effect.Effect<void> = Effect.suspend(() => {
    const idleFor = Date.now() - activity.last
    if (idleFor >= timeoutMs) return Effect.sync(onIdle)
    return Effect.sleep(timeoutMs - idleFor).pipe(Effect.zipRight(check))
  })
  return Effect.forkScoped(check).pipe(Effect.asVoid)
}
