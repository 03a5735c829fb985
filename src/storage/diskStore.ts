import { Clock, Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import type { Hash } from "node:crypto"
import { constants } from "node:fs"
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises"
import type { FileHandle } from "node:fs/promises"
import type { Stats } from "node:fs"
import { join } from "node:path"
import { ServerConfig } from "../server/config.js"
import { isCanonicalTaskId } from "../task/spec.js"
import { decodeHeader, encodeHeader, HEADER_BYTES } from "./header.js"
import type { StoredEntry, StoredMeta, StoredTask, UploadWriter } from "./store.js"
import { OfflineStore, StoreError } from "./store.js"

const HASH_CHUNK = 1024 * 1024
const PROBE_BYTES = Buffer.from("ok\n")

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

const ioError = (what: string) => (cause: unknown) =>
  new StoreError({
    reason: (cause as NodeJS.ErrnoException)?.code === "ENOSPC" || (cause as NodeJS.ErrnoException)?.code === "EDQUOT" ? "NoSpace" : "Io",
    message: `${what}: ${describe(cause)}`
  })

const io = <A>(what: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: ioError(what) })

const exists = (path: string) =>
  Effect.promise(() =>
    stat(path).then(
      (s) => s,
      () => undefined
    )
  )

/** fsync a directory, so a rename or a new file in it survives a crash. */
const syncDir = (dir: string) =>
  io(`sync ${dir}`, async () => {
    const h = await open(dir, "r")
    try {
      await h.sync()
    } finally {
      await h.close()
    }
  })

/** Replaces a small file atomically: temp file, fsync, rename (the caller syncs the directory). */
const writeAtomic = (path: string, content: string) =>
  io(`write ${path}`, async () => {
    const tmp = `${path}.tmp`
    const h = await open(tmp, "w")
    try {
      await h.writeFile(content)
      await h.sync()
    } finally {
      await h.close()
    }
    await rename(tmp, path)
  })

/** sha256 of `length` bytes of an open file from `start`, read in 1 MiB pieces. */
const hashRange = async (handle: FileHandle, start: number, length: number, hash: Hash = createHash("sha256")): Promise<Hash> => {
  const buf = Buffer.allocUnsafe(Math.min(HASH_CHUNK, Math.max(length, 1)))
  let done = 0
  while (done < length) {
    const n = Math.min(buf.length, length - done)
    const { bytesRead } = await handle.read(buf, 0, n, start + done)
    if (bytesRead === 0) throw new Error(`file ended ${length - done} bytes early`)
    hash.update(buf.subarray(0, bytesRead))
    done += bytesRead
  }
  return hash
}

const readMeta = (path: string) =>
  Effect.promise(() =>
    readFile(path, "utf8").then(
      (text) => JSON.parse(text) as StoredMeta,
      () => undefined
    )
  )

/**
 * Offline files on local disk, in TeamTalk's layout:
 * `<data-dir>/offline_file/<first 2 chars>/<task id>` holds the 960-byte
 * header and the bytes; `<task id>.part` is an upload in progress and
 * `<task id>.json` our metadata (sha256 included). docs/storage.md has the
 * crash-safety argument.
 */
/** `pieces` without their first `n` bytes. */
export const dropBytes = (pieces: ReadonlyArray<Uint8Array>, n: number): ReadonlyArray<Uint8Array> => {
  let i = 0
  let left = n
  while (i < pieces.length && left >= pieces[i]!.length) left -= pieces[i++]!.length
  if (i === pieces.length) return []
  return left === 0 ? pieces.slice(i) : [pieces[i]!.subarray(left), ...pieces.slice(i + 1)]
}

export const make = Effect.gen(function* () {
  const { dataDir } = yield* ServerConfig
  const root = join(dataDir, "offline_file")
  const quarantine = join(dataDir, "quarantine")
  yield* io(`create ${root}`, () => mkdir(root, { recursive: true }))
  /** Every task with data on disk: kept current by openUpload/remove/quarantine, seeded by a listing at start. */
  const index = new Map<string, { fromUserId: number; fileSize: number }>()
  /**
   * Complete files this process wrote or verified, by task id, with the size, mtime and
   * inode they had then: a task that leaves memory and is loaded again is not re-hashed
   * while its file is unchanged. After a restart this is empty, so every file is verified.
   */
  const verified = new Map<string, string>()
  const signature = (s: Stats) => `${s.size}:${s.mtimeMs}:${s.ino}`

  const paths = (taskId: string) => {
    // Task ids are checked before they get here; this is the last line of defence against path tricks.
    if (!isCanonicalTaskId(taskId)) throw new Error(`refusing to build a path from task id ${JSON.stringify(taskId.slice(0, 64))}`)
    const dir = join(root, taskId.slice(0, 2))
    return { dir, file: join(dir, taskId), part: join(dir, `${taskId}.part`), meta: join(dir, `${taskId}.json`) }
  }
  const pathsOf = (taskId: string) =>
    Effect.try({ try: () => paths(taskId), catch: (e) => new StoreError({ reason: "Io", message: describe(e) }) })

  const openUpload = (meta: StoredMeta) =>
    Effect.gen(function* () {
      const p = yield* pathsOf(meta.taskId)
      yield* io(`create ${p.dir}`, () => mkdir(p.dir, { recursive: true }))
      yield* writeAtomic(p.meta, JSON.stringify(meta))
      index.set(meta.taskId, { fromUserId: meta.fromUserId, fileSize: meta.fileSize })
      const handle = yield* Effect.acquireRelease(
        io(`open ${p.part}`, () => open(p.part, constants.O_RDWR | constants.O_CREAT, 0o640)),
        (h) => Effect.promise(() => h.close())
      )
      const size = (yield* io(`stat ${p.part}`, () => handle.stat())).size
      let received = 0
      if (size < HEADER_BYTES) {
        yield* io(`write ${p.part}`, () =>
          handle.write(encodeHeader({ ...meta, createTime: Math.floor(meta.createdAt / 1000) }), 0, HEADER_BYTES, 0)
        )
      } else {
        received = Math.min(size - HEADER_BYTES, meta.fileSize)
      }
      // Whatever lies past the bytes we resume from is stale: cut it, so nothing is ever appended after it.
      yield* io(`truncate ${p.part}`, () => handle.truncate(HEADER_BYTES + received))
      const hash = yield* io(`hash ${p.part}`, () => hashRange(handle, HEADER_BYTES, received))
      yield* syncDir(p.dir)
      let position = received
      const writer: UploadWriter = {
        received,
        write: (block) => {
          const pieces = block instanceof Uint8Array ? [block] : block
          return io(`write ${p.part}`, async () => {
            let at = HEADER_BYTES + position
            let rest: ReadonlyArray<Uint8Array> = pieces.filter((piece) => piece.length > 0)
            // One writev for the whole batch; a short write (a disk nearly full) carries on with what is left.
            while (rest.length > 0) {
              const { bytesWritten } = await handle.writev(rest as Array<Uint8Array>, at)
              if (bytesWritten === 0) throw new Error("the disk took no bytes")
              at += bytesWritten
              rest = dropBytes(rest, bytesWritten)
            }
          }).pipe(
            Effect.map(() => {
              for (const data of pieces) {
                position += data.length
                hash.update(data)
              }
            })
          )
        },
        finish: Effect.gen(function* () {
          if (position !== meta.fileSize) {
            return yield* new StoreError({ reason: "Io", message: `upload holds ${position} of ${meta.fileSize} bytes` })
          }
          yield* io(`sync ${p.part}`, () => handle.sync())
          const sha256 = hash.digest("hex")
          const completedAt = yield* Clock.currentTimeMillis
          yield* writeAtomic(p.meta, JSON.stringify({ ...meta, sha256, completedAt } satisfies StoredMeta))
          yield* io(`rename ${p.part}`, () => rename(p.part, p.file))
          yield* syncDir(p.dir)
          const written = yield* exists(p.file)
          if (written !== undefined) verified.set(meta.taskId, signature(written))
          return sha256
        })
      }
      return writer
    })

  const quarantineFile = (taskId: string, file: string, reason: string) =>
    Effect.gen(function* () {
      yield* io(`create ${quarantine}`, () => mkdir(quarantine, { recursive: true }))
      const target = join(quarantine, `${taskId}.${Date.now()}`)
      yield* io(`quarantine ${file}`, async () => {
        await rename(file, target)
        // The sidecar goes along, as evidence; left behind it would describe a file that is gone.
        await rename(`${file}.json`, `${target}.json`).catch(() => undefined)
      })
      index.delete(taskId)
      verified.delete(taskId)
      yield* Effect.logError("stored file quarantined").pipe(Effect.annotateLogs({ task: taskId.slice(0, 8), reason, movedTo: target }))
      return yield* new StoreError({ reason: "Corrupt", message: `stored file failed verification (${reason}); quarantined` })
    })

  const load = (taskId: string): Effect.Effect<Option.Option<StoredTask>, StoreError> =>
    Effect.gen(function* () {
      if (!isCanonicalTaskId(taskId)) return Option.none()
      const p = paths(taskId)
      const meta = yield* readMeta(p.meta)
      const complete = yield* exists(p.file)
      if (complete && meta?.sha256 !== undefined && verified.get(taskId) === signature(complete)) {
        return Option.some({ state: "complete", meta })
      }
      if (complete) {
        const checked = yield* io(`verify ${p.file}`, async () => {
          const h = await open(p.file, "r")
          try {
            const header = Buffer.alloc(HEADER_BYTES)
            await h.read(header, 0, HEADER_BYTES, 0)
            const size = (await h.stat()).size
            const fileSize = meta?.fileSize ?? decodeHeader(header).fileSize
            if (size !== HEADER_BYTES + fileSize) return { ok: false as const, reason: `length ${size} is not ${HEADER_BYTES} + ${fileSize}` }
            const sha256 = (await hashRange(h, HEADER_BYTES, fileSize)).digest("hex")
            if (meta?.sha256 !== undefined && meta.sha256 !== sha256) return { ok: false as const, reason: "sha256 mismatch" }
            return { ok: true as const, sha256, header: decodeHeader(header) }
          } catch (e) {
            return { ok: false as const, reason: describe(e) }
          } finally {
            await h.close()
          }
        })
        if (!checked.ok) return yield* quarantineFile(taskId, p.file, checked.reason)
        verified.set(taskId, signature(complete))
        if (meta?.sha256 !== undefined) return Option.some({ state: "complete", meta })
        // A file written by TeamTalk (no sidecar): adopt it, recording its sha256 from now on.
        const h = checked.header
        if (h.taskId !== taskId) return yield* quarantineFile(taskId, p.file, "header names another task")
        const adopted: StoredMeta = {
          taskId,
          fromUserId: h.fromUserId,
          toUserId: h.toUserId,
          fileName: meta?.fileName ?? h.fileName,
          fileSize: h.fileSize,
          createdAt: h.createTime * 1000,
          uploadedAt: h.createTime * 1000,
          sha256: checked.sha256,
          completedAt: h.createTime * 1000
        }
        yield* writeAtomic(p.meta, JSON.stringify(adopted))
        index.set(taskId, { fromUserId: adopted.fromUserId, fileSize: adopted.fileSize })
        yield* Effect.logInfo("adopted a stored file without metadata").pipe(Effect.annotateLogs({ task: taskId.slice(0, 8) }))
        return Option.some({ state: "complete", meta: adopted })
      }
      const part = yield* exists(p.part)
      if (part !== undefined && meta !== undefined) {
        return Option.some({ state: "partial", meta, received: Math.max(0, Math.min(part.size - HEADER_BYTES, meta.fileSize)) })
      }
      return Option.none()
    })

  const openRead = (taskId: string) =>
    Effect.gen(function* () {
      const p = yield* pathsOf(taskId)
      const handle = yield* Effect.acquireRelease(io(`open ${p.file}`, () => open(p.file, "r")), (h) =>
        Effect.promise(() => h.close())
      )
      return {
        read: (offset: number, length: number) =>
          io(`read ${p.file}`, async () => {
            const buf = Buffer.allocUnsafe(length)
            const { bytesRead } = await handle.read(buf, 0, length, HEADER_BYTES + offset)
            if (bytesRead !== length) throw new Error(`short read: ${bytesRead} of ${length} bytes at ${offset}`)
            return buf
          })
      }
    })

  const remove = (taskId: string) =>
    Effect.gen(function* () {
      const p = yield* pathsOf(taskId)
      index.delete(taskId)
      verified.delete(taskId)
      yield* io(`remove ${taskId.slice(0, 8)}`, async () => {
        await rm(p.file, { force: true })
        await rm(p.part, { force: true })
        await rm(p.meta, { force: true })
        await rm(`${p.meta}.tmp`, { force: true })
      })
    })

  const list = io(`list ${root}`, async () => {
    const entries: Array<StoredEntry> = []
    for (const prefix of await readdir(root)) {
      const dir = join(root, prefix)
      let names: Array<string>
      try {
        names = await readdir(dir)
      } catch {
        continue
      }
      // Every task with anything here: data, a partial upload, or only a sidecar (a crash
      // between writing it and creating the partial file), so that the sweep sees them all.
      const ids = new Set<string>()
      for (const name of names) {
        const taskId = name.replace(/(\.part|\.json|\.json\.tmp)$/, "")
        if (isCanonicalTaskId(taskId) && taskId.slice(0, 2) === prefix) ids.add(taskId)
      }
      for (const taskId of ids) {
        const complete = await stat(join(dir, taskId)).catch(() => undefined)
        const part = complete?.isFile() ? undefined : await stat(join(dir, `${taskId}.part`)).catch(() => undefined)
        const data = complete?.isFile() ? complete : part
        const meta = await readFile(join(dir, `${taskId}.json`), "utf8").then(
          (t) => JSON.parse(t) as StoredMeta,
          () => undefined
        )
        const sidecar = data ?? (await stat(join(dir, `${taskId}.json`)).catch(() => undefined))
        entries.push({
          taskId,
          state: complete?.isFile() ? "complete" : "partial",
          meta,
          bytes: data ? Math.max(0, data.size - HEADER_BYTES) : 0,
          modifiedAt: sidecar?.mtimeMs ?? 0
        })
      }
    }
    return entries
  })

  for (const entry of yield* list) {
    index.set(entry.taskId, { fromUserId: entry.meta?.fromUserId ?? 0, fileSize: entry.meta?.fileSize ?? entry.bytes })
  }

  let probes = 0
  /** Creates, writes and removes a small file where uploads go; its name starts with a dot, which no listing takes for a task. */
  const checkWritable = Effect.suspend(() => {
    const probe = join(root, `.writable-${process.pid}-${++probes}`)
    return io(`write in ${root}`, async () => {
      const h = await open(probe, "wx")
      try {
        await h.write(PROBE_BYTES)
      } finally {
        await h.close()
        await rm(probe, { force: true })
      }
    })
  })

  return OfflineStore.of({ openUpload, load, openRead, remove, list, usage: () => index, checkWritable })
})

export const layer = Layer.effect(OfflineStore, make)
