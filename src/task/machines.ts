import type { Command, Limits, TaskEvent, TaskState } from "./machine.js"
import { initialState, isTerminal, step } from "./machine.js"
import type { OfflineLimits, OfflineState } from "./offlineMachine.js"
import { initialOfflineState, isOfflineTerminal, parties, stepOffline } from "./offlineMachine.js"
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
}

export const onlineMachine = (spec: TaskSpec, limits: Limits): TaskMachine<TaskState> => ({
  initial: initialState(spec),
  step: (s, e) => step(s, e, limits),
  isTerminal,
  view: (s) => ({ phase: s.phase, bytes: s.bytesRelayed, parties: (s.sender === undefined ? 0 : 1) + (s.receiver === undefined ? 0 : 1) })
})

export const offlineMachine = (
  spec: TaskSpec,
  stored: Parameters<typeof initialOfflineState>[1],
  limits: OfflineLimits
): TaskMachine<OfflineState> => ({
  initial: initialOfflineState(spec, stored),
  step: (s, e) => stepOffline(s, e, limits),
  isTerminal: isOfflineTerminal,
  view: (s) => ({ phase: s.phase, bytes: s.bytesStored + s.bytesServed, parties: parties(s) })
})
