/**
 * Offline transfers through the built CLI (one process per command) against
 * the daemon (`npm start`): upload, a daemon restart, download, resumed
 * downloads and uploads, and the `store` commands on the daemon's data dir.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { existsSync, statSync } from "node:fs"
import { open, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { HEADER_BYTES } from "../../src/storage/header.js"
import { jsonOf, runCli, spawnCli, suiteDaemon } from "../support/cli.js"
import { startDaemon } from "../support/daemon.js"
import { eventually, tempDir } from "../support/server.js"

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex")

interface TransferJson {
  readonly task_id: string
  readonly bytes: number
  readonly offset: number
  readonly size: number
  readonly sha256: string
}

const writePayload = (dir: string, name: string, size: number) =>
  Effect.promise(async () => {
    const data = randomBytes(size)
    const path = join(dir, name)
    await writeFile(path, data)
    return { data, path }
  })

const createTask = (msg: string, file: string) =>
  Effect.gen(function* () {
    const r = yield* runCli(["task", "create", "--msg", msg, "--from", "1", "--to", "2", "--file", file, "--mode", "offline", "--json"])
    expect(r.code).toBe(0)
    return jsonOf<{ task_id: string }>(r).task_id
  })

/** Where the daemon keeps a task's files (docs/storage.md). */
const storedPaths = (dataDir: string, taskId: string) => {
  const dir = join(dataDir, "offline_file", taskId.slice(0, 2))
  return { file: join(dir, taskId), part: join(dir, `${taskId}.part`) }
}

const transfer = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const r = yield* runCli([...args, "--json"])
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    return jsonOf<TransferJson>(r)
  })

describe("CLI: offline upload, daemon restart, download, store", () => {
  it.scopedLive("a file uploaded before a restart is downloaded exactly; store ls, verify and rm see it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const dataDir = join(dir, "data")
      const { data, path } = yield* writePayload(dir, "report.bin", 600 * 1024 + 5)
      const first = yield* startDaemon(["--data-dir", dataDir])
      const taskId = yield* createTask(`127.0.0.1:${first.msgPort}`, path)
      const up = yield* transfer(["upload", "--server", `127.0.0.1:${first.clientPort}`, "--task", taskId, "--user", "1", "--file", path])
      expect(up).toMatchObject({ task_id: taskId, bytes: data.length, offset: 0, size: data.length, sha256: sha256(data) })

      process.kill(first.pid, "SIGTERM")
      expect(yield* Effect.promise(() => first.exited)).toBe(0)
      const second = yield* startDaemon(["--data-dir", dataDir])
      const server = `127.0.0.1:${second.clientPort}`

      const out = join(dir, "report.out")
      // Independent (ls and verify only read the data dir): run together, each process start costs a second.
      const [ls, clean, down] = yield* Effect.all(
        [
          runCli(["store", "ls", "--data-dir", dataDir, "--json"]),
          runCli(["store", "verify", "--data-dir", dataDir, "--json"]),
          transfer(["download", "--server", server, "--task", taskId, "--user", "2", "--out", out])
        ],
        { concurrency: "unbounded" }
      )
      expect(ls.code).toBe(0)
      expect(jsonOf(ls)).toMatchObject({
        files: [{ task_id: taskId, state: "complete", from: 1, to: 2, file_name: "report.bin", file_size: data.length, bytes: data.length }]
      })
      expect(clean.code).toBe(0)
      expect(jsonOf(clean)).toMatchObject({ verified: 1, ok: 1, mismatched: [] })
      expect(down).toMatchObject({ task_id: taskId, bytes: data.length, offset: 0, size: data.length, sha256: sha256(data) })
      expect(sha256(yield* Effect.promise(() => readFile(out)))).toBe(sha256(data))
      expect(existsSync(`${out}.part`)).toBe(false)

      // Flip one stored byte: verify reports it and exits 1, and leaves the file where it is.
      const stored = storedPaths(dataDir, taskId).file
      yield* Effect.promise(async () => {
        const h = await open(stored, "r+")
        const b = Buffer.alloc(1)
        await h.read(b, 0, 1, HEADER_BYTES + 1000)
        b[0] = b[0]! ^ 0xff
        await h.write(b, 0, 1, HEADER_BYTES + 1000)
        await h.close()
      })
      const bad = yield* runCli(["store", "verify", "--data-dir", dataDir, "--json"])
      expect(bad.code).toBe(1)
      expect(jsonOf(bad)).toMatchObject({ verified: 1, ok: 0, mismatched: [{ task_id: taskId }] })
      expect(bad.stderr).toContain("store rm")
      expect(existsSync(stored)).toBe(true)

      const rm = yield* runCli(["store", "rm", "--data-dir", dataDir, "--task", taskId])
      expect(rm.code).toBe(0)
      expect(rm.stdout).toContain(`removed complete file report.bin`)
      expect(existsSync(stored) || existsSync(`${stored}.json`)).toBe(false)
    })
  )
})

describe("CLI: resumed offline transfers", () => {
  // Small upload segments make an upload slow enough to kill half-way.
  const suite = suiteDaemon(["--upload-segment", "2048"])

  it.scopedLive("download continues from OUT.part: the result is exact and only the rest is transferred", () =>
    Effect.gen(function* () {
      const { dir, msg, server } = suite.get()
      const { data, path } = yield* writePayload(dir, "resume-down.bin", 512 * 1024 + 3)
      const taskId = yield* createTask(msg, path)
      yield* transfer(["upload", "--server", server, "--task", taskId, "--user", "1", "--file", path])

      const out = join(dir, "resume-down.out")
      const have = 200_001
      yield* Effect.promise(() => writeFile(`${out}.part`, data.subarray(0, have)))
      const down = yield* transfer(["download", "--server", server, "--task", taskId, "--user", "2", "--out", out])
      expect(down).toMatchObject({ offset: have, bytes: data.length - have, size: data.length, sha256: sha256(data) })
      expect(sha256(yield* Effect.promise(() => readFile(out)))).toBe(sha256(data))
      expect(existsSync(`${out}.part`)).toBe(false)
    })
  )

  it.scopedLive("an upload killed half-way (SIGKILL) resumes where the server stopped, and the download is exact", () =>
    Effect.gen(function* () {
      const { dir, msg, server } = suite.get()
      const { data, path } = yield* writePayload(dir, "resume-up.bin", 4 * 1024 * 1024)
      const taskId = yield* createTask(msg, path)
      const { part } = storedPaths(join(dir, "data"), taskId)

      const uploader = yield* spawnCli(["upload", "--server", server, "--task", taskId, "--user", "1", "--file", path, "--json"])
      // Kill it once the server has stored some of the file, well before the end.
      yield* eventually(() => {
        const size = existsSync(part) ? statSync(part).size : 0
        return size >= HEADER_BYTES + 64 * 1024 || undefined
      }, 20_000)
      uploader.process.kill("SIGKILL")
      const killed = yield* uploader.result
      expect(killed.stdout).toBe("")
      const stored = statSync(part).size - HEADER_BYTES
      expect(stored).toBeLessThan(data.length)

      const up = yield* transfer(["upload", "--server", server, "--task", taskId, "--user", "1", "--file", path])
      expect(up.offset).toBeGreaterThan(0)
      expect(up.offset).toBeGreaterThanOrEqual(stored)
      expect(up.bytes).toBe(data.length - up.offset)
      expect(up.sha256).toBe(sha256(data))

      const out = join(dir, "resume-up.out")
      const down = yield* transfer(["download", "--server", server, "--task", taskId, "--user", "2", "--out", out])
      expect(down).toMatchObject({ bytes: data.length, sha256: sha256(data) })
      expect(sha256(yield* Effect.promise(() => readFile(out)))).toBe(sha256(data))
    })
  )
})
