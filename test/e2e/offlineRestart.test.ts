/**
 * Offline store-and-forward across a crash of the real daemon process
 * (`npm start`, SIGKILL to node: no finalizer runs), with a new daemon
 * started on the same --data-dir (issue 3, items 5 and 8).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, statSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, FileState, ResultCode, TransferMode } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import { HEADER_BYTES } from "../../src/storage/header.js"
import { clientOf, createDaemonTask, downloadAll, killDaemon, startDaemon } from "../support/daemon.js"
import { loginPdu, pullRspPdu, rawConnect, sha256 } from "../support/raw.js"
import { tempDir } from "../support/server.js"
import { storedFiles } from "../support/files.js"

const FROM = 7
const TO = 8
const SEGMENT = 32 * 1024

const storedSha256 = (path: string) =>
  Effect.promise(() => readFile(path, "utf8")).pipe(Effect.map((text) => (JSON.parse(text) as { sha256?: string }).sha256))

describe("offline tasks across a daemon crash (SIGKILL) and restart", () => {
  it.scopedLive("a file stored before the crash is served by the next daemon, byte for byte", () =>
    Effect.gen(function* () {
      const dataDir = join(yield* tempDir, "data")
      const data = randomBytes(3 * 1024 * 1024 + 5)
      const first = yield* startDaemon(["--data-dir", dataDir])
      const taskId = yield* createDaemonTask(first, { fromUserId: FROM, toUserId: TO, fileSize: data.length, mode: TransferMode.Offline })

      const uploaded = yield* Effect.scoped(
        Effect.gen(function* () {
          const sock = yield* Client.connect(clientOf(first))
          return yield* Client.uploadFile(sock, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
        })
      )
      expect(uploaded.finalState).toBe(FileState.Done)
      expect(uploaded.bytes).toBe(data.length)
      const files = storedFiles(dataDir, taskId)
      expect(statSync(files.file).size).toBe(HEADER_BYTES + data.length)
      expect(existsSync(files.part)).toBe(false)
      expect(yield* storedSha256(files.meta)).toBe(sha256(data))

      expect(yield* killDaemon(first)).not.toBe(0)
      const second = yield* startDaemon(["--data-dir", dataDir])
      expect(sha256(yield* downloadAll(second, { taskId, userId: TO, size: data.length }))).toBe(sha256(data))
      const loaded = second.logs.find((l) => l.message === "task loaded from the store")
      expect(loaded?.annotations).toMatchObject({ task: taskId.slice(0, 8), state: "complete" })
      // A second download, one after the other, still works.
      expect(sha256(yield* downloadAll(second, { taskId, userId: TO, size: data.length }))).toBe(sha256(data))
    })
  )

  // Window 1: the server asks for one block at a time (stop-and-wait); 8: blocks in flight (the default).
  for (const uploadWindow of [1, 8]) {
    it.scopedLive(`an upload cut by SIGKILL (upload window ${uploadWindow}) is refused for download, resumes from a non-zero offset and completes exactly`, () =>
      Effect.gen(function* () {
        const dataDir = join(yield* tempDir, "data")
        const data = randomBytes(1024 * 1024 + 1234)
        const answered = 9
        const flags = ["--data-dir", dataDir, "--upload-window", String(uploadWindow), "--upload-segment", String(SEGMENT)]
        const first = yield* startDaemon(flags)
        const taskId = yield* createDaemonTask(first, { fromUserId: FROM, toUserId: TO, fileSize: data.length, mode: TransferMode.Offline })
        const files = storedFiles(dataDir, taskId)

        // A raw uploader answers the first `answered` pulls, then goes silent once the server has
        // asked for the window's worth of blocks after them (it has taken in every answer by then).
        let sent = 0
        const pulls: Array<{ seq: number; offset: number; size: number }> = []
        const uploader = yield* rawConnect(clientOf(first))
        uploader.send(loginPdu(1, taskId, FROM, FileRole.Uploader))
        expect((yield* uploader.expect(Pdu.LoginRes)).msg.resultCode).toBe(ResultCode.Ok)
        while (pulls.length < answered + uploadWindow) {
          const req = yield* uploader.expect(Pdu.PullDataReq)
          pulls.push({ seq: req.seq, offset: req.msg.offset, size: req.msg.dataSize })
          if (pulls.length > answered) continue
          uploader.send(pullRspPdu(req.seq, { taskId, userId: FROM, offset: req.msg.offset, fileData: data.subarray(req.msg.offset, req.msg.offset + req.msg.dataSize) }))
          sent += req.msg.dataSize
        }
        // The server drives the upload: seq 0, segment-sized pulls, in offset order from 0.
        expect(pulls).toEqual(Array.from({ length: answered + uploadWindow }, (_, i) => ({ seq: 0, offset: i * SEGMENT, size: SEGMENT })))
        yield* uploader.expectQuiet(100)
        expect(existsSync(files.part)).toBe(true)
        expect(existsSync(files.file)).toBe(false)

        expect(yield* killDaemon(first)).not.toBe(0)
        uploader.destroy()
        expect(existsSync(files.file)).toBe(false)
        const partBytes = statSync(files.part).size - HEADER_BYTES
        expect(partBytes).toBeGreaterThan(0)
        expect(partBytes).toBeLessThanOrEqual(sent)

        const second = yield* startDaemon(flags)

        // A download of the unfinished task is refused (result 1, the task id echoed) and nothing is served.
        const early = yield* rawConnect(clientOf(second))
        early.send(loginPdu(5, taskId, TO, FileRole.Downloader))
        const refused = yield* early.expect(Pdu.LoginRes)
        expect(refused.msg.resultCode).toBe(ResultCode.Failed)
        expect(refused.seq).toBe(5)
        expect(refused.msg.taskId).toBe(taskId)
        expect(yield* early.expectClosed()).toEqual([])
        expect(existsSync(files.file)).toBe(false)

        // The uploader logs in again; every pull it is asked for is checked: no complete file may be visible yet.
        const offsets: Array<number> = []
        let visibleEarly = false
        const recording: Client.BlockSource = {
          size: data.length,
          read: (offset, length) =>
            Effect.sync(() => {
              offsets.push(offset)
              if (existsSync(files.file)) visibleEarly = true
              return data.subarray(offset, Math.min(offset + length, data.length))
            })
        }
        const resumed = yield* Effect.scoped(
          Effect.gen(function* () {
            const sock = yield* Client.connect(clientOf(second))
            return yield* Client.uploadFile(sock, { taskId, userId: FROM, source: recording })
          })
        )
        const resumedAt = offsets[0]!
        expect(resumedAt).toBeGreaterThan(0)
        expect(resumedAt).toBeLessThanOrEqual(sent)
        // At most the upload window behind what was sent, and on a block boundary.
        expect(resumedAt).toBeGreaterThanOrEqual(sent - uploadWindow * SEGMENT)
        expect(resumedAt % SEGMENT).toBe(0)
        expect(offsets).toEqual(Array.from({ length: offsets.length }, (_, i) => resumedAt + i * SEGMENT))
        expect(resumed.finalState).toBe(FileState.Done)
        expect(resumed.bytes).toBe(data.length - resumedAt)
        expect(visibleEarly).toBe(false)

        expect(existsSync(files.part)).toBe(false)
        expect(statSync(files.file).size).toBe(HEADER_BYTES + data.length)
        expect(yield* storedSha256(files.meta)).toBe(sha256(data))
        expect(sha256(yield* downloadAll(second, { taskId, userId: TO, size: data.length }))).toBe(sha256(data))
        const loaded = second.logs.find((l) => l.message === "task loaded from the store")
        expect(loaded?.annotations).toMatchObject({ task: taskId.slice(0, 8), state: "partial" })
      })
    )
  }
})
