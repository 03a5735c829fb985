/**
 * Property test of the online machine's read-ahead (src/task/machine.ts):
 * a receiver pulling mostly in order (sometimes jumping elsewhere, sometimes
 * with another block size) against an honest sender that answers every
 * request it got, in order, at random moments. Whatever N and the timing,
 * every pull is answered exactly once, with its own seq and exactly the bytes
 * at its offset, and the blocks held ahead stay bounded. The sender is asked
 * for segments of several blocks when --readahead-segment allows.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "fast-check"
import { FileRole, TransferMode } from "../../src/protocol/commands.js"
import type { Bytes } from "../../src/protocol/frame.js"
import { bytesLength, contiguous, Frame, frameBody, FrameDecoder } from "../../src/protocol/frame.js"
import { decodeDataBlock } from "../../src/protocol/dataBlock.js"
import { encodePdu, Pdu } from "../../src/protocol/messages.js"
import type { Command, TaskEvent, TaskState } from "../../src/task/machine.js"
import { aheadBytes, initialState, step } from "../../src/task/machine.js"

const TASK_ID = "3f2b8c4e-9a1d-4e6f-8b7a-0c5d2e1f4a39"
const FROM = 11
const TO = 22
const SENDER = 1
const RECEIVER = 2

/** The file's byte at `i`: cheap to check without holding a file. */
const byteAt = (i: number) => (i * 7 + 3) & 0xff
const content = (offset: number, size: number) => Buffer.from(Array.from({ length: size }, (_, k) => byteAt(offset + k)))

type Action =
  | { readonly _tag: "Pull"; readonly kind: "next" | "jump" | "resize"; readonly value: number }
  | { readonly _tag: "Answer"; readonly count: number }

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { arbitrary: fc.record({ _tag: fc.constant("Pull" as const), kind: fc.constant("next" as const), value: fc.nat() }), weight: 6 },
  { arbitrary: fc.record({ _tag: fc.constant("Pull" as const), kind: fc.constant("jump" as const), value: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ _tag: fc.constant("Pull" as const), kind: fc.constant("resize" as const), value: fc.integer({ min: 1, max: 40 }) }), weight: 1 },
  { arbitrary: fc.record({ _tag: fc.constant("Answer" as const), count: fc.integer({ min: 1, max: 6 }) }), weight: 5 }
)

const decodePull = (raw: Bytes) => Either.getOrThrow(Pdu.PullDataReq.decodeBody(frameBody({ raw: contiguous(raw) })))
const frameOf = (raw: Buffer): Frame => {
  const out: Array<Frame> = []
  new FrameDecoder().push(raw, out)
  return out[0]!
}
const decodeBlock = (raw: Bytes) => Either.getOrThrow(decodeDataBlock(frameOf(contiguous(raw))))

describe("online read-ahead (machine)", () => {
  it.prop(
    "every pull is answered once, with its seq and its bytes; the blocks held ahead stay bounded, by count and by the memory allowance",
    {
      readahead: fc.integer({ min: 0, max: 4 }),
      segment: fc.integer({ min: 1, max: 400 }),
      maxBlockBytes: fc.integer({ min: 40, max: 160 }),
      // The share of --readahead-memory each step may use (it changes as other tasks take and free memory).
      allowances: fc.array(fc.oneof(fc.integer({ min: 0, max: 160 }), fc.constant(Number.POSITIVE_INFINITY)), { minLength: 1, maxLength: 8 }),
      fileSize: fc.integer({ min: 1, max: 400 }),
      block: fc.integer({ min: 1, max: 40 }),
      window: fc.integer({ min: 1, max: 4 }),
      actions: fc.array(actionArb, { maxLength: 80 })
    },
    ({ actions, allowances, block: firstBlock, fileSize, maxBlockBytes, readahead, segment, window }) => {
      const limits = { maxBlockBytes, maxPullsInFlight: 8, readahead, readaheadSegment: segment }
      let state: TaskState = initialState({
        taskId: TASK_ID,
        fromUserId: FROM,
        toUserId: TO,
        fileName: "f",
        fileSize,
        mode: TransferMode.Online,
        createdAt: 0
      })
      /** Requests the sender got and has not answered, in order. */
      const senderQueue: Array<{ offset: number; size: number; seq: number }> = []
      /** Receiver pulls waiting for an answer, by seq. */
      const waiting = new Map<number, { offset: number; size: number }>()
      let seq = 0
      let nextOffset = 0
      let block = firstBlock
      let largestBlock = firstBlock

      let steps = 0
      const apply = (event: TaskEvent) => {
        const allowance = allowances[steps++ % allowances.length]!
        const before = aheadBytes(state)
        const [next, commands] = step(state, event, limits, allowance)
        // Read-ahead never takes the task past its allowance (what it held already may stay).
        expect(aheadBytes(next)).toBeLessThanOrEqual(Math.max(allowance, before))
        state = next
        for (const c of commands) handle(c)
        expect(state.phase).not.toBe("Ended")
        expect(state.ahead.length).toBeLessThanOrEqual(2 * readahead)
        expect(state.ahead.filter((p) => !p.discard).length).toBeLessThanOrEqual(readahead)
        // What is held in memory is at most N of the receiver's blocks (the largest it pulled).
        const held = state.ahead.filter((p) => p.data !== undefined).reduce((n, p) => n + p.size, 0)
        expect(held).toBeLessThanOrEqual(readahead * largestBlock)
      }
      const answered = (to: number, replySeq: number, offset: number, data: Uint8Array) => {
        expect(to).toBe(RECEIVER)
        const pull = waiting.get(replySeq)
        expect(pull, `an answer with seq ${replySeq} that no waiting pull has`).toBeDefined()
        waiting.delete(replySeq)
        expect(offset).toBe(pull!.offset)
        const size = Math.max(0, Math.min(pull!.size, fileSize - pull!.offset))
        expect(Buffer.from(data).equals(content(pull!.offset, size))).toBe(true)
      }
      const handle = (c: Command) => {
        switch (c._tag) {
          case "Forward":
            if (c.to === SENDER) {
              const msg = decodePull(c.raw)
              senderQueue.push({ offset: msg.offset, size: msg.dataSize, seq: c.seq })
            } else {
              const msg = decodeBlock(c.raw)
              answered(c.to, c.seq, msg.offset, contiguous(msg.data))
            }
            return
          case "SendPull":
            expect(c.to).toBe(SENDER)
            // What the sender is asked for must fit in one frame.
            expect(c.msg.dataSize).toBeLessThanOrEqual(maxBlockBytes)
            senderQueue.push({ offset: c.msg.offset, size: c.msg.dataSize, seq: c.seq })
            return
          case "SendBlock":
            expect(c.dataBytes).toBe(bytesLength(c.data))
            answered(c.to, c.seq, c.offset, contiguous(c.data))
            return
          case "SendEmptyBlock":
            answered(c.to, c.seq, c.offset, new Uint8Array(0))
            return
          case "LoginOk":
          case "SendState":
          case "DisarmIdleTimer":
            return
          default:
            throw new Error(`unexpected command ${c._tag}`)
        }
      }
      const senderAnswers = (count: number) => {
        for (let i = 0; i < count && senderQueue.length > 0; i++) {
          const req = senderQueue.shift()!
          const raw = encodePdu(Pdu.PullDataRsp, 900 + i, {
            resultCode: 0,
            taskId: TASK_ID,
            userId: FROM,
            offset: req.offset,
            fileData: content(req.offset, req.size)
          })
          apply({ _tag: "PullRsp", conn: SENDER, seq: 900 + i, msg: decodeBlock([raw]), raw: [raw] })
        }
      }

      apply({ _tag: "Login", conn: SENDER, seq: 1, userId: FROM, role: FileRole.Sender })
      apply({ _tag: "Login", conn: RECEIVER, seq: 2, userId: TO, role: FileRole.Receiver })
      for (const action of actions) {
        if (action._tag === "Answer") {
          senderAnswers(action.count)
          continue
        }
        if (waiting.size >= window) {
          senderAnswers(senderQueue.length)
          continue
        }
        if (action.kind === "jump") nextOffset = action.value % (fileSize + 10)
        if (action.kind === "resize") block = action.value
        largestBlock = Math.max(largestBlock, block)
        seq++
        waiting.set(seq, { offset: nextOffset, size: block })
        const msg = { taskId: TASK_ID, userId: TO, transMode: TransferMode.Online, offset: nextOffset, dataSize: block }
        apply({ _tag: "PullReq", conn: RECEIVER, seq, msg, raw: [encodePdu(Pdu.PullDataReq, seq, msg)] })
        nextOffset += block
      }
      senderAnswers(Number.MAX_SAFE_INTEGER)
      expect([...waiting.keys()]).toEqual([])
      expect(state.pulls).toEqual([])
    },
    { fastCheck: { numRuns: 300 } }
  )
})
