import type { Command, Limits, TaskEvent, TaskState } from "./machine.js"
import { aheadBytes, initialState, isTerminal, step } from "./machine.js"
import type { OfflineLimits, OfflineState } from "./offlineMachine.js"
import { initialOfflineState, isOfflineTerminal, parties, stepOffline } from "./offlineMachine.js"
import type { ReadaheadBudget } from "./readaheadBudget.js"
import type { TaskSpec } from "./spec.js"

/** A pure machine as the actor drives it, whichever transfer mode it implements. */
export interface TaskMachine<S> {
  readonly initial: S
  readonly step: (state: S, event: TaskEvent) => readonly [S, ReadonlyArray<Command>]
  readonly isTerminal: (state: S) => boolean
  /**
   * The phase and byte count shown in live views and logs, and the parties connected (a login
   * being answered counts): a task with any is a transfer in flight, which a graceful shutdown waits for.
   */
  readonly view: (state: S) => { readonly phase: string; readonly bytes: number; readonly parties: number }
  /** Gives back what the task held of resources shared with other tasks; the actor calls it once, when the task ends. */
  readonly release: () => void
}

/** An online task; its read-ahead draws on `budget`, shared by all online tasks. */
export const onlineMachine = (spec: TaskSpec, limits: Limits, budget: ReadaheadBudget): TaskMachine<TaskState> => {
  let held = 0
  return {
    initial: initialState(spec),
    step: (s, e) => {
      const result = step(s, e, limits, budget.allowance(held))
      const now = aheadBytes(result[0])
      budget.change(held, now)
      held = now
      return result
    },
    isTerminal,
    view: (s) => ({ phase: s.phase, bytes: s.bytesRelayed, parties: (s.sender === undefined ? 0 : 1) + (s.receiver === undefined ? 0 : 1) }),
    release: () => {
      budget.change(held, 0)
      held = 0
    }
  }
}

export const offlineMachine = (
  spec: TaskSpec,
  stored: Parameters<typeof initialOfflineState>[1],
  limits: OfflineLimits
): TaskMachine<OfflineState> => ({
  initial: initialOfflineState(spec, stored),
  step: (s, e) => stepOffline(s, e, limits),
  isTerminal: isOfflineTerminal,
  view: (s) => ({ phase: s.phase, bytes: s.bytesStored + s.bytesServed, parties: parties(s) }),
  release: () => {}
})
