/**
 * `npm run bench`: online transfers through the daemon and through a bare
 * node:net relay (the ceiling), both as child processes driven by the same
 * SDK client, and offline uploads and downloads through the daemon alone (a
 * daemon of its own per --upload-window measured), interleaved over several
 * rounds. Prints a table of medians and ranges and writes every run to
 * bench/results/latest.json.
 *
 * `npm run bench -- load [flags]` runs the hardening load script instead (bench/load.ts).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { randomBytes } from "node:crypto"
import { cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import type { BenchArgs } from "./args.js"
import { parseBenchArgs, usage } from "./args.js"
import { BenchError } from "./errors.js"
import type { LoadArgs } from "./load.js"
import { loadUsage, parseLoadArgs, runLoad } from "./load.js"
import type { Measurement } from "./online.js"
import { onlineTransfer } from "./online.js"
import { rssMiB } from "./procStats.js"
import type { RunRecord } from "./report.js"
import { compare, formatReport, summarizeCases, writeJson } from "./report.js"
import { offlineDownload, offlineUpload } from "./offline.js"
import type { DaemonTarget, Target } from "./targets.js"
import { startBareRelay, startDaemon } from "./targets.js"

const MiB = 1024 * 1024
const resultsDir = fileURLToPath(new URL("../../bench/results/", import.meta.url))

/** One thing to measure, and the servers it is measured on (each run the same way). */
interface BenchCase {
  readonly name: string
  readonly runs: ReadonlyArray<{ readonly target: Target; readonly run: (source: Buffer) => Effect.Effect<Measurement, BenchError> }>
}

/** A server process of this bench, under the label it has in the output. */
interface Server {
  readonly label: string
  readonly target: Target
}

const onlineCases = (args: BenchArgs, targets: ReadonlyArray<Target>): Array<BenchCase> =>
  args.windows.map((window) => ({
    name: `online w${window}`,
    runs: targets.map((target) => ({ target, run: (source: Buffer) => onlineTransfer(target, source, { window, blockSize: args.blockKiB * 1024 }) }))
  }))

/**
 * Per upload window, an upload to the daemon started with it; then the
 * downloads, from the first of those daemons, of what was uploaded to it (in
 * the same round: the cases of a round run in this order).
 */
const offlineCases = (args: BenchArgs, daemons: ReadonlyArray<{ readonly uploadWindow: number; readonly target: DaemonTarget }>): Array<BenchCase> => [
  ...daemons.map(({ target, uploadWindow }) => ({
    name: `offline upload uw${uploadWindow}`,
    runs: [{ target, run: (source: Buffer) => offlineUpload(target, source) }]
  })),
  ...args.downloadWindows.map((window) => ({
    name: `offline download w${window}`,
    runs: [{ target: daemons[0]!.target, run: (source: Buffer) => offlineDownload(daemons[0]!.target, source, { window, blockSize: args.blockKiB * 1024 }) }]
  }))
]

const progress = (line: string) => Effect.sync(() => process.stderr.write(line + "\n"))

const describe = (m: Measurement) =>
  `${m.mibPerSec.toFixed(1)} MiB/s in ${m.seconds.toFixed(2)} s, server CPU ${m.serverCpuSeconds.toFixed(2)} s (usr ${m.serverUserSeconds.toFixed(2)} + sys ${m.serverSystemSeconds.toFixed(2)}), ` +
  `peak RSS ${m.serverPeakRssMiB.toFixed(0)} MiB, client CPU ${m.clientCpuSeconds.toFixed(2)} s`

const bench = (args: BenchArgs) =>
  Effect.scoped(
    Effect.gen(function* () {
      const profileDir = `${resultsDir}profiles`
      const nodeFlags = (name: string) => [
        ...args.nodeFlags,
        ...(args.cpuProf ? ["--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", `${name}-${Date.now()}.cpuprofile`] : [])
      ]
      const online = args.cases.includes("online")
      const offline = args.cases.includes("offline")
      const [onlineTargets, offlineDaemons] = yield* Effect.all(
        [
          online
            ? Effect.all(
                [startDaemon({ nodeFlags: nodeFlags("daemon"), serveArgs: args.daemonArgs }), startBareRelay({ nodeFlags: nodeFlags("bare") })],
                { concurrency: 2 }
              )
            : Effect.succeed([]),
          offline
            ? Effect.forEach(
                args.uploadWindows,
                (uploadWindow) =>
                  startDaemon({
                    nodeFlags: nodeFlags(`daemon-offline-uw${uploadWindow}`),
                    serveArgs: [...args.daemonArgs, "--upload-window", String(uploadWindow)]
                  }).pipe(Effect.map((target) => ({ uploadWindow, target }))),
                { concurrency: "unbounded" }
              )
            : Effect.succeed([])
        ],
        { concurrency: 2 }
      )
      const servers: Array<Server> = [
        ...onlineTargets.map((target) => ({ label: target.name, target })),
        ...offlineDaemons.map(({ target, uploadWindow }) => ({ label: `daemon offline uw${uploadWindow}`, target }))
      ]
      const cases = [...(online ? onlineCases(args, onlineTargets) : []), ...(offline ? offlineCases(args, offlineDaemons) : [])]
      yield* progress(servers.map((s) => `${s.label} pid ${s.target.process.pid} (client ${s.target.client.port})`).join(", "))
      const rssAtStartMiB = Object.fromEntries(servers.map((s) => [s.label, rssMiB(s.target.process.pid)]))
      const loadAtStart = loadavg()
      const source = randomBytes(args.sizeMiB * MiB)

      if (args.warmupMiB > 0) {
        const warm = source.subarray(0, Math.min(source.length, args.warmupMiB * MiB))
        for (const c of cases) for (const r of c.runs) yield* r.run(warm)
        yield* progress(`warmed up with ${warm.length / MiB} MiB per case`)
      }

      const runs: Array<RunRecord> = []
      for (let round = 1; round <= args.rounds; round++) {
        for (const c of cases) {
          for (const r of c.runs) {
            const measurement = yield* r.run(source)
            runs.push({ case: c.name, target: r.target.name, round, measurement })
            yield* progress(`[round ${round}/${args.rounds}] ${c.name} ${r.target.name}: ${describe(measurement)}`)
          }
        }
      }

      const summaries = summarizeCases(runs)
      const comparisons = compare(runs, summaries)
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
            cases: args.cases,
            sizeMiB: args.sizeMiB,
            blockKiB: args.blockKiB,
            rounds: args.rounds,
            warmupMiB: args.warmupMiB,
            windows: args.windows,
            ...(offline ? { uploadWindows: args.uploadWindows, downloadWindows: args.downloadWindows } : {}),
            daemonArgs: args.daemonArgs,
            nodeFlags: args.nodeFlags,
            peakRssReset: runs.every((r) => r.measurement.peakRssReset),
            ...(args.cpuProf ? { profileDir } : {})
          },
          cases: summaries,
          comparisons,
          runs,
          serverProblems: problems
        })
      )
      yield* Effect.sync(() => {
        const rss = servers.map((s) => `${s.label} ${rssAtStartMiB[s.label]!.toFixed(0)} MiB`).join(", ")
        const load = (l: ReadonlyArray<number>) => l.map((x) => x.toFixed(2)).join(" ")
        process.stdout.write(`\n${args.sizeMiB} MiB ${args.cases.join(" + ")}, ${args.blockKiB} KiB blocks, ${args.rounds} round(s); `)
        process.stdout.write(`server RSS at start: ${rss}; load average ${load(loadAtStart)} -> ${load(loadavg())}\n\n`)
        process.stdout.write(formatReport(summaries, comparisons))
        for (const [name, lines] of Object.entries(problems)) {
          if (lines.length > 0) process.stdout.write(`\n${name} logged ${lines.length} warning(s)/error(s), e.g.:\n  ${lines.slice(0, 3).join("\n  ")}\n`)
        }
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
