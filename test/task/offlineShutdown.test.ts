/**
 * The offline machine (src/task/offlineMachine.ts) on `Shutdown`, the event a
 * graceful shutdown posts to every task still live at its drain timeout: from
 * any state the machine's own transitions reach, every party is told
 * FILE_STATE CANCEL and closed, and nothing stored is removed.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Buffer } from "node:buffer"
import { FileRole, FileState, TransferMode } from "../../src/protocol/commands.js"
import type { Command, ConnId, TaskEvent } from "../../src/task/machine.js"
import type { OfflineLimits, OfflineState } from "../../src/task/offlineMachine.js"
import { initialOfflineState, stepOffline } from "../../src/task/offlineMachine.js"
import type { TaskSpec } from "../../src/task/spec.js"

const TASK_ID = "3f2b8c4e-9a1d-4e6f-8b7a-0c5d2e1f4a39"
const FROM = 11
const TO = 22
const UPLOADER: ConnId = 1

interface Scenario {
  readonly fileSize: number
  readonly stored: "none" | "partial" | "complete"
  readonly uploadWindow: number
  /** Blocks the uploader answers before the shutdown (it logs in when the file is not complete). */
  readonly answers: number
  /** Downloaders logging in once the file is stored; `leaves` of them leave again. */
  readonly downloaders: number
  readonly leaves: number
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  fileSize: fc.integer({ min: 0, max: 3000 }),
  stored: fc.constantFrom("none" as const, "partial" as const, "complete" as const),
  uploadWindow: fc.integer({ min: 1, max: 4 }),
  answers: fc.integer({ min: 0, max: 16 }),
  downloaders: fc.integer({ min: 0, max: 3 }),
  leaves: fc.integer({ min: 0, max: 3 })
})

const SEGMENT = 256

const limitsOf = (sc: Scenario): OfflineLimits => ({ maxBlockBytes: 1024, uploadSegment: SEGMENT, uploadWindow: sc.uploadWindow, deleteAfterDownload: false })

/** Plays the scenario through the machine; returns the state the shutdown finds. */
const reach = (sc: Scenario): OfflineState => {
  const spec: TaskSpec = { taskId: TASK_ID, fromUserId: FROM, toUserId: TO, fileName: "f.bin", fileSize: sc.fileSize, mode: TransferMode.Offline, createdAt: 0 }
  const limits = limitsOf(sc)
  const partial = Math.floor(sc.fileSize / 2 / SEGMENT) * SEGMENT
  let state = initialOfflineState(
    spec,
    sc.stored === "complete" ? { state: "complete" } : sc.stored === "partial" ? { state: "partial", received: partial } : { state: "none" }
  )
  const asked: Array<{ offset: number; size: number }> = []
  const feed = (event: TaskEvent) => {
    const [next, commands] = stepOffline(state, event, limits)
    state = next
    for (const c of commands) {
      if (c._tag === "RequestBlock") asked.push({ offset: c.offset, size: c.size })
      if (c._tag === "OpenUpload") feed({ _tag: "UploadOpened", received: sc.stored === "partial" ? partial : 0 })
      if (c._tag === "FinishUpload") feed({ _tag: "UploadStored" })
    }
  }
  if (state.phase === "Ready") {
    feed({ _tag: "Login", conn: UPLOADER, seq: 1, userId: FROM, role: FileRole.Uploader })
    for (let i = 0; i < sc.answers && asked.length > 0; i++) {
      const block = asked.shift()!
      feed({
        _tag: "PullRsp",
        conn: UPLOADER,
        seq: 0,
        msg: { resultCode: 0, taskId: TASK_ID, userId: FROM, offset: block.offset, data: [Buffer.alloc(block.size)], dataLength: block.size },
        raw: [Buffer.alloc(0)]
      })
    }
  }
  if (state.phase === "Stored") {
    for (let i = 0; i < sc.downloaders; i++) feed({ _tag: "Login", conn: 10 + i, seq: 1, userId: TO, role: FileRole.Downloader })
    for (let i = 0; i < Math.min(sc.leaves, sc.downloaders); i++) feed({ _tag: "Left", conn: 10 + i })
  }
  return state
}

const ofTag = <T extends Command["_tag"]>(cs: ReadonlyArray<Command>, tag: T) => cs.filter((c): c is Extract<Command, { _tag: T }> => c._tag === tag)

describe("offline machine on Shutdown", () => {
  it.prop("tells every party CANCEL, then closes it; closes the upload; keeps what is stored; ends as shutdown", [scenarioArb], ([sc]) => {
    const before = reach(sc)
    const [after, commands] = stepOffline(before, { _tag: "Shutdown" }, limitsOf(sc))
    const parties = [...(before.uploader !== undefined ? [before.uploader] : []), ...before.downloaders]

    expect(after.phase).toBe("Ended")
    expect(after.outcome).toBe("shutdown")
    expect(ofTag(commands, "End")).toEqual([{ _tag: "End", outcome: "shutdown", reason: "server shutting down" }])
    for (const conn of parties) {
      const told = commands.findIndex((c) => c._tag === "SendState" && c.to === conn && c.state === FileState.Cancel && c.userId === FROM)
      const closed = commands.findIndex((c) => c._tag === "Close" && c.conn === conn)
      expect(told).toBeGreaterThanOrEqual(0)
      expect(closed).toBeGreaterThan(told)
    }
    expect(ofTag(commands, "SendState").map((c) => c.to).sort()).toEqual([...parties].sort())
    expect(ofTag(commands, "Close").map((c) => c.conn).sort()).toEqual([...parties].sort())
    // The partial file is released, not finished; nothing on disk is removed.
    expect(ofTag(commands, "CloseUpload")).toHaveLength(before.uploader !== undefined ? 1 : 0)
    for (const tag of ["RemoveStored", "FinishUpload", "StoreBlock", "RequestBlock", "ArmIdleTimer"] as const) expect(ofTag(commands, tag)).toEqual([])
  })

  it("the scenarios reach an upload in progress and downloads of a stored file", () => {
    expect(reach({ fileSize: 3000, stored: "none", uploadWindow: 2, answers: 3, downloaders: 0, leaves: 0 })).toMatchObject({
      phase: "Uploading",
      uploader: UPLOADER,
      received: 3 * SEGMENT
    })
    expect(reach({ fileSize: 3000, stored: "complete", uploadWindow: 1, answers: 0, downloaders: 3, leaves: 1 })).toMatchObject({
      phase: "Stored",
      downloaders: [11, 12]
    })
  })
})
