/** The bench's command line: `npm run bench -- [flags]`. */
import { parseArgs } from "node:util"
import { defaultSettings } from "../src/server/config.js"

export const caseGroups = ["online", "offline", "concurrent", "stall"] as const
export type CaseGroup = (typeof caseGroups)[number]

export interface BenchArgs {
  /** Which groups of cases to run (see `usage`). */
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
  /** How many 1 MiB transfers run at once in the concurrent cases, one case per value. */
  readonly concurrency: ReadonlyArray<number>
  /** Pull window of the concurrent cases' receivers and downloaders. */
  readonly concurrentWindow: number
  /** The concurrent cases run in the first this many rounds only (they are long). */
  readonly concurrentRounds: number
  /** Pulls a stalled receiver sends before it stops reading, one case per value and mode. */
  readonly stallWindows: ReadonlyArray<number>
  /** How long the stalled receiver stays stalled before the daemon's RSS is read again. */
  readonly stallSeconds: number
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

  --cases LIST        case groups to run, comma-separated (default online,offline,concurrent,stall):
                        online:     online transfers through the daemon and the bare relay; with window 1
                                    also "online w1 ra0", a daemon with --online-readahead 0
                        offline:    upload then download of a stored file, daemon only
                        concurrent: many 1 MiB transfers at once (online: daemon and bare relay;
                                    offline: all uploads at once, then all downloads at once, daemon only)
                        stall:      a receiver (online) and a downloader (offline) that stop reading;
                                    the daemon's RSS growth against its bound
  --rounds N          interleaved rounds of every case (default 3)
  --size MiB          bytes per transfer of the online and offline cases, in MiB (default 256)
  --block KiB         pull size, in KiB (default 32)
  --windows LIST      online pull windows to measure, comma-separated (default 1,16)
  --upload-windows LIST
                      offline: the daemon's --upload-window, one daemon per value (default 1,8)
  --download-windows LIST
                      offline: download pull windows, comma-separated (default 1,4)
  --concurrency LIST  concurrent: transfers at once, one case per value and mode (default 100,1000)
  --concurrent-window N
                      concurrent: pull window of each receiver and downloader (default 1, as TeamTalk clients)
  --concurrent-rounds N
                      concurrent: run in the first N rounds only (default 1: a 1000-transfer case takes minutes)
  --stall-windows LIST
                      stall: pulls sent before the receiver stops reading, one case per value and mode (default 16,256)
  --stall-seconds S   stall: how long the receiver stays stalled before the RSS is read again (default 3)
  --warmup MiB        unmeasured warm-up transfer per online/offline case before round 1 (default 16, 0 for none);
                      the concurrent cases warm up with 10 transfers at once, the stall cases not at all
  --quick             a short run: --rounds 1 --size 32 --warmup 4 --concurrency 100 --stall-windows 16
                      (flags given explicitly win)
  --cpu-prof          run the servers under node --cpu-prof (profiles in bench/results/profiles/)
  --node-flags=STR    extra flags for node in every server, e.g. --node-flags=--perf-basic-prof (for perf record -p PID)
  --daemon-args=STR   extra flags for the daemon's serve command (every daemon), e.g. --daemon-args="--max-frame-bytes 4194304";
                      the offline daemons get --upload-window from --upload-windows, the "ra0" daemon --online-readahead 0,
                      the concurrent daemon --delete-after-download and --max-connections-per-ip (unless given here)
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
      concurrency: { type: "string" },
      "concurrent-window": { type: "string" },
      "concurrent-rounds": { type: "string" },
      "stall-windows": { type: "string" },
      "stall-seconds": { type: "string" },
      warmup: { type: "string" },
      quick: { type: "boolean" },
      "cpu-prof": { type: "boolean" },
      "node-flags": { type: "string" },
      "daemon-args": { type: "string" },
      out: { type: "string" },
      help: { type: "boolean" }
    },
    strict: true
  })
  if (values.help) return undefined
  const quick = values.quick ?? false
  const numbers = (name: string, raw: string) => [...new Set(raw.split(",").map((w) => positiveInt(name, w.trim(), 1)))]
  const windows = numbers("windows", values.windows ?? "1,16")
  const cases = [...new Set((values.cases ?? caseGroups.join(",")).split(",").map((c) => c.trim()))]
  for (const c of cases) if (!(caseGroups as ReadonlyArray<string>).includes(c)) throw new Error(`--cases: "${c}" is not one of ${caseGroups.join(", ")}`)
  const daemonArgs = words(values["daemon-args"])
  if (cases.includes("offline") && flagValue(daemonArgs, "--upload-window") !== undefined) {
    throw new Error("--daemon-args: give the offline daemons' upload window with --upload-windows")
  }
  return {
    cases: cases as Array<CaseGroup>,
    uploadWindows: numbers("upload-windows", values["upload-windows"] ?? "1,8"),
    downloadWindows: numbers("download-windows", values["download-windows"] ?? "1,4"),
    concurrency: numbers("concurrency", values.concurrency ?? (quick ? "100" : "100,1000")),
    concurrentWindow: positiveInt("concurrent-window", values["concurrent-window"], 1),
    concurrentRounds: positiveInt("concurrent-rounds", values["concurrent-rounds"], 1),
    stallWindows: numbers("stall-windows", values["stall-windows"] ?? (quick ? "16" : "16,256")),
    stallSeconds: positiveInt("stall-seconds", values["stall-seconds"], 3),
    rounds: positiveInt("rounds", values.rounds, quick ? 1 : 3),
    sizeMiB: positiveInt("size", values.size, quick ? 32 : 256),
    blockKiB: positiveInt("block", values.block, 32),
    windows,
    warmupMiB: positiveInt("warmup", values.warmup, quick ? 4 : 16, true),
    cpuProf: values["cpu-prof"] ?? false,
    nodeFlags: words(values["node-flags"]),
    daemonArgs,
    out: values.out
  }
}

/** The value of `flag` in a serve command line (`--flag V` or `--flag=V`; the last one wins), "" for a bare boolean flag. */
export const flagValue = (args: ReadonlyArray<string>, flag: string): string | undefined => {
  let value: string | undefined
  args.forEach((a, i) => {
    if (a.startsWith(`${flag}=`)) value = a.slice(flag.length + 1)
    else if (a === flag) value = args[i + 1] === undefined || args[i + 1]!.startsWith("--") ? "" : args[i + 1]
  })
  return value
}

/** The command line with `flag` set to `value` (any earlier setting of it removed); a boolean flag has no value. */
export const withFlag = (args: ReadonlyArray<string>, flag: string, value?: string): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a.startsWith(`${flag}=`)) continue
    if (a === flag) {
      if (args[i + 1] !== undefined && !args[i + 1]!.startsWith("--")) i++
      continue
    }
    out.push(a)
  }
  return value === undefined ? [...out, flag] : [...out, flag, value]
}

/** Connections the concurrent cases open at once from 127.0.0.1 (a sender and a receiver per online transfer), with room to spare. */
export const concurrentConnections = (args: Pick<BenchArgs, "concurrency">): number => 2 * Math.max(...args.concurrency) + 64

/**
 * The concurrent daemon's serve flags: all clients come from one address, so
 * it allows them all (unless --daemon-args says otherwise), and it deletes
 * each stored file once downloaded, so the offline cases leave no GiBs behind.
 */
export const concurrentDaemonArgs = (args: Pick<BenchArgs, "concurrency" | "daemonArgs">): Array<string> => {
  const needed = concurrentConnections(args)
  let serve = [...args.daemonArgs]
  if (flagValue(serve, "--max-connections-per-ip") === undefined) serve = withFlag(serve, "--max-connections-per-ip", String(Math.max(defaultSettings.maxConnectionsPerIp, needed)))
  if (flagValue(serve, "--max-connections") === undefined && needed > defaultSettings.maxConnections) serve = withFlag(serve, "--max-connections", String(needed))
  if (flagValue(serve, "--delete-after-download") === undefined) serve = withFlag(serve, "--delete-after-download")
  return serve
}
