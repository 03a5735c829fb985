/**
 * What a server process costs, read from Linux's /proc: CPU time over all its
 * threads (utime + stime, in clock ticks) and peak resident memory (VmHWM),
 * which can be reset between measurements through clear_refs.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"

/** USER_HZ: /proc reports CPU times in these ticks (100 on every Linux we run on). */
const CLOCK_TICKS_PER_SECOND = 100

export interface CpuTimes {
  readonly user: number
  readonly system: number
}

/** CPU seconds the process has used so far, in user and kernel mode, over all its threads. */
export const cpuTimes = (pid: number): CpuTimes => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // Field 2 (comm) is parenthesised and may hold spaces: count fields after its closing ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  // fields[0] is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
  return { user: Number(fields[11]) / CLOCK_TICKS_PER_SECOND, system: Number(fields[12]) / CLOCK_TICKS_PER_SECOND }
}

const statusKiB = (pid: number, key: "VmHWM" | "VmRSS"): number => {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return match ? Number(match[1]) : Number.NaN
}

/** Peak resident set size in MiB since the process started or since the last `resetPeakRss`. */
export const peakRssMiB = (pid: number): number => statusKiB(pid, "VmHWM") / 1024

export const rssMiB = (pid: number): number => statusKiB(pid, "VmRSS") / 1024

/**
 * Resets the peak RSS to the current RSS (Linux >= 4.0, own processes only).
 * Returns false when that is not possible: the peak then covers the process's whole life.
 */
export const resetPeakRss = (pid: number): boolean => {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5")
    return true
  } catch {
    return false
  }
}

/** Whether the process still runs (and is not a zombie left for its parent to reap). */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return existsSync(`/proc/${pid}/status`)
  } catch {
    return false
  }
}

/** This process's soft limit on open files (children inherit it), or undefined if unknown. */
export const openFilesLimit = (): number | undefined => {
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"))
  if (!match) return undefined
  return match[1] === "unlimited" ? Number.POSITIVE_INFINITY : Number(match[1])
}
