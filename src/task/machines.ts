import type { Command, Limits, TaskEvent, TaskState } from "./machine.js"
import { aheadBytes, initialState, isTerminal, step } from "./machine.js"
import type { OfflineLimits, OfflineState } from "./offlineMachine.js"
import { initialOfflineState, isOfflineTerminal, outstandingBytes, partiesInFlight, stepOffline } from "./offlineMachine.js"
import type { MemoryBudget } from "./memoryBudget.js"
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

/**
 * Steps `pure` with the task's share of `budget` (what is free plus what it holds), and
 * records what it holds after each step (`held` of the new state).
 */
const drawingOn = <S>(
  budget: MemoryBudget,
  pure: (s: S, e: TaskEvent, allowance: number) => readonly [S, ReadonlyArray<Command>],
  held: (s: S) => number
) => {
  let holding = 0
  return {
    step: (s: S, e: TaskEvent) => {
      const result = pure(s, e, budget.allowance(holding))
      const now = held(result[0])
      budget.change(holding, now)
      holding = now
      return result
    },
    release: () => {
      budget.change(holding, 0)
      holding = 0
    }
  }
}

/** An online task; its read-ahead draws on `budget`, shared by all online tasks. */
export const onlineMachine = (spec: TaskSpec, limits: Limits, budget: MemoryBudget): TaskMachine<TaskState> => ({
  initial: initialState(spec),
  ...drawingOn(budget, (s: TaskState, e, allowance) => step(s, e, limits, allowance), aheadBytes),
  isTerminal,
  view: (s) => ({ phase: s.phase, bytes: s.bytesRelayed, parties: (s.sender === undefined ? 0 : 1) + (s.receiver === undefined ? 0 : 1) })
})

export const offlineMachine = (
  spec: TaskSpec,
  stored: Parameters<typeof initialOfflineState>[1],
  limits: OfflineLimits,
  budget: MemoryBudget
): TaskMachine<OfflineState> => ({
  initial: initialOfflineState(spec, stored),
  ...drawingOn(budget, (s: OfflineState, e, allowance) => stepOffline(s, e, limits, allowance), outstandingBytes),
  isTerminal: isOfflineTerminal,
  view: (s) => ({ phase: s.phase, bytes: s.bytesStored + s.bytesServed, parties: partiesInFlight(s) })
})
