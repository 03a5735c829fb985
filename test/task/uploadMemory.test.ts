/**
 * The offline machine's upload window under --upload-memory (src/task/offlineMachine.ts):
 * whatever share of the budget each step gets, the blocks asked for and not stored stay
 * within it (one block is always allowed), and an uploader answering in any order still
 * gets the whole file stored, exactly, in order.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Buffer } from "node:buffer"
import { FileRole, TransferMode } from "../../src/protocol/commands.js"
import type { Command, ConnId, TaskEvent } from "../../src/task/machine.js"
import type { OfflineLimits, OfflineState } from "../../src/task/offlineMachine.js"
import { initialOfflineState, outstandingBytes, stepOffline } from "../../src/task/offlineMachine.js"
import type { TaskSpec } from "../../src/task/spec.js"

const TASK_ID = "5c1e7a2b-3d4f-4a6b-9c8d-7e6f5a4b3c2d"
const FROM = 11
const TO = 22
const UPLOADER: ConnId = 1
const SEGMENT = 100

describe("offline upload window under --upload-memory (machine)", () => {
  it.prop(
    "blocks asked for and not stored stay within each step's allowance (at least one block), and the file is stored exactly",
    {
      fileSize: fc.integer({ min: 1, max: 2500 }),
      uploadWindow: fc.integer({ min: 1, max: 8 }),
      allowances: fc.array(fc.oneof(fc.integer({ min: 0, max: 600 }), fc.constant(Number.POSITIVE_INFINITY)), { minLength: 1, maxLength: 8 }),
      // Which outstanding request the uploader answers next (an index, taken modulo how many there are).
      picks: fc.array(fc.nat(), { minLength: 1, maxLength: 16 })
    },
    ({ allowances, fileSize, picks, uploadWindow }) => {
      const spec: TaskSpec = { taskId: TASK_ID, fromUserId: FROM, toUserId: TO, fileName: "f.bin", fileSize, mode: TransferMode.Offline, createdAt: 0 }
      const limits: OfflineLimits = { maxBlockBytes: 1024, uploadSegment: SEGMENT, uploadWindow, deleteAfterDownload: false }
      const content = Buffer.from(Array.from({ length: fileSize }, (_, i) => (i * 7) & 255))
      let state: OfflineState = initialOfflineState(spec, { state: "none" })
      const asked: Array<{ offset: number; size: number }> = []
      const stored: Array<Buffer> = []
      let steps = 0
      const feed = (event: TaskEvent) => {
        const allowance = allowances[steps++ % allowances.length]!
        const before = outstandingBytes(state)
        const [next, commands] = stepOffline(state, event, limits, allowance)
        expect(outstandingBytes(next)).toBeLessThanOrEqual(Math.max(allowance, before, SEGMENT))
        if (next.phase === "Uploading") expect(next.outstanding.length).toBeGreaterThan(0)
        state = next
        for (const c of commands) handle(c)
      }
      const handle = (c: Command) => {
        if (c._tag === "RequestBlock") asked.push({ offset: c.offset, size: c.size })
        if (c._tag === "StoreBlock") stored.push(Buffer.concat(c.data as Array<Buffer>))
        if (c._tag === "OpenUpload") feed({ _tag: "UploadOpened", received: 0 })
        if (c._tag === "FinishUpload") feed({ _tag: "UploadStored" })
      }
      feed({ _tag: "Login", conn: UPLOADER, seq: 1, userId: FROM, role: FileRole.Uploader })
      for (let i = 0; asked.length > 0; i++) {
        const [block] = asked.splice(picks[i % picks.length]! % asked.length, 1)
        const data = content.subarray(block!.offset, block!.offset + block!.size)
        feed({
          _tag: "PullRsp",
          conn: UPLOADER,
          seq: 0,
          msg: { resultCode: 0, taskId: TASK_ID, userId: FROM, offset: block!.offset, data: [data], dataLength: data.length },
          raw: [Buffer.alloc(0)]
        })
      }
      expect(state.phase).toBe("Stored")
      expect(Buffer.concat(stored).equals(content)).toBe(true)
    },
    { fastCheck: { numRuns: 300 } }
  )
})
