/**
 * `npm run bench -- load`: the hardening load script (not a test).
 *
 * 1. Load run (--seconds, default 60) against one daemon child process:
 *    --online (500) online and --offline (500) offline 1 MiB transfers kept
 *    running at once (task created on the msg port, connect, login, move
 *    1 MiB through the SDK, sha256 of what arrived checked against the
 *    source; when one ends the next starts), --idle (200) connections that
 *    never log in (a heartbeat every 20 s; the server's login deadline closes
 *    them, they reconnect: counted as reconnects, not failures), and one
 *    fuzzing client sending garbage on fresh connections. Prints completed
 *    and failed transfers, p50/p99 transfer time, the daemon's peak RSS
 *    (VmHWM) and its RSS ~10 s after the load ends.
 * 2. Task-leak run (--leak-tasks, default 100000) against a fresh daemon:
 *    that many tasks created on the msg port (pipelined, --leak-in-flight at
 *    once) and never used; RSS before, at peak, and after they expire.
 *
 * Both daemons run with --task-timeout 5s. Results: bench/results/load.json.
 */
import { Duration, Effect, Either, Fiber } from "effect"
import { randomBytes } from "node:crypto"
import { connect as netConnect } from "node:net"
import { cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as Client from "../src/client/index.js"
import { FileRole, FileCmd, OtherCmd, ServiceId, TransferMode } from "../src/protocol/commands.js"
import { encodeFrame } from "../src/protocol/frame.js"
import { encodePdu, Pdu } from "../src/protocol/messages.js"
import type { BenchError } from "./errors.js"
import { fail } from "./errors.js"
import { forcedGc, gcNodeFlags } from "./gc.js"
import { createTaskId, openMsgPipe } from "./msgPipe.js"
import { alive, cpuTimes, peakRssMiB, resetPeakRss, rssMiB } from "./procStats.js"
import { writeJson } from "./report.js"
import type { TransferCtx } from "./smallTransfers.js"
import { errorKind, makeSources, offlineOnce, onlineOnce } from "./smallTransfers.js"
import { percentile } from "./stats.js"
import type { Address, DaemonTarget } from "./targets.js"
import { startDaemon } from "./targets.js"

const MiB = 1024 * 1024
const resultsDir = fileURLToPath(new URL("../../bench/results/", import.meta.url))
const TASK_TIMEOUT = "5s"
const TASK_TIMEOUT_MS = 5000
/** The daemons run with bench/gcHook.ts preloaded, for forced GCs. */
const daemonNodeFlags = gcNodeFlags

// ---------------------------------------------------------------- arguments

export interface LoadArgs {
  readonly seconds: number
  readonly leakTasks: number
  readonly online: number
  readonly offline: number
  readonly idle: number
  readonly window: number
  readonly leakInFlight: number
  readonly leakRounds: number
  /** --task-timeout of the load run's daemon, in seconds (the leak run's is always 5 s). */
  readonly loadTaskTimeout: number
  readonly leakMode: "mixed" | "online" | "offline"
  readonly sizeBytes: number
  readonly settleSeconds: number
  readonly out: string
}

export const loadUsage = `Usage: npm run bench -- load [flags]

  --seconds N         length of the load run (default 60; 0 skips it)
  --leak-tasks N      unused tasks of the task-leak run (default 100000; 0 skips it)
  --online N          online 1 MiB transfers kept running at once (default 500)
  --offline N         offline 1 MiB transfers (upload then download) kept running at once (default 500)
  --idle N            idle connections that never log in (default 200)
  --window N          pull window of the receivers and downloaders (default 4)
  --leak-in-flight N  TRANSFER_REQs in flight at once in the leak run (default 1000)
  --load-task-timeout S
                      the load daemon's --task-timeout in seconds (default 60, the daemon's own default; the leak daemon's is always 5)
  --leak-rounds N     leak rounds on the same daemon, each waiting for expiry (default 1)
  --leak-mode M       mixed (default: alternate), online or offline tasks in the leak run
  --size-kib N        bytes per transfer in KiB (default 1024)
  --settle N          seconds to wait after each run before the "after" RSS (default 10)
  --out FILE          JSON results (default bench/results/load.json)
  --help              this text
`

const int = (name: string, raw: string | undefined, fallback: number, min = 0): number => {
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} wants an integer >= ${min}, got "${raw}"`)
  return n
}

export const parseLoadArgs = (argv: ReadonlyArray<string>): LoadArgs | undefined => {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seconds: { type: "string" },
      "leak-tasks": { type: "string" },
      online: { type: "string" },
      offline: { type: "string" },
      idle: { type: "string" },
      window: { type: "string" },
      "leak-in-flight": { type: "string" },
      "leak-rounds": { type: "string" },
      "load-task-timeout": { type: "string" },
      "leak-mode": { type: "string" },
      "size-kib": { type: "string" },
      settle: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean" }
    },
    strict: true
  })
  if (values.help) return undefined
  const leakMode = values["leak-mode"] ?? "mixed"
  if (leakMode !== "mixed" && leakMode !== "online" && leakMode !== "offline") throw new Error(`--leak-mode: "${leakMode}" is not mixed, online or offline`)
  return {
    loadTaskTimeout: int("load-task-timeout", values["load-task-timeout"], 60, 1),
    leakRounds: int("leak-rounds", values["leak-rounds"], 1, 1),
    leakMode,
    seconds: int("seconds", values.seconds, 60),
    leakTasks: int("leak-tasks", values["leak-tasks"], 100_000),
    online: int("online", values.online, 500),
    offline: int("offline", values.offline, 500),
    idle: int("idle", values.idle, 200),
    window: int("window", values.window, 4, 1),
    leakInFlight: int("leak-in-flight", values["leak-in-flight"], 1000, 1),
    sizeBytes: int("size-kib", values["size-kib"], 1024, 1) * 1024,
    settleSeconds: int("settle", values.settle, 10),
    out: values.out ?? `${resultsDir}load.json`
  }
}

// ---------------------------------------------------------------- helpers

const progress = (line: string) => Effect.sync(() => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`))
interface KindStats {
  started: number
  completed: number
  failed: number
  readonly ms: Array<number>
  readonly errors: Array<string>
  /** Failures by message, task ids and numbers masked. */
  readonly errorKinds: Record<string, number>
}

const newStats = (): KindStats => ({ started: 0, completed: 0, failed: 0, ms: [], errors: [], errorKinds: {} })

const TRANSFER_TIMEOUT = Duration.seconds(90)

/** `workers` loops, each running one transfer after another until the deadline. */
const keepRunning = (
  workers: number,
  deadline: () => number,
  stats: KindStats,
  nextIndex: () => number,
  once: (i: number) => Effect.Effect<void, BenchError>,
  staggerMs: number
) =>
  Effect.forEach(
    Array.from({ length: workers }, (_, k) => k),
    (k) =>
      Effect.gen(function* () {
        yield* Effect.sleep(Duration.millis(k * staggerMs))
        while (Date.now() < deadline()) {
          const i = nextIndex()
          stats.started++
          const t0 = performance.now()
          const r = yield* Effect.either(
            once(i).pipe(Effect.timeoutFail({ duration: TRANSFER_TIMEOUT, onTimeout: () => fail(`transfer ${i} did not finish in ${Duration.format(TRANSFER_TIMEOUT)}`) }))
          )
          if (Either.isRight(r)) {
            stats.completed++
            stats.ms.push(performance.now() - t0)
          } else {
            stats.failed++
            if (stats.errors.length < 20) stats.errors.push(r.left.message)
            const kind = errorKind(r.left.message)
            stats.errorKinds[kind] = (stats.errorKinds[kind] ?? 0) + 1
          }
        }
      }),
    { concurrency: "unbounded", discard: true }
  )

// ---------------------------------------------------------------- idle connections

interface IdleStats {
  connects: number
  reconnects: number
  errors: number
  readonly errorSamples: Array<string>
}

/** Connects, heartbeats every 20 s, never logs in; when the server closes it, reconnects. */
const idleConnection = (client: Address, stats: IdleStats) =>
  Effect.forever(
    Effect.scoped(
      Effect.gen(function* () {
        const sock = yield* Client.connect(client)
        stats.connects++
        yield* Client.keepAlive(sock, Duration.seconds(20))
        for (;;) yield* sock.receive
      })
    ).pipe(
      Effect.catchAll((e) =>
        Effect.sync(() => {
          if (e.reason === "Closed") stats.reconnects++
          else {
            stats.errors++
            if (stats.errorSamples.length < 10) stats.errorSamples.push(`[${e.reason}] ${e.message}`)
          }
        }).pipe(Effect.zipRight(e.reason === "Closed" ? Effect.void : Effect.sleep(Duration.millis(500))))
      )
    )
  )

// ---------------------------------------------------------------- fuzzer

interface FuzzStats {
  connections: number
  bytesSent: number
  closedByServer: number
  answered: number
  connectErrors: number
  readonly byCase: Record<string, number>
}

const HEADER = 16
const FUZZ_PARALLEL = 4
const rnd = (n: number) => Math.floor(Math.random() * n)

const rawHeader = (length: number, serviceId: number, commandId: number, seq: number) => {
  const b = Buffer.alloc(HEADER)
  b.writeUInt32BE(length >>> 0, 0)
  b.writeUInt16BE(1, 4)
  b.writeUInt16BE(0, 6)
  b.writeUInt16BE(serviceId & 0xffff, 8)
  b.writeUInt16BE(commandId & 0xffff, 10)
  b.writeUInt16BE(seq & 0xffff, 12)
  return b
}

const knownClientCommands = [
  [ServiceId.File, FileCmd.LoginReq],
  [ServiceId.File, FileCmd.State],
  [ServiceId.File, FileCmd.PullDataReq],
  [ServiceId.File, FileCmd.PullDataRsp],
  [ServiceId.Other, OtherCmd.HeartBeat],
  [ServiceId.Other, OtherCmd.FileTransferReq]
] as const

/** One hostile payload: which case, and whether it goes to the msg port. */
const fuzzPayload = (): { readonly name: string; readonly bytes: Buffer; readonly msg: boolean } => {
  switch (rnd(9)) {
    case 0:
      return { name: "random bytes", bytes: randomBytes(1 + rnd(4096)), msg: false }
    case 1:
      return { name: "length < 16", bytes: Buffer.concat([rawHeader(rnd(16), rnd(65536), rnd(65536), rnd(65536)), randomBytes(rnd(64))]), msg: false }
    case 2:
      return { name: "length > max", bytes: Buffer.concat([rawHeader(0x200001 + rnd(0xffdfffff), ServiceId.File, FileCmd.PullDataRsp, 1), randomBytes(rnd(8192))]), msg: false }
    case 3:
      return { name: "random ids", bytes: encodeFrame(rnd(65536), rnd(65536), rnd(65536), randomBytes(rnd(512))), msg: false }
    case 4: {
      const [s, c] = knownClientCommands[rnd(knownClientCommands.length)]!
      return { name: "known command, garbage body", bytes: encodeFrame(s, c, rnd(65536), randomBytes(rnd(256))), msg: false }
    }
    case 5: {
      const parts = Array.from({ length: 2 + rnd(6) }, () => {
        const [s, c] = knownClientCommands[rnd(knownClientCommands.length)]!
        return rnd(3) === 0 ? rawHeader(rnd(16), s, c, 1) : encodeFrame(s, c, rnd(65536), randomBytes(rnd(128)))
      })
      return { name: "several bad PDUs in one write", bytes: Buffer.concat(parts), msg: false }
    }
    case 6: {
      const taskId = rnd(2) === 0 ? `../../${randomBytes(4).toString("hex")}` : randomBytes(18).toString("base64")
      return {
        name: "login to a bogus task",
        bytes: encodePdu(Pdu.LoginReq, 1, { userId: rnd(1000), taskId, fileRole: (1 + rnd(4)) as FileRole }),
        msg: false
      }
    }
    case 7: {
      const full = encodeFrame(ServiceId.File, FileCmd.PullDataReq, 1, randomBytes(64))
      return { name: "truncated frame", bytes: full.subarray(0, 1 + rnd(full.length - 1)), msg: false }
    }
    default:
      return {
        name: "msg port: garbage TRANSFER_REQ",
        bytes: encodeFrame(ServiceId.Other, OtherCmd.FileTransferReq, rnd(65536), randomBytes(rnd(256))),
        msg: true
      }
  }
}

/** Sends one payload on a fresh connection, waits up to 300 ms for an answer or a close, then hangs up. */
const fuzzOnce = (client: Address, msg: Address, stats: FuzzStats) =>
  Effect.async<void>((resume) => {
    const p = fuzzPayload()
    const addr = p.msg ? msg : client
    const s = netConnect({ host: addr.host, port: addr.port })
    let timer: NodeJS.Timeout | undefined
    let settled = false
    let connected = false
    let answered = false
    const done = (byServer: boolean) => {
      if (settled) return
      settled = true
      if (byServer && connected) stats.closedByServer++
      if (timer) clearTimeout(timer)
      s.destroy()
      resume(Effect.void)
    }
    s.on("error", () => {
      if (!connected) stats.connectErrors++
      done(true)
    })
    s.on("data", () => {
      if (!answered) stats.answered++
      answered = true
    })
    s.on("close", () => done(true))
    s.on("end", () => done(true))
    s.once("connect", () => {
      connected = true
      stats.connections++
      stats.byCase[p.name] = (stats.byCase[p.name] ?? 0) + 1
      stats.bytesSent += p.bytes.length
      s.write(p.bytes)
      timer = setTimeout(() => done(false), 300)
    })
    return Effect.sync(() => done(false))
  })

// ---------------------------------------------------------------- RSS sampling

const sampleRss = (pid: number, into: Array<{ t: number; rssMiB: number }>, t0: number, everyMs: number) =>
  Effect.sync(() => {
    if (alive(pid)) into.push({ t: Math.round((Date.now() - t0) / 100) / 10, rssMiB: Math.round(rssMiB(pid) * 10) / 10 })
  }).pipe(Effect.zipRight(Effect.sleep(Duration.millis(everyMs))), Effect.forever, Effect.fork)

const daemonArgs = ["--task-timeout", TASK_TIMEOUT]

// ---------------------------------------------------------------- load run

const loadRun = (args: LoadArgs) =>
  Effect.scoped(
    Effect.gen(function* () {
      const loadDaemonArgs = ["--task-timeout", `${args.loadTaskTimeout}s`]
      const daemon: DaemonTarget = yield* startDaemon({ serveArgs: loadDaemonArgs, nodeFlags: daemonNodeFlags })
      const lag = monitorEventLoopDelay({ resolution: 20 })
      lag.enable()
      const pid = daemon.process.pid
      const msg = { host: daemon.client.host, port: daemon.process.ports.msg! }
      yield* progress(`load: daemon pid ${pid}, client port ${daemon.client.port}, msg port ${msg.port}; ${args.online} online + ${args.offline} offline transfers of ${args.sizeBytes / 1024} KiB, ${args.idle} idle connections, 1 fuzzer, ${args.seconds} s`)
      yield* Effect.sleep(Duration.seconds(1))
      const rssBefore = rssMiB(pid)
      const peakReset = resetPeakRss(pid)
      const pipe = yield* openMsgPipe(msg)
      const ctx: TransferCtx = { client: daemon.client, createTask: createTaskId(pipe), sources: makeSources(16, args.sizeBytes), window: args.window, size: args.sizeBytes }

      const t0 = Date.now()
      const deadline = t0 + args.seconds * 1000
      const samples: Array<{ t: number; rssMiB: number }> = []
      const sampler = yield* sampleRss(pid, samples, t0, 1000)
      const idle: IdleStats = { connects: 0, reconnects: 0, errors: 0, errorSamples: [] }
      const fuzz: FuzzStats = { connections: 0, bytesSent: 0, closedByServer: 0, answered: 0, connectErrors: 0, byCase: {} }
      const idleFiber = yield* Effect.forEach(
        Array.from({ length: args.idle }, (_, k) => k),
        (k) => Effect.sleep(Duration.millis(k * 5)).pipe(Effect.zipRight(idleConnection(daemon.client, idle))),
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.fork)
      // One fuzzing client, FUZZ_PARALLEL of its connections open at a time.
      const fuzzFiber = yield* Effect.forEach(Array.from({ length: FUZZ_PARALLEL }), () => fuzzOnce(daemon.client, msg, fuzz).pipe(Effect.forever), {
        concurrency: "unbounded",
        discard: true
      }).pipe(Effect.fork)
      const online = newStats()
      const offline = newStats()
      let index = 0
      const nextIndex = () => index++
      const reporter = yield* Effect.suspend(() =>
        progress(
          `  ${Math.round((Date.now() - t0) / 1000)} s: online ${online.completed} done/${online.failed} failed, offline ${offline.completed}/${offline.failed}, ` +
            `idle ${idle.connects} connects/${idle.reconnects} reconnects/${idle.errors} errors, fuzz ${fuzz.connections} conns, daemon RSS ${alive(pid) ? rssMiB(pid).toFixed(0) : "DEAD"} MiB`
        )
      ).pipe(Effect.delay(Duration.seconds(10)), Effect.forever, Effect.fork)

      yield* Effect.all(
        [
          keepRunning(args.online, () => deadline, online, nextIndex, (i) => onlineOnce(ctx, i), 4),
          keepRunning(args.offline, () => deadline, offline, nextIndex, (i) => offlineOnce(ctx, i), 4)
        ],
        { concurrency: 2, discard: true }
      )
      const drainedAfter = (Date.now() - t0) / 1000
      lag.disable()
      const benchLoopDelayMs = { p50: lag.percentile(50) / 1e6, p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 }
      yield* Fiber.interrupt(fuzzFiber)
      yield* Fiber.interrupt(idleFiber)
      yield* Fiber.interrupt(reporter)
      const daemonAlive = alive(pid)
      const peak = daemonAlive ? peakRssMiB(pid) : Number.NaN
      const rssAtEnd = daemonAlive ? rssMiB(pid) : Number.NaN
      yield* progress(`load: transfers drained ${drainedAfter.toFixed(1)} s after start; waiting ${args.settleSeconds} s for expiry`)
      yield* Effect.sleep(Duration.seconds(args.settleSeconds))
      const rssAfter = alive(pid) ? rssMiB(pid) : Number.NaN
      const gcAfter = yield* forcedGc(daemon)
      const rssAfterGc = alive(pid) ? rssMiB(pid) : Number.NaN
      // Still serving? One more online and one offline transfer.
      const sanity = yield* Effect.either(
        Effect.all([onlineOnce(ctx, 1_000_000_000), offlineOnce(ctx, 1_000_000_001)], { discard: true }).pipe(
          Effect.timeoutFail({ duration: Duration.seconds(30), onTimeout: () => fail("sanity transfers timed out") })
        )
      )
      yield* Fiber.interrupt(sampler)
      const all = [...online.ms, ...offline.ms].sort((a, b) => a - b)
      const summarizeKind = (s: KindStats) => {
        const sorted = [...s.ms].sort((a, b) => a - b)
        return { started: s.started, completed: s.completed, failed: s.failed, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted[sorted.length - 1] ?? Number.NaN, errors: s.errors, errorKinds: s.errorKinds }
      }
      return {
        seconds: args.seconds,
        drainedAfterSeconds: drainedAfter,
        concurrency: { online: args.online, offline: args.offline, idle: args.idle, fuzzers: 1 },
        sizeBytes: args.sizeBytes,
        window: args.window,
        daemonArgs: loadDaemonArgs,
        benchLoopDelayMs,
        transfers: {
          completed: online.completed + offline.completed,
          failed: online.failed + offline.failed,
          p50Ms: percentile(all, 50),
          p99Ms: percentile(all, 99),
          mibMoved: ((online.completed + 2 * offline.completed) * args.sizeBytes) / MiB,
          online: summarizeKind(online),
          offline: summarizeKind(offline)
        },
        idle,
        fuzz,
        daemon: {
          pid,
          aliveAtEnd: daemonAlive,
          rssBeforeMiB: rssBefore,
          peakRssMiB: peak,
          peakRssReset: peakReset,
          rssAtLoadEndMiB: rssAtEnd,
          rssAfterSettleMiB: rssAfter,
          heapUsedAfterSettleAndGcMiB: gcAfter?.heapUsedMiB ?? Number.NaN,
          rssAfterGcMiB: rssAfterGc,
          settleSeconds: args.settleSeconds,
          rssSamples: samples,
          problems: daemon.process.problems(),
          logMessages: daemon.process.messageCounts()
        },
        sanityAfterLoad: Either.isRight(sanity) ? "ok" : sanity.left.message
      }
    })
  )

// ---------------------------------------------------------------- task-leak run

const leakRun = (args: LoadArgs) =>
  Effect.scoped(
    Effect.gen(function* () {
      const daemon = yield* startDaemon({ serveArgs: daemonArgs, nodeFlags: daemonNodeFlags })
      const pid = daemon.process.pid
      const msg = { host: daemon.client.host, port: daemon.process.ports.msg! }
      yield* progress(`leak: daemon pid ${pid}; ${args.leakRounds} round(s) of ${args.leakTasks} unused ${args.leakMode} tasks, ${args.leakInFlight} in flight`)
      const pipe = yield* openMsgPipe(msg)
      // Warm the daemon up a little (one task), then let it settle for the baseline.
      yield* pipe.createTask({ fromUserId: 1, toUserId: 2, fileName: "warm.bin", fileSize: 1, mode: TransferMode.Online })
      yield* Effect.sleep(Duration.seconds(TASK_TIMEOUT_MS / 1000 + 3))
      const rssBefore = rssMiB(pid)
      const gcBefore = yield* forcedGc(daemon)
      const rssBeforeAfterGc = rssMiB(pid)
      const peakReset = resetPeakRss(pid)
      const t0 = Date.now()
      const samples: Array<{ t: number; rssMiB: number }> = []
      const sampler = yield* sampleRss(pid, samples, t0, 250)
      const rounds: Array<Record<string, unknown>> = []
      let refused = 0
      const refusedCodes: Record<string, number> = {}
      for (let round = 1; round <= args.leakRounds; round++) {
        if (round > 1) resetPeakRss(pid)
        const r0 = Date.now()
        const cpu0 = cpuTimes(pid)
        const clientCpu0 = process.cpuUsage()
        const base = (round - 1) * args.leakTasks
        yield* Effect.forEach(
          Array.from({ length: args.leakTasks }, (_, i) => base + i),
          (i) =>
            pipe
              .createTask({
                fromUserId: 2 * i + 1,
                toUserId: 2 * i + 2,
                fileName: `leak-${i}.bin`,
                fileSize: MiB,
                mode: args.leakMode === "online" ? TransferMode.Online : args.leakMode === "offline" ? TransferMode.Offline : i % 2 === 0 ? TransferMode.Online : TransferMode.Offline
              })
              .pipe(
                Effect.tap((rsp) =>
                  Effect.sync(() => {
                    if (rsp.resultCode !== 0 || !rsp.taskId) {
                      refused++
                      refusedCodes[rsp.resultCode] = (refusedCodes[rsp.resultCode] ?? 0) + 1
                    }
                  })
                )
              ),
          { concurrency: args.leakInFlight, discard: true }
        )
        const createdIn = (Date.now() - r0) / 1000
        const cpu1 = cpuTimes(pid)
        const clientCpu = process.cpuUsage(clientCpu0)
        const daemonCpuSeconds = Math.round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 100) / 100
        const clientCpuSeconds = Math.round((clientCpu.user + clientCpu.system) / 1e4) / 100
        const rssAtCreated = rssMiB(pid)
        yield* progress(`leak round ${round}: ${args.leakTasks} tasks answered in ${createdIn.toFixed(1)} s (${refused} refused so far); RSS now ${rssAtCreated.toFixed(0)} MiB, waiting for expiry`)
        yield* Effect.sleep(Duration.millis(TASK_TIMEOUT_MS + args.settleSeconds * 1000))
        const rssAfter = rssMiB(pid)
        const peak = peakRssMiB(pid)
        const gcAfter = yield* forcedGc(daemon)
        const rssAfterGc = rssMiB(pid)
        const row = {
          round,
          createdInSeconds: createdIn,
          tasksPerSecond: args.leakTasks / createdIn,
          daemonCpuSeconds,
          clientCpuSeconds,
          rssWhenAllCreatedMiB: rssAtCreated,
          peakRssMiB: peak,
          rssAfterExpiryMiB: rssAfter,
          heapUsedAfterExpiryAndGcMiB: gcAfter?.heapUsedMiB ?? Number.NaN,
          externalAfterExpiryAndGcMiB: gcAfter?.externalMiB ?? Number.NaN,
          rssAfterGcMiB: rssAfterGc
        }
        rounds.push(row)
        yield* progress(`leak round ${round}: peak ${peak.toFixed(0)} MiB, RSS ${rssAfter.toFixed(0)} MiB after expiry, heap used after GC ${gcAfter?.heapUsedMiB.toFixed(1) ?? "n/a"} MiB, RSS after GC ${rssAfterGc.toFixed(0)} MiB`)
      }
      yield* Fiber.interrupt(sampler)
      // The daemon must still create tasks after all that.
      const check = yield* Effect.either(pipe.createTask({ fromUserId: 1, toUserId: 2, fileName: "after.bin", fileSize: 1, mode: TransferMode.Online }))
      return {
        tasksPerRound: args.leakTasks,
        rounds: args.leakRounds,
        mode: args.leakMode,
        inFlight: args.leakInFlight,
        taskTimeout: TASK_TIMEOUT,
        settleSeconds: args.settleSeconds,
        refused,
        refusedCodes,
        daemon: {
          pid,
          aliveAtEnd: alive(pid),
          rssBeforeMiB: rssBefore,
          heapUsedBeforeMiB: gcBefore?.heapUsedMiB ?? Number.NaN,
          rssBeforeAfterGcMiB: rssBeforeAfterGc,
          peakRssReset: peakReset,
          rounds,
          rssSamples: samples,
          problems: daemon.process.problems(),
          logMessages: daemon.process.messageCounts()
        },
        createAfterExpiry: Either.isRight(check) ? (check.right.resultCode === 0 ? "ok" : `result ${check.right.resultCode}`) : check.left.message
      }
    })
  )

// ---------------------------------------------------------------- main

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a")

export const runLoad = (args: LoadArgs) =>
  Effect.gen(function* () {
    const startedAt = new Date().toISOString()
    const loadAtStart = loadavg()
    const load = args.seconds > 0 ? yield* loadRun(args) : undefined
    const leak = args.leakTasks > 0 ? yield* leakRun(args) : undefined
    yield* Effect.promise(() =>
      writeJson(args.out, {
        meta: { date: startedAt, node: process.version, cpus: { count: cpus().length, model: cpus()[0]?.model }, loadavg: { atStart: loadAtStart, atEnd: loadavg() }, args },
        load,
        leak
      })
    )
    const out: Array<string> = [""]
    if (load) {
      const t = load.transfers
      out.push(
        `LOAD ${load.seconds} s: ${load.concurrency.online} online + ${load.concurrency.offline} offline ${args.sizeBytes / 1024} KiB transfers at once, ${load.concurrency.idle} idle connections, 1 fuzzer (daemon ${load.daemonArgs.join(" ")})`,
        `  transfers: ${t.completed} completed, ${t.failed} failed (online ${t.online.completed}/${t.online.failed}, offline up+down ${t.offline.completed}/${t.offline.failed}); ${fmt(t.mibMoved)} MiB through the daemon; drained ${fmt(load.drainedAfterSeconds, 1)} s after start`,
        `  transfer time: p50 ${fmt(t.p50Ms / 1000, 2)} s, p99 ${fmt(t.p99Ms / 1000, 2)} s (online p50 ${fmt(t.online.p50Ms / 1000, 2)} / p99 ${fmt(t.online.p99Ms / 1000, 2)} s; offline p50 ${fmt(t.offline.p50Ms / 1000, 2)} / p99 ${fmt(t.offline.p99Ms / 1000, 2)} s)`,
        `  idle: ${load.idle.connects} connects, ${load.idle.reconnects} reconnects after the server closed them, ${load.idle.errors} errors`,
        `  fuzz: ${load.fuzz.connections} connections, ${(load.fuzz.bytesSent / MiB).toFixed(1)} MiB sent, ${load.fuzz.closedByServer} closed by the server, ${load.fuzz.answered} answered, ${load.fuzz.connectErrors} connect errors`,
        `  daemon RSS: ${fmt(load.daemon.rssBeforeMiB)} MiB before, peak (VmHWM) ${fmt(load.daemon.peakRssMiB)} MiB, ${fmt(load.daemon.rssAtLoadEndMiB)} MiB at the end, ${fmt(load.daemon.rssAfterSettleMiB)} MiB ${load.daemon.settleSeconds} s later (after a forced GC: heap used ${fmt(load.daemon.heapUsedAfterSettleAndGcMiB, 1)} MiB, RSS ${fmt(load.daemon.rssAfterGcMiB)} MiB); alive: ${load.daemon.aliveAtEnd}`,
        `  transfers after the load: ${load.sanityAfterLoad}`
      )
      out.push(`  bench client event-loop delay: p50 ${fmt(load.benchLoopDelayMs.p50)} ms, p99 ${fmt(load.benchLoopDelayMs.p99)} ms, max ${fmt(load.benchLoopDelayMs.max)} ms`)
      const errors = [...t.online.errors, ...t.offline.errors]
      if (errors.length > 0) {
        out.push(`  FAILURES, first ${Math.min(5, errors.length)}:`, ...errors.slice(0, 5).map((e) => `    ${e}`))
        const kinds = [...Object.entries(t.online.errorKinds), ...Object.entries(t.offline.errorKinds)].sort((a, b) => b[1] - a[1])
        out.push(`  failures by kind:`, ...kinds.slice(0, 10).map(([k, n]) => `    ${n} x ${k}`))
      }
      if (load.idle.errorSamples.length > 0) out.push(`  idle errors, e.g.:`, ...load.idle.errorSamples.slice(0, 3).map((e) => `    ${e}`))
      const refusals = Object.entries(load.daemon.logMessages).filter(([k]) => /refused|error|failed|timeout|closed/i.test(k) && !k.startsWith("task creation refused: malformed"))
      if (refusals.length > 0) out.push(`  daemon log, refusals/errors by reason:`, ...refusals.sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, n]) => `    ${n} x ${k.slice(0, 200)}`))
      if (load.daemon.problems.length > 0) out.push(`  daemon logged ${load.daemon.problems.length}+ warnings/errors, e.g.:`, ...load.daemon.problems.slice(0, 3).map((l) => `    ${l.slice(0, 400)}`))
    }
    if (leak) {
      const d = leak.daemon
      out.push(
        `TASK LEAK: ${leak.rounds} round(s) of ${leak.tasksPerRound} unused ${leak.mode} tasks (${leak.inFlight} TRANSFER_REQs in flight, task timeout ${leak.taskTimeout}), ${leak.refused} refused`,
        `  daemon before: RSS ${fmt(d.rssBeforeMiB)} MiB, heap used after a forced GC ${fmt(d.heapUsedBeforeMiB, 1)} MiB`
      )
      for (const r of d.rounds as Array<Record<string, number>>) {
        out.push(
          `  round ${r["round"]}: answered in ${fmt(r["createdInSeconds"]!, 1)} s (${fmt(r["tasksPerSecond"]!)} /s, daemon CPU ${fmt(r["daemonCpuSeconds"]!, 1)} s, bench CPU ${fmt(r["clientCpuSeconds"]!, 1)} s); RSS ${fmt(r["rssWhenAllCreatedMiB"]!)} MiB when all answered, peak ${fmt(r["peakRssMiB"]!)} MiB ` +
            `(${fmt(((r["peakRssMiB"]! - d.rssBeforeMiB) * MiB) / leak.tasksPerRound)} B per task), ${fmt(r["rssAfterExpiryMiB"]!)} MiB after expiry (+${leak.settleSeconds} s); ` +
            `forced GC: heap used ${fmt(r["heapUsedAfterExpiryAndGcMiB"]!, 1)} MiB, RSS ${fmt(r["rssAfterGcMiB"]!)} MiB`
        )
      }
      out.push(`  alive: ${d.aliveAtEnd}; a new task after expiry: ${leak.createAfterExpiry}`)
      if (d.problems.length > 0) out.push(`  daemon logged ${d.problems.length}+ warnings/errors, e.g.:`, ...d.problems.slice(0, 3).map((l) => `    ${l.slice(0, 400)}`))
    }
    out.push(``, `results: ${args.out}`, ``)
    yield* Effect.sync(() => process.stdout.write(out.join("\n")))
    return { failed: (load?.transfers.failed ?? 0) > 0 }
  })
