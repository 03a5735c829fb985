import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { TransferMode } from "../../src/protocol/commands.js"
import { createTask, eventually, startServer } from "../support/server.js"

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex")

describe("offline smoke", () => {
  for (const size of [0, 1, 32769, 1024 * 1024]) {
    it.scopedLive(`stores and serves ${size} bytes`, () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const data = randomBytes(size)
        const taskId = yield* createTask(server, { fromUserId: 1, toUserId: 2, fileName: "f.bin", fileSize: size, mode: TransferMode.Offline })
        const up = yield* Client.connect(server.client)
        const served = yield* Client.uploadFile(up, { taskId, userId: 1, source: Client.sourceFromBuffer(data) })
        expect(served.finalState).toBe(3)
        const down = yield* Client.connect(server.client)
        const sink = Client.memorySink()
        const got = yield* Client.downloadFile(down, { taskId, userId: 2, sink, size, window: 4 })
        expect(got.bytes).toBe(size)
        expect(sha256(sink.bytes())).toBe(sha256(data))
        yield* eventually(() => server.registry.snapshots().every((t) => t.phase === "Stored"))
      })
    )
  }
})
