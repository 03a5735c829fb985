/**
 * The storage sweep (src/storage/sweeper.ts) on the TestClock, over a real
 * disk store in a temp dir: complete files past --offline-retention and
 * partial uploads past --upload-resume-ttl are deleted (file, .part and
 * sidecar), newer ones are kept, and tasks live in memory are skipped.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, LogLevel, Option, TestClock } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { ServerSettings } from "../../src/server/config.js"
import { defaultSettings, ServerConfig } from "../../src/server/config.js"
import * as DiskStore from "../../src/storage/diskStore.js"
import { encodeHeader, HEADER_BYTES } from "../../src/storage/header.js"
import type { StoredEntry, StoredMeta } from "../../src/storage/store.js"
import { OfflineStore } from "../../src/storage/store.js"
import { dueReason, layer as sweeperLayer, sweepOnce } from "../../src/storage/sweeper.js"
import type { TaskHandle } from "../../src/task/registry.js"
import { TaskRegistry } from "../../src/task/registry.js"

const base = mkdtempSync(join(tmpdir(), "ttfs-sweep-"))
afterAll(() => rmSync(base, { recursive: true, force: true }))

const HOUR = 3600_000
const DAY = 24 * HOUR
const RETENTION = 7 * DAY
const RESUME_TTL = DAY
/** A start time near the real one, so that file modification times and the TestClock agree. */
const T0 = Math.floor(Date.now() / 1000) * 1000

/** A registry in which exactly the ids in `live` are tasks in memory. */
const fakeRegistry = (live: Set<string>) =>
  TaskRegistry.of({
    create: () => Effect.die("unused"),
    find: () => Effect.die("unused"),
    get: (taskId) => (live.has(taskId) ? ({ spec: { taskId } } as unknown as TaskHandle) : undefined),
    size: () => live.size,
    snapshots: () => [],
    busy: () => 0,
    whenIdle: Effect.die("unused"),
    shutdownAll: Effect.die("unused")
  })

const setup = (overrides: Partial<ServerSettings> = {}) =>
  Effect.gen(function* () {
    const dataDir = mkdtempSync(join(base, "d-"))
    const settings: ServerSettings = { ...defaultSettings, dataDir, offlineRetentionMs: RETENTION, uploadResumeTtlMs: RESUME_TTL, ...overrides }
    const store = yield* DiskStore.make.pipe(Effect.provideService(ServerConfig, settings))
    const live = new Set<string>()
    const context = Context.empty().pipe(
      Context.add(ServerConfig, settings),
      Context.add(OfflineStore, store),
      Context.add(TaskRegistry, fakeRegistry(live))
    )
    const sweep = sweepOnce.pipe(Effect.provide(context), Effect.provide(Logger.minimumLogLevel(LogLevel.None)))
    return { dataDir, store, live, settings, context, sweep }
  })

const metaFor = (at: number, size: number): StoredMeta => ({
  taskId: randomUUID(),
  fromUserId: 1,
  toUserId: 2,
  fileName: "s.bin",
  fileSize: size,
  createdAt: at,
  uploadedAt: at
})

/** An upload completed at the TestClock's current time. */
const completeFile = (store: Context.Tag.Service<OfflineStore>) =>
  Effect.gen(function* () {
    const meta = metaFor(yield* TestClock.currentTimeMillis, 1000)
    yield* Effect.scoped(Effect.flatMap(store.openUpload(meta), (w) => Effect.zipRight(w.write(randomBytes(1000)), w.finish)))
    return meta.taskId
  })

/** An upload begun at the TestClock's current time that holds half its bytes. */
const partialFile = (store: Context.Tag.Service<OfflineStore>) =>
  Effect.gen(function* () {
    const meta = metaFor(yield* TestClock.currentTimeMillis, 1000)
    yield* Effect.scoped(Effect.flatMap(store.openUpload(meta), (w) => w.write(randomBytes(500))))
    return meta.taskId
  })

const filesOf = (dataDir: string, taskId: string) => {
  const dir = join(dataDir, "offline_file", taskId.slice(0, 2))
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(taskId)) : []
}

describe("dueReason", () => {
  const lifetimes = { retentionMs: RETENTION, resumeTtlMs: RESUME_TTL }
  const entry = (state: "partial" | "complete", meta: Partial<StoredMeta> | undefined, modifiedAt: number): StoredEntry => ({
    taskId: randomUUID(),
    state,
    meta: meta === undefined ? undefined : ({ ...metaFor(0, 10), ...meta } as StoredMeta),
    bytes: 10,
    modifiedAt
  })

  it("a complete file is due once more than the retention has passed since it completed (exactly the retention: kept)", () => {
    const e = entry("complete", { completedAt: T0, sha256: "x" }, T0 + 5 * DAY)
    expect(dueReason(e, T0 + RETENTION, lifetimes)).toBeUndefined()
    expect(dueReason(e, T0 + RETENTION + 1, lifetimes)).toBeDefined()
  })

  it("a complete file without a completion time (TeamTalk's) is judged by its modification time", () => {
    expect(dueReason(entry("complete", undefined, T0), T0 + RETENTION, lifetimes)).toBeUndefined()
    expect(dueReason(entry("complete", undefined, T0), T0 + RETENTION + 1, lifetimes)).toBeDefined()
  })

  it("a partial upload is due once more than the resume TTL has passed since the upload last began; without metadata, since it was modified", () => {
    const e = entry("partial", { uploadedAt: T0 }, T0)
    expect(dueReason(e, T0 + RESUME_TTL, lifetimes)).toBeUndefined()
    expect(dueReason(e, T0 + RESUME_TTL + 1, lifetimes)).toBeDefined()
    // The resume TTL applies to partial uploads, not the (longer) retention.
    expect(dueReason(e, T0 + RESUME_TTL + 1, { retentionMs: 100 * DAY, resumeTtlMs: RESUME_TTL })).toBeDefined()
    expect(dueReason(entry("partial", undefined, T0), T0 + RESUME_TTL, lifetimes)).toBeUndefined()
    expect(dueReason(entry("partial", undefined, T0), T0 + RESUME_TTL + 1, lifetimes)).toBeDefined()
  })
})

describe("sweepOnce on the TestClock", () => {
  it.effect("complete files past the retention are deleted with their sidecars; newer ones are kept", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { dataDir, store, sweep } = yield* setup()
      const old = yield* completeFile(store)
      yield* TestClock.setTime(T0 + 2 * DAY)
      const newer = yield* completeFile(store)
      expect(filesOf(dataDir, old).sort()).toEqual([old, `${old}.json`])

      yield* TestClock.setTime(T0 + RETENTION)
      expect(yield* sweep).toBe(0)
      yield* TestClock.setTime(T0 + RETENTION + 1)
      expect(yield* sweep).toBe(1)
      expect(filesOf(dataDir, old)).toEqual([])
      expect(filesOf(dataDir, newer).length).toBe(2)
      expect(Option.isNone(yield* store.load(old))).toBe(true)

      yield* TestClock.setTime(T0 + 2 * DAY + RETENTION + 1)
      expect(yield* sweep).toBe(1)
      expect(filesOf(dataDir, newer)).toEqual([])
    })
  )

  it.effect("partial uploads past the resume TTL are deleted (.part and sidecar); newer ones, and complete files, are kept", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { dataDir, store, sweep } = yield* setup()
      const stale = yield* partialFile(store)
      const stored = yield* completeFile(store)
      yield* TestClock.setTime(T0 + 12 * HOUR)
      const recent = yield* partialFile(store)
      expect(filesOf(dataDir, stale).sort()).toEqual([`${stale}.json`, `${stale}.part`])

      yield* TestClock.setTime(T0 + RESUME_TTL + 1)
      expect(yield* sweep).toBe(1)
      expect(filesOf(dataDir, stale)).toEqual([])
      expect(filesOf(dataDir, recent).length).toBe(2)
      expect(filesOf(dataDir, stored).length).toBe(2)

      yield* TestClock.setTime(T0 + 12 * HOUR + RESUME_TTL + 1)
      expect(yield* sweep).toBe(1)
      expect(filesOf(dataDir, recent)).toEqual([])
      expect(filesOf(dataDir, stored).length).toBe(2)
    })
  )

  it.effect("a resumed upload counts its TTL from the resume", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { dataDir, store, sweep } = yield* setup()
      const meta = metaFor(T0, 1000)
      yield* Effect.scoped(Effect.flatMap(store.openUpload(meta), (w) => w.write(randomBytes(100))))
      yield* TestClock.setTime(T0 + 20 * HOUR)
      yield* Effect.scoped(Effect.flatMap(store.openUpload({ ...meta, uploadedAt: T0 + 20 * HOUR }), (w) => w.write(randomBytes(100))))
      yield* TestClock.setTime(T0 + RESUME_TTL + 1)
      expect(yield* sweep).toBe(0)
      expect(filesOf(dataDir, meta.taskId).length).toBe(2)
      yield* TestClock.setTime(T0 + 20 * HOUR + RESUME_TTL + 1)
      expect(yield* sweep).toBe(1)
      expect(filesOf(dataDir, meta.taskId)).toEqual([])
    })
  )

  it.effect("tasks live in memory are skipped, however old; once they leave memory they are swept", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { dataDir, live, store, sweep } = yield* setup()
      const done = yield* completeFile(store)
      const part = yield* partialFile(store)
      live.add(done)
      live.add(part)
      yield* TestClock.setTime(T0 + 30 * RETENTION)
      expect(yield* sweep).toBe(0)
      expect(filesOf(dataDir, done).length).toBe(2)
      expect(filesOf(dataDir, part).length).toBe(2)
      live.clear()
      expect(yield* sweep).toBe(2)
      expect(filesOf(dataDir, done)).toEqual([])
      expect(filesOf(dataDir, part)).toEqual([])
    })
  )

  it.effect("TeamTalk files (no sidecar) are judged by their modification time", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { dataDir, sweep } = yield* setup()
      const write = (ageMs: number) => {
        const taskId = randomUUID()
        const dir = join(dataDir, "offline_file", taskId.slice(0, 2))
        mkdirSync(dir, { recursive: true })
        const path = join(dir, taskId)
        writeFileSync(path, Buffer.concat([encodeHeader({ taskId, fromUserId: 1, toUserId: 2, createTime: 0, fileName: "", fileSize: 10 }), randomBytes(10)]))
        const t = (T0 - ageMs) / 1000
        utimesSync(path, t, t)
        return taskId
      }
      const old = write(RETENTION + HOUR)
      const fresh = write(RETENTION - HOUR)
      expect(yield* sweep).toBe(1)
      expect(filesOf(dataDir, old)).toEqual([])
      expect(filesOf(dataDir, fresh)).toEqual([fresh])
    })
  )

  it.effect("what is not a task's file is left alone (other names, other prefixes, directories)", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { dataDir, sweep } = yield* setup()
      const root = join(dataDir, "offline_file")
      const id = randomUUID()
      const wrongPrefix = join(root, id.slice(0, 2) === "zz" ? "yy" : "zz")
      mkdirSync(wrongPrefix, { recursive: true })
      writeFileSync(join(wrongPrefix, id), Buffer.alloc(HEADER_BYTES))
      writeFileSync(join(root, "README"), "not a task")
      mkdirSync(join(root, id.slice(0, 2), "sub"), { recursive: true })
      for (const p of [join(wrongPrefix, id), join(root, "README")]) utimesSync(p, 0, 0)
      yield* TestClock.setTime(T0 + 100 * RETENTION)
      expect(yield* sweep).toBe(0)
      expect(existsSync(join(wrongPrefix, id))).toBe(true)
      expect(existsSync(join(root, "README"))).toBe(true)
    })
  )

  // Issue 3, item 7: "Nothing is kept forever by accident." A stored file that fails
  // verification is moved to quarantine/, but its sidecar stays in offline_file/, where
  // the sweep's listing (complete files and .part only) never sees it.
  it.effect("a quarantined file leaves nothing in offline_file/ (its sidecar goes along)", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { dataDir, store } = yield* setup()
      const taskId = yield* completeFile(store)
      const file = join(dataDir, "offline_file", taskId.slice(0, 2), taskId)
      writeFileSync(file, Buffer.concat([Buffer.alloc(HEADER_BYTES), randomBytes(1000)]))
      const error = yield* Effect.flip(store.load(taskId))
      expect(error.reason).toBe("Corrupt")
      expect(readdirSync(join(dataDir, "quarantine")).filter((n) => !n.endsWith(".json")).length).toBe(1)
      expect(filesOf(dataDir, taskId)).toEqual([])
    })
  )

  it.effect("a sidecar without data (a crash before the partial file was created) is deleted after the resume TTL", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { dataDir, store, sweep } = yield* setup()
      const taskId = randomUUID()
      const dir = join(dataDir, "offline_file", taskId.slice(0, 2))
      mkdirSync(dir, { recursive: true })
      writeFileSync(
        join(dir, `${taskId}.json`),
        JSON.stringify({ taskId, fromUserId: 1, toUserId: 2, fileName: "x", fileSize: 10, createdAt: T0, uploadedAt: T0 })
      )
      writeFileSync(join(dir, `${taskId}.json.tmp`), "{")
      expect((yield* store.list).map((e) => [e.taskId, e.state, e.bytes])).toContainEqual([taskId, "partial", 0])
      yield* sweep
      expect(filesOf(dataDir, taskId).length).toBe(2)
      yield* TestClock.setTime(T0 + 100 * RETENTION)
      yield* sweep
      expect(filesOf(dataDir, taskId)).toEqual([])
    })
  )
})

describe("the sweeper layer on the TestClock", () => {
  it.scoped("sweeps at start-up and again every sweepIntervalMs, not before", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { context, dataDir, store } = yield* setup({ sweepIntervalMs: HOUR })
      const first = yield* completeFile(store)
      yield* TestClock.setTime(T0 + RETENTION + 1)
      const kept = yield* completeFile(store)
      yield* Layer.build(sweeperLayer.pipe(Layer.provide(Layer.succeedContext(context)), Layer.provide(Logger.minimumLogLevel(LogLevel.None))))
      yield* realWait(() => filesOf(dataDir, first).length === 0)
      // A TeamTalk file, long expired by its modification time, appears after the start-up sweep.
      const taskId = randomUUID()
      const dir = join(dataDir, "offline_file", taskId.slice(0, 2))
      mkdirSync(dir, { recursive: true })
      const path = join(dir, taskId)
      writeFileSync(path, Buffer.concat([encodeHeader({ taskId, fromUserId: 1, toUserId: 2, createTime: 0, fileName: "", fileSize: 3 }), randomBytes(3)]))
      utimesSync(path, (T0 - DAY) / 1000, (T0 - DAY) / 1000)
      yield* realPause(100)
      expect(existsSync(path)).toBe(true)
      yield* TestClock.adjust(HOUR - 1000)
      yield* realPause(100)
      expect(existsSync(path)).toBe(true)
      yield* TestClock.adjust(1000)
      yield* realWait(() => !existsSync(path))
      expect(filesOf(dataDir, kept).length).toBe(2)
    })
  )
})

/** Waits in real time (the TestClock does not move) for file-system work done by forked fibers. */
const realPause = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))
const realWait = (check: () => boolean, timeoutMs = 3000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error("condition not reached in time"))
      yield* realPause(10)
    }
  })

