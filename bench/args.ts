/** The bench's command line: `npm run bench -- [flags]`. */
import { parseArgs } from "node:util"

export type CaseGroup = "online" | "offline"

export interface BenchArgs {
  /** Which groups of cases to run: online (daemon and bare relay), offline (daemon only). */
  readonly cases: ReadonlyArray<CaseGroup>
  readonly rounds: number
  /** Transfer size in MiB. */
  readonly sizeMiB: number
  readonly blockKiB: number
  /** Pull windows of the online cases. */
  readonly windows: ReadonlyArray<number>
  /** Server upload windows (--upload-window) of the offline upload case: one daemon each. */
  readonly uploadWindows: ReadonlyArray<number>
  /** Pull windows of the offline download cases. */
  readonly downloadWindows: ReadonlyArray<number>
  /** Size of the unmeasured warm-up transfer per case, in MiB (0: none). */
  readonly warmupMiB: number
  /** Run both servers under node's --cpu-prof, profiles written to bench/results/profiles/. */
  readonly cpuProf: boolean
  /** Extra flags for node itself in both servers, split on whitespace (e.g. --perf-basic-prof). */
  readonly nodeFlags: ReadonlyArray<string>
  /** Extra flags for `serve`, split on whitespace. */
  readonly daemonArgs: ReadonlyArray<string>
  readonly out: string | undefined
}

export const usage = `Usage: npm run bench -- [flags]

  --cases LIST        case groups to run, comma-separated (default online,offline):
                        online:  online transfers through the daemon and the bare relay
                        offline: upload then download of a stored file, daemon only
  --rounds N          interleaved rounds of every case (default 3)
  --size MiB          bytes per transfer, in MiB (default 256)
  --block KiB         pull size, in KiB (default 32)
  --windows LIST      online pull windows to measure, comma-separated (default 1,16)
  --upload-windows LIST
                      offline: the daemon's --upload-window, one daemon per value (default 1,8)
  --download-windows LIST
                      offline: download pull windows, comma-separated (default 1,4)
  --warmup MiB        unmeasured warm-up transfer per case before round 1 (default 16, 0 for none)
  --cpu-prof          run both servers under node --cpu-prof (profiles in bench/results/profiles/)
  --node-flags=STR    extra flags for node in both servers, e.g. --node-flags=--perf-basic-prof (for perf record -p PID)
  --daemon-args=STR   extra flags for the daemon's serve command (every daemon), e.g. --daemon-args="--max-frame-bytes 4194304";
                      the offline daemons get --upload-window from --upload-windows
  --out FILE          where to write the JSON results (default bench/results/latest.json)
  --help              this text

  npm run bench -- load [flags]: the hardening load script (see npm run bench -- load --help)
`

const positiveInt = (name: string, raw: string | undefined, fallback: number, allowZero = false): number => {
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new Error(`--${name} wants a ${allowZero ? "non-negative" : "positive"} integer, got "${raw}"`)
  return n
}

const words = (s: string | undefined): Array<string> => (s ?? "").split(/\s+/).filter((a) => a.length > 0)

/** Parses the flags; returns undefined after --help. Throws on bad flags. */
export const parseBenchArgs = (argv: ReadonlyArray<string>): BenchArgs | undefined => {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      rounds: { type: "string" },
      size: { type: "string" },
      block: { type: "string" },
      cases: { type: "string" },
      windows: { type: "string" },
      "upload-windows": { type: "string" },
      "download-windows": { type: "string" },
      warmup: { type: "string" },
      "cpu-prof": { type: "boolean" },
      "node-flags": { type: "string" },
      "daemon-args": { type: "string" },
      out: { type: "string" },
      help: { type: "boolean" }
    },
    strict: true
  })
  if (values.help) return undefined
  const numbers = (name: string, raw: string) => [...new Set(raw.split(",").map((w) => positiveInt(name, w.trim(), 1)))]
  const windows = numbers("windows", values.windows ?? "1,16")
  const cases = [...new Set((values.cases ?? "online,offline").split(",").map((c) => c.trim()))]
  for (const c of cases) if (c !== "online" && c !== "offline") throw new Error(`--cases: "${c}" is not online or offline`)
  const daemonArgs = words(values["daemon-args"])
  if (cases.includes("offline") && daemonArgs.some((a) => a === "--upload-window" || a.startsWith("--upload-window="))) {
    throw new Error("--daemon-args: give the offline daemons' upload window with --upload-windows")
  }
  return {
    cases: cases as Array<CaseGroup>,
    uploadWindows: numbers("upload-windows", values["upload-windows"] ?? "1,8"),
    downloadWindows: numbers("download-windows", values["download-windows"] ?? "1,4"),
    rounds: positiveInt("rounds", values.rounds, 3),
    sizeMiB: positiveInt("size", values.size, 256),
    blockKiB: positiveInt("block", values.block, 32),
    windows,
    warmupMiB: positiveInt("warmup", values.warmup, 16, true),
    cpuProf: values["cpu-prof"] ?? false,
    nodeFlags: words(values["node-flags"]),
    daemonArgs,
    out: values.out
  }
}
