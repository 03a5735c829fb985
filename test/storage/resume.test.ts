/**
 * Resuming an upload against the disk store directly (src/storage/diskStore.ts,
 * real files in a temp dir): whatever offset an upload is cut at, in whatever
 * blocks it was written, dropping the writer's scope (the connection died) and
 * reopening continues from exactly the bytes in the partial file, and the
 * finished file's bytes and sha256 are exact. What lies in `.part` past the
 * point resumed from, or past the file's end, never ends up in the file.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc, Fiber, Option, Scope } from "effect"
import { createHash, randomBytes, randomUUID } from "node:crypto"
import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, truncateSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { defaultSettings, ServerConfig } from "../../src/server/config.js"
import * as DiskStore from "../../src/storage/diskStore.js"
import { decodeHeader, HEADER_BYTES } from "../../src/storage/header.js"
import type { StoredMeta } from "../../src/storage/store.js"

const base = mkdtempSync(join(tmpdir(), "ttfs-resume-"))
afterAll(() => rmSync(base, { recursive: true, force: true }))

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

/** A disk store on a fresh data dir of its own. */
const freshStore = Effect.gen(function* () {
  const dataDir = mkdtempSync(join(base, "d-"))
  const store = yield* DiskStore.make.pipe(Effect.provideService(ServerConfig, { ...defaultSettings, dataDir }))
  return { store, dataDir }
})

const pathsOf = (dataDir: string, taskId: string) => {
  const dir = join(dataDir, "offline_file", taskId.slice(0, 2))
  const file = join(dir, taskId)
  return { dir, file, part: `${file}.part`, meta: `${file}.json` }
}

const metaFor = (size: number): StoredMeta => ({
  taskId: randomUUID(),
  fromUserId: 11,
  toUserId: 22,
  fileName: "resume ✓.bin",
  fileSize: size,
  createdAt: 1_700_000_000_000,
  uploadedAt: 1_700_000_000_000
})

/** Open file descriptors of this process that point at `path` (Linux /proc). */
const openFds = (path: string) =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(join("/proc/self/fd", fd)) === path
    } catch {
      return false
    }
  }).length

/** Writes data[from, to) in blocks whose sizes cycle through `blocks`. */
const writeRange = (write: (b: Uint8Array) => Effect.Effect<void, unknown>, data: Buffer, from: number, to: number, blocks: ReadonlyArray<number>) =>
  Effect.gen(function* () {
    let at = from
    let i = 0
    while (at < to) {
      const n = Math.min(blocks[i++ % blocks.length]!, to - at)
      yield* write(data.subarray(at, at + n))
      at += n
    }
  })

/** The finished file must be the header (of `meta`) and exactly `data`, with the sha256 in its sidecar, and no .part. */
const checkFinished = (dataDir: string, meta: StoredMeta, data: Buffer, sha: string) => {
  const p = pathsOf(dataDir, meta.taskId)
  const bytes = readFileSync(p.file)
  expect(bytes.length).toBe(HEADER_BYTES + data.length)
  expect(bytes.subarray(HEADER_BYTES).equals(data)).toBe(true)
  expect(sha).toBe(sha256(data))
  const header = decodeHeader(bytes.subarray(0, HEADER_BYTES))
  expect(header).toStrictEqual({
    taskId: meta.taskId,
    fromUserId: meta.fromUserId,
    toUserId: meta.toUserId,
    createTime: Math.floor(meta.createdAt / 1000),
    fileName: meta.fileName,
    fileSize: meta.fileSize
  })
  expect((JSON.parse(readFileSync(p.meta, "utf8")) as StoredMeta).sha256).toBe(sha256(data))
  expect(existsSync(p.part)).toBe(false)
  expect(openFds(p.part)).toBe(0)
}

const contents = fc.oneof(
  fc.uint8Array({ maxLength: 150_000 }),
  fc.constantFrom(0, 1, 32767, 32768, 32769, 65536).map((n) => new Uint8Array(randomBytes(n)))
)
const blockSizes = fc.array(fc.oneof(fc.integer({ min: 1, max: 70_000 }), fc.constant(32768)), { minLength: 1, maxLength: 5 })

describe("disk store: interrupted uploads resume exactly", () => {
  it.live.prop(
    "cut anywhere, in any blocks, any number of times: each reopen resumes at the bytes written, and the file is exact",
    {
      content: contents,
      cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 3 }),
      blocks: blockSizes,
      resumeBlocks: blockSizes
    },
    ({ blocks, content, cuts, resumeBlocks }) =>
      Effect.gen(function* () {
        const data = Buffer.from(content)
        const { dataDir, store } = yield* freshStore
        const meta = metaFor(data.length)
        const p = pathsOf(dataDir, meta.taskId)
        let written = 0
        for (const cut of [...cuts].sort((a, b) => a - b).map((c) => Math.floor(c * data.length))) {
          yield* Effect.scoped(
            Effect.gen(function* () {
              const w = yield* store.openUpload(meta)
              expect(w.received).toBe(written)
              yield* writeRange(w.write, data, written, Math.max(cut, written), blocks)
              written = Math.max(cut, written)
            })
          )
          // The connection died: the handle is closed, the partial holds exactly what was written, nothing is complete.
          expect(openFds(p.part)).toBe(0)
          expect(statSync(p.part).size).toBe(HEADER_BYTES + written)
          expect(readFileSync(p.part).subarray(HEADER_BYTES).equals(data.subarray(0, written))).toBe(true)
          expect(existsSync(p.file)).toBe(false)
          const loaded = yield* store.load(meta.taskId)
          expect(Option.getOrThrow(loaded)).toMatchObject({ state: "partial", received: written })
        }
        const sha = yield* Effect.scoped(
          Effect.gen(function* () {
            const w = yield* store.openUpload(meta)
            expect(w.received).toBe(written)
            yield* writeRange(w.write, data, written, data.length, resumeBlocks)
            return yield* w.finish
          })
        )
        checkFinished(dataDir, meta, data, sha)
        const loaded = Option.getOrThrow(yield* store.load(meta.taskId))
        expect(loaded.state).toBe("complete")
        expect(loaded.meta.sha256).toBe(sha256(data))
      }),
    { fastCheck: { numRuns: 25 } }
  )

  it.live.prop(
    "a .part that lost its tail (shorter than written) resumes from what it holds; the file is exact",
    { content: fc.uint8Array({ minLength: 1, maxLength: 150_000 }), cut: fc.double({ min: 0, max: 1, noNaN: true }), keep: fc.double({ min: 0, max: 1, noNaN: true }), blocks: blockSizes },
    ({ blocks, content, cut, keep }) =>
      Effect.gen(function* () {
        const data = Buffer.from(content)
        const { dataDir, store } = yield* freshStore
        const meta = metaFor(data.length)
        const p = pathsOf(dataDir, meta.taskId)
        const written = Math.floor(cut * data.length)
        yield* Effect.scoped(Effect.flatMap(store.openUpload(meta), (w) => writeRange(w.write, data, 0, written, blocks)))
        const kept = Math.floor(keep * written)
        truncateSync(p.part, HEADER_BYTES + kept)
        const sha = yield* Effect.scoped(
          Effect.gen(function* () {
            const w = yield* store.openUpload(meta)
            expect(w.received).toBe(kept)
            yield* writeRange(w.write, data, kept, data.length, blocks)
            return yield* w.finish
          })
        )
        checkFinished(dataDir, meta, data, sha)
      }),
    { fastCheck: { numRuns: 25 } }
  )

  it.live.prop(
    "stale bytes past the end of the file in .part are cut on reopen, never kept after the data",
    { content: fc.uint8Array({ maxLength: 100_000 }), garbage: fc.uint8Array({ minLength: 1, maxLength: 50_000 }) },
    ({ content, garbage }) =>
      Effect.gen(function* () {
        const data = Buffer.from(content)
        const { dataDir, store } = yield* freshStore
        const meta = metaFor(data.length)
        const p = pathsOf(dataDir, meta.taskId)
        yield* Effect.scoped(Effect.flatMap(store.openUpload(meta), (w) => w.write(data)))
        appendFileSync(p.part, garbage)
        const sha = yield* Effect.scoped(
          Effect.gen(function* () {
            const w = yield* store.openUpload(meta)
            expect(w.received).toBe(data.length)
            expect(statSync(p.part).size).toBe(HEADER_BYTES + data.length)
            return yield* w.finish
          })
        )
        checkFinished(dataDir, meta, data, sha)
      }),
    { fastCheck: { numRuns: 20 } }
  )

  it.live.prop(
    "a .part shorter than its header (cut while the header was written) restarts at 0 with a fresh header",
    { content: fc.uint8Array({ maxLength: 80_000 }), length: fc.integer({ min: 0, max: HEADER_BYTES - 1 }), fill: fc.integer({ min: 0, max: 255 }) },
    ({ content, fill, length }) =>
      Effect.gen(function* () {
        const data = Buffer.from(content)
        const { dataDir, store } = yield* freshStore
        const meta = metaFor(data.length)
        const p = pathsOf(dataDir, meta.taskId)
        yield* Effect.scoped(Effect.asVoid(store.openUpload(meta)))
        truncateSync(p.part, 0)
        appendFileSync(p.part, Buffer.alloc(length, fill))
        const sha = yield* Effect.scoped(
          Effect.gen(function* () {
            const w = yield* store.openUpload(meta)
            expect(w.received).toBe(0)
            yield* w.write(data)
            return yield* w.finish
          })
        )
        checkFinished(dataDir, meta, data, sha)
      }),
    { fastCheck: { numRuns: 20 } }
  )
})

describe("disk store: exits and large files", () => {
  it.live("an upload interrupted mid-write releases its file handle; the partial is an exact prefix and resumes", () =>
    Effect.gen(function* () {
      const { dataDir, store } = yield* freshStore
      const data = randomBytes(3 * 1024 * 1024 + 123)
      const meta = metaFor(data.length)
      const p = pathsOf(dataDir, meta.taskId)
      const scope = yield* Scope.make()
      const w = yield* store.openUpload(meta).pipe(Scope.extend(scope))
      expect(openFds(p.part)).toBe(1)
      const fiber = yield* Effect.fork(writeRange(w.write, data, 0, data.length, [4096]))
      yield* Effect.sleep(5)
      yield* Fiber.interrupt(fiber)
      yield* Scope.close(scope, Exit.interrupt(fiber.id()))
      expect(openFds(p.part)).toBe(0)
      const held = statSync(p.part).size - HEADER_BYTES
      expect(readFileSync(p.part).subarray(HEADER_BYTES).equals(data.subarray(0, held))).toBe(true)
      const sha = yield* Effect.scoped(
        Effect.gen(function* () {
          const again = yield* store.openUpload(meta)
          expect(again.received).toBe(held)
          yield* writeRange(again.write, data, held, data.length, [65536])
          return yield* again.finish
        })
      )
      checkFinished(dataDir, meta, data, sha)
    })
  )

  it.live("a resume past 1 MiB (the hash is rebuilt in pieces) and a file of several MiB: exact bytes and sha256; load verifies them", () =>
    Effect.gen(function* () {
      const { dataDir, store } = yield* freshStore
      const data = randomBytes(5 * 1024 * 1024 + 77)
      const meta = metaFor(data.length)
      for (const cut of [1024 * 1024 - 1, 1024 * 1024 + 1, 2 * 1024 * 1024 + 3]) {
        yield* Effect.scoped(
          Effect.gen(function* () {
            const w = yield* store.openUpload(meta)
            yield* writeRange(w.write, data, w.received, cut, [32768])
          })
        )
      }
      const sha = yield* Effect.scoped(
        Effect.gen(function* () {
          const w = yield* store.openUpload(meta)
          expect(w.received).toBe(2 * 1024 * 1024 + 3)
          yield* writeRange(w.write, data, w.received, data.length, [1024 * 1024])
          return yield* w.finish
        })
      )
      checkFinished(dataDir, meta, data, sha)
      expect(Option.getOrThrow(yield* store.load(meta.taskId)).state).toBe("complete")
      // Positional reads of the stored file give the bytes back.
      const read = yield* Effect.scoped(Effect.flatMap(store.openRead(meta.taskId), (r) => r.read(1024 * 1024 - 5, 10)))
      expect(read.equals(data.subarray(1024 * 1024 - 5, 1024 * 1024 + 5))).toBe(true)
    })
  )

  it.live("finish refuses an upload that does not hold every byte, and leaves no complete file", () =>
    Effect.gen(function* () {
      const { dataDir, store } = yield* freshStore
      const data = randomBytes(1000)
      const meta = metaFor(data.length)
      const error = yield* Effect.scoped(
        Effect.gen(function* () {
          const w = yield* store.openUpload(meta)
          yield* w.write(data.subarray(0, 999))
          return yield* Effect.flip(w.finish)
        })
      )
      expect(error._tag).toBe("StoreError")
      expect(existsSync(pathsOf(dataDir, meta.taskId).file)).toBe(false)
    })
  )

  it.live("a file this process stored loads again without re-hashing, but one changed on disk since is caught", () =>
    Effect.gen(function* () {
      const { dataDir, store } = yield* freshStore
      const data = randomBytes(5000)
      const meta = metaFor(data.length)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const w = yield* store.openUpload(meta)
          yield* w.write(data)
          yield* w.finish
        })
      )
      const file = pathsOf(dataDir, meta.taskId).file
      // Unchanged: loads as complete.
      expect((yield* store.load(meta.taskId)).pipe(Option.map((t) => t.state))).toEqual(Option.some("complete"))
      // One byte changed (size and inode kept, mtime moves on): verified again, and quarantined.
      yield* Effect.sleep(20)
      const fd = openSync(file, "r+")
      writeSync(fd, Buffer.from([data[100]! ^ 0xff]), 0, 1, HEADER_BYTES + 100)
      closeSync(fd)
      const error = yield* Effect.flip(store.load(meta.taskId))
      expect(error.reason).toBe("Corrupt")
      expect(existsSync(file)).toBe(false)
    })
  )
})

describe("dropBytes (what a short writev leaves to write)", () => {
  it.prop(
    "leaves exactly the bytes after the first n, in order",
    { pieces: fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }), cut: fc.nat() },
    ({ cut, pieces }) => {
      const whole = Buffer.concat(pieces)
      const n = cut % (whole.length + 1)
      const rest = DiskStore.dropBytes(pieces, n)
      expect(Buffer.concat(rest).equals(whole.subarray(n))).toBe(true)
    }
  )
})
