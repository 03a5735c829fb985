/**
 * Property tests of the pure online-transfer state machine (src/task/machine.ts).
 *
 * Random scenarios are lists of abstract actions ("the sender answers the 2nd
 * outstanding pull with one byte too many", "connection 4 logs in as receiver
 * with the wrong user") that are turned into concrete events while `step` is
 * folded over them, so that many runs reach Transferring and exercise the
 * relay rules. Every property below then checks the recorded trace against an
 * independent model of the protocol rules (docs in
 * /work/shared/reference/teamtalk-file-protocol.md, sections 3 and 5).
 */
import { describe, expect, it } from "@effect/vitest"
import { Buffer } from "node:buffer"
import * as fc from "fast-check"
import { FileRole, FileState, TransferMode } from "../../src/protocol/commands.js"
import type { Bytes } from "../../src/protocol/frame.js"
import type { Command, ConnId, Limits, PendingPull, TaskEvent, TaskState } from "../../src/task/machine.js"
import { initialState, isTerminal, startCommands, step } from "../../src/task/machine.js"
import type { TaskSpec } from "../../src/task/spec.js"

// ---------------------------------------------------------------------------
// Fixtures

const TASK_ID = "3f2b8c4e-9a1d-4e6f-8b7a-0c5d2e1f4a39"
const OTHER_TASK_ID = "7d1e0a2b-4c3f-4a5e-9b8d-6f7e8a9b0c1d"
const FROM = 11
const TO = 22
const STRANGER = 33
const CONN_IDS = [1, 2, 3, 4, 5] as const

const makeSpec = (fileSize: number, mode: TransferMode = TransferMode.Online): TaskSpec => ({
  taskId: TASK_ID,
  fromUserId: FROM,
  toUserId: TO,
  fileName: "f.bin",
  fileSize,
  mode,
  createdAt: 0
})

let rawCounter = 0
/** A distinct small buffer per event: the machine only passes it through, so identity shows it was forwarded as is. */
const freshRaw = (): Bytes => {
  rawCounter = (rawCounter + 1) % 65536
  const b = Buffer.alloc(16)
  b.writeUInt16BE(rawCounter, 0)
  return [b]
}

/** The block fields of a PULL_DATA_RSP event carrying `length` bytes. */
const block = (length: number) => ({ data: length > 0 ? [Buffer.alloc(length)] : [], dataLength: length })

// ---------------------------------------------------------------------------
// Abstract actions and their generator

type ConnSel = { readonly kind: "sender" } | { readonly kind: "receiver" } | { readonly kind: "id"; readonly id: ConnId }
type UserSel = "from" | "to" | "other"
type OffsetSel =
  | { readonly kind: "cursor" }
  | { readonly kind: "atEnd" }
  | { readonly kind: "pastEnd"; readonly by: number }
  | { readonly kind: "random"; readonly value: number }
type SizeSel =
  | { readonly kind: "zero" }
  | { readonly kind: "block" }
  | { readonly kind: "over"; readonly by: number }
  | { readonly kind: "random"; readonly value: number }
type RspPick = { readonly kind: "outstanding"; readonly index: number } | { readonly kind: "random"; readonly offset: number }
type LenSel = "right" | "short" | "long"

type Action =
  | { readonly _tag: "Login"; readonly conn: ConnSel; readonly user: UserSel; readonly role: number; readonly seq: number }
  | {
      readonly _tag: "PullReq"
      readonly conn: ConnSel
      readonly rightTask: boolean
      readonly rightUser: boolean
      readonly offset: OffsetSel
      readonly size: SizeSel
      /** A well-behaved receiver does not exceed the in-flight window (such a pull is skipped). */
      readonly inWindow: boolean
      readonly seq: number
    }
  | {
      readonly _tag: "PullRsp"
      readonly conn: ConnSel
      readonly rightTask: boolean
      readonly rightUser: boolean
      readonly pick: RspPick
      readonly len: LenSel
      readonly resultCode: number
      readonly seq: number
    }
  | {
      readonly _tag: "State"
      readonly conn: ConnSel
      readonly rightTask: boolean
      readonly rightUser: boolean
      readonly state: FileState
      readonly seq: number
    }
  | { readonly _tag: "Left"; readonly conn: ConnSel }
  | { readonly _tag: "Expired" }
  | { readonly _tag: "Shutdown" }

interface Scenario {
  readonly spec: TaskSpec
  readonly limits: Limits
  readonly actions: ReadonlyArray<Action>
}

const seqArb = fc.integer({ min: 0, max: 65535 })
const connIdArb = fc.constantFrom(...CONN_IDS)
const anyConnArb: fc.Arbitrary<ConnSel> = fc.oneof(
  fc.constant<ConnSel>({ kind: "sender" }),
  fc.constant<ConnSel>({ kind: "receiver" }),
  connIdArb.map((id): ConnSel => ({ kind: "id", id }))
)

/** The well-behaved choice, or (with weight `fault` against 100) a faulty one; `fault` 0 means never. */
const choice = <A>(good: fc.Arbitrary<A>, bad: fc.Arbitrary<A>, fault: number): fc.Arbitrary<A> =>
  fault === 0 ? good : fc.oneof({ arbitrary: good, weight: 100 }, { arbitrary: bad, weight: fault })

/**
 * Actions where each field goes wrong (wrong task, wrong user, a PDU from the
 * wrong party, a bad size, an answer to no pull...) with weight `fault`
 * against 100; with `fault` 0 only harmless actions are made.
 */
const actionArbWith = (fault: number): fc.Arbitrary<Action> => {
  const right = choice(fc.constant(true), fc.constant(false), fault)
  /** A transfer PDU comes from the party that should send it. */
  const partySel = (kind: "sender" | "receiver") => choice(fc.constant<ConnSel>({ kind }), anyConnArb, fault)

  const login: fc.Arbitrary<Action> = fc.record({
    _tag: fc.constant("Login" as const),
    conn: connIdArb.map((id): ConnSel => ({ kind: "id", id })),
    user: fc.constantFrom<UserSel>("from", "to", "other"),
    role: fc.oneof({ arbitrary: fc.constantFrom(1, 2), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 5 }), weight: 1 }),
    seq: seqArb
  })

  const pullReq: fc.Arbitrary<Action> = fc.record({
    _tag: fc.constant("PullReq" as const),
    conn: partySel("receiver"),
    rightTask: right,
    rightUser: right,
    offset: fc.oneof(
      { arbitrary: fc.constant<OffsetSel>({ kind: "cursor" }), weight: 20 },
      { arbitrary: fc.constant<OffsetSel>({ kind: "atEnd" }), weight: 2 },
      { arbitrary: fc.integer({ min: 1, max: 40 }).map((by): OffsetSel => ({ kind: "pastEnd", by })), weight: 1 },
      { arbitrary: fc.integer({ min: 0, max: 1000 }).map((value): OffsetSel => ({ kind: "random", value })), weight: 4 }
    ),
    size: choice(
      fc.oneof(
        { arbitrary: fc.constant<SizeSel>({ kind: "block" }), weight: 10 },
        { arbitrary: fc.integer({ min: 1, max: 64 }).map((value): SizeSel => ({ kind: "random", value })), weight: 5 },
        { arbitrary: fc.constant<SizeSel>({ kind: "zero" }), weight: 1 }
      ),
      fc.oneof({ arbitrary: fc.constant(1), weight: 3 }, fc.integer({ min: 2, max: 8 })).map((by): SizeSel => ({ kind: "over", by })),
      fault
    ),
    inWindow: choice(fc.constant(true), fc.constant(false), fault === 0 ? 0 : 100),
    seq: seqArb
  })

  const pullRsp: fc.Arbitrary<Action> = fc.record({
    _tag: fc.constant("PullRsp" as const),
    conn: partySel("sender"),
    rightTask: right,
    rightUser: right,
    pick: choice(
      fc.nat(7).map((index): RspPick => ({ kind: "outstanding", index })),
      fc.integer({ min: 0, max: 200 }).map((offset): RspPick => ({ kind: "random", offset })),
      fault
    ),
    len: choice(fc.constant<LenSel>("right"), fc.constantFrom<LenSel>("short", "long"), fault),
    resultCode: choice(fc.constant(0), fc.integer({ min: 1, max: 12 }), fault),
    seq: seqArb
  })

  const state: fc.Arbitrary<Action> = fc.record({
    _tag: fc.constant("State" as const),
    conn: anyConnArb,
    rightTask: right,
    rightUser: right,
    state: fc.constantFrom<FileState>(FileState.PeerReady, FileState.Cancel, FileState.Refuse, FileState.Done),
    seq: seqArb
  })

  const left: fc.Arbitrary<Action> = anyConnArb.map((conn): Action => ({ _tag: "Left", conn }))

  const harmless: Array<fc.WeightedArbitrary<Action>> = [
    { arbitrary: pullReq, weight: 40 },
    { arbitrary: pullRsp, weight: 40 },
    { arbitrary: login, weight: 4 },
    { arbitrary: fc.constant<Action>({ _tag: "Expired" }), weight: 2 }
  ]
  if (fault === 0) return fc.oneof(...harmless)
  return fc.oneof(
    ...harmless,
    { arbitrary: state, weight: 5 },
    { arbitrary: left, weight: 5 },
    { arbitrary: fc.constant<Action>({ _tag: "Shutdown" }), weight: 1 }
  )
}

/**
 * Mostly well-behaved actions with, now and then, a noisy one (each field
 * faulty with weight 30 against 100): some scenarios run long transfers, others are rough.
 */
const noisyActionArb = actionArbWith(30)
const actionsArb: fc.Arbitrary<ReadonlyArray<Action>> = fc.oneof(
  fc.array(choice(actionArbWith(0), noisyActionArb, 1), { maxLength: 80, size: "max" }),
  fc.array(choice(actionArbWith(0), noisyActionArb, 30), { maxLength: 60, size: "max" })
)

/** Sender and receiver log in correctly on two distinct connections, in either order. */
const goodPrefixArb: fc.Arbitrary<ReadonlyArray<Action>> = fc
  .tuple(fc.uniqueArray(connIdArb, { minLength: 2, maxLength: 2 }), fc.boolean(), seqArb, seqArb)
  .map(([[a, b], senderFirst, s1, s2]) => {
    const sender: Action = { _tag: "Login", conn: { kind: "id", id: a! }, user: "from", role: FileRole.Sender, seq: s1 }
    const receiver: Action = { _tag: "Login", conn: { kind: "id", id: b! }, user: "to", role: FileRole.Receiver, seq: s2 }
    return senderFirst ? [sender, receiver] : [receiver, sender]
  })

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    maxBlockBytes: fc.integer({ min: 1, max: 16 }),
    maxPullsInFlight: fc.integer({ min: 1, max: 4 }),
    blocks: fc.oneof(
      { arbitrary: fc.constant(0), weight: 1 },
      { arbitrary: fc.integer({ min: 1, max: 3 }), weight: 4 },
      { arbitrary: fc.integer({ min: 4, max: 12 }), weight: 2 }
    ),
    extra: fc.integer({ min: -8, max: 8 }),
    offline: fc.oneof({ arbitrary: fc.constant(false), weight: 15 }, { arbitrary: fc.constant(true), weight: 1 }),
    prefix: fc.oneof({ arbitrary: goodPrefixArb, weight: 5 }, { arbitrary: fc.constant<ReadonlyArray<Action>>([]), weight: 1 }),
    rest: actionsArb
  })
  .map(({ maxBlockBytes, maxPullsInFlight, blocks, extra, offline, prefix, rest }) => ({
    spec: makeSpec(Math.max(0, blocks * maxBlockBytes + extra), offline ? TransferMode.Offline : TransferMode.Online),
    limits: { maxBlockBytes, maxPullsInFlight, readahead: 0, readaheadSegment: 1 },
    actions: [...prefix, ...rest]
  }))

// ---------------------------------------------------------------------------
// Folding `step` over a scenario

interface Entry {
  readonly before: TaskState
  readonly event: TaskEvent
  readonly after: TaskState
  readonly commands: ReadonlyArray<Command>
}

const userOf = (sel: UserSel) => (sel === "from" ? FROM : sel === "to" ? TO : STRANGER)

/**
 * Turns abstract actions into events against the current state and folds
 * `step` over them. Like the connection layer, a connection sends at most one
 * LOGIN_REQ and nothing after it has left (its id may then be reused).
 */
const runScenario = (sc: Scenario): { readonly entries: ReadonlyArray<Entry>; readonly final: TaskState } => {
  const { spec, limits } = sc
  let state = initialState(spec)
  let cursor = 0
  const loggedIn = new Set<ConnId>()
  const gone = new Set<ConnId>()
  const entries: Array<Entry> = []
  const resolve = (sel: ConnSel): ConnId =>
    sel.kind === "id" ? sel.id : ((sel.kind === "sender" ? state.sender : state.receiver) ?? CONN_IDS[0])

  const toEvent = (a: Action): TaskEvent | undefined => {
    switch (a._tag) {
      case "Login": {
        const conn = resolve(a.conn)
        if (loggedIn.has(conn)) return undefined
        return { _tag: "Login", conn, seq: a.seq, userId: userOf(a.user), role: a.role }
      }
      case "PullReq": {
        const conn = resolve(a.conn)
        if (a.inWindow && state.pulls.length >= limits.maxPullsInFlight) return undefined
        const offset =
          a.offset.kind === "cursor"
            ? cursor
            : a.offset.kind === "atEnd"
              ? spec.fileSize
              : a.offset.kind === "pastEnd"
                ? spec.fileSize + a.offset.by
                : a.offset.value % (spec.fileSize + 1)
        const dataSize =
          a.size.kind === "zero"
            ? 0
            : a.size.kind === "block"
              ? limits.maxBlockBytes
              : a.size.kind === "over"
                ? limits.maxBlockBytes + a.size.by
                : (a.size.value % limits.maxBlockBytes) + 1
        return {
          _tag: "PullReq",
          conn,
          seq: a.seq,
          raw: freshRaw(),
          msg: {
            taskId: a.rightTask ? spec.taskId : OTHER_TASK_ID,
            userId: a.rightUser ? TO : a.seq % 2 === 0 ? FROM : STRANGER,
            transMode: TransferMode.Online,
            offset,
            dataSize
          }
        }
      }
      case "PullRsp": {
        const conn = resolve(a.conn)
        const pulls = state.pulls
        // Answering "an outstanding pull" when there is none is not an action; a random offset is.
        if (a.pick.kind === "outstanding" && pulls.length === 0) return undefined
        const target = a.pick.kind === "outstanding" && pulls.length > 0 ? pulls[a.pick.index % pulls.length] : undefined
        const offset = target !== undefined ? target.offset : a.pick.kind === "random" ? a.pick.offset : cursor
        const size = target !== undefined ? target.size : limits.maxBlockBytes
        const length = Math.max(0, a.len === "right" ? size : a.len === "short" ? size - 1 : size + 1)
        return {
          _tag: "PullRsp",
          conn,
          seq: a.seq,
          raw: freshRaw(),
          msg: {
            resultCode: a.resultCode,
            taskId: a.rightTask ? spec.taskId : OTHER_TASK_ID,
            userId: a.rightUser ? FROM : a.seq % 2 === 0 ? TO : STRANGER,
            offset,
            ...block(length)
          }
        }
      }
      case "State": {
        const conn = resolve(a.conn)
        const own = conn === state.receiver ? TO : FROM
        return {
          _tag: "State",
          conn,
          seq: a.seq,
          raw: freshRaw(),
          msg: { state: a.state, taskId: a.rightTask ? spec.taskId : OTHER_TASK_ID, userId: a.rightUser ? own : STRANGER }
        }
      }
      case "Left":
        return { _tag: "Left", conn: resolve(a.conn) }
      case "Expired":
      case "Shutdown":
        return { _tag: a._tag }
    }
  }

  for (const action of sc.actions) {
    const event = toEvent(action)
    if (event === undefined) continue
    if ("conn" in event && gone.has(event.conn)) {
      // A connection that left sends nothing more; a new connection may get its id (only via Login).
      if (event._tag !== "Login") continue
      gone.delete(event.conn)
    }
    if (event._tag === "Login") loggedIn.add(event.conn)
    if (event._tag === "Left") {
      loggedIn.delete(event.conn)
      gone.add(event.conn)
    }
    const before = state
    const [after, commands] = step(before, event, limits)
    for (const c of commands) {
      if ((c._tag === "Forward" || c._tag === "SendPull") && c.to === before.sender && event._tag === "PullReq") {
        const size = c._tag === "SendPull" ? c.msg.dataSize : event.msg.dataSize
        cursor = Math.max(cursor, event.msg.offset + size)
      }
    }
    entries.push({ before, event, after, commands })
    state = after
  }
  return { entries, final: state }
}

// ---------------------------------------------------------------------------
// Helpers for the checks

const tags = (cs: ReadonlyArray<Command>) => cs.map((c) => c._tag)
const ofTag = <T extends Command["_tag"]>(cs: ReadonlyArray<Command>, tag: T) =>
  cs.filter((c): c is Extract<Command, { _tag: T }> => c._tag === tag)
const writesTo = (c: Command): ConnId | undefined =>
  c._tag === "Forward" || c._tag === "SendPull" || c._tag === "SendEmptyBlock" || c._tag === "SendState"
    ? c.to
    : c._tag === "LoginOk" || c._tag === "LoginRefused"
      ? c.conn
      : undefined
const nobodyIn = (s: TaskState) => s.sender === undefined && s.receiver === undefined
const expectedUser = (role: number) => (role === FileRole.Sender ? FROM : TO)
const describeEvent = (e: TaskEvent) =>
  JSON.stringify({
    ...e,
    ...("raw" in e ? { raw: "<raw>" } : {}),
    ...(e._tag === "PullRsp" ? { msg: { ...e.msg, data: `<${e.msg.dataLength} bytes>` } } : {})
  })

/** Runs `check` on every entry, naming the offending step when it throws. */
const forEachEntry = (entries: ReadonlyArray<Entry>, check: (entry: Entry, index: number) => void) => {
  entries.forEach((entry, i) => {
    try {
      check(entry, i)
    } catch (error) {
      const trace = entries
        .slice(0, i + 1)
        .map((e, j) => `  #${j} [${e.before.phase}] ${describeEvent(e.event)} -> ${tags(e.commands).join(",") || "-"}`)
        .join("\n")
      throw new Error(`step #${i} broke the property:\n${trace}\n${(error as Error).message}`)
    }
  })
}

const propOptions = { fastCheck: { numRuns: 400 } }

// ---------------------------------------------------------------------------
// Properties

describe("task machine properties", () => {
  it.prop("both parties of a running transfer are present and logged in with the right user and role", [scenarioArb], ([sc]) => {
    const { entries } = runScenario(sc)
    /** Connections whose Login (right user, right role) was answered LoginOk and that have not left since. */
    const admitted = new Map<ConnId, number>()
    forEachEntry(entries, ({ event: e, after: s, commands: cs }) => {
      for (const ok of ofTag(cs, "LoginOk")) {
        expect(e._tag).toBe("Login")
        if (e._tag !== "Login") return
        expect(ok.conn).toBe(e.conn)
        expect(ok.role).toBe(e.role)
        expect(e.userId).toBe(expectedUser(e.role))
        admitted.set(e.conn, e.role)
      }
      if (e._tag === "Left") admitted.delete(e.conn)
      for (const c of ofTag(cs, "Close")) admitted.delete(c.conn)

      if (s.phase === "WaitingTransfer" || s.phase === "Transferring") {
        expect(s.sender).toBeDefined()
        expect(s.receiver).toBeDefined()
      }
      if (s.sender !== undefined) expect(admitted.get(s.sender)).toBe(FileRole.Sender)
      if (s.receiver !== undefined) expect(admitted.get(s.receiver)).toBe(FileRole.Receiver)
      // The phase says who is in.
      const expectedPhase = isTerminal(s)
        ? "Ended"
        : s.sender === undefined
          ? s.receiver === undefined ? "Ready" : "WaitingSender"
          : s.receiver === undefined ? "WaitingReceiver" : s.phase === "Transferring" ? "Transferring" : "WaitingTransfer"
      expect(s.phase).toBe(expectedPhase)
      if (s.phase !== "Transferring") expect(s.pulls).toEqual([])
    })
  }, propOptions)

  it.prop("an ended task answers every Login with LoginRefused, ignores everything else and stays as it is", [scenarioArb], ([sc]) => {
    const { entries } = runScenario(sc)
    let endedAt: TaskState | undefined
    forEachEntry(entries, ({ before, event: e, after, commands: cs }) => {
      if (endedAt !== undefined) {
        expect(before).toBe(endedAt)
        expect(after).toBe(endedAt)
        expect(isTerminal(after)).toBe(true)
        if (e._tag === "Login") {
          expect(cs).toEqual([{ _tag: "LoginRefused", conn: e.conn, seq: e.seq, reason: expect.any(String) }])
        } else {
          expect(cs).toEqual([])
        }
        return
      }
      // Ending is announced exactly once, last, and matches the state.
      const ends = ofTag(cs, "End")
      expect(ends.length).toBe(isTerminal(after) ? 1 : 0)
      if (isTerminal(after)) {
        expect(cs[cs.length - 1]?._tag).toBe("End")
        expect(after.outcome).toBe(ends[0]!.outcome)
        expect(after.sender).toBeUndefined()
        expect(after.receiver).toBeUndefined()
        expect(after.pulls).toEqual([])
        // Nobody is left hanging: every party still there is closed.
        for (const p of [before.sender, before.receiver]) {
          if (p !== undefined && !(e._tag === "Left" && e.conn === p)) expect(cs).toContainEqual({ _tag: "Close", conn: p, reason: expect.any(String) })
        }
        endedAt = after
      } else {
        expect(after.outcome).toBeUndefined()
      }
    })
  }, propOptions)

  it.prop("commands only go to parties, and nothing is written to a connection after it is closed", [scenarioArb], ([sc]) => {
    const { entries } = runScenario(sc)
    forEachEntry(entries, ({ before, event: e, after, commands: cs }) => {
      const parties = new Set([before.sender, before.receiver, after.sender, after.receiver].filter((c) => c !== undefined))
      const closed = new Set<ConnId>()
      for (const c of cs) {
        const to = writesTo(c)
        if (to !== undefined) {
          expect(closed.has(to)).toBe(false)
          if (c._tag === "LoginOk" || c._tag === "LoginRefused") expect(to).toBe(e._tag === "Login" ? e.conn : -1)
          else expect(parties.has(to)).toBe(true)
        }
        if (c._tag === "Close") {
          expect(parties.has(c.conn) || ("conn" in e && e.conn === c.conn)).toBe(true)
          closed.add(c.conn)
        }
      }
      // A closed connection is no longer a party.
      for (const c of closed) {
        expect(after.sender).not.toBe(c)
        expect(after.receiver).not.toBe(c)
      }
    })
  }, propOptions)

  it.prop(
    "every accepted pull is answered once with its own seq and the asked size, or dropped only when the task ends or the receiver is cut off",
    [scenarioArb],
    ([sc]) => {
      const { spec, limits } = sc
      const { entries, final } = runScenario(sc)
      /** The model: accepted pulls not yet answered, oldest first. */
      let pending: Array<PendingPull> = []
      const checkStep = ({ before: s, event: e, after, commands: cs }: Entry) => {
        if (isTerminal(s)) return
        const receiver = s.receiver
        const toReceiver = ofTag(cs, "Forward").filter((c) => receiver !== undefined && c.to === receiver)
        if (e._tag === "PullReq") {
          const { msg } = e
          const acceptable =
            e.conn === receiver &&
            msg.taskId === spec.taskId &&
            msg.userId === spec.toUserId &&
            s.sender !== undefined &&
            msg.dataSize <= limits.maxBlockBytes
          if (acceptable && (msg.offset >= spec.fileSize || msg.dataSize === 0)) {
            expect(cs).toEqual([{ _tag: "SendEmptyBlock", to: e.conn, seq: e.seq, offset: msg.offset }])
          } else if (acceptable && pending.length < limits.maxPullsInFlight) {
            const size = Math.min(msg.dataSize, spec.fileSize - msg.offset)
            expect(cs).toEqual([
              size === msg.dataSize
                ? { _tag: "Forward", to: s.sender, raw: e.raw, seq: e.seq, dataBytes: 0 }
                : { _tag: "SendPull", to: s.sender, seq: e.seq, msg: { ...msg, dataSize: size } }
            ])
            expect(size).toBeGreaterThan(0)
            expect(msg.offset + size).toBeLessThanOrEqual(spec.fileSize)
            pending.push({ offset: msg.offset, size, seq: e.seq })
          } else {
            // A pull that does not check out closes its connection and is never relayed.
            expect(cs).toContainEqual({ _tag: "Close", conn: e.conn, reason: expect.any(String) })
            expect(tags(cs)).not.toContain("SendPull")
            expect(tags(cs)).not.toContain("SendEmptyBlock")
            expect(ofTag(cs, "Forward").filter((c) => c.to === s.sender)).toEqual([])
          }
        } else if (e._tag === "PullRsp") {
          const { msg } = e
          const index = pending.findIndex((p) => p.offset === msg.offset)
          const pull = pending[index]
          const acceptable =
            e.conn === s.sender &&
            msg.taskId === spec.taskId &&
            msg.userId === spec.fromUserId &&
            pull !== undefined &&
            (msg.resultCode !== 0 || msg.dataLength === pull.size)
          if (acceptable) {
            expect(cs).toEqual([{ _tag: "Forward", to: receiver, raw: e.raw, seq: pull.seq, dataBytes: msg.dataLength }])
            if (msg.resultCode === 0) expect(toReceiver[0]!.dataBytes).toBe(pull.size)
            expect(after.bytesRelayed).toBe(s.bytesRelayed + msg.dataLength)
            pending.splice(index, 1)
          } else {
            expect(cs).toContainEqual({ _tag: "Close", conn: e.conn, reason: expect.any(String) })
            expect(toReceiver).toEqual([])
            expect(after.bytesRelayed).toBe(s.bytesRelayed)
          }
        } else if (e._tag === "State") {
          // Only a FILE_STATE is forwarded to the receiver outside a pull answer, with its own seq.
          for (const f of toReceiver) expect(f).toEqual({ _tag: "Forward", to: receiver, raw: e.raw, seq: e.seq, dataBytes: 0 })
        } else {
          expect(toReceiver).toEqual([])
        }
        const ended = tags(cs).includes("End")
        const receiverCut =
          receiver !== undefined &&
          cs.some(
            (c) =>
              (c._tag === "Close" && c.conn === receiver) ||
              (c._tag === "SendState" && c.to === receiver && c.state === FileState.Cancel)
          )
        if (ended || receiverCut || (e._tag === "Left" && e.conn === receiver)) pending = []
        expect(after.pulls).toEqual(pending)
      }
      forEachEntry(entries, checkStep)

      // Eventually: if both parties are still in, a sender that answers every outstanding pull
      // gets each answer through to the receiver, and the receiver's DONE ends the task.
      let state = final
      if (!isTerminal(state) && state.sender !== undefined && state.receiver !== undefined) {
        const tail: Array<Entry> = []
        for (const pull of [...pending]) {
          const event: TaskEvent = {
            _tag: "PullRsp",
            conn: state.sender!,
            seq: 4242,
            raw: freshRaw(),
            msg: { resultCode: 0, taskId: spec.taskId, userId: FROM, offset: pull.offset, ...block(pull.size) }
          }
          const [after, commands] = step(state, event, limits)
          expect(commands).toEqual([{ _tag: "Forward", to: state.receiver, raw: event.raw, seq: pull.seq, dataBytes: pull.size }])
          tail.push({ before: state, event, after, commands })
          state = after
        }
        forEachEntry(tail, checkStep)
        expect(pending).toEqual([])
        const done: TaskEvent = {
          _tag: "State",
          conn: state.receiver!,
          seq: 7,
          raw: freshRaw(),
          msg: { state: FileState.Done, taskId: spec.taskId, userId: TO }
        }
        const [after, commands] = step(state, done, limits)
        expect(commands).toContainEqual({ _tag: "Forward", to: state.sender, raw: done.raw, seq: 7, dataBytes: 0 })
        expect(isTerminal(after)).toBe(true)
        expect(after.outcome).toBe("done")
      }
    },
    propOptions
  )

  it.prop(
    "FILE_STATE from a party is forwarded and ends the task; losing a party cancels the other; server FILE_STATEs name the peer's user",
    [scenarioArb],
    ([sc]) => {
      const { spec } = sc
      const { entries } = runScenario(sc)
      forEachEntry(entries, ({ before: s, event: e, after, commands: cs }) => {
        if (isTerminal(s)) return
        // A FILE_STATE the server itself sends to a party speaks for the other party's user.
        for (const c of ofTag(cs, "SendState")) {
          const toReceiver = c.to === s.receiver || c.to === after.receiver
          expect(c.userId).toBe(toReceiver ? spec.fromUserId : spec.toUserId)
          if (c.state !== FileState.PeerReady) expect(c.state).toBe(FileState.Cancel)
        }
        const ends = ofTag(cs, "End")
        const partyOf = (conn: ConnId) => (conn === s.sender ? "sender" : conn === s.receiver ? "receiver" : undefined)
        const peerOf = (conn: ConnId) => (conn === s.sender ? s.receiver : s.sender)
        const cancelled = (conn: ConnId) => cs.some((c) => c._tag === "SendState" && c.to === conn && c.state === FileState.Cancel)
        const role = "conn" in e ? partyOf(e.conn) : undefined
        const validState =
          e._tag === "State" &&
          role !== undefined &&
          e.msg.taskId === spec.taskId &&
          e.msg.userId === (role === "sender" ? spec.fromUserId : spec.toUserId)
        if (e._tag === "State") {
          const valid = validState
          if (valid && e.msg.state === FileState.PeerReady) {
            expect(cs).toEqual([])
            expect(after).toBe(s)
          } else if (valid) {
            const peer = peerOf(e.conn)
            const forwarded = ofTag(cs, "Forward")
            expect(forwarded).toEqual(peer === undefined ? [] : [{ _tag: "Forward", to: peer, raw: e.raw, seq: e.seq, dataBytes: 0 }])
            expect(ofTag(cs, "SendState")).toEqual([])
            const outcome = e.msg.state === FileState.Done ? "done" : e.msg.state === FileState.Refuse ? "refused" : "cancelled"
            expect(ends.map((c) => c.outcome)).toEqual([outcome])
          } else {
            expect(cs).toContainEqual({ _tag: "Close", conn: e.conn, reason: expect.any(String) })
            expect(ofTag(cs, "Forward")).toEqual([])
          }
        }
        if (e._tag === "Shutdown") {
          expect(ends.map((c) => c.outcome)).toEqual(["shutdown"])
          for (const p of [s.sender, s.receiver]) if (p !== undefined) expect(cancelled(p)).toBe(true)
        }
        // A party that leaves or is thrown out while the other is in: the other hears CANCEL and the task ends.
        // (The first party closed is the one thrown out; closing the other is part of ending.)
        const lost =
          validState || e._tag === "Shutdown"
            ? undefined
            : [...(e._tag === "Left" ? [e.conn] : []), ...ofTag(cs, "Close").map((c) => c.conn)].find(
                (conn) => partyOf(conn) !== undefined
              )
        if (lost !== undefined) {
          const conn = lost
          const peer = peerOf(conn)
          if (peer === undefined) {
            expect(ends).toEqual([])
            expect(after.phase).toBe("Ready")
          } else {
            expect(cancelled(peer)).toBe(true)
            // Leaving is "peer-left"; being thrown out for a bad PDU is "protocol-error".
            expect(ends.map((c) => c.outcome)).toEqual([e._tag === "Left" ? "peer-left" : "protocol-error"])
          }
        }
        if (e._tag === "Left" && partyOf(e.conn) === undefined) {
          expect(cs).toEqual([])
          expect(after).toBe(s)
        }
      })
    },
    propOptions
  )

  it.prop("a second Login for a role already held is refused, and a fitting Login for a free role is accepted", [scenarioArb], ([sc]) => {
    const { spec } = sc
    const { entries } = runScenario(sc)
    forEachEntry(entries, ({ before: s, event: e, after, commands: cs }) => {
      if (e._tag !== "Login" || isTerminal(s)) return
      const isSender = e.role === FileRole.Sender
      const fits =
        spec.mode === TransferMode.Online &&
        (e.role === FileRole.Sender || e.role === FileRole.Receiver) &&
        e.userId === expectedUser(e.role)
      const held = isSender ? s.sender : s.receiver
      if (!fits || held !== undefined) {
        expect(cs).toEqual([{ _tag: "LoginRefused", conn: e.conn, seq: e.seq, reason: expect.any(String) }])
        expect(after).toBe(s)
        return
      }
      expect(cs[0]).toEqual({ _tag: "LoginOk", conn: e.conn, seq: e.seq, role: e.role })
      expect(isSender ? after.sender : after.receiver).toBe(e.conn)
      expect(isSender ? after.receiver : after.sender).toBe(isSender ? s.receiver : s.sender)
      const other = isSender ? s.receiver : s.sender
      if (other !== undefined) {
        // The second party in: the receiver hears PEER_READY from the sender's user.
        expect(cs).toContainEqual({ _tag: "SendState", to: after.receiver, state: FileState.PeerReady, userId: spec.fromUserId })
        expect(after.phase).toBe("WaitingTransfer")
      } else {
        expect(ofTag(cs, "SendState")).toEqual([])
        expect(after.phase).toBe(isSender ? "WaitingReceiver" : "WaitingSender")
      }
    })
  }, propOptions)

  it.prop("the idle timer is armed exactly while nobody is connected to a live task; Expired ends only such a task", [scenarioArb], ([sc]) => {
    const { entries, final } = runScenario(sc)
    let armed = false
    const apply = (cs: ReadonlyArray<Command>) => {
      const ending = tags(cs).includes("End")
      for (const c of cs) {
        if (c._tag === "ArmIdleTimer") {
          expect(armed).toBe(false)
          armed = true
        } else if (c._tag === "DisarmIdleTimer") {
          // Disarming an idle timer is only redundant as part of ending the task.
          expect(armed || ending).toBe(true)
          armed = false
        }
      }
    }
    apply(startCommands)
    expect(armed).toBe(true)
    forEachEntry(entries, ({ before: s, event: e, after, commands: cs }) => {
      apply(cs)
      expect(armed).toBe(nobodyIn(after) && !isTerminal(after))
      const expiredEnd = ofTag(cs, "End").some((c) => c.outcome === "expired")
      if (e._tag === "Expired" && !isTerminal(s)) {
        if (nobodyIn(s)) {
          expect(expiredEnd).toBe(true)
          expect(isTerminal(after)).toBe(true)
        } else {
          expect(cs).toEqual([])
          expect(after).toBe(s)
        }
      } else {
        expect(expiredEnd).toBe(false)
      }
    })
    // Eventually: once everybody has gone, the timer fires and ends the task.
    let state = final
    for (const conn of [state.sender, state.receiver]) {
      if (conn === undefined || isTerminal(state)) continue
      const [after, cs] = step(state, { _tag: "Left", conn }, sc.limits)
      apply(cs)
      state = after
    }
    if (!isTerminal(state)) {
      expect(armed).toBe(true)
      const [after, cs] = step(state, { _tag: "Expired" }, sc.limits)
      apply(cs)
      expect(after.outcome).toBe("expired")
    }
    expect(armed).toBe(false)
  }, propOptions)
})

// ---------------------------------------------------------------------------
// Examples of the rules

const limits: Limits = { maxBlockBytes: 10, maxPullsInFlight: 4, readahead: 0, readaheadSegment: 1 }
const SENDER = 1
const RECEIVER = 2

const run = (state: TaskState, ...events: ReadonlyArray<TaskEvent>): [TaskState, Array<Command>] => {
  const all: Array<Command> = []
  for (const e of events) {
    const [next, cs] = step(state, e, limits)
    all.push(...cs)
    state = next
  }
  return [state, all]
}
const loginSender: TaskEvent = { _tag: "Login", conn: SENDER, seq: 1, userId: FROM, role: FileRole.Sender }
const loginReceiver: TaskEvent = { _tag: "Login", conn: RECEIVER, seq: 2, userId: TO, role: FileRole.Receiver }
const pullReq = (offset: number, dataSize: number, seq: number): Extract<TaskEvent, { _tag: "PullReq" }> => ({
  _tag: "PullReq",
  conn: RECEIVER,
  seq,
  raw: freshRaw(),
  msg: { taskId: TASK_ID, userId: TO, transMode: TransferMode.Online, offset, dataSize }
})
const pullRsp = (offset: number, length: number, seq: number): Extract<TaskEvent, { _tag: "PullRsp" }> => ({
  _tag: "PullRsp",
  conn: SENDER,
  seq,
  raw: freshRaw(),
  msg: { resultCode: 0, taskId: TASK_ID, userId: FROM, offset, ...block(length) }
})
const fileState = (conn: ConnId, userId: number, state: FileState, seq: number): Extract<TaskEvent, { _tag: "State" }> => ({
  _tag: "State",
  conn,
  seq,
  raw: freshRaw(),
  msg: { state, taskId: TASK_ID, userId }
})

describe("task machine examples", () => {
  for (const [name, order] of [
    ["sender first", [loginSender, loginReceiver]],
    ["receiver first", [loginReceiver, loginSender]]
  ] as const) {
    it(`both parties in (${name}): the receiver gets PEER_READY with user_id = from_user`, () => {
      const [state, cs] = run(initialState(makeSpec(25)), ...order)
      expect(state.phase).toBe("WaitingTransfer")
      expect(state.sender).toBe(SENDER)
      expect(state.receiver).toBe(RECEIVER)
      expect(ofTag(cs, "LoginOk").map((c) => c.conn).sort()).toEqual([SENDER, RECEIVER])
      expect(ofTag(cs, "SendState")).toEqual([{ _tag: "SendState", to: RECEIVER, state: FileState.PeerReady, userId: FROM }])
    })
  }

  it("relays a pull and its answer, clamping the last pull and keeping the receiver's seq", () => {
    const [ready] = run(initialState(makeSpec(25)), loginSender, loginReceiver)
    const [s1, c1] = run(ready, pullReq(0, 10, 100))
    expect(s1.phase).toBe("Transferring")
    expect(c1).toEqual([{ _tag: "Forward", to: SENDER, raw: [expect.any(Buffer)], seq: 100, dataBytes: 0 }])
    const rsp = pullRsp(0, 10, 9)
    const [s2, c2] = run(s1, rsp)
    expect(c2).toEqual([{ _tag: "Forward", to: RECEIVER, raw: rsp.raw, seq: 100, dataBytes: 10 }])
    const [s3, c3] = run(s2, pullReq(20, 10, 101))
    expect(c3).toEqual([{ _tag: "SendPull", to: SENDER, seq: 101, msg: expect.objectContaining({ offset: 20, dataSize: 5 }) }])
    const [s4, c4] = run(s3, pullReq(25, 10, 102), pullReq(3, 0, 103))
    expect(c4).toEqual([
      { _tag: "SendEmptyBlock", to: RECEIVER, seq: 102, offset: 25 },
      { _tag: "SendEmptyBlock", to: RECEIVER, seq: 103, offset: 3 }
    ])
    expect(s4.pulls).toEqual([{ offset: 20, size: 5, seq: 101 }])
  })

  it("a pull of maxBlockBytes is relayed, one byte more closes the receiver and cancels the sender", () => {
    const [ready] = run(initialState(makeSpec(100)), loginSender, loginReceiver)
    const [, ok] = run(ready, pullReq(0, limits.maxBlockBytes, 1))
    expect(tags(ok)).toEqual(["Forward"])
    const [ended, over] = run(ready, pullReq(0, limits.maxBlockBytes + 1, 1))
    expect(over).toContainEqual({ _tag: "Close", conn: RECEIVER, reason: expect.any(String) })
    expect(over).toContainEqual({ _tag: "SendState", to: SENDER, state: FileState.Cancel, userId: TO })
    expect(ofTag(over, "Forward")).toEqual([])
    expect(isTerminal(ended)).toBe(true)
  })

  it("a receiver may have maxPullsInFlight pulls outstanding, and no more", () => {
    const [ready] = run(initialState(makeSpec(100)), loginSender, loginReceiver)
    const [full, cs] = run(ready, pullReq(0, 10, 1), pullReq(10, 10, 2), pullReq(20, 10, 3), pullReq(30, 10, 4))
    expect(ofTag(cs, "Forward").map((c) => c.seq)).toEqual([1, 2, 3, 4])
    expect(full.pulls).toHaveLength(limits.maxPullsInFlight)
    // An empty block needs no slot.
    const [stillFull, empty] = run(full, pullReq(100, 10, 5))
    expect(empty).toEqual([{ _tag: "SendEmptyBlock", to: RECEIVER, seq: 5, offset: 100 }])
    const [ended, over] = run(stillFull, pullReq(40, 10, 6))
    expect(over).toContainEqual({ _tag: "Close", conn: RECEIVER, reason: expect.any(String) })
    expect(over).toContainEqual({ _tag: "SendState", to: SENDER, state: FileState.Cancel, userId: TO })
    expect(isTerminal(ended)).toBe(true)
  })

  it("a PULL_DATA_RSP whose data length differs from the request closes the sender and cancels the receiver", () => {
    for (const length of [4, 6, 0]) {
      const [ready] = run(initialState(makeSpec(25)), loginSender, loginReceiver)
      const [s1] = run(ready, pullReq(0, 5, 100))
      const [s2, cs] = run(s1, pullRsp(0, length, 9))
      expect(cs).toContainEqual({ _tag: "Close", conn: SENDER, reason: expect.any(String) })
      expect(cs).toContainEqual({ _tag: "SendState", to: RECEIVER, state: FileState.Cancel, userId: FROM })
      expect(ofTag(cs, "Forward")).toEqual([])
      expect(isTerminal(s2)).toBe(true)
    }
  })

  for (const [who, conn, userId, other] of [
    ["sender", SENDER, FROM, RECEIVER],
    ["receiver", RECEIVER, TO, SENDER]
  ] as const) {
    it(`FILE_STATE CANCEL from the ${who} is forwarded to the other party and ends the task`, () => {
      const [ready] = run(initialState(makeSpec(25)), loginSender, loginReceiver)
      const [s1] = run(ready, pullReq(0, 10, 100))
      const cancel = fileState(conn, userId, FileState.Cancel, 55)
      const [s2, cs] = run(s1, cancel)
      expect(cs).toContainEqual({ _tag: "Forward", to: other, raw: cancel.raw, seq: 55, dataBytes: 0 })
      expect(cs[cs.length - 1]).toEqual({ _tag: "End", outcome: "cancelled", reason: expect.any(String) })
      expect(isTerminal(s2)).toBe(true)
      expect(s2.outcome).toBe("cancelled")
      // Nothing more happens afterwards.
      const [s3, later] = run(s2, pullRsp(0, 10, 9), { _tag: "Left", conn: other })
      expect(later).toEqual([])
      expect(s3).toBe(s2)
    })
  }

  it("a party leaving once both are in cancels the other; leaving alone re-arms the idle timer", () => {
    const [ready] = run(initialState(makeSpec(25)), loginSender, loginReceiver)
    const [ended, cs] = run(ready, { _tag: "Left", conn: SENDER })
    expect(cs).toContainEqual({ _tag: "SendState", to: RECEIVER, state: FileState.Cancel, userId: FROM })
    expect(ended.outcome).toBe("peer-left")
    const [alone] = run(initialState(makeSpec(25)), loginReceiver)
    const [back, cs2] = run(alone, { _tag: "Left", conn: RECEIVER })
    expect(back.phase).toBe("Ready")
    expect(cs2).toEqual([{ _tag: "ArmIdleTimer" }])
  })
})
