/**
 * Fuzzing a live, in-process server (issue 4, item 4). Three fast-check
 * properties, one server each, reused across all runs of its property:
 *
 *   1. arbitrary byte streams, randomly chunked, sometimes behind a valid
 *      header, on new connections to the client port and the msg port;
 *   2. well-framed PDUs with random service/command ids (biased to the ones the
 *      server handles) and random bodies (garbage, or real messages with
 *      missing, out-of-range or byte-mutated fields);
 *   3. valid sessions (online: create, sender + receiver, pulls, DONE; offline:
 *      create, upload, download) with one field mutated (user id, task id,
 *      offset, size, seq, role, state, mode, result code) or cut at a random
 *      step (one socket destroyed, then the rest).
 *
 * After every run, once the fuzz connections are closed: the task registry,
 * the process's open file descriptors and (when the test server exposes it)
 * the server's open connections return to what they were before the run; and
 * every HEALTH_EVERY runs, plus once at the end, the server still completes a
 * normal online transfer and a normal offline upload + download through the
 * SDK (sha256-checked). Whatever the server writes must always be well framed;
 * an unmutated, uncut session must succeed and deliver the exact bytes.
 *
 * Environment: FUZZ_RUNS / FUZZ_SEED override the run counts and seed (e.g. for a
 * longer soak), FUZZ_HEALTH_EVERY the health-check period (default 10), and
 * FUZZ_STATS=1 prints how the sessions of property 3 ended.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { randomBytes, randomUUID } from "node:crypto"
import { readdirSync } from "node:fs"
import { connect as netConnect } from "node:net"
import * as Client from "../../src/client/index.js"
import { FileCmd, FileRole, FileState, OtherCmd, ServiceId, TransferMode } from "../../src/protocol/commands.js"
import type { Frame } from "../../src/protocol/frame.js"
import { encodeFrame, FrameDecoder } from "../../src/protocol/frame.js"
import { HEADER_BYTES, PDU_VERSION, writeHeader } from "../../src/protocol/header.js"
import { encodePdu, isPdu, Pdu } from "../../src/protocol/messages.js"
import type { RawConn } from "../support/raw.js"
import { decodeAs, rawConnect, sha256 } from "../support/raw.js"
import { sliceAt } from "../protocol/wire.js"
import type { TestServer } from "../support/server.js"
import { createTask, startServer } from "../support/server.js"

// ---- Settings -------------------------------------------------------------------------

const TASK_TIMEOUT_MS = 300
const SETTLE_MS = 3000
const HEALTH_EVERY = Number(process.env.FUZZ_HEALTH_EVERY ?? 10)
const runs = (n: number) => Number(process.env.FUZZ_RUNS ?? n)
const seedParam = process.env.FUZZ_SEED !== undefined ? { seed: Number(process.env.FUZZ_SEED) } : {}
const fcParams = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns: runs(numRuns),
  // Shrinking a failure re-runs the property against the live server: bound it.
  interruptAfterTimeLimit: 40_000,
  markInterruptAsFailure: false,
  ...seedParam
})

const serverSettings = {
  taskTimeoutMs: TASK_TIMEOUT_MS,
  loginTimeoutMs: 2000,
  // Small enough that an offline upload/download of the session property takes a few segments.
  uploadSegment: 16 * 1024
}

const FROM = 1001
const TO = 2002

const KNOWN: ReadonlyArray<{ readonly serviceId: number; readonly commandId: number }> = [
  Pdu.LoginReq,
  Pdu.LoginRes,
  Pdu.State,
  Pdu.PullDataReq,
  Pdu.PullDataRsp,
  Pdu.HeartBeat,
  Pdu.TransferReq,
  Pdu.ServerIpReq
]

// ---- Observing the server --------------------------------------------------------------

const openFds = () => readdirSync("/proc/self/fd").length

/** Open connections per port, from the test server's `openConnections` (a number or per-port counts), if it has one. */
type ConnCounts = Readonly<Record<string, number>>
const openConnectionsOf = (server: TestServer): (() => ConnCounts) | undefined => {
  const f = (server as unknown as { readonly openConnections?: unknown }).openConnections
  if (typeof f !== "function") return undefined
  return () => {
    const v: unknown = f.call(server)
    if (typeof v === "number") return { all: v }
    if (typeof v === "object" && v !== null) {
      return Object.fromEntries(Object.entries(v).filter((e): e is [string, number] => typeof e[1] === "number"))
    }
    throw new Error(`openConnections returned ${String(v)}`)
  }
}

interface Counts {
  readonly tasks: number
  readonly fds: number
  readonly conns: ConnCounts | undefined
}

const counts = (server: TestServer): Counts => ({
  tasks: server.registry.size(),
  fds: openFds(),
  conns: openConnectionsOf(server)?.()
})

const connsWithin = (now: ConnCounts | undefined, base: ConnCounts | undefined) =>
  now === undefined || base === undefined || Object.entries(now).every(([k, v]) => v <= (base[k] ?? 0))

const within = (now: Counts, base: Counts) => now.tasks <= base.tasks && now.fds <= base.fds && connsWithin(now.conns, base.conns)

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Waits until the counts are back to `base` (or below); throws with both when they are not in time. */
const settleTo = async (server: TestServer, base: Counts, what: string) => {
  const deadline = Date.now() + SETTLE_MS
  let held = 0
  for (;;) {
    const now = counts(server)
    // Back, and still back a moment later (a connection being accepted shows up late).
    if (within(now, base)) {
      if (++held >= 2) return
      await sleep(30)
      continue
    }
    held = 0
    if (Date.now() > deadline) {
      const phases = server.registry.snapshots().map((t) => `${t.mode === TransferMode.Online ? "online" : "offline"}:${t.phase}`)
      throw new Error(`${what}: not back to baseline after ${SETTLE_MS} ms: before ${JSON.stringify(base)}, now ${JSON.stringify(now)}; tasks ${phases.join(", ")}`)
    }
    await sleep(20)
  }
}

/** The counts before a run: what they settle to (the previous run's leftovers, if any, are that run's failure, not this one's). */
const baselineFor = async (server: TestServer, floor: Counts): Promise<Counts> => {
  const deadline = Date.now() + SETTLE_MS
  for (;;) {
    const now = counts(server)
    if (within(now, floor) || Date.now() > deadline) return now
    await sleep(20)
  }
}

/** Throws if `bytes` (everything the server wrote on one connection) is not a sequence of well-framed PDUs (a trailing partial frame is allowed: we may have cut it). */
const checkWellFramed = (bytes: Buffer, where: string) => {
  const out: Array<Frame> = []
  const error = new FrameDecoder(64 * 1024 * 1024).push(bytes, out)
  if (error) throw new Error(`the server wrote a bad frame on ${where}: ${error.message}`)
  for (const f of out) {
    if (f.raw.readUInt16BE(4) !== PDU_VERSION) throw new Error(`the server wrote version ${f.raw.readUInt16BE(4)} on ${where}`)
  }
}

// ---- The health check: a normal online and offline transfer through the SDK --------------

const healthCheck = (server: TestServer) =>
  Effect.scoped(
    Effect.gen(function* () {
      // Online, 40 000 bytes (two 32 KiB pulls).
      const data = randomBytes(40_000)
      const taskId = yield* createTask(server, { fromUserId: 11, toUserId: 12, fileName: "health.bin", fileSize: data.length, mode: TransferMode.Online })
      const sender = yield* Client.connect(server.client)
      const receiver = yield* Client.connect(server.client)
      yield* Client.login(sender, { taskId, userId: 11, role: FileRole.Sender })
      yield* Client.login(receiver, { taskId, userId: 12, role: FileRole.Receiver })
      const sink = Client.memorySink()
      const [served, pulled] = yield* Effect.all(
        [
          Client.serveFile(sender, { taskId, userId: 11, source: Client.sourceFromBuffer(data) }),
          Client.receiveFile(receiver, { taskId, userId: 12, sink, size: data.length, window: 2 })
        ],
        { concurrency: 2 }
      )
      if (served.finalState !== FileState.Done) throw new Error(`online sender ended with state ${served.finalState}`)
      if (pulled.bytes !== data.length || sha256(sink.bytes()) !== sha256(data)) throw new Error("online transfer delivered the wrong bytes")

      // Offline, 50 000 bytes.
      const file = randomBytes(50_000)
      const offId = yield* createTask(server, { fromUserId: 21, toUserId: 22, fileName: "health-off.bin", fileSize: file.length, mode: TransferMode.Offline })
      const up = yield* Client.connect(server.client)
      const stored = yield* Client.uploadFile(up, { taskId: offId, userId: 21, source: Client.sourceFromBuffer(file) })
      if (stored.finalState !== FileState.Done) throw new Error(`offline upload ended with state ${stored.finalState}`)
      const down = yield* Client.connect(server.client)
      const got = Client.memorySink()
      const fetched = yield* Client.downloadFile(down, { taskId: offId, userId: 22, sink: got, size: file.length, window: 2 })
      if (fetched.bytes !== file.length || sha256(got.bytes()) !== sha256(file)) throw new Error("offline download delivered the wrong bytes")
    })
  ).pipe(
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the health-check transfers did not complete in 10 s") }),
    Effect.mapError((e) => (e instanceof Error ? e : new Error(String(e))))
  )

const runHealthCheck = (server: TestServer, label: string) =>
  Effect.runPromise(healthCheck(server)).catch((e: unknown) => {
    throw new Error(`${label}: the server no longer completes normal transfers: ${e instanceof Error ? e.message : String(e)}`)
  })

/**
 * Runs one fuzz case and the after-run checks. `exercise` must leave no
 * connection of its own open when its promise settles.
 */
const makeHarness = (server: TestServer, floor: Counts) => {
  let n = 0
  return async (label: string, exercise: () => Promise<void>) => {
    n++
    const before = await baselineFor(server, floor)
    await exercise()
    await settleTo(server, before, `${label} (run ${n})`)
    if (n % HEALTH_EVERY === 0) {
      await runHealthCheck(server, `${label} (run ${n})`)
      await settleTo(server, before, `${label} (health check after run ${n})`)
    }
  }
}

/** Starts the server for one property and records its idle counts (after one warm-up transfer). */
const serverUnderTest = Effect.gen(function* () {
  const server = yield* startServer(serverSettings)
  // Warm up (lazy modules, the store's directories), then take the idle counts as the floor.
  yield* Effect.promise(() => runHealthCheck(server, "warm-up"))
  const floor = yield* Effect.promise(async () => {
    const deadline = Date.now() + SETTLE_MS
    while (server.registry.size() > 0 && Date.now() < deadline) await sleep(20)
    await sleep(100)
    return counts(server)
  })
  expect(floor.tasks).toBe(0)
  if (floor.conns !== undefined) expect(Object.values(floor.conns).every((v) => v === 0)).toBe(true)
  return { server, floor }
})

/** The end of a property: one more health check and the counts back to the floor. */
const finalCheck = (server: TestServer, floor: Counts) =>
  Effect.promise(async () => {
    await runHealthCheck(server, "after all runs")
    await settleTo(server, floor, "after all runs")
  })

const assertProperty = <T>(property: fc.IAsyncProperty<T>, numRuns: number) =>
  Effect.tryPromise({
    try: () => fc.assert(property, fcParams(numRuns) as fc.Parameters<T>),
    catch: (e) => (e instanceof Error ? e : new Error(String(e)))
  })

// ---- Raw byte connections (property 1 and 2) -------------------------------------------

/**
 * Opens a connection, writes `chunks` (pausing `gapMs` between them), then
 * ends it as told; returns everything the server wrote. Never rejects on
 * socket errors (the server may reset us at any point): those are expected.
 */
const blast = (
  address: { readonly host: string; readonly port: number },
  chunks: ReadonlyArray<Buffer>,
  gapMs: number,
  ending: "destroy" | "end" | "linger"
): Promise<Buffer> =>
  new Promise((resolve) => {
    const received: Array<Buffer> = []
    const s = netConnect({ host: address.host, port: address.port, noDelay: true })
    let done = false
    let timer: NodeJS.Timeout | undefined
    const finish = () => {
      if (done) return
      done = true
      if (timer) clearTimeout(timer)
      s.destroy()
      resolve(Buffer.concat(received))
    }
    s.on("data", (b: Buffer) => received.push(b))
    s.on("error", () => finish())
    s.on("close", () => finish())
    s.once("connect", async () => {
      for (const c of chunks) {
        if (done || s.destroyed) return
        s.write(c)
        if (gapMs > 0) await sleep(gapMs)
      }
      if (done) return
      if (ending === "destroy") {
        // Let the server read (and maybe answer) what was sent, then cut.
        timer = setTimeout(finish, 15)
      } else if (ending === "end") {
        s.end()
        timer = setTimeout(finish, 100)
      } else {
        timer = setTimeout(finish, 60)
      }
    })
  })

/** Cuts `bytes` at the given points (taken modulo its length), in order. */
const chunked = (bytes: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> => {
  if (bytes.length === 0) return []
  return sliceAt(bytes, [...new Set(cuts.map((c) => c % bytes.length))].filter((p) => p > 0).sort((a, b) => a - b))
}

const header = (length: number, serviceId: number, commandId: number, seq: number) => {
  const b = Buffer.alloc(HEADER_BYTES)
  writeHeader(b, { length, version: PDU_VERSION, flag: 0, serviceId, commandId, seq, reserved: 0 })
  return b
}

// ---- Arbitraries -----------------------------------------------------------------------

const portArb = fc.constantFrom<"client" | "msg">("client", "msg")
const endingArb = fc.constantFrom<"destroy" | "end" | "linger">("destroy", "end", "linger")
const cutsArb = fc.array(fc.nat({ max: 100_000 }), { maxLength: 6 })
const u32 = fc.oneof(
  fc.constantFrom(0, 1, FROM, TO, 0x7fffffff, 0xffffffff, 32768, 34816),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.nat({ max: 100_000 })
)
const u16 = fc.oneof(fc.constantFrom(0, 1, 0xffff), fc.integer({ min: 0, max: 0xffff }))
const idArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KNOWN) },
  {
    weight: 1,
    arbitrary: fc.record({
      serviceId: fc.oneof(fc.constantFrom(ServiceId.File, ServiceId.Other), u16),
      commandId: fc.oneof(fc.constantFrom(...Object.values(FileCmd), ...Object.values(OtherCmd)), u16)
    })
  }
)

/** A prefix that is a valid header announcing 16..300 bytes of a known PDU. */
const validHeaderArb = fc
  .tuple(fc.constantFrom(...KNOWN), fc.integer({ min: HEADER_BYTES, max: 300 }), u16)
  .map(([t, length, seq]) => header(length, t.serviceId, t.commandId, seq))

const byteStreamArb = fc.record({
  port: portArb,
  prefix: fc.option(validHeaderArb, { nil: undefined, freq: 2 }),
  bytes: fc.uint8Array({ maxLength: 1500 }),
  cuts: cutsArb,
  gapMs: fc.constantFrom(0, 0, 1, 5),
  ending: endingArb
})

const taskIdArb = fc.oneof(
  fc.constant(""),
  fc.constant("../../../../etc/passwd"),
  fc.constant("00000000-0000-4000-8000-000000000000"),
  fc.uuid(),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 10 })
)
const enumArb = fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constantFrom(-1, 0x7fffffff))
const opt = <A>(a: fc.Arbitrary<A>) => fc.option(a, { nil: undefined, freq: 8 })
const bytesArb = fc.uint8Array({ maxLength: 600 })

/** A real message of `type` with fields random, out of range or (sometimes) missing. */
const messageArb = (type: { readonly serviceId: number; readonly commandId: number }): fc.Arbitrary<Record<string, unknown>> => {
  const rec = (fields: Record<string, fc.Arbitrary<unknown>>) =>
    fc.record(Object.fromEntries(Object.entries(fields).map(([k, a]) => [k, opt(a)]))).map((r) =>
      Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined))
    )
  if (isPdu(type, Pdu.LoginReq)) return rec({ userId: u32, taskId: taskIdArb, fileRole: enumArb })
  if (isPdu(type, Pdu.LoginRes)) return rec({ resultCode: u32, taskId: taskIdArb })
  if (isPdu(type, Pdu.State)) return rec({ state: enumArb, taskId: taskIdArb, userId: u32 })
  if (isPdu(type, Pdu.PullDataReq)) return rec({ taskId: taskIdArb, userId: u32, transMode: enumArb, offset: u32, dataSize: u32 })
  if (isPdu(type, Pdu.PullDataRsp)) return rec({ resultCode: u32, taskId: taskIdArb, userId: u32, offset: u32, fileData: bytesArb })
  if (isPdu(type, Pdu.TransferReq)) {
    return rec({
      fromUserId: u32,
      toUserId: u32,
      fileName: fc.oneof(fc.string({ maxLength: 30 }), fc.constant("../x")),
      fileSize: fc.oneof(fc.nat({ max: 200_000 }), u32),
      transMode: enumArb,
      attachData: bytesArb
    })
  }
  return fc.constant({})
}

const typeOf = (t: { readonly serviceId: number; readonly commandId: number }) =>
  [Pdu.LoginReq, Pdu.LoginRes, Pdu.State, Pdu.PullDataReq, Pdu.PullDataRsp, Pdu.HeartBeat, Pdu.TransferReq, Pdu.ServerIpReq].find((p) => isPdu(t, p))

/** Byte-level damage to an encoded body. */
const bodyMutationArb = fc.oneof(
  fc.constant({ kind: "none" as const }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("append" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 20 }) })
)
type BodyMutation = typeof bodyMutationArb extends fc.Arbitrary<infer A> ? A : never

const mutateBody = (body: Uint8Array, m: BodyMutation): Uint8Array => {
  switch (m.kind) {
    case "none":
      return body
    case "truncate":
      return body.subarray(0, body.length === 0 ? 0 : m.at % body.length)
    case "flip": {
      if (body.length === 0) return body
      const b = Buffer.from(body)
      const i = m.at % b.length
      b[i] = b[i]! ^ m.xor
      return b
    }
    case "append":
      return Buffer.concat([body, m.bytes])
  }
}

const pduArb = idArb.chain((id) => {
  const type = typeOf(id)
  const garbage = fc.uint8Array({ maxLength: 400 }).map((b) => ({ id, body: b as Uint8Array }))
  if (type === undefined) return fc.tuple(garbage, u16).map(([p, seq]) => ({ ...p, seq }))
  const real = fc.tuple(messageArb(id), bodyMutationArb).map(([msg, m]) => {
    let body: Uint8Array
    try {
      body = type.encodeBody(msg as never)
    } catch {
      body = new Uint8Array(0)
    }
    return { id, body: mutateBody(body, m) }
  })
  return fc.tuple(fc.oneof({ weight: 1, arbitrary: garbage }, { weight: 3, arbitrary: real }), u16).map(([p, seq]) => ({ ...p, seq }))
})

const pduStreamArb = fc.record({
  port: portArb,
  pdus: fc.array(pduArb, { minLength: 1, maxLength: 8 }),
  cuts: cutsArb,
  gapMs: fc.constantFrom(0, 0, 2),
  ending: endingArb
})

// ---- Sessions with one mutated field (property 3) --------------------------------------

type Field = "userId" | "taskId" | "offset" | "size" | "seq" | "role" | "state" | "mode" | "result"
const FIELDS: ReadonlyArray<Field> = ["userId", "taskId", "offset", "size", "seq", "role", "state", "mode", "result"]

type NumChange = { readonly kind: "delta"; readonly d: number } | { readonly kind: "abs"; readonly v: number }
type StrChange = "empty" | "traversal" | "other" | "flip" | "suffix" | "upper"

interface Mutation {
  readonly field: Field
  /** Which use of the field (0 = the first) is changed. */
  readonly at: number
  readonly num: NumChange
  readonly str: StrChange
}

const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  field: fc.constantFrom(...FIELDS),
  at: fc.oneof({ weight: 3, arbitrary: fc.nat({ max: 2 }) }, { weight: 1, arbitrary: fc.nat({ max: 12 }) }),
  num: fc.oneof(
    fc.record({ kind: fc.constant("delta" as const), d: fc.constantFrom(-32768, -1024, -2, -1, 1, 2, 1024, 32768, 100_000) }),
    fc.record({ kind: fc.constant("abs" as const), v: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, FROM, TO, 0xffff, 0xffffffff), fc.nat()) })
  ),
  str: fc.constantFrom<StrChange>("empty", "traversal", "other", "flip", "suffix", "upper")
})

const NUM_FIELD_MAX: Record<Field, number> = {
  userId: 0xffffffff,
  taskId: 0,
  offset: 0xffffffff,
  size: 0xffffffff,
  seq: 0xffff,
  role: 0x7fffffff,
  state: 0x7fffffff,
  mode: 0x7fffffff,
  result: 0xffffffff
}

/** Hands out field values, changing the `at`-th use of the mutated field. */
class Mutator {
  private readonly uses = new Map<Field, number>()
  applied = false
  constructor(readonly mutation: Mutation | undefined) {}

  private hit(field: Field): boolean {
    const n = this.uses.get(field) ?? 0
    this.uses.set(field, n + 1)
    const yes = this.mutation !== undefined && this.mutation.field === field && this.mutation.at === n
    if (yes) this.applied = true
    return yes
  }

  num(field: Exclude<Field, "taskId">, value: number): number {
    if (!this.hit(field)) return value
    const c = this.mutation!.num
    const max = NUM_FIELD_MAX[field]
    const v = c.kind === "delta" ? value + c.d : c.v
    return Math.min(max, Math.max(0, v))
  }

  str(value: string): string {
    if (!this.hit("taskId")) return value
    switch (this.mutation!.str) {
      case "empty":
        return ""
      case "traversal":
        return `../../${value}`
      case "other":
        return randomUUID()
      case "flip":
        return value.length === 0 ? "x" : value.slice(0, -1) + (value.endsWith("0") ? "1" : "0")
      case "suffix":
        return `${value}x`
      case "upper":
        return value.toUpperCase()
    }
  }
}

const T = 400 // ms to wait for something the server should do promptly
const BLOCK = 32 * 1024

interface SessionPlan {
  readonly mode: "online" | "offline"
  readonly size: number
  readonly receiverFirst: boolean
  readonly window: number
  readonly mutation: Mutation | undefined
  /** Cut at this step (one socket destroyed, the others shortly after); undefined: run to the end. */
  readonly cut: { readonly step: number; readonly victim: number; readonly delayMs: number } | undefined
}

const sessionArb: fc.Arbitrary<SessionPlan> = fc.record({
  mode: fc.constantFrom<"online" | "offline">("online", "offline"),
  size: fc.oneof(fc.constantFrom(0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 16 * 1024), fc.nat({ max: 80_000 })),
  receiverFirst: fc.boolean(),
  window: fc.constantFrom(1, 1, 2),
  mutation: fc.option(mutationArb, { nil: undefined, freq: 5 }),
  cut: fc.option(fc.record({ step: fc.nat({ max: 14 }), victim: fc.nat({ max: 3 }), delayMs: fc.constantFrom(0, 5, 30) }), { nil: undefined, freq: 2 })
})

class Cut extends Error {}

/** What one session did: whether it got to the end with the right bytes. */
interface SessionOutcome {
  readonly completed: boolean
}

const session = (server: TestServer, plan: SessionPlan, m: Mutator) =>
  Effect.gen(function* () {
    const conns: Array<RawConn> = []
    let step = 0
    /** Marks a step; cuts the session there when planned. */
    const tick = Effect.suspend(() => {
      const now = step++
      if (plan.cut === undefined || plan.cut.step !== now || conns.length === 0) return Effect.void
      const victim = conns[plan.cut.victim % conns.length]!
      victim.destroy()
      return Effect.sleep(plan.cut.delayMs).pipe(Effect.zipRight(Effect.fail(new Cut("cut"))))
    })
    const open = (address: { readonly host: string; readonly port: number }) =>
      rawConnect(address).pipe(Effect.tap((c) => Effect.sync(() => conns.push(c))))
    const data = randomBytes(plan.size)
    const mode = plan.mode === "online" ? TransferMode.Online : TransferMode.Offline

    // Create the task on the msg port, as a msg_server would.
    const msg = yield* open(server.msg)
    const createSeq = m.num("seq", 3)
    msg.send(
      encodePdu(Pdu.TransferReq, createSeq, {
        fromUserId: m.num("userId", FROM),
        toUserId: m.num("userId", TO),
        fileName: "fuzz.bin",
        fileSize: m.num("size", plan.size),
        transMode: m.num("mode", mode) as TransferMode
      })
    )
    const created = yield* msg.expect(Pdu.TransferRsp, T)
    if (created.seq !== createSeq) return yield* Effect.fail(new Error(`TRANSFER_RSP seq ${created.seq}, request ${createSeq}`))
    if (created.msg.resultCode !== 0 || !created.msg.taskId) return { completed: false }
    const taskId = created.msg.taskId
    yield* tick

    const login = (userId: number, role: FileRole) =>
      Effect.gen(function* () {
        const conn = yield* open(server.client)
        const seq = m.num("seq", 7)
        const tid = m.str(taskId)
        conn.send(encodePdu(Pdu.LoginReq, seq, { taskId: tid, userId: m.num("userId", userId), fileRole: m.num("role", role) as FileRole }))
        const res = yield* conn.expect(Pdu.LoginRes, T)
        if (res.seq !== seq) return yield* Effect.fail(new Error(`LOGIN_RES seq ${res.seq}, request ${seq}`))
        if (res.msg.taskId !== tid) return yield* Effect.fail(new Error(`LOGIN_RES echoes task "${res.msg.taskId}", sent "${tid}"`))
        yield* tick
        return res.msg.resultCode === 0 ? conn : undefined
      })

    if (plan.mode === "online") {
      let sender: RawConn | undefined
      let receiver: RawConn | undefined
      if (plan.receiverFirst) {
        receiver = yield* login(TO, FileRole.Receiver)
        sender = yield* login(FROM, FileRole.Sender)
      } else {
        sender = yield* login(FROM, FileRole.Sender)
        receiver = yield* login(TO, FileRole.Receiver)
      }
      if (sender === undefined || receiver === undefined) return { completed: false }
      const ready = yield* receiver.expect(Pdu.State, T)
      if (ready.msg.state !== FileState.PeerReady || ready.seq !== 0 || ready.msg.userId !== FROM) {
        return yield* Effect.fail(new Error(`expected PEER_READY (seq 0, from user), got ${JSON.stringify(ready.msg)} seq ${ready.seq}`))
      }
      yield* tick
      const got: Array<Buffer> = []
      let offset = 0
      let seq = 100
      while (offset < plan.size) {
        const want = Math.min(BLOCK, plan.size - offset)
        const reqSeq = m.num("seq", seq++)
        receiver.send(
          encodePdu(Pdu.PullDataReq, reqSeq, {
            taskId: m.str(taskId),
            userId: m.num("userId", TO),
            transMode: m.num("mode", TransferMode.Online) as TransferMode,
            offset: m.num("offset", offset),
            dataSize: m.num("size", want)
          })
        )
        yield* tick
        const fwd = yield* sender.expect(Pdu.PullDataReq, T)
        yield* tick
        const slice = data.subarray(fwd.msg.offset, fwd.msg.offset + Math.min(fwd.msg.dataSize, BLOCK + 2048))
        sender.send(
          encodePdu(Pdu.PullDataRsp, m.num("seq", fwd.seq), {
            resultCode: m.num("result", 0),
            taskId: m.str(taskId),
            userId: m.num("userId", FROM),
            offset: m.num("offset", fwd.msg.offset),
            fileData: slice.subarray(0, m.num("size", slice.length))
          })
        )
        yield* tick
        const rsp = yield* receiver.expect(Pdu.PullDataRsp, T)
        if (rsp.msg.resultCode !== 0) return { completed: false }
        if (rsp.seq !== reqSeq || rsp.msg.offset !== offset) return { completed: false }
        got.push(Buffer.from(rsp.msg.fileData))
        offset += rsp.msg.fileData.length
        if (rsp.msg.fileData.length === 0) return { completed: false }
      }
      receiver.send(encodePdu(Pdu.State, m.num("seq", 0), { state: m.num("state", FileState.Done) as FileState, taskId: m.str(taskId), userId: m.num("userId", TO) }))
      yield* tick
      const done = yield* sender.expect(Pdu.State, T)
      yield* tick
      const whole = Buffer.concat(got)
      return { completed: done.msg.state === FileState.Done && whole.length === plan.size && sha256(whole) === sha256(data) }
    }

    // Offline: upload, answering the server's pulls, until DONE.
    const uploader = yield* login(FROM, FileRole.Uploader)
    if (uploader === undefined) return { completed: false }
    for (;;) {
      const frame = yield* uploader.next(T)
      if (isPdu(frame, Pdu.State)) {
        const st = yield* decodeAs(Pdu.State, frame)
        if (st.state !== FileState.Done) return { completed: false }
        break
      }
      if (!isPdu(frame, Pdu.PullDataReq)) return yield* Effect.fail(new Error(`uploader got command 0x${frame.commandId.toString(16)}`))
      const req = yield* decodeAs(Pdu.PullDataReq, frame)
      yield* tick
      const slice = data.subarray(req.offset, req.offset + req.dataSize)
      uploader.send(
        encodePdu(Pdu.PullDataRsp, m.num("seq", frame.seq), {
          resultCode: m.num("result", 0),
          taskId: m.str(taskId),
          userId: m.num("userId", FROM),
          offset: m.num("offset", req.offset),
          fileData: slice.subarray(0, m.num("size", slice.length))
        })
      )
      yield* tick
    }
    yield* tick
    const downloader = yield* login(TO, FileRole.Downloader)
    if (downloader === undefined) return { completed: false }
    const got: Array<Buffer> = []
    let offset = 0
    let seq = 200
    let done = false
    while (!done && (offset < plan.size || (plan.size === 0 && seq === 200))) {
      const reqSeq = m.num("seq", seq++)
      downloader.send(
        encodePdu(Pdu.PullDataReq, reqSeq, {
          taskId: m.str(taskId),
          userId: m.num("userId", TO),
          transMode: m.num("mode", TransferMode.Offline) as TransferMode,
          offset: m.num("offset", offset),
          dataSize: m.num("size", BLOCK)
        })
      )
      yield* tick
      // The answer, possibly followed (after the last segment) by DONE.
      const rsp = yield* downloader.expect(Pdu.PullDataRsp, T)
      if (rsp.msg.resultCode !== 0 || rsp.seq !== reqSeq || rsp.msg.offset !== offset) return { completed: false }
      got.push(Buffer.from(rsp.msg.fileData))
      offset += rsp.msg.fileData.length
      if (rsp.msg.fileData.length === 0) done = true
    }
    const end = yield* downloader.expect(Pdu.State, T)
    yield* tick
    const whole = Buffer.concat(got)
    return { completed: end.msg.state === FileState.Done && whole.length === plan.size && sha256(whole) === sha256(data) }
  })

/** Runs a session; a Cut or a failure of a mutated session is an expected ending. */
const runSession = (server: TestServer, plan: SessionPlan, m: Mutator): Promise<SessionOutcome & { readonly error?: string }> =>
  Effect.runPromise(
    Effect.scoped(session(server, plan, m)).pipe(
      Effect.map((o): SessionOutcome & { readonly error?: string } => o),
      Effect.catchAll((e) => Effect.succeed({ completed: false, error: e instanceof Cut ? "cut" : e.message }))
    )
  )

// ---- The properties -------------------------------------------------------------------

describe("fuzzing a live server", () => {
  it.scopedLive(
    "arbitrary byte streams, randomly chunked, on the client and msg ports",
    () =>
      Effect.gen(function* () {
        const { server, floor } = yield* serverUnderTest
        const harness = makeHarness(server, floor)
        yield* assertProperty(
          fc.asyncProperty(fc.array(byteStreamArb, { minLength: 1, maxLength: 3 }), (streams) =>
            harness("byte streams", async () => {
              const outputs = await Promise.all(
                streams.map((s) => {
                  const bytes = Buffer.concat([s.prefix ?? Buffer.alloc(0), s.bytes])
                  return blast(s.port === "client" ? server.client : server.msg, chunked(bytes, s.cuts), s.gapMs, s.ending)
                })
              )
              outputs.forEach((out, i) => checkWellFramed(out, `${streams[i]!.port} port`))
            })
          ),
          100
        )
        yield* finalCheck(server, floor)
      }),
    120_000
  )

  it.scopedLive(
    "well-framed PDUs with random service/command ids and random or mutated bodies",
    () =>
      Effect.gen(function* () {
        const { server, floor } = yield* serverUnderTest
        const harness = makeHarness(server, floor)
        yield* assertProperty(
          fc.asyncProperty(fc.array(pduStreamArb, { minLength: 1, maxLength: 3 }), (streams) =>
            harness("PDU streams", async () => {
              const outputs = await Promise.all(
                streams.map((s) => {
                  const bytes = Buffer.concat(s.pdus.map((p) => encodeFrame(p.id.serviceId, p.id.commandId, p.seq, p.body)))
                  return blast(s.port === "client" ? server.client : server.msg, chunked(bytes, s.cuts), s.gapMs, s.ending)
                })
              )
              outputs.forEach((out, i) => checkWellFramed(out, `${streams[i]!.port} port`))
            })
          ),
          100
        )
        yield* finalCheck(server, floor)
      }),
    120_000
  )

  it.scopedLive(
    "valid sessions with one field mutated or cut at a random step",
    () =>
      Effect.gen(function* () {
        const { server, floor } = yield* serverUnderTest
        const harness = makeHarness(server, floor)
        let completed = 0
        const stats = new Map<string, number>()
        yield* assertProperty(
          fc.asyncProperty(sessionArb, (plan) =>
            harness(`session ${plan.mode}`, async () => {
              const m = new Mutator(plan.mutation)
              const outcome = await runSession(server, plan, m)
              // A mutation that found no use of its field to change leaves a normal session: it must succeed too.
              if (!m.applied && plan.cut === undefined && !outcome.completed) {
                throw new Error(`an unmutated, uncut ${plan.mode} session of ${plan.size} bytes failed: ${outcome.error ?? "wrong bytes"}`)
              }
              if (outcome.completed) completed++
              if (process.env.FUZZ_STATS) {
                const k = `${plan.mode} ${plan.mutation ? plan.mutation.field : "-"} ${plan.cut ? "cut" : ""} -> ${outcome.completed ? "ok" : (outcome.error ?? "refused").slice(0, 60)}`
                stats.set(k, (stats.get(k) ?? 0) + 1)
              }
            })
          ),
          80
        )
        // The generator must reach the end of sessions, not only fail early.
        if (process.env.FUZZ_STATS) console.log([...stats].sort().map(([k, v]) => `${v}\t${k}`).join("\n"))
        expect(completed).toBeGreaterThan(0)
        yield* finalCheck(server, floor)
      }),
    120_000
  )
})
