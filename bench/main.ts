/**
 * `npm run bench`: online transfers through the daemon and through a bare
 * node:net relay (the ceiling), both as child processes driven by the same
 * SDK client; offline uploads and downloads through the daemon alone (a
 * daemon of its own per --upload-window measured); many 1 MiB transfers at
 * once (bench/concurrent.ts); receivers that stop reading (bench/stall.ts).
 * The cases are interleaved over several rounds. Prints tables of medians
 * and ranges and the issue's targets met or not, and writes every run to
 * bench/results/latest.json.
 *
 * `npm run bench -- load [flags]` runs the hardening load script instead (bench/load.ts).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { randomBytes } from "node:crypto"
import { cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import { defaultSettings } from "../src/server/config.js"
import type { BenchArgs } from "./args.js"
import { concurrentConnections, concurrentDaemonArgs, flagValue, parseBenchArgs, usage, withFlag } from "./args.js"
import type { ConcurrentMeasurement } from "./concurrent.js"
import { concurrentOffline, concurrentOnline } from "./concurrent.js"
import { BenchError } from "./errors.js"
import { gcNodeFlags } from "./gc.js"
import { evaluateGoals, formatGoals, reference } from "./goals.js"
import type { LoadArgs } from "./load.js"
import { loadUsage, parseLoadArgs, runLoad } from "./load.js"
import type { Measurement } from "./online.js"
import { onlineTransfer } from "./online.js"
import { openFilesLimit, rssMiB } from "./procStats.js"
import type { Recorded, RunRecord } from "./report.js"
import { compare, formatConcurrent, formatReport, formatStalls, summarizeCases, summarizeConcurrent, summarizeStalls, writeJson } from "./report.js"
import { offlineDownload, offlineUpload } from "./offline.js"
import { makeSources } from "./smallTransfers.js"
import type { StallMeasurement } from "./stall.js"
import { stalledReceiver } from "./stall.js"
import type { DaemonTarget, Target } from "./targets.js"
import { startBareRelay, startDaemon } from "./targets.js"

const MiB = 1024 * 1024
const resultsDir = fileURLToPath(new URL("../../bench/results/", import.meta.url))
/** The concurrent cases move 1 MiB per transfer, as the issue asks. */
const CONCURRENT_SIZE = MiB
/** Transfers at once in a concurrent case's warm-up. */
const CONCURRENT_WARMUP = 10

/** What one run of a case measured. */
type Outcome =
  | { readonly kind: "transfer"; readonly measurement: Measurement }
  | { readonly kind: "concurrent"; readonly measurement: ConcurrentMeasurement }
  | { readonly kind: "stall"; readonly measurement: StallMeasurement }

interface CaseRun {
  readonly target: Target
  readonly run: Effect.Effect<Outcome, BenchError>
  /** Run once, unmeasured, before round 1. */
  readonly warmup: Effect.Effect<unknown, BenchError> | undefined
}

/** One thing to measure, and the servers it is measured on (each run the same way). */
interface BenchCase {
  readonly name: string
  readonly runs: ReadonlyArray<CaseRun>
  /** Runs in the first this many rounds only (default: every round). */
  readonly rounds?: number
}

/** A server process of this bench, under the label it has in the output. */
interface Server {
  readonly label: string
  readonly target: Target
}

const transfer = (measurement: Measurement): Outcome => ({ kind: "transfer", measurement })

const onlineCases = (args: BenchArgs, source: Buffer, warm: Buffer, targets: ReadonlyArray<Target>, readaheadOff: Target | undefined): Array<BenchCase> =>
  args.windows.flatMap((window) => {
    const options = { window, blockSize: args.blockKiB * 1024 }
    const runOn = (target: Target): CaseRun => ({
      target,
      run: onlineTransfer(target, source, options).pipe(Effect.map(transfer)),
      warmup: onlineTransfer(target, warm, options)
    })
    const cases = [{ name: `online w${window}`, runs: targets.map(runOn) }]
    // The issue's read-ahead-off target is for window 1 only.
    return window === 1 && readaheadOff ? [...cases, { name: "online w1 ra0", runs: [runOn(readaheadOff)] }] : cases
  })

/**
 * Per upload window, an upload to the daemon started with it; then the
 * downloads, from the first of those daemons, of what was uploaded to it (in
 * the same round: the cases of a round run in this order).
 */
const offlineCases = (
  args: BenchArgs,
  source: Buffer,
  warm: Buffer,
  daemons: ReadonlyArray<{ readonly uploadWindow: number; readonly target: DaemonTarget }>
): Array<BenchCase> => [
  ...daemons.map(({ target, uploadWindow }) => ({
    name: `offline upload uw${uploadWindow}`,
    runs: [{ target, run: offlineUpload(target, source).pipe(Effect.map(transfer)), warmup: offlineUpload(target, warm) }]
  })),
  ...args.downloadWindows.map((window) => {
    const target = daemons[0]!.target
    const options = { window, blockSize: args.blockKiB * 1024 }
    return {
      name: `offline download w${window}`,
      runs: [{ target, run: offlineDownload(target, source, options).pipe(Effect.map(transfer)), warmup: offlineDownload(target, warm, options) }]
    }
  })
]

const concurrentCases = (args: BenchArgs, daemon: DaemonTarget, bare: Target): Array<BenchCase> => {
  const sources = makeSources(16, CONCURRENT_SIZE)
  const options = (concurrency: number) => ({ concurrency, window: args.concurrentWindow, sources })
  const warmup = Math.min(...args.concurrency, CONCURRENT_WARMUP)
  const concurrent = (measurement: ConcurrentMeasurement): Outcome => ({ kind: "concurrent", measurement })
  return args.concurrency.flatMap((n) => [
    {
      name: `concurrent online ${n}`,
      rounds: args.concurrentRounds,
      runs: [daemon, bare].map((target) => ({
        target,
        run: concurrentOnline(target, options(n)).pipe(Effect.map(concurrent)),
        warmup: concurrentOnline(target, options(warmup))
      }))
    },
    {
      name: `concurrent offline ${n}`,
      rounds: args.concurrentRounds,
      runs: [{ target: daemon, run: concurrentOffline(daemon, options(n)).pipe(Effect.map(concurrent)), warmup: concurrentOffline(daemon, options(warmup)) }]
    }
  ])
}

const stallCases = (args: BenchArgs, daemon: DaemonTarget): Array<BenchCase> => {
  const setting = (flag: string, fallback: number) => {
    const v = flagValue(args.daemonArgs, flag)
    return v === undefined ? fallback : Number(v)
  }
  const limits = {
    readahead: setting("--online-readahead", defaultSettings.onlineReadahead),
    maxWriteQueueBytes: setting("--max-write-queue-bytes", defaultSettings.maxWriteQueueBytes)
  }
  return args.stallWindows.flatMap((window) =>
    (["online", "offline"] as const).map((mode) => ({
      name: `stall ${mode} w${window}`,
      runs: [
        {
          target: daemon,
          run: stalledReceiver(daemon, { mode, window, blockSize: args.blockKiB * 1024, stallSeconds: args.stallSeconds, ...limits }).pipe(
            Effect.map((measurement): Outcome => ({ kind: "stall", measurement }))
          ),
          warmup: undefined
        }
      ]
    }))
  )
}

const progress = (line: string) => Effect.sync(() => process.stderr.write(line + "\n"))

const describe = (o: Outcome): string => {
  const cost = (m: Measurement | ConcurrentMeasurement) =>
    `server CPU ${m.serverCpuSeconds.toFixed(2)} s (usr ${m.serverUserSeconds.toFixed(2)} + sys ${m.serverSystemSeconds.toFixed(2)}), ` +
    `peak RSS ${m.serverPeakRssMiB.toFixed(0)} MiB, client CPU ${m.clientCpuSeconds.toFixed(2)} s`
  switch (o.kind) {
    case "transfer":
      return `${o.measurement.mibPerSec.toFixed(1)} MiB/s in ${o.measurement.seconds.toFixed(2)} s, ${cost(o.measurement)}`
    case "concurrent": {
      const m = o.measurement
      return (
        `${m.failures}/${m.transfers} failed${m.firstError ? ` (first: ${m.firstError})` : ""}, ${m.mibPerSec.toFixed(1)} MiB/s in ${m.wallSeconds.toFixed(2)} s, ` +
        `p50 ${m.p50Seconds.toFixed(2)} s, p99 ${m.p99Seconds.toFixed(2)} s, ${cost(m)}`
      )
    }
    case "stall": {
      const m = o.measurement
      return (
        `RSS ${m.rssBeforeMiB.toFixed(1)} -> ${m.rssAfterMiB.toFixed(1)} MiB (growth ${m.growthMiB.toFixed(2)}, bound ${m.boundMiB.toFixed(2)} MiB), ` +
        `buffers held ${m.arrayBuffersBeforeMiB.toFixed(2)} -> ${m.arrayBuffersAfterMiB.toFixed(2)} MiB, ${m.answered}/${m.window} answered after` +
        (m.closedByServer ? `, closed by the server (${m.closeMessage})` : "")
      )
    }
  }
}

const when = <A, E, R>(on: boolean, effect: Effect.Effect<A, E, R>): Effect.Effect<A | undefined, E, R> => (on ? effect : Effect.succeed(undefined))

const bench = (args: BenchArgs) =>
  Effect.scoped(
    Effect.gen(function* () {
      const profileDir = `${resultsDir}profiles`
      const nodeFlags = (name: string) => [
        ...args.nodeFlags,
        ...(args.cpuProf ? ["--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", `${name}-${Date.now()}.cpuprofile`] : [])
      ]
      const has = (group: BenchArgs["cases"][number]) => args.cases.includes(group)
      const fdLimit = openFilesLimit()
      if (has("concurrent") && fdLimit !== undefined && fdLimit < concurrentConnections(args) + 256) {
        return yield* new BenchError({ message: `the open-files limit (ulimit -n) is ${fdLimit}: --concurrency ${Math.max(...args.concurrency)} needs about ${concurrentConnections(args) + 256}` })
      }
      const daemon = (label: string, serveArgs: ReadonlyArray<string>, extraNodeFlags: ReadonlyArray<string> = []) =>
        startDaemon({ nodeFlags: [...nodeFlags(label), ...extraNodeFlags], serveArgs })
      const [onlineDaemon, onlineBare, readaheadOff, offlineDaemons, concurrentDaemon, concurrentBare, stallDaemon] = yield* Effect.all(
        [
          when(has("online"), daemon("daemon", args.daemonArgs)),
          when(has("online"), startBareRelay({ nodeFlags: nodeFlags("bare") })),
          when(has("online") && args.windows.includes(1), daemon("daemon-ra0", withFlag(args.daemonArgs, "--online-readahead", "0"))),
          has("offline")
            ? Effect.forEach(args.uploadWindows, (uploadWindow) =>
                daemon(`daemon-offline-uw${uploadWindow}`, [...args.daemonArgs, "--upload-window", String(uploadWindow)]).pipe(
                  Effect.map((target) => ({ uploadWindow, target }))
                )
              )
            : Effect.succeed([]),
          when(has("concurrent"), daemon("daemon-concurrent", concurrentDaemonArgs(args))),
          when(has("concurrent"), startBareRelay({ nodeFlags: nodeFlags("bare-concurrent") })),
          // Forced GCs (bench/gcHook.ts) before each RSS reading of the stall cases.
          when(has("stall"), daemon("daemon-stall", args.daemonArgs, gcNodeFlags))
        ],
        { concurrency: 2 }
      )
      const labelled = (label: string, target: Target | undefined): Array<Server> => (target ? [{ label, target }] : [])
      const servers: Array<Server> = [
        ...labelled("daemon", onlineDaemon),
        ...labelled("bare", onlineBare),
        ...labelled("daemon ra0", readaheadOff),
        ...offlineDaemons.map(({ target, uploadWindow }) => ({ label: `daemon offline uw${uploadWindow}`, target })),
        ...labelled("daemon concurrent", concurrentDaemon),
        ...labelled("bare concurrent", concurrentBare),
        ...labelled("daemon stall", stallDaemon)
      ]
      yield* progress(servers.map((s) => `${s.label} pid ${s.target.process.pid} (client ${s.target.client.port})`).join(", "))
      const rssAtStartMiB = Object.fromEntries(servers.map((s) => [s.label, rssMiB(s.target.process.pid)]))
      const loadAtStart = loadavg()
      const source = randomBytes(args.sizeMiB * MiB)
      const warm = source.subarray(0, Math.min(source.length, args.warmupMiB * MiB))
      const cases = [
        ...(onlineDaemon && onlineBare ? onlineCases(args, source, warm, [onlineDaemon, onlineBare], readaheadOff) : []),
        ...(offlineDaemons.length > 0 ? offlineCases(args, source, warm, offlineDaemons) : []),
        ...(concurrentDaemon && concurrentBare ? concurrentCases(args, concurrentDaemon, concurrentBare) : []),
        ...(stallDaemon ? stallCases(args, stallDaemon) : [])
      ]

      if (args.warmupMiB > 0) {
        for (const c of cases) for (const r of c.runs) if (r.warmup) yield* r.warmup
        const what = [
          ...(has("online") || has("offline") ? [`${warm.length / MiB} MiB per transfer case`] : []),
          ...(has("concurrent") ? [`${Math.min(...args.concurrency, CONCURRENT_WARMUP)} at once per concurrent case`] : [])
        ]
        yield* progress(`warmed up (${what.length > 0 ? what.join(", ") : "nothing to warm up"})`)
      }

      const runs: Array<RunRecord> = []
      const concurrentRuns: Array<Recorded<ConcurrentMeasurement>> = []
      const stallRuns: Array<Recorded<StallMeasurement>> = []
      for (let round = 1; round <= args.rounds; round++) {
        for (const c of cases) {
          if (c.rounds !== undefined && round > c.rounds) continue
          for (const r of c.runs) {
            const outcome = yield* r.run
            const at = { case: c.name, target: r.target.name, round }
            if (outcome.kind === "transfer") runs.push({ ...at, measurement: outcome.measurement })
            else if (outcome.kind === "concurrent") concurrentRuns.push({ ...at, measurement: outcome.measurement })
            else stallRuns.push({ ...at, measurement: outcome.measurement })
            yield* progress(`[round ${round}/${args.rounds}] ${c.name} ${r.target.name}: ${describe(outcome)}`)
          }
        }
      }

      const summaries = summarizeCases(runs)
      const comparisons = compare(runs, summaries)
      const concurrent = summarizeConcurrent(concurrentRuns)
      const stalls = summarizeStalls(stallRuns)
      const targets = evaluateGoals({ cases: summaries, comparisons, concurrent, stalls })
      const problems = Object.fromEntries(servers.map((s) => [s.label, s.target.process.problems()]))
      const out = args.out ?? `${resultsDir}latest.json`
      yield* Effect.promise(() =>
        writeJson(out, {
          meta: {
            date: new Date().toISOString(),
            node: process.version,
            cpus: { count: cpus().length, model: cpus()[0]?.model },
            loadavg: { atStart: loadAtStart, atEnd: loadavg() },
            serverRssAtStartMiB: rssAtStartMiB,
            openFilesLimit: fdLimit,
            cases: args.cases,
            sizeMiB: args.sizeMiB,
            blockKiB: args.blockKiB,
            rounds: args.rounds,
            warmupMiB: args.warmupMiB,
            windows: args.windows,
            ...(has("offline") ? { uploadWindows: args.uploadWindows, downloadWindows: args.downloadWindows } : {}),
            ...(has("concurrent")
              ? { concurrency: args.concurrency, concurrentWindow: args.concurrentWindow, concurrentRounds: Math.min(args.rounds, args.concurrentRounds), concurrentSizeBytes: CONCURRENT_SIZE, concurrentDaemonArgs: concurrentDaemonArgs(args) }
              : {}),
            ...(has("stall") ? { stallWindows: args.stallWindows, stallSeconds: args.stallSeconds } : {}),
            daemonArgs: args.daemonArgs,
            nodeFlags: args.nodeFlags,
            peakRssReset: [...runs, ...concurrentRuns].every((r) => r.measurement.peakRssReset),
            ...(args.cpuProf ? { profileDir } : {})
          },
          cases: summaries,
          comparisons,
          concurrent,
          stalls,
          targets,
          reference,
          runs,
          concurrentRuns,
          stallRuns,
          serverProblems: problems,
          // How many log lines of each kind (with its reason) every server wrote: why logins were refused, connections closed.
          serverMessages: Object.fromEntries(servers.map((s) => [s.label, s.target.process.messageCounts()]))
        })
      )
      yield* Effect.sync(() => {
        const rss = servers.map((s) => `${s.label} ${rssAtStartMiB[s.label]!.toFixed(0)} MiB`).join(", ")
        const load = (l: ReadonlyArray<number>) => l.map((x) => x.toFixed(2)).join(" ")
        const transfers = has("online") || has("offline") ? `, ${args.sizeMiB} MiB per transfer` : ""
        const concurrentRounds = has("concurrent") && args.concurrentRounds < args.rounds ? ` (concurrent: ${args.concurrentRounds})` : ""
        process.stdout.write(`\n${args.cases.join(" + ")}${transfers}, ${args.blockKiB} KiB blocks, ${args.rounds} round(s)${concurrentRounds}; `)
        process.stdout.write(`server RSS at start: ${rss}; load average ${load(loadAtStart)} -> ${load(loadavg())}\n\n`)
        if (summaries.length > 0) process.stdout.write(formatReport(summaries, comparisons) + "\n")
        if (concurrent.length > 0) {
          process.stdout.write(`${CONCURRENT_SIZE / MiB} MiB transfers at once, window ${args.concurrentWindow}, each checked by sha256:\n${formatConcurrent(concurrent)}\n`)
        }
        if (stalls.length > 0) {
          process.stdout.write(`receivers that stop reading for ${args.stallSeconds} s (daemon RSS after a forced GC, then ${args.stallSeconds} s later):\n${formatStalls(stalls)}\n`)
        }
        for (const [name, lines] of Object.entries(problems)) {
          if (lines.length > 0) process.stdout.write(`${name} logged ${lines.length} warning(s)/error(s), e.g.:\n  ${lines.slice(0, 3).join("\n  ")}\n\n`)
        }
        process.stdout.write(formatGoals(targets))
        process.stdout.write(`\nresults: ${out}\n`)
      })
    })
  )

const runMain = <E extends { readonly message: string }>(effect: Effect.Effect<unknown, E>) =>
  NodeRuntime.runMain(
    effect.pipe(Effect.tapError((e) => Effect.sync(() => process.stderr.write(`bench failed: ${e.message}\n`)))),
    {
      disableErrorReporting: true,
      // 0 done, 1 failed, 130 interrupted (Ctrl-C): the children are stopped in every case.
      teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
    }
  )

let args: BenchArgs | undefined
let loadArgs: LoadArgs | undefined
const isLoad = process.argv[2] === "load"
try {
  if (isLoad) loadArgs = parseLoadArgs(process.argv.slice(3))
  else args = parseBenchArgs(process.argv.slice(2))
} catch (e) {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n\n${isLoad ? loadUsage : usage}`)
  process.exit(2)
}
if (isLoad) {
  if (loadArgs === undefined) process.stdout.write(loadUsage)
  // `npm run bench -- load`: the hardening load script (bench/load.ts); exit 1 when a transfer failed.
  else runMain(runLoad(loadArgs).pipe(Effect.flatMap((r) => (r.failed ? Effect.fail(new BenchError({ message: "some transfers failed" })) : Effect.void))))
} else if (args === undefined) {
  process.stdout.write(usage)
} else {
  runMain(bench(args))
}
