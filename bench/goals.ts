/**
 * The performance issue's targets, read off a run's summaries: each is met,
 * not met, or not measured (its cases were not run). Ratios are of medians
 * from the same run; the concurrent and stall targets take the worst round.
 * Also the figures for TeamTalk's C++ file_server, for context only.
 */
import { defaultSettings } from "../src/server/config.js"
import type { CaseSummary, Comparison, ConcurrentSummary, StallSummary } from "./report.js"

export type GoalStatus = "met" | "not met" | "not measured"

export interface GoalResult {
  readonly goal: string
  readonly status: GoalStatus
  /** The figures behind the verdict, in words. */
  readonly figures: string
}

export interface GoalInput {
  readonly cases: ReadonlyArray<CaseSummary>
  readonly comparisons: ReadonlyArray<Comparison>
  readonly concurrent: ReadonlyArray<ConcurrentSummary>
  readonly stalls: ReadonlyArray<StallSummary>
}

/** The figures for TeamTalk's C++ file_server on its machine: reference, not measured here. */
export const reference = {
  note: "TeamTalk's C++ file_server, figures from the performance issue: reference, not measured here",
  onlineW1MiBPerSec: 224,
  onlineW16MiBPerSec: 330,
  offlineUploadMiBPerSec: 346,
  offlineDownloadMiBPerSec: { w1: 421, w4: 660, note: "the issue does not say the window of the 421; presumably 1" },
  serverCpuSecondsPer256MiB: 0.36,
  rssMB: 7
} as const

const CONCURRENT_GOAL = 1000
const RSS_LIMIT_BYTES = 200e6
const MiB = 1024 * 1024

const notMeasured = (goal: string, how: string): GoalResult => ({ goal, status: "not measured", figures: `needs ${how}` })
const verdict = (ok: boolean): GoalStatus => (ok ? "met" : "not met")

/** One throughput over another, from the same run's medians. */
interface RatioGoal {
  readonly goal: string
  /** What the run needs to measure it. */
  readonly how: string
  readonly min: number
  readonly over: readonly [Side, Side]
}

interface Side {
  readonly label: string
  readonly case: string
  readonly target: "daemon" | "bare"
}

const uw = defaultSettings.uploadWindow
const bareW1: Side = { label: "bare w1", case: "online w1", target: "bare" }

const ratioGoals: ReadonlyArray<RatioGoal> = [
  {
    goal: "online w1, read-ahead off: >= 90% of bare",
    how: "--cases online with window 1",
    min: 0.9,
    over: [{ label: "daemon ra0", case: "online w1 ra0", target: "daemon" }, bareW1]
  },
  {
    goal: "online w1, read-ahead on: >= 1.4x bare",
    how: "--cases online with window 1",
    min: 1.4,
    over: [{ label: "daemon", case: "online w1", target: "daemon" }, bareW1]
  },
  {
    goal: "online w16: >= 60% of bare",
    how: "--cases online with window 16",
    min: 0.6,
    over: [
      { label: "daemon", case: "online w16", target: "daemon" },
      { label: "bare", case: "online w16", target: "bare" }
    ]
  },
  {
    goal: `offline upload, default window (--upload-window ${uw}): >= 2x --upload-window 1`,
    how: `--cases offline with --upload-windows 1,${uw}`,
    min: 2,
    over: [
      { label: `uw${uw}`, case: `offline upload uw${uw}`, target: "daemon" },
      { label: "uw1", case: "offline upload uw1", target: "daemon" }
    ]
  },
  {
    goal: "offline download w4: >= 1.5x w1",
    how: "--cases offline with --download-windows 1,4",
    min: 1.5,
    over: [
      { label: "w4", case: "offline download w4", target: "daemon" },
      { label: "w1", case: "offline download w1", target: "daemon" }
    ]
  }
]

const ratio = (input: GoalInput, g: RatioGoal): GoalResult => {
  const [a, b] = g.over.map((side) => ({ ...side, value: input.cases.find((c) => c.case === side.case && c.target === side.target)?.mibPerSec.median }))
  if (a!.value === undefined || b!.value === undefined) return notMeasured(g.goal, g.how)
  const r = a!.value / b!.value
  return {
    goal: g.goal,
    status: verdict(r >= g.min),
    figures: `${r.toFixed(2)}x (${a!.label} ${a!.value.toFixed(1)} / ${b!.label} ${b!.value.toFixed(1)} MiB/s; needs >= ${g.min}x)`
  }
}

const cpu = (input: GoalInput): Array<GoalResult> => {
  const goal = (name: string) => `server CPU per GiB, ${name}: <= 2x bare`
  const online = input.comparisons.filter((c) => c.case.startsWith("online "))
  if (online.length === 0) return [notMeasured(goal("online"), "--cases online")]
  return online.map((c) => {
    const daemon = input.cases.find((s) => s.case === c.case && s.target === "daemon")!.serverCpuSecondsPerGiB.median
    const bare = input.cases.find((s) => s.case === c.case && s.target === "bare")!.serverCpuSecondsPerGiB.median
    return {
      goal: goal(c.case),
      status: verdict(c.cpuPerGiB.ofMedians <= 2),
      figures: `${c.cpuPerGiB.ofMedians.toFixed(2)}x (daemon ${daemon.toFixed(2)} / bare ${bare.toFixed(2)} s/GiB; needs <= 2x)`
    }
  })
}

const concurrent = (input: GoalInput): Array<GoalResult> =>
  (["online", "offline"] as const).map((mode) => {
    const goal = `${CONCURRENT_GOAL} concurrent ${mode} 1 MiB transfers: 0 failures, peak RSS <= 200 MB`
    const s = input.concurrent.find((c) => c.case === `concurrent ${mode} ${CONCURRENT_GOAL}` && c.target === "daemon")
    if (s === undefined) return notMeasured(goal, `--cases concurrent with ${CONCURRENT_GOAL} in --concurrency`)
    const peakMiB = s.serverPeakRssMiB.max
    const ok = s.failures === 0 && peakMiB * MiB <= RSS_LIMIT_BYTES
    return {
      goal,
      status: verdict(ok),
      figures: `${s.failures} of ${s.transfers * s.runs} failed; peak RSS ${peakMiB.toFixed(0)} MiB (${((peakMiB * MiB) / 1e6).toFixed(0)} MB, worst of ${s.runs} run(s))`
    }
  })

const stalls = (input: GoalInput): Array<GoalResult> => {
  if (input.stalls.length === 0) return [notMeasured("stalled receiver: RSS growth <= (window + read-ahead) x block + read buffers", "--cases stall")]
  return input.stalls.map((s) => ({
    goal: `${s.case}: RSS growth <= ${s.boundFormula}`,
    status: verdict(s.growthMiB.max <= s.boundMiB),
    figures:
      `grew ${s.growthMiB.max.toFixed(2)} MiB (worst of ${s.runs}); bound ${s.boundMiB.toFixed(2)} MiB` +
      (s.closedByServer > 0 ? `; the server closed the connection in ${s.closedByServer} run(s)` : "")
  }))
}

export const evaluateGoals = (input: GoalInput): Array<GoalResult> => [
  ...ratioGoals.map((g) => ratio(input, g)),
  ...cpu(input),
  ...concurrent(input),
  ...stalls(input)
]

export const formatGoals = (goals: ReadonlyArray<GoalResult>): string => {
  const tag = (s: GoalStatus) => `[${s}]`.padEnd("[not measured]".length)
  const r = reference
  return [
    "targets (from the performance issue):",
    ...goals.map((g) => `  ${tag(g.status)} ${g.goal}: ${g.figures}`),
    "",
    `reference: ${r.note}:`,
    `  online w1 ${r.onlineW1MiBPerSec} MiB/s, w16 ${r.onlineW16MiBPerSec} MiB/s; offline upload ${r.offlineUploadMiBPerSec} MiB/s, ` +
      `download ${r.offlineDownloadMiBPerSec.w1} (window not stated) / ${r.offlineDownloadMiBPerSec.w4} (w4) MiB/s; ` +
      `server CPU ${r.serverCpuSecondsPer256MiB} s per 256 MiB; RSS ${r.rssMB} MB`,
    ""
  ].join("\n")
}
