/**
 * The task registry (src/task/registry.ts) running real task actors
 * (src/task/actor.ts), driven with fake connections: whatever order logins
 * and departures come in, every login is answered, and the registry empties
 * once everybody has left and the idle timeout has passed.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import type { Context } from "effect"
import { Deferred, Effect, Either, Fiber, Layer, Logger, LogLevel, Option } from "effect"
import * as fc from "fast-check"
import { Buffer } from "node:buffer"
import type { Socket } from "node:net"
import type { Connection } from "../../src/connection/connection.js"
import { FileCmd, FileRole, FileState, ResultCode, ServiceId, TransferMode } from "../../src/protocol/commands.js"
import { readHeader } from "../../src/protocol/header.js"
import { encodePdu, Pdu } from "../../src/protocol/messages.js"
import { Metrics } from "../../src/observability/metrics.js"
import { ServerConfig } from "../../src/server/config.js"
import * as DiskStore from "../../src/storage/diskStore.js"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { LoginResult, Mail } from "../../src/task/actor.js"
import type { TaskHandle } from "../../src/task/registry.js"
import { layer as registryLayer, TaskRegistry } from "../../src/task/registry.js"
import type { TaskSpec } from "../../src/task/spec.js"

const TASK_TIMEOUT_MS = 25

// Online tasks never touch the store, but the registry needs one: a disk store in a temp directory.
const dataDir = mkdtempSync(join(tmpdir(), "ttfs-registry-"))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))
const config = ServerConfig.layer({ taskTimeoutMs: TASK_TIMEOUT_MS, maxPullsInFlight: 4, dataDir })
const TestLayer = registryLayer.pipe(
  Layer.provide(DiskStore.layer.pipe(Layer.provide(config))),
  Layer.provide(config),
  Layer.provide(Metrics.layer),
  Layer.provideMerge(Logger.minimumLogLevel(LogLevel.None))
)

// ---------------------------------------------------------------------------
// A fake connection: records what the actor writes and how it closes it

interface FakeConnection extends Connection {
  /** Bytes that reached the "socket", in order. */
  readonly writes: Array<Buffer>
  /** Bytes queued and not yet flushed. */
  readonly pending: () => number
  /** The client hangs up: the socket closes (what precedes a `Left`). */
  readonly hangUp: Effect.Effect<void>
  readonly hungUp: () => boolean
}

/**
 * Behaves like src/connection/connection.ts over a socket that never needs
 * draining: `queue` holds bytes until `flush`, `close` flushes first, `abort` drops them, and
 * nothing is written once the connection is closed or the peer hung up.
 */
const makeFakeConnection = (id: number): Effect.Effect<FakeConnection> =>
  Effect.gen(function* () {
    const closed = yield* Deferred.make<void>()
    const writes: Array<Buffer> = []
    let queued: Array<Buffer> = []
    let reason: string | undefined
    let gone = false
    // Copies: the actor may patch a forwarded buffer in place later.
    const send = (bytes: Buffer) => {
      if (reason === undefined && !gone) writes.push(Buffer.from(bytes))
    }
    const conn: FakeConnection = {
      id,
      remote: `fake:${id}`,
      // The actor only reads how much is queued on the socket: nothing, here.
      socket: { writableLength: 0, writableNeedDrain: false, destroyed: false } as unknown as Socket,
      closed,
      isClosing: () => reason !== undefined || gone,
      write: send,
      queue: (bytes) => {
        queued.push(bytes)
      },
      queuedBytes: () => queued.reduce((n, b) => n + b.length, 0),
      flush: () => {
        const parts = queued
        queued = []
        for (const p of parts) send(p)
      },
      awaitDrain: Effect.void,
      close: (r) => {
        if (reason !== undefined) return
        conn.flush()
        reason = r
        Deferred.unsafeDone(closed, Effect.void)
      },
      abort: (r) => {
        reason ??= r
        queued = []
        Deferred.unsafeDone(closed, Effect.void)
      },
      closeReason: () => reason,
      writes,
      pending: () => queued.length,
      hangUp: Effect.sync(() => {
        gone = true
        Deferred.unsafeDone(closed, Effect.void)
      }),
      hungUp: () => gone
    }
    return conn
  })

interface DecodedPdu {
  readonly commandId: number
  readonly seq: number
  readonly body: Buffer
}
const decodeWrites = (writes: ReadonlyArray<Buffer>): Array<DecodedPdu> =>
  writes.map((b) => {
    const h = readHeader(b)
    expect(h.length).toBe(b.length)
    expect(h.serviceId).toBe(ServiceId.File)
    return { commandId: h.commandId, seq: h.seq, body: b.subarray(16) }
  })
const loginResOf = (conn: FakeConnection) =>
  decodeWrites(conn.writes)
    .filter((p) => p.commandId === FileCmd.LoginRes)
    .map((p) => ({ seq: p.seq, ...Either.getOrElse(Pdu.LoginRes.decodeBody(p.body), () => ({ resultCode: -1, taskId: "?" })) }))
const fileStatesOf = (conn: FakeConnection) =>
  decodeWrites(conn.writes)
    .filter((p) => p.commandId === FileCmd.State)
    .map((p) => Either.getOrUndefined(Pdu.State.decodeBody(p.body)))

const loginMail = (
  conn: FakeConnection,
  spec: TaskSpec,
  userId: number,
  role: number,
  seq: number,
  reply: Deferred.Deferred<LoginResult>
): Mail => ({ _tag: "Login", conn: conn.id, seq, userId, role, connection: conn, taskIdAsSent: spec.taskId, reply })

/** Polls until `check` holds or `timeoutMs` passes; returns whether it held. */
const eventually = (check: () => boolean, timeoutMs = 2000): Effect.Effect<boolean> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) return false
      yield* Effect.sleep(2)
    }
    return true
  })

const resultWithin = (reply: Deferred.Deferred<LoginResult>, ms: number) =>
  Deferred.await(reply).pipe(Effect.timeoutOption(ms))

// ---------------------------------------------------------------------------
// Random scripts

type Op =
  | { readonly _tag: "Login"; readonly conn: number; readonly task: number; readonly user: "from" | "to" | "other"; readonly role: number }
  | { readonly _tag: "Left"; readonly conn: number }
  | { readonly _tag: "Wait"; readonly ms: number }

interface Script {
  readonly tasks: ReadonlyArray<{ readonly mode: TransferMode; readonly fileSize: number }>
  readonly ops: ReadonlyArray<Op>
}

const CONNS = 8
/** Ops crowd onto the first task, so that its mail comes in batches. */
const taskIndexArb = fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, { arbitrary: fc.constant(1), weight: 1 })
const login = (user: fc.Arbitrary<"from" | "to" | "other">, role: fc.Arbitrary<number>): fc.Arbitrary<Op> =>
  fc.record({ _tag: fc.constant("Login" as const), conn: fc.integer({ min: 1, max: CONNS }), task: taskIndexArb, user, role })
const loginArb: fc.Arbitrary<Op> = fc.oneof(
  // Mostly a login that fits the task (the sender as from_user, the receiver as to_user)...
  { arbitrary: login(fc.constant("from"), fc.constant<number>(FileRole.Sender)), weight: 3 },
  { arbitrary: login(fc.constant("to"), fc.constant<number>(FileRole.Receiver)), weight: 3 },
  // ...sometimes any user in any role.
  { arbitrary: login(fc.constantFrom("from", "to", "other"), fc.integer({ min: 0, max: 5 })), weight: 2 }
)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: loginArb, weight: 5 },
  { arbitrary: fc.record({ _tag: fc.constant("Left" as const), conn: fc.integer({ min: 1, max: CONNS }) }), weight: 3 },
  { arbitrary: fc.record({ _tag: fc.constant("Wait" as const), ms: fc.constantFrom(0, 0, 1, 5, TASK_TIMEOUT_MS + 5) }), weight: 1 }
)

const scriptArb: fc.Arbitrary<Script> = fc.record({
  tasks: fc.array(
    fc.record({
      mode: fc.oneof({ arbitrary: fc.constant<TransferMode>(TransferMode.Online), weight: 6 }, { arbitrary: fc.constant<TransferMode>(TransferMode.Offline), weight: 1 }),
      fileSize: fc.integer({ min: 0, max: 100_000 })
    }),
    { minLength: 1, maxLength: 2 }
  ),
  ops: fc.array(opArb, { maxLength: 30 })
})

interface PostedLogin {
  readonly conn: FakeConnection
  readonly spec: TaskSpec
  readonly seq: number
  readonly reply: Deferred.Deferred<LoginResult>
  readonly describe: string
}

/**
 * Plays a script against the registry: ops between two waits go to each task
 * in one `postAll`, so they reach its actor as one batch. A connection logs
 * in at most once, and its Left (the client hanging up) comes after its
 * Login, as the client connection handler guarantees.
 */
const playScript = (script: Script) =>
  Effect.gen(function* () {
    const registry = yield* TaskRegistry
    const specs: Array<TaskSpec> = []
    for (const [i, t] of script.tasks.entries()) {
      specs.push(yield* registry.create({ fromUserId: 100 + i, toUserId: 200 + i, fileName: `f${i}`, fileSize: t.fileSize, mode: t.mode }))
    }
    expect(registry.size()).toBe(specs.length)

    const conns = new Map<number, FakeConnection>()
    for (let id = 1; id <= CONNS; id++) conns.set(id, yield* makeFakeConnection(id))
    /** Which task each connection joined (posted a Login to), and whether it has left. */
    const joined = new Map<number, { readonly handle: TaskHandle; left: boolean }>()
    const used = new Set<number>()
    const posted: Array<PostedLogin> = []
    let batches = new Map<TaskHandle, Array<Mail>>()
    let pendingLogins: Array<PostedLogin & { readonly handle: TaskHandle }> = []
    let seq = 1

    const flush = Effect.gen(function* () {
      const current = batches
      const logins = pendingLogins
      batches = new Map()
      pendingLogins = []
      for (const [handle, mail] of current) {
        const accepted = yield* handle.postAll(mail)
        // A task that already ended takes no mail: the connection handler refuses such a login itself.
        for (const l of logins) if (l.handle === handle && accepted) posted.push(l)
        if (!accepted) for (const j of joined.values()) if (j.handle === handle) j.left = true
      }
    })

    for (const op of script.ops) {
      switch (op._tag) {
        case "Login": {
          const spec = specs[op.task % specs.length]!
          const handle = registry.get(spec.taskId)
          if (used.has(op.conn)) break
          used.add(op.conn)
          if (handle === undefined) break // unknown task: refused by the connection handler
          const conn = conns.get(op.conn)!
          const userId = op.user === "from" ? spec.fromUserId : op.user === "to" ? spec.toUserId : 999
          const reply = yield* Deferred.make<LoginResult>()
          const mySeq = seq++
          const mail = loginMail(conn, spec, userId, op.role, mySeq, reply)
          batches.set(handle, [...(batches.get(handle) ?? []), mail])
          pendingLogins.push({ conn, spec, seq: mySeq, reply, handle, describe: `conn ${op.conn} user ${userId} role ${op.role}` })
          joined.set(op.conn, { handle, left: false })
          break
        }
        case "Left": {
          const j = joined.get(op.conn)
          if (j === undefined || j.left) break
          j.left = true
          yield* conns.get(op.conn)!.hangUp
          batches.set(j.handle, [...(batches.get(j.handle) ?? []), { _tag: "Left", conn: op.conn }])
          break
        }
        case "Wait":
          yield* flush
          yield* op.ms === 0 ? Effect.yieldNow() : Effect.sleep(op.ms)
          break
      }
    }
    yield* flush

    // Every login gets its answer, whatever happened around it.
    for (const l of posted) {
      const answer = yield* resultWithin(l.reply, 500)
      if (Option.isNone(answer)) {
        return yield* Effect.die(new Error(`login never answered: ${l.describe} on task ${l.spec.taskId.slice(0, 8)}`))
      }
      // Answered on the wire too (unless the client hung up first): one LOGIN_RES with the
      // request's seq; a refused connection is closed.
      yield* eventually(() => loginResOf(l.conn).length > 0 || l.conn.hungUp(), 1000)
      const res = loginResOf(l.conn)
      if (res.length > 0 || !l.conn.hungUp()) {
        const resultCode = answer.value.ok ? ResultCode.Ok : ResultCode.Failed
        expect(res).toEqual([{ seq: l.seq, resultCode, taskId: l.spec.taskId }])
      }
      if (!answer.value.ok) expect(l.conn.isClosing()).toBe(true)
    }

    // Then everybody still connected hangs up...
    for (const [id, j] of joined) {
      if (j.left) continue
      j.left = true
      yield* conns.get(id)!.hangUp
      yield* j.handle.post({ _tag: "Left", conn: id })
    }
    // ...and after the idle timeout every task is gone.
    yield* eventually(() => registry.size() === 0, 20 * TASK_TIMEOUT_MS + 1000)
    expect(registry.snapshots()).toEqual([])
    expect(registry.size()).toBe(0)
    for (const l of posted) expect(Option.isSome(yield* Deferred.poll(l.reply))).toBe(true)
    // Nothing the actors queued was left unsent.
    for (const c of conns.values()) expect(c.pending()).toBe(0)
  })

// ---------------------------------------------------------------------------

describe("task registry", () => {
  it.live.prop(
    "answers every login and empties once everybody has left and the task timeout has passed",
    { script: scriptArb },
    ({ script }) => playScript(script).pipe(Effect.provide(TestLayer)),
    { timeout: 30_000, fastCheck: { numRuns: 80 } }
  )

  it.live("a task nobody joins ends after the task timeout", () =>
    Effect.gen(function* () {
      const registry = yield* TaskRegistry
      const spec = yield* registry.create({ fromUserId: 1, toUserId: 2, fileName: "f", fileSize: 10, mode: TransferMode.Online })
      expect(registry.size()).toBe(1)
      expect(registry.get(spec.taskId)).toBeDefined()
      expect(yield* eventually(() => registry.size() === 0)).toBe(true)
      expect(registry.get(spec.taskId)).toBeUndefined()
    }).pipe(Effect.provide(TestLayer))
  )

  it.live("a party still connected keeps the task alive past the timeout", () =>
    Effect.gen(function* () {
      const registry = yield* TaskRegistry
      const spec = yield* registry.create({ fromUserId: 1, toUserId: 2, fileName: "f", fileSize: 10, mode: TransferMode.Online })
      const receiver = yield* makeFakeConnection(1)
      const reply = yield* Deferred.make<LoginResult>()
      yield* registry.get(spec.taskId)!.post(loginMail(receiver, spec, 2, FileRole.Receiver, 7, reply))
      expect(yield* Deferred.await(reply)).toEqual({ ok: true })
      yield* Effect.sleep(TASK_TIMEOUT_MS * 4)
      expect(registry.size()).toBe(1)
      yield* registry.get(spec.taskId)!.post({ _tag: "Left", conn: receiver.id })
      expect(yield* eventually(() => registry.size() === 0)).toBe(true)
    }).pipe(Effect.provide(TestLayer))
  )

  it.live("both parties in: PEER_READY to the receiver; the sender leaving cancels and closes the receiver and ends the task", () =>
    Effect.gen(function* () {
      const registry = yield* TaskRegistry
      const spec = yield* registry.create({ fromUserId: 1, toUserId: 2, fileName: "f", fileSize: 10, mode: TransferMode.Online })
      const handle = registry.get(spec.taskId)!
      const sender = yield* makeFakeConnection(1)
      const receiver = yield* makeFakeConnection(2)
      const r1 = yield* Deferred.make<LoginResult>()
      const r2 = yield* Deferred.make<LoginResult>()
      yield* handle.postAll([loginMail(receiver, spec, 2, FileRole.Receiver, 5, r2), loginMail(sender, spec, 1, FileRole.Sender, 6, r1)])
      expect(yield* Deferred.await(r1)).toEqual({ ok: true })
      expect(yield* Deferred.await(r2)).toEqual({ ok: true })
      expect(loginResOf(receiver)).toEqual([{ seq: 5, resultCode: ResultCode.Ok, taskId: spec.taskId }])
      expect(yield* eventually(() => fileStatesOf(receiver).length === 1)).toBe(true)
      expect(fileStatesOf(receiver)).toEqual([{ state: FileState.PeerReady, taskId: spec.taskId, userId: 1 }])
      yield* handle.post({ _tag: "Left", conn: sender.id })
      expect(yield* eventually(() => registry.size() === 0)).toBe(true)
      expect(fileStatesOf(receiver).at(-1)).toEqual({ state: FileState.Cancel, taskId: spec.taskId, userId: 1 })
      expect(receiver.closeReason()).toBeDefined()
    }).pipe(Effect.provide(TestLayer))
  )

  it.live("a login that reaches the actor in the same batch as the event ending the task is still answered", () =>
    Effect.gen(function* () {
      const registry = yield* TaskRegistry
      const spec = yield* registry.create({ fromUserId: 1, toUserId: 2, fileName: "f", fileSize: 10, mode: TransferMode.Online })
      const handle = registry.get(spec.taskId)!
      const sender = yield* makeFakeConnection(1)
      const receiver = yield* makeFakeConnection(2)
      const late = yield* makeFakeConnection(3)
      const r1 = yield* Deferred.make<LoginResult>()
      const r2 = yield* Deferred.make<LoginResult>()
      const r3 = yield* Deferred.make<LoginResult>()
      yield* handle.postAll([loginMail(sender, spec, 1, FileRole.Sender, 1, r1), loginMail(receiver, spec, 2, FileRole.Receiver, 2, r2)])
      expect(yield* Deferred.await(r1)).toEqual({ ok: true })
      expect(yield* Deferred.await(r2)).toEqual({ ok: true })
      // The sender hangs up while a third connection logs in. Posted together behind another
      // mail, the Left and the Login reach the actor in one batch: a waiting actor is handed the
      // first mail alone, then takes everything queued meanwhile.
      yield* sender.hangUp
      const stranger = yield* makeFakeConnection(4)
      const mail: Array<Mail> = [
        { _tag: "Left", conn: stranger.id },
        { _tag: "Left", conn: sender.id },
        loginMail(late, spec, 2, FileRole.Receiver, 3, r3)
      ]
      expect(yield* handle.postAll(mail)).toBe(true)
      const answer = yield* resultWithin(r3, 1000)
      expect(Option.getOrUndefined(answer)).toEqual({ ok: false, reason: expect.any(String) })
      expect(late.closeReason()).toBeDefined()
      expect(loginResOf(late)).toEqual([{ seq: 3, resultCode: ResultCode.Failed, taskId: spec.taskId }])
    }).pipe(Effect.provide(TestLayer))
  )
})

describe("task registry, draining", () => {
  // Tasks wait for their parties as long as a test needs.
  const drainConfig = ServerConfig.layer({ taskTimeoutMs: 60_000, maxPullsInFlight: 4, dataDir })
  const DrainLayer = registryLayer.pipe(
    Layer.provide(DiskStore.layer.pipe(Layer.provide(drainConfig))),
    Layer.provide(drainConfig),
    Layer.provide(Metrics.layer),
    Layer.provideMerge(Logger.minimumLogLevel(LogLevel.None))
  )

  /** Logs `conn` in to the task and waits for the answer, which must be OK. */
  const joinTask = (registry: Context.Tag.Service<TaskRegistry>, spec: TaskSpec, conn: FakeConnection, userId: number, role: FileRole) =>
    Effect.gen(function* () {
      const reply = yield* Deferred.make<LoginResult>()
      expect(yield* registry.get(spec.taskId)!.post(loginMail(conn, spec, userId, role, conn.id, reply))).toBe(true)
      expect(yield* Deferred.await(reply)).toEqual({ ok: true })
    })

  /** Three online tasks: `a` with both parties in, `b` with its receiver waiting, a third nobody joined. */
  const threeTasks = Effect.gen(function* () {
    const registry = yield* TaskRegistry
    const online = { fromUserId: 1, toUserId: 2, fileName: "f", fileSize: 10, mode: TransferMode.Online }
    const a = yield* registry.create(online)
    const b = yield* registry.create(online)
    yield* registry.create(online)
    expect(registry.busy()).toBe(0)
    const senderA = yield* makeFakeConnection(1)
    const receiverA = yield* makeFakeConnection(2)
    const receiverB = yield* makeFakeConnection(3)
    yield* joinTask(registry, a, senderA, 1, FileRole.Sender)
    yield* joinTask(registry, a, receiverA, 2, FileRole.Receiver)
    yield* joinTask(registry, b, receiverB, 2, FileRole.Receiver)
    return { registry, online, a, b, senderA, receiverA, receiverB }
  })

  it.live("busy counts the tasks somebody is connected to; whenIdle completes when the last one leaves", () =>
    Effect.gen(function* () {
      yield* TaskRegistry.pipe(Effect.flatMap((registry) => registry.whenIdle))
      const { registry, a, b, receiverA, receiverB } = yield* threeTasks
      expect(yield* eventually(() => registry.busy() === 2)).toBe(true)
      expect(registry.snapshots().map((t) => t.parties).sort()).toEqual([0, 1, 2])

      const idle = yield* Effect.fork(registry.whenIdle)
      // Task a ends (the receiver says DONE); b's receiver leaves, and b waits for logins again.
      yield* registry.get(a.taskId)!.post({
        _tag: "State",
        conn: receiverA.id,
        seq: 9,
        msg: { state: FileState.Done, taskId: a.taskId, userId: 2 },
        raw: [encodePdu(Pdu.State, 9, { state: FileState.Done, taskId: a.taskId, userId: 2 })]
      })
      expect(yield* eventually(() => registry.busy() === 1)).toBe(true)
      expect(idle.unsafePoll()).toBeNull()
      yield* receiverB.hangUp
      yield* registry.get(b.taskId)!.post({ _tag: "Left", conn: receiverB.id })
      yield* Fiber.join(idle)
      expect(registry.busy()).toBe(0)
    }).pipe(Effect.provide(DrainLayer))
  )

  it.live("shutdownAll tells every connected party CANCEL, closes it after its writes, ends every task and starts none after", () =>
    Effect.gen(function* () {
      const { registry, online, a, b, senderA, receiverA, receiverB } = yield* threeTasks
      yield* registry.shutdownAll
      expect(registry.size()).toBe(0)
      expect(registry.busy()).toBe(0)
      // Each party hears CANCEL naming the other side, as when a peer leaves.
      expect(fileStatesOf(receiverA)).toEqual([
        { state: FileState.PeerReady, taskId: a.taskId, userId: 1 },
        { state: FileState.Cancel, taskId: a.taskId, userId: 1 }
      ])
      expect(fileStatesOf(senderA)).toEqual([{ state: FileState.Cancel, taskId: a.taskId, userId: 2 }])
      expect(fileStatesOf(receiverB)).toEqual([{ state: FileState.Cancel, taskId: b.taskId, userId: 1 }])
      for (const conn of [senderA, receiverA, receiverB]) {
        expect(conn.closeReason()).toBe("server shutting down")
        expect(conn.pending()).toBe(0)
      }

      // No task starts any more: a login to a task created now is not taken.
      const late = yield* registry.create(online)
      const reply = yield* Deferred.make<LoginResult>()
      const conn = yield* makeFakeConnection(4)
      expect(yield* registry.get(late.taskId)!.post(loginMail(conn, late, 2, FileRole.Receiver, 1, reply))).toBe(false)
    }).pipe(Effect.provide(DrainLayer))
  )
})
