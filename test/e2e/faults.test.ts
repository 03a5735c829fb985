/**
 * The daemon killed (SIGKILL: no finalizer runs) during an offline DOWNLOAD,
 * then restarted on the same --data-dir (issue 4, item 5): the stored file is
 * still complete and downloads exactly. Uploads cut by SIGKILL are covered in
 * offlineRestart.test.ts.
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
import type { Daemon } from "../support/daemon.js"
import { clientOf, createDaemonTask, downloadAll, killDaemon, startDaemon } from "../support/daemon.js"
import { loginPdu, pullReqPdu, rawConnect, sha256 } from "../support/raw.js"
import { eventually, tempDir } from "../support/server.js"
import { storedFiles } from "../support/files.js"

const FROM = 17
const TO = 18
const SEG = 32 * 1024

const upload = (d: Daemon, data: Buffer) =>
  Effect.scoped(
    Effect.gen(function* () {
      const taskId = yield* createDaemonTask(d, { fromUserId: FROM, toUserId: TO, fileSize: data.length, mode: TransferMode.Offline })
      const sock = yield* Client.connect(clientOf(d))
      const up = yield* Client.uploadFile(sock, { taskId, userId: FROM, source: Client.sourceFromBuffer(data) })
      expect(up.finalState).toBe(FileState.Done)
      return taskId
    })
  )

describe("the daemon killed (SIGKILL) during a download, then restarted", () => {
  const cases = [
    { name: "mid-download", flags: [] as Array<string>, upTo: 0.5 },
    { name: "with pulls up to the end sent (the last block and DONE unread), --delete-after-download", flags: ["--delete-after-download"], upTo: 1 }
  ]
  for (const c of cases) {
    it.scopedLive(`${c.name}: the stored file is still complete and the next daemon serves it exactly`, () =>
      Effect.gen(function* () {
        const dataDir = join(yield* tempDir, "data")
        const flags = ["--data-dir", dataDir, ...c.flags]
        const data = randomBytes(4 * 1024 * 1024 + 321)
        const first = yield* startDaemon(flags)
        const taskId = yield* upload(first, data)
        const files = storedFiles(dataDir, taskId)
        expect(statSync(files.file).size).toBe(HEADER_BYTES + data.length)
        const meta = yield* Effect.promise(() => readFile(files.meta, "utf8"))

        // A raw downloader pulls (window 4, reading) up to the cut point, then pulls on without reading.
        const down = yield* rawConnect(clientOf(first))
        down.send(loginPdu(1, taskId, TO, FileRole.Downloader))
        expect((yield* down.expect(Pdu.LoginRes)).msg.resultCode).toBe(ResultCode.Ok)
        const cut = c.upTo === 1 ? Math.ceil(data.length / SEG) * SEG : Math.floor((data.length * c.upTo) / SEG) * SEG
        let offset = 0
        let seq = 2
        let got = 0
        const pull = () => {
          down.send(pullReqPdu(seq++, { taskId, userId: TO, offset, dataSize: SEG, transMode: TransferMode.Offline }))
          offset += SEG
        }
        for (let i = 0; i < 4 && offset < cut; i++) pull()
        while (got < cut - 4 * SEG) {
          const rsp = yield* down.expect(Pdu.PullDataRsp)
          expect(Buffer.from(rsp.msg.fileData).equals(data.subarray(rsp.msg.offset, rsp.msg.offset + rsp.msg.fileData.length))).toBe(true)
          got += rsp.msg.fileData.length
          if (offset < cut) pull()
        }
        down.socket.pause()
        while (offset < cut) pull()
        yield* Effect.sleep(200)

        expect(yield* killDaemon(first)).not.toBe(0)
        down.destroy()
        // Nothing on disk was truncated or removed by the crash.
        expect(statSync(files.file).size).toBe(HEADER_BYTES + data.length)
        expect(existsSync(files.part)).toBe(false)
        expect(yield* Effect.promise(() => readFile(files.meta, "utf8"))).toBe(meta)

        const second = yield* startDaemon(flags)
        expect(sha256(yield* downloadAll(second, { taskId, userId: TO, size: data.length }))).toBe(sha256(data))
        if (c.flags.includes("--delete-after-download")) {
          // Delivered in full by the second daemon (its downloader has disconnected): now it goes.
          yield* eventually(() => !existsSync(files.file), 3000)
        } else {
          expect(sha256(yield* downloadAll(second, { taskId, userId: TO, size: data.length }))).toBe(sha256(data))
        }
      })
    )
  }
})
