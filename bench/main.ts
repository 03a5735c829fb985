/**
 * `npm run bench`: online transfers through the daemon and through a bare
 * node:net relay (the ceiling), both as child processes driven by the same
 * SDK client, interleaved over several rounds. Prints a table of medians and
 * ranges and writes every run to bench/results/latest.json.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { randomBytes } from "node:crypto"
import { cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import type { BenchArgs } from "./args.js"
import { parseBenchArgs, usage } from "./args.js"
import type { BenchError } from "./errors.js"
import type { Measurement } from "./online.js"
import { onlineTransfer } from "./online.js"
import { rssMiB } from "./procStats.js"
import type { RunRecord } from "./report.js"
import { compare, formatReport, summarizeCases, writeJson } from "./report.js"
import type { Target } from "./targets.js"
import { startBareRelay, startDaemon } from "./targets.js"

const MiB = 1024 * 1024
const resultsDir = fileURLToPath(new URL("../../bench/results/", import.meta.url))

/** One thing to measure, run the same way against every target. */
interface BenchCase {
  readonly name: string
  readonly run: (target: Target, source: Buffer) => Effect.Effect<Measurement, BenchError>
}

const onlineCases = (args: BenchArgs): Array<BenchCase> =>
  args.windows.map((window) => ({
    name: `online w${window}`,
    run: (target, source) => onlineTransfer(target, source, { window, blockSize: args.blockKiB * 1024 })
  }))

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
      const [daemon, bare] = yield* Effect.all(
        [startDaemon({ nodeFlags: nodeFlags("daemon"), serveArgs: args.daemonArgs }), startBareRelay({ nodeFlags: nodeFlags("bare") })],
        { concurrency: 2 }
      )
      const targets = [daemon, bare]
      const cases = onlineCases(args)
      yield* progress(`daemon pid ${daemon.process.pid} (client ${daemon.client.port}, msg ${daemon.process.ports.msg}), bare relay pid ${bare.process.pid} (${bare.client.port})`)
      const rssAtStartMiB = Object.fromEntries(targets.map((t) => [t.name, rssMiB(t.process.pid)]))
      const loadAtStart = loadavg()
      const source = randomBytes(args.sizeMiB * MiB)

      if (args.warmupMiB > 0) {
        const warm = source.subarray(0, Math.min(source.length, args.warmupMiB * MiB))
        for (const c of cases) for (const t of targets) yield* c.run(t, warm)
        yield* progress(`warmed up with ${warm.length / MiB} MiB per case`)
      }

      const runs: Array<RunRecord> = []
      for (let round = 1; round <= args.rounds; round++) {
        for (const c of cases) {
          for (const t of targets) {
            const measurement = yield* c.run(t, source)
            runs.push({ case: c.name, target: t.name, round, measurement })
            yield* progress(`[round ${round}/${args.rounds}] ${c.name} ${t.name}: ${describe(measurement)}`)
          }
        }
      }

      const summaries = summarizeCases(runs)
      const comparisons = compare(runs, summaries)
      const problems = Object.fromEntries(targets.map((t) => [t.name, t.process.problems()]))
      const out = args.out ?? `${resultsDir}latest.json`
      yield* Effect.promise(() =>
        writeJson(out, {
          meta: {
            date: new Date().toISOString(),
            node: process.version,
            cpus: { count: cpus().length, model: cpus()[0]?.model },
            loadavg: { atStart: loadAtStart, atEnd: loadavg() },
            serverRssAtStartMiB: rssAtStartMiB,
            sizeMiB: args.sizeMiB,
            blockKiB: args.blockKiB,
            rounds: args.rounds,
            warmupMiB: args.warmupMiB,
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
        const rss = targets.map((t) => `${t.name} ${rssAtStartMiB[t.name]!.toFixed(0)} MiB`).join(", ")
        const load = (l: ReadonlyArray<number>) => l.map((x) => x.toFixed(2)).join(" ")
        process.stdout.write(`\n${args.sizeMiB} MiB online, ${args.blockKiB} KiB blocks, ${args.rounds} round(s); `)
        process.stdout.write(`server RSS at start: ${rss}; load average ${load(loadAtStart)} -> ${load(loadavg())}\n\n`)
        process.stdout.write(formatReport(summaries, comparisons))
        for (const [name, lines] of Object.entries(problems)) {
          if (lines.length > 0) process.stdout.write(`\n${name} logged ${lines.length} warning(s)/error(s), e.g.:\n  ${lines.slice(0, 3).join("\n  ")}\n`)
        }
        process.stdout.write(`\nresults: ${out}\n`)
      })
    })
  )

let args: BenchArgs | undefined
try {
  args = parseBenchArgs(process.argv.slice(2))
} catch (e) {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n\n${usage}`)
  process.exit(2)
}
if (args === undefined) {
  process.stdout.write(usage)
} else {
  NodeRuntime.runMain(
    bench(args).pipe(
      Effect.tapError((e) => Effect.sync(() => process.stderr.write(`bench failed: ${e.message}\n`)))
    ),
    {
      disableErrorReporting: true,
      // 0 done, 1 failed, 130 interrupted (Ctrl-C): the children are stopped in every case.
      teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
    }
  )
}
