import type { Command, Limits, TaskEvent, TaskState } from "./machine.js"
import { initialState, isTerminal, step } from "./machine.js"
import type { OfflineLimits, OfflineState } from "./offlineMachine.js"
import { initialOfflineState, isOfflineTerminal, stepOffline } from "./offlineMachine.js"
import type { TaskSpec } from "./spec.js"

/** A pure machine as the actor drives it, whichever transfer mode it implements. */
export interface TaskMachine<S> {
  readonly initial: S
  readonly step: (state: S, event: TaskEvent) => readonly [S, ReadonlyArray<Command>]
  readonly isTerminal: (state: S) => boolean
  /** The phase and byte count shown in live views and logs. */
  readonly view: (state: S) => { readonly phase: string; readonly bytes: number }
}

export const onlineMachine = (spec: TaskSpec, limits: Limits): TaskMachine<TaskState> => ({
  initial: initialState(spec),
  step: (s, e) => step(s, e, limits),
  isTerminal,
  view: (s) => ({ phase: s.phase, bytes: s.bytesRelayed })
})

export const offlineMachine = (
  spec: TaskSpec,
  stored: Parameters<typeof initialOfflineState>[1],
  limits: OfflineLimits
): TaskMachine<OfflineState> => ({
  initial: initialOfflineState(spec, stored),
  step: (s, e) => stepOffline(s, e, limits),
  isTerminal: isOfflineTerminal,
  view: (s) => ({ phase: s.phase, bytes: s.bytesStored + s.bytesServed })
})
