import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as Client from "../../src/client/index.js"
import { FileRole, TransferMode } from "../../src/protocol/commands.js"
import { createTask, eventually, startServer } from "../support/server.js"

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex")

describe("online transfer", () => {
  for (const size of [0, 1, 32767, 32768, 32769, 8 * 1024 * 1024]) {
    it.scopedLive(`relays ${size} bytes intact`, () =>
      Effect.gen(function* () {
        const server = yield* startServer()
        const data = randomBytes(size)
        const taskId = yield* createTask(server, { fromUserId: 1, toUserId: 2, fileName: "f.bin", fileSize: size, mode: TransferMode.Online })
        const sender = yield* Client.connect(server.client)
        const receiver = yield* Client.connect(server.client)
        yield* Client.login(sender, { taskId, userId: 1, role: FileRole.Sender })
        yield* Client.login(receiver, { taskId, userId: 2, role: FileRole.Receiver })
        const sink = Client.memorySink()
        const [served, pulled] = yield* Effect.all(
          [
            Client.serveFile(sender, { taskId, userId: 1, source: Client.sourceFromBuffer(data) }),
            Client.receiveFile(receiver, { taskId, userId: 2, sink, size })
          ],
          { concurrency: 2 }
        )
        expect(pulled.bytes).toBe(size)
        expect(served.finalState).toBe(3)
        expect(sha256(sink.bytes())).toBe(sha256(data))
        yield* eventually(() => server.registry.size() === 0)
      })
    )
  }
})
