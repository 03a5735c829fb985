import { Context, Layer } from "effect"
import { TransferMode } from "../protocol/commands.js"
import type { FrameError } from "../protocol/frame.js"
import type { Outcome, Phase } from "../task/machine.js"
import type { OfflinePhase } from "../task/offlineMachine.js"

/**
 * A count that only goes up. A plain number field: the hot path (one call per
 * relayed block) pays an addition, no Effect and no allocation.
 */
export class Counter {
  value = 0
  inc(by = 1): void {
    this.value += by
  }
}

/** Observations counted into buckets by upper bound (Prometheus' `le`), plus their sum. */
export class Histogram {
  /** Per bucket, not cumulative; the last slot holds what exceeds every bound. */
  readonly counts: Array<number>
  sum = 0
  constructor(readonly bounds: ReadonlyArray<number>) {
    this.counts = new Array<number>(bounds.length + 1).fill(0)
  }
  observe(value: number): void {
    let i = 0
    while (i < this.bounds.length && value > this.bounds[i]!) i++
    this.counts[i]!++
    this.sum += value
  }
}

/** The list of every member of the string union T: one missing is a compile error. */
const everyOf =
  <T extends string>() =>
  <const L extends ReadonlyArray<T>>(list: L & (Exclude<T, L[number]> extends never ? unknown : { readonly missing: Exclude<T, L[number]> })): L =>
    list

export const MODES = ["online", "offline"] as const
export type ModeName = (typeof MODES)[number]
export const modeName = (mode: TransferMode): ModeName => (mode === TransferMode.Online ? "online" : "offline")

export const ONLINE_PHASES = everyOf<Phase>()(["Ready", "WaitingReceiver", "WaitingSender", "WaitingTransfer", "Transferring", "Ended"])
export const OFFLINE_PHASES = everyOf<OfflinePhase>()(["Ready", "Opening", "Uploading", "Finishing", "Stored", "Ended"])

/** How a task ended: the machines' outcomes, and `defect` for a task ended by a bug (logged as "task failed"). */
export const END_OUTCOMES = [
  ...everyOf<Outcome>()(["done", "cancelled", "refused", "peer-left", "protocol-error", "expired", "shutdown", "idle"]),
  "defect"
] as const
export type EndOutcome = (typeof END_OUTCOMES)[number]

/** Transfers that reached their end: an online relay (DONE), an offline upload (stored), a download (sent the last block). */
export const COMPLETED_KINDS = ["online", "upload", "download"] as const

/** Why a frame was not acted on; a fixed set, so that a peer cannot grow the label set. */
export const CLIENT_REJECTS = ["too-long", "too-short", "malformed", "before-login", "duplicate-login", "unknown-task", "unknown-pdu"] as const
export const MSG_REJECTS = ["too-long", "too-short", "malformed", "unknown-pdu"] as const
export type ClientReject = (typeof CLIENT_REJECTS)[number]
export type MsgReject = (typeof MSG_REJECTS)[number]

/** Counts a framing error (a length out of bounds) under its reason. */
export const countFrameError =
  (rejected: Record<"too-long" | "too-short", Counter>) =>
  (error: FrameError): void =>
    rejected[error.reason === "TooLong" ? "too-long" : "too-short"].inc()

/** Seconds: from a quick relay to the hour a large or slow transfer may take. */
export const DURATION_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600] as const

const counters = <K extends string>(keys: ReadonlyArray<K>): Record<K, Counter> =>
  Object.fromEntries(keys.map((k) => [k, new Counter()])) as Record<K, Counter>

const byMode = <A>(make: () => A): Record<ModeName, A> => ({ online: make(), offline: make() })

/** The server's counters and histograms, every label value created up front (so each series exists at 0). */
export const makeMetrics = () => ({
  relayedBytes: new Counter(),
  storedBytes: new Counter(),
  servedBytes: new Counter(),
  transfersCompleted: counters(COMPLETED_KINDS),
  tasksEnded: byMode(() => counters(END_OUTCOMES)),
  taskDuration: byMode(() => new Histogram(DURATION_BUCKETS)),
  framesRejected: { client: counters(CLIENT_REJECTS), msg: counters(MSG_REJECTS) }
})

export type ServerMetrics = ReturnType<typeof makeMetrics>

export class Metrics extends Context.Tag("tt-file-server/Metrics")<Metrics, ServerMetrics>() {
  static readonly layer = Layer.sync(Metrics, makeMetrics)
}

/** Counts a task's end; `durationMs` is absent for a task that never ran (nobody joined it). */
export const recordTaskEnd = (metrics: ServerMetrics, mode: TransferMode, outcome: EndOutcome, durationMs: number | undefined): void => {
  const name = modeName(mode)
  metrics.tasksEnded[name][outcome].inc()
  if (durationMs !== undefined) metrics.taskDuration[name].observe(durationMs / 1000)
  if (name === "online" && outcome === "done") metrics.transfersCompleted.online.inc()
}
