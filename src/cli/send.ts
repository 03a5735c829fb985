import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import * as Client from "../client/index.js"
import { FileRole, FileState } from "../protocol/commands.js"
import { checkInputFile, sha256File } from "./files.js"
import { helpText } from "./help.js"
import * as Flags from "./options.js"
import { Progress } from "./progress.js"
import { failOnInterrupt, printTransfer, trackedSource, withSession } from "./transfer.js"

const options = {
  server: Flags.server,
  task: Flags.task,
  user: Flags.user,
  file: Options.file("file").pipe(Options.withDescription("The file to send (the one the task was created for).")),
  json: Flags.json
}

export const sendCommand = Command.make("send", options, (flags) =>
  Effect.gen(function* () {
    const endpoint = yield* Flags.checkEndpoint(flags)
    yield* checkInputFile("file", flags.file)
    const progress = yield* Progress
    const [elapsed, served] = yield* withSession(endpoint, "sender", (sock) =>
      Effect.gen(function* () {
        yield* Client.login(sock, { taskId: endpoint.taskId, userId: endpoint.userId, role: FileRole.Sender })
        const file = yield* Client.sourceFromFile(flags.file)
        const bar = yield* progress.bar({ label: "send", total: file.size })
        const { source } = trackedSource(file, bar.update)
        const result = yield* Client.serveFile(sock, { taskId: endpoint.taskId, userId: endpoint.userId, source })
        // The receiver says DONE once it has every byte; anything else means it did not get the file.
        if (result.finalState !== FileState.Done) {
          return yield* new Client.ClientError({ reason: "Cancelled", message: "the receiver ended the transfer before it was complete" })
        }
        return { ...result, size: file.size }
      }).pipe(Effect.timed)
    )
    const sha256 = yield* sha256File(flags.file)
    yield* printTransfer(flags.json, {
      verb: "sent",
      taskId: endpoint.taskId,
      path: flags.file,
      bytes: served.bytes,
      offset: 0,
      size: served.size,
      elapsed,
      sha256
    })
  }).pipe(failOnInterrupt("the receiver did not get the whole file; an online task cannot be resumed"))
).pipe(
  Command.withDescription(
    helpText(
      "Online sender: logs in to an online task as its sender (--user is the task's --from) and answers the receiver's pulls " +
        "from --file until the receiver says DONE (exit 0), or cancels or leaves (exit 1). Start it before or after `recv`.",
      [
        "tt-file-server send --server 127.0.0.1:8600 --task 3fa85f64-5717-4562-b3fc-2c963f66afa6 --user 1 --file report.pdf",
        "tt-file-server send --server files.example.com:8600 --task $TASK --user 1 --file report.pdf --json"
      ]
    )
  )
)
