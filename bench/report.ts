/** Turns the runs into per-case summaries, daemon/bare ratios, a printed table and the JSON file. */
import { mkdir, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import type { Measurement } from "./online.js"
import type { Summary } from "./stats.js"
import { formatSummary, summarize } from "./stats.js"
import type { TargetName } from "./targets.js"

export interface RunRecord {
  /** What was measured, the same for every target, e.g. "online w16", "offline upload uw1", "offline download w4". */
  readonly case: string
  readonly target: TargetName
  readonly round: number
  readonly measurement: Measurement
}

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

export const summarizeCases = (runs: ReadonlyArray<RunRecord>): Array<CaseSummary> => {
  const keys = [...new Set(runs.map((r) => `${r.case}\u0000${r.target}`))]
  return keys.map((key) => {
    const [name, target] = key.split("\u0000") as [string, TargetName]
    const ms = runs.filter((r) => r.case === name && r.target === target).map((r) => r.measurement)
    return {
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
    }
  })
}

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

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

export const formatReport = (summaries: ReadonlyArray<CaseSummary>, comparisons: ReadonlyArray<Comparison>): string => {
  const cases = table(
    ["case", "server", "runs", "MiB/s median (min-max)", "server CPU s", "usr+sys", "server CPU s/GiB", "peak RSS MiB", "client CPU s"],
    summaries.map((s) => [
      s.case,
      s.target,
      String(s.runs),
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

export const writeJson = async (path: string, value: unknown): Promise<void> => {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, JSON.stringify(value, null, 2) + "\n")
}
