/**
 * The targets read off a run (bench/goals.ts), from runs summarized
 * the way the bench does (bench/report.ts), and the stall bound (bench/stall.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import type { ConcurrentMeasurement } from "../../bench/concurrent.js"
import type { GoalResult } from "../../bench/goals.js"
import { evaluateGoals, formatGoals } from "../../bench/goals.js"
import type { Measurement } from "../../bench/online.js"
import type { Recorded, RunRecord } from "../../bench/report.js"
import { compare, summarizeCases, summarizeConcurrent, summarizeStalls } from "../../bench/report.js"
import type { StallMeasurement } from "../../bench/stall.js"
import { stallBound } from "../../bench/stall.js"
import type { TargetName } from "../../bench/targets.js"

const MiB = 1024 * 1024
const KiB = 1024

const cost = { serverUserSeconds: 0, serverSystemSeconds: 0, peakRssReset: true, clientCpuSeconds: 1 }

/** 256 MiB at `mibPerSec`, with `cpuPerGiB` server CPU seconds per GiB. */
const transfer = (mibPerSec: number, cpuPerGiB: number): Measurement => ({
  ...cost,
  bytes: 256 * MiB,
  seconds: 256 / mibPerSec,
  mibPerSec,
  serverCpuSeconds: cpuPerGiB / 4,
  serverPeakRssMiB: 150
})

const concurrentRun = (failures: number, peakMiB: number): ConcurrentMeasurement => ({
  ...cost,
  concurrency: 1000,
  transfers: 1000,
  failures,
  firstError: failures > 0 ? "online receiver: [Closed] the server closed the connection" : undefined,
  errorKinds: {},
  bytes: (1000 - failures) * MiB,
  wallSeconds: 10,
  mibPerSec: 100,
  p50Seconds: 5,
  p99Seconds: 9,
  maxSeconds: 9.5,
  phases: [{ name: "online", wallSeconds: 10, failures }],
  serverCpuSeconds: 20,
  serverPeakRssMiB: peakMiB
})

const stallRun = (growthMiB: number): StallMeasurement => ({
  mode: "online",
  window: 16,
  blockSize: 32 * KiB,
  stallSeconds: 3,
  rssBeforeMiB: 120,
  rssAfterMiB: 120 + growthMiB,
  growthMiB,
  peakGrowthMiB: growthMiB,
  arrayBuffersBeforeMiB: 1,
  arrayBuffersAfterMiB: 1.5,
  boundMiB: 1.125,
  boundFormula: "16 x 32 KiB + read-ahead 4 x 32 KiB + 2 x 256 KiB read buffer",
  answered: 16,
  closedByServer: false,
  closeMessage: undefined,
  cutOffLogged: 0
})

const rec = <M>(name: string, target: TargetName, measurement: M, round = 1): Recorded<M> => ({ case: name, target, round, measurement })

interface Figures {
  readonly ra0: number
  readonly concurrentPeakMiB: number
  readonly concurrentFailures: number
  readonly stallGrowth: ReadonlyArray<number>
}

const healthy: Figures = { ra0: 95, concurrentPeakMiB: 150, concurrentFailures: 0, stallGrowth: [0.2, 0.5] }

/** A whole run's summaries, every target met with `healthy` figures. */
const results = (f: Figures) => {
  const runs: Array<RunRecord> = [
    rec("online w1", "daemon", transfer(150, 8)),
    rec("online w1", "bare", transfer(100, 4.5)),
    rec("online w1 ra0", "daemon", transfer(f.ra0, 8)),
    rec("online w16", "daemon", transfer(70, 3)),
    rec("online w16", "bare", transfer(100, 1.6)),
    rec("offline upload uw1", "daemon", transfer(60, 10)),
    rec("offline upload uw8", "daemon", transfer(130, 10)),
    rec("offline download w1", "daemon", transfer(100, 8)),
    rec("offline download w4", "daemon", transfer(160, 6))
  ]
  const cases = summarizeCases(runs)
  return {
    cases,
    comparisons: compare(runs, cases),
    concurrent: summarizeConcurrent([
      rec("concurrent online 1000", "daemon", concurrentRun(f.concurrentFailures, f.concurrentPeakMiB)),
      rec("concurrent online 1000", "bare", concurrentRun(0, 300)),
      rec("concurrent offline 1000", "daemon", concurrentRun(0, 120))
    ]),
    stalls: summarizeStalls(f.stallGrowth.map((g, i) => rec("stall online w16", "daemon", stallRun(g), i + 1)))
  }
}

const statusOf = (goals: ReadonlyArray<GoalResult>, start: string) => {
  const goal = goals.find((g) => g.goal.startsWith(start))
  if (goal === undefined) throw new Error(`no goal starting "${start}" in ${goals.map((g) => g.goal).join("; ")}`)
  return goal
}

describe("evaluateGoals", () => {
  it("says met for every target when the figures reach them", () => {
    const goals = evaluateGoals(results(healthy))
    expect(goals.map((g) => [g.goal, g.status]).filter(([, s]) => s !== "met")).toEqual([])
    expect(goals).toHaveLength(10)
    expect(statusOf(goals, "online w1, read-ahead off").figures).toBe("0.95x (daemon ra0 95.0 / bare w1 100.0 MiB/s; needs >= 0.9x)")
    expect(statusOf(goals, "server CPU per GiB, online w16").figures).toBe("1.88x (daemon 3.00 / bare 1.60 s/GiB; needs <= 2x)")
  })

  it("says not met, with the figures, when one falls short", () => {
    const goals = evaluateGoals(results({ ...healthy, ra0: 85 }))
    expect(statusOf(goals, "online w1, read-ahead off")).toMatchObject({ status: "not met", figures: expect.stringMatching(/^0\.85x/) })
    expect(statusOf(goals, "online w1, read-ahead on").status).toBe("met")
  })

  it("counts 200 MB as 200e6 bytes, so 195 MiB is over", () => {
    const goal = statusOf(evaluateGoals(results({ ...healthy, concurrentPeakMiB: 195 })), "1000 concurrent online")
    expect(goal).toMatchObject({ status: "not met", figures: "0 of 1000 failed; peak RSS 195 MiB (204 MB, worst of 1 run(s))" })
    expect(statusOf(evaluateGoals(results({ ...healthy, concurrentPeakMiB: 190 })), "1000 concurrent online").status).toBe("met")
  })

  it("a single failed transfer misses the concurrent target", () => {
    const goal = statusOf(evaluateGoals(results({ ...healthy, concurrentFailures: 1 })), "1000 concurrent online")
    expect(goal.status).toBe("not met")
    expect(statusOf(evaluateGoals(results({ ...healthy, concurrentFailures: 1 })), "1000 concurrent offline").status).toBe("met")
  })

  it("judges a stall by its worst round", () => {
    const goal = statusOf(evaluateGoals(results({ ...healthy, stallGrowth: [0.2, 2] })), "stall online w16")
    expect(goal).toMatchObject({ status: "not met", figures: "grew 2.00 MiB (worst of 2); bound 1.13 MiB" })
  })

  it("says not measured, and what would measure it, for cases that did not run", () => {
    const goals = evaluateGoals({ cases: [], comparisons: [], concurrent: [], stalls: [] })
    expect(goals.every((g) => g.status === "not measured")).toBe(true)
    expect(statusOf(goals, "1000 concurrent offline").figures).toBe("needs --cases concurrent with 1000 in --concurrency")
  })

  it("prints every target and the C++ reference as not measured here", () => {
    const text = formatGoals(evaluateGoals(results({ ...healthy, ra0: 85 })))
    expect(text).toContain("[not met]      online w1, read-ahead off: >= 90% of bare: 0.85x")
    expect(text).toContain("[met]          online w16: >= 60% of bare: 0.70x")
    expect(text).toMatch(/reference, not measured here/)
    expect(text).toContain("online w1 224 MiB/s, w16 330 MiB/s")
  })
})

describe("stallBound", () => {
  const base = { window: 16, blockSize: 32 * KiB, readahead: 4, maxWriteQueueBytes: 8 * MiB }

  it("is (window + read-ahead) x block plus a read buffer per connection", () => {
    expect(stallBound({ ...base, mode: "online" })).toEqual({
      bytes: 20 * 32 * KiB + 2 * 256 * KiB,
      formula: "16 x 32 KiB + read-ahead 4 x 32 KiB + 2 x 256 KiB read buffer"
    })
    expect(stallBound({ ...base, mode: "offline" }).bytes).toBe(16 * 32 * KiB + 256 * KiB)
  })

  it("caps what the pulls ask for at the write queue the server allows", () => {
    expect(stallBound({ ...base, mode: "offline", window: 1024 })).toEqual({ bytes: 8 * MiB + 256 * KiB, formula: "write queue 8192 KiB + 1 x 256 KiB read buffer" })
  })
})
