import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import * as Client from "../client/index.js"
import { checkInputFile, sha256File } from "./files.js"
import { helpText } from "./help.js"
import * as Flags from "./options.js"
import { Progress } from "./progress.js"
import { failOnInterrupt, printTransfer, trackedSource, withSession } from "./transfer.js"

const options = {
  server: Flags.server,
  task: Flags.task,
  user: Flags.user,
  file: Options.file("file").pipe(Options.withDescription("The file to upload (the one the task was created for).")),
  json: Flags.json
}

const RESUME = "; run the same command again to resume the upload"

export const uploadCommand = Command.make("upload", options, (flags) =>
  Effect.gen(function* () {
    const endpoint = yield* Flags.checkEndpoint(flags)
    yield* checkInputFile("file", flags.file)
    const progress = yield* Progress
    const [elapsed, uploaded] = yield* withSession(
      endpoint,
      "uploader",
      (sock) =>
        Effect.gen(function* () {
          const file = yield* Client.sourceFromFile(flags.file)
          const bar = yield* progress.bar({ label: "upload", total: file.size })
          // The server asks only for what it does not hold yet: the first pull says where a resumed upload stands.
          const tracked = trackedSource(file, bar.update)
          const result = yield* Client.uploadFile(sock, { taskId: endpoint.taskId, userId: endpoint.userId, source: tracked.source })
          return { ...result, offset: tracked.firstOffset(), size: file.size }
        }).pipe(Effect.timed),
      RESUME
    )
    const sha256 = yield* sha256File(flags.file)
    yield* printTransfer(flags.json, {
      verb: "uploaded",
      taskId: endpoint.taskId,
      path: flags.file,
      bytes: uploaded.bytes,
      offset: uploaded.offset,
      size: uploaded.size,
      elapsed,
      sha256
    })
  }).pipe(failOnInterrupt("the server keeps what it received: run the same command again to resume the upload"))
).pipe(
  Command.withDescription(
    helpText(
      "Offline uploader: logs in to an offline task as its uploader (--user is the task's --from) and answers the server's " +
        "pulls from --file until the server has stored the whole file (exit 0). The receiver need not be online. " +
        "An interrupted upload resumes: run the same command again and the server asks only for the bytes it does not hold.",
      [
        "tt-file-server upload --server 127.0.0.1:8600 --task 3fa85f64-5717-4562-b3fc-2c963f66afa6 --user 1 --file report.pdf",
        "tt-file-server upload --server files.example.com:8600 --task $TASK --user 1 --file report.pdf --json"
      ]
    )
  )
)
