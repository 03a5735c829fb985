import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { TransferMode } from "../../src/protocol/commands.js"
import { eventually, startServer } from "../support/server.js"

const offline = (fromUserId: number, fileSize: number) => ({ fromUserId, toUserId: 9, fileName: "q.bin", fileSize, mode: TransferMode.Offline })

describe("offline storage quotas", () => {
  it.scopedLive("--max-store-bytes counts announced and stored files; an expired unused task frees its share", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxStoreBytes: 100, taskTimeoutMs: 300 })
      const link = yield* Client.connectMsgLink(server.msg)
      const stored = yield* link.createTask(offline(1, 60))
      expect(stored.resultCode).toBe(0)
      expect((yield* link.createTask(offline(2, 41))).resultCode).toBe(1)
      expect((yield* link.createTask(offline(2, 40))).resultCode).toBe(0)
      expect((yield* link.createTask(offline(3, 1))).resultCode).toBe(1)
      // Online tasks store nothing and are not counted.
      expect((yield* link.createTask({ ...offline(2, 1000), mode: TransferMode.Online })).resultCode).toBe(0)

      const up = yield* Client.connect(server.client)
      yield* Client.uploadFile(up, { taskId: stored.taskId!, userId: 1, source: Client.sourceFromBuffer(randomBytes(60)) })
      // Every task leaves memory: the unused 40-byte one is gone for good, the stored 60 bytes still count.
      yield* eventually(() => server.registry.size() === 0, 3000)
      expect((yield* link.createTask(offline(3, 41))).resultCode).toBe(1)
      expect((yield* link.createTask(offline(3, 40))).resultCode).toBe(0)
    })
  )

  it.scopedLive("--max-user-store-bytes limits each sending user on its own", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxUserStoreBytes: 100 })
      const link = yield* Client.connectMsgLink(server.msg)
      expect((yield* link.createTask(offline(1, 60))).resultCode).toBe(0)
      expect((yield* link.createTask(offline(1, 41))).resultCode).toBe(1)
      expect((yield* link.createTask(offline(2, 100))).resultCode).toBe(0)
      expect((yield* link.createTask(offline(1, 40))).resultCode).toBe(0)
    })
  )
})
