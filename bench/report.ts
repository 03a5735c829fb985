/** Turns the runs into per-case summaries, daemon/bare ratios, printed tables and the JSON file. */
import { mkdir, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import type { ConcurrentMeasurement, Phase } from "./concurrent.js"
import type { Measurement } from "./online.js"
import type { StallMeasurement } from "./stall.js"
import type { Summary } from "./stats.js"
import { formatSummary, summarize } from "./stats.js"
import type { TargetName } from "./targets.js"

export interface Recorded<M> {
  /** What was measured, the same for every target, e.g. "online w16", "offline upload uw1", "concurrent online 1000". */
  readonly case: string
  readonly target: TargetName
  readonly round: number
  readonly measurement: M
}

export type RunRecord = Recorded<Measurement>

export interface CaseSummary {
  readonly case: string
  readonly target: TargetName
  readonly runs: number
  readonly mibPerSec: Summary
  readonly serverCpuSeconds: Summary
  readonly serverUserSeconds: Summary
  readonly serverSystemSeconds: Summary
  readonly serverCpuSecondsPerGiB: Summary
  readonly serverPeakRssMiB: Summary
  readonly clientCpuSeconds: Summary
}

/** Daemon over bare for one case: the ratio of the medians, and the range of the per-round ratios. */
export interface Comparison {
  readonly case: string
  readonly throughput: { readonly ofMedians: number; readonly perRound: Summary }
  readonly cpuPerGiB: { readonly ofMedians: number; readonly perRound: Summary }
}

const GiB = 1024 * 1024 * 1024

const cpuPerGiB = (m: Measurement) => (m.serverCpuSeconds * GiB) / m.bytes

/** The runs grouped by case and target, in the order they first ran. */
const byCase = <M>(runs: ReadonlyArray<Recorded<M>>): Array<{ readonly case: string; readonly target: TargetName; readonly ms: Array<M> }> => {
  const keys = [...new Set(runs.map((r) => `${r.case}\u0000${r.target}`))]
  return keys.map((key) => {
    const [name, target] = key.split("\u0000") as [string, TargetName]
    return { case: name, target, ms: runs.filter((r) => r.case === name && r.target === target).map((r) => r.measurement) }
  })
}

export const summarizeCases = (runs: ReadonlyArray<RunRecord>): Array<CaseSummary> =>
  byCase(runs).map(({ case: name, ms, target }) => ({
    case: name,
    target,
    runs: ms.length,
    mibPerSec: summarize(ms.map((m) => m.mibPerSec)),
    serverCpuSeconds: summarize(ms.map((m) => m.serverCpuSeconds)),
    serverUserSeconds: summarize(ms.map((m) => m.serverUserSeconds)),
    serverSystemSeconds: summarize(ms.map((m) => m.serverSystemSeconds)),
    serverCpuSecondsPerGiB: summarize(ms.map(cpuPerGiB)),
    serverPeakRssMiB: summarize(ms.map((m) => m.serverPeakRssMiB)),
    clientCpuSeconds: summarize(ms.map((m) => m.clientCpuSeconds))
  }))

export interface ConcurrentSummary {
  readonly case: string
  readonly target: TargetName
  readonly runs: number
  readonly concurrency: number
  /** Transfers per run: N online, 2N offline. */
  readonly transfers: number
  /** Failed transfers over all runs. */
  readonly failures: number
  readonly firstError: string | undefined
  readonly errorKinds: Readonly<Record<string, number>>
  readonly wallSeconds: Summary
  readonly mibPerSec: Summary
  readonly p50Seconds: Summary
  readonly p99Seconds: Summary
  readonly serverCpuSeconds: Summary
  readonly serverPeakRssMiB: Summary
  readonly clientCpuSeconds: Summary
  readonly phases: ReadonlyArray<{ readonly name: Phase["name"]; readonly wallSeconds: Summary; readonly failures: number }>
}

export const summarizeConcurrent = (runs: ReadonlyArray<Recorded<ConcurrentMeasurement>>): Array<ConcurrentSummary> =>
  byCase(runs).map(({ case: name, ms, target }) => {
    const errorKinds: Record<string, number> = {}
    for (const m of ms) for (const [k, n] of Object.entries(m.errorKinds)) errorKinds[k] = (errorKinds[k] ?? 0) + n
    const phaseNames = [...new Set(ms.flatMap((m) => m.phases.map((p) => p.name)))]
    const phases = (name: Phase["name"]) => ms.flatMap((m) => m.phases.filter((p) => p.name === name))
    return {
      case: name,
      target,
      runs: ms.length,
      concurrency: ms[0]!.concurrency,
      transfers: ms[0]!.transfers,
      failures: ms.reduce((sum, m) => sum + m.failures, 0),
      firstError: ms.find((m) => m.firstError !== undefined)?.firstError,
      errorKinds,
      wallSeconds: summarize(ms.map((m) => m.wallSeconds)),
      mibPerSec: summarize(ms.map((m) => m.mibPerSec)),
      p50Seconds: summarize(ms.map((m) => m.p50Seconds)),
      p99Seconds: summarize(ms.map((m) => m.p99Seconds)),
      serverCpuSeconds: summarize(ms.map((m) => m.serverCpuSeconds)),
      serverPeakRssMiB: summarize(ms.map((m) => m.serverPeakRssMiB)),
      clientCpuSeconds: summarize(ms.map((m) => m.clientCpuSeconds)),
      phases: phaseNames.map((p) => ({
        name: p,
        wallSeconds: summarize(phases(p).map((x) => x.wallSeconds)),
        failures: phases(p).reduce((sum, x) => sum + x.failures, 0)
      }))
    }
  })

export interface StallSummary {
  readonly case: string
  readonly target: TargetName
  readonly runs: number
  readonly mode: StallMeasurement["mode"]
  readonly window: number
  readonly stallSeconds: number
  readonly growthMiB: Summary
  readonly peakGrowthMiB: Summary
  /** Growth of the buffers the daemon references after forced GCs. */
  readonly arrayBuffersGrowthMiB: Summary
  readonly boundMiB: number
  readonly boundFormula: string
  readonly answered: Summary
  /** Runs in which the server closed the stalled connection. */
  readonly closedByServer: number
  readonly closeMessage: string | undefined
  readonly cutOffLogged: number
}

export const summarizeStalls = (runs: ReadonlyArray<Recorded<StallMeasurement>>): Array<StallSummary> =>
  byCase(runs).map(({ case: name, ms, target }) => ({
    case: name,
    target,
    runs: ms.length,
    mode: ms[0]!.mode,
    window: ms[0]!.window,
    stallSeconds: ms[0]!.stallSeconds,
    growthMiB: summarize(ms.map((m) => m.growthMiB)),
    peakGrowthMiB: summarize(ms.map((m) => m.peakGrowthMiB)),
    arrayBuffersGrowthMiB: summarize(ms.map((m) => m.arrayBuffersAfterMiB - m.arrayBuffersBeforeMiB)),
    boundMiB: ms[0]!.boundMiB,
    boundFormula: ms[0]!.boundFormula,
    answered: summarize(ms.map((m) => m.answered)),
    closedByServer: ms.filter((m) => m.closedByServer).length,
    closeMessage: ms.find((m) => m.closeMessage !== undefined)?.closeMessage,
    cutOffLogged: ms.reduce((sum, m) => sum + m.cutOffLogged, 0)
  }))

export const compare = (runs: ReadonlyArray<RunRecord>, summaries: ReadonlyArray<CaseSummary>): Array<Comparison> => {
  const cases = [...new Set(runs.map((r) => r.case))]
  return cases.flatMap((name) => {
    const daemon = summaries.find((s) => s.case === name && s.target === "daemon")
    const bare = summaries.find((s) => s.case === name && s.target === "bare")
    if (!daemon || !bare) return []
    const rounds = [...new Set(runs.filter((r) => r.case === name).map((r) => r.round))]
    const paired = rounds.flatMap((round) => {
      const d = runs.find((r) => r.case === name && r.round === round && r.target === "daemon")
      const b = runs.find((r) => r.case === name && r.round === round && r.target === "bare")
      return d && b ? [{ d: d.measurement, b: b.measurement }] : []
    })
    return [
      {
        case: name,
        throughput: {
          ofMedians: daemon.mibPerSec.median / bare.mibPerSec.median,
          perRound: summarize(paired.map(({ b, d }) => d.mibPerSec / b.mibPerSec))
        },
        cpuPerGiB: {
          ofMedians: daemon.serverCpuSecondsPerGiB.median / bare.serverCpuSecondsPerGiB.median,
          perRound: summarize(paired.map(({ b, d }) => cpuPerGiB(d) / cpuPerGiB(b)))
        }
      }
    ]
  })
}

/** The first cells of every table's rows. */
const caseCells = (s: { readonly case: string; readonly target: TargetName; readonly runs: number }) => [s.case, s.target, String(s.runs)]

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

export const formatReport = (summaries: ReadonlyArray<CaseSummary>, comparisons: ReadonlyArray<Comparison>): string => {
  const cases = table(
    ["case", "server", "runs", "MiB/s median (min-max)", "server CPU s", "usr+sys", "server CPU s/GiB", "peak RSS MiB", "client CPU s"],
    summaries.map((s) => [
      ...caseCells(s),
      formatSummary(s.mibPerSec, 1),
      formatSummary(s.serverCpuSeconds, 2),
      `${s.serverUserSeconds.median.toFixed(2)}+${s.serverSystemSeconds.median.toFixed(2)}`,
      formatSummary(s.serverCpuSecondsPerGiB, 2),
      formatSummary(s.serverPeakRssMiB, 0),
      formatSummary(s.clientCpuSeconds, 2)
    ])
  )
  const ratios = table(
    ["case", "", "throughput daemon/bare", "per round", "CPU per GiB daemon/bare", "per round"],
    comparisons.map((c) => [
      c.case,
      "",
      `${c.throughput.ofMedians.toFixed(2)}x`,
      formatSummary(c.throughput.perRound, 2),
      `${c.cpuPerGiB.ofMedians.toFixed(2)}x`,
      formatSummary(c.cpuPerGiB.perRound, 2)
    ])
  )
  // Offline cases run on the daemon alone: nothing to compare them with.
  return comparisons.length > 0 ? `${cases}\n\n${ratios}\n` : `${cases}\n`
}

export const formatConcurrent = (summaries: ReadonlyArray<ConcurrentSummary>): string => {
  const rows = table(
    ["case", "server", "runs", "failures", "wall s", "phases (wall s)", "MiB/s", "p50 s", "p99 s", "server CPU s", "peak RSS MiB", "client CPU s"],
    summaries.map((s) => [
      ...caseCells(s),
      `${s.failures}/${s.transfers * s.runs}`,
      formatSummary(s.wallSeconds, 2),
      s.phases.length > 1 ? s.phases.map((p) => `${p.name} ${p.wallSeconds.median.toFixed(2)}`).join(" + ") : "",
      formatSummary(s.mibPerSec, 1),
      formatSummary(s.p50Seconds, 2),
      formatSummary(s.p99Seconds, 2),
      formatSummary(s.serverCpuSeconds, 2),
      formatSummary(s.serverPeakRssMiB, 0),
      formatSummary(s.clientCpuSeconds, 2)
    ])
  )
  const errors = summaries
    .filter((s) => s.firstError !== undefined)
    .map((s) => {
      const kinds = Object.entries(s.errorKinds).sort((a, b) => b[1] - a[1]).slice(0, 3)
      return `  ${s.case} ${s.target}: ${s.failures} failed, first: ${s.firstError}\n${kinds.map(([k, n]) => `    ${n} x ${k}`).join("\n")}`
    })
  return errors.length > 0 ? `${rows}\n${errors.join("\n")}\n` : `${rows}\n`
}

export const formatStalls = (summaries: ReadonlyArray<StallSummary>): string => {
  const rows = table(
    ["case", "server", "runs", "RSS growth MiB", "peak growth MiB", "buffers held MiB", "bound MiB", "answered after", "closed by server", "cut-offs logged"],
    summaries.map((s) => [
      ...caseCells(s),
      formatSummary(s.growthMiB, 1),
      formatSummary(s.peakGrowthMiB, 1),
      formatSummary(s.arrayBuffersGrowthMiB, 1),
      s.boundMiB.toFixed(2),
      `${formatSummary(s.answered, 0)}/${s.window}`,
      `${s.closedByServer}/${s.runs}`,
      String(s.cutOffLogged)
    ])
  )
  const notes = summaries.map((s) => `  ${s.case}: bound = ${s.boundFormula}${s.closeMessage ? `; after the stall: ${s.closeMessage}` : ""}`)
  return `${rows}\n${notes.join("\n")}\n`
}

export const writeJson = async (path: string, value: unknown): Promise<void> => {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, JSON.stringify(value, null, 2) + "\n")
}
