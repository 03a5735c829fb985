import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import * as Client from "../client/index.js"
import { CommandFailed } from "./failure.js"
import { checkOutputPath, fileLength, partPath, promote, removeQuietly, sha256File } from "./files.js"
import { helpText } from "./help.js"
import * as Flags from "./options.js"
import { Progress } from "./progress.js"
import { failOnInterrupt, printTransfer, withSession } from "./transfer.js"

const options = {
  server: Flags.server,
  task: Flags.task,
  user: Flags.user,
  out: Options.file("out").pipe(
    Options.withDescription("Where to write the file. Data goes to OUT.part, renamed to OUT once complete; an existing OUT.part is continued.")
  ),
  window: Flags.window,
  json: Flags.json
}

export const downloadCommand = Command.make("download", options, (flags) =>
  Effect.gen(function* () {
    const endpoint = yield* Flags.checkEndpoint(flags)
    const window = yield* Flags.checkWindow(flags.window)
    yield* checkOutputPath("out", flags.out)
    const progress = yield* Progress
    const part = partPath(flags.out)
    // A partial copy from an earlier run: the server serves any offset, so continue where it ends.
    const offset = (yield* fileLength(part)) ?? 0
    const [elapsed, downloaded] = yield* withSession(endpoint, "downloader", (sock) =>
      Effect.gen(function* () {
        const sink = yield* Client.fileSink(part, offset > 0 ? "r+" : "w")
        const bar = yield* progress.bar({ label: "download", start: offset })
        return yield* Client.downloadFile(sock, { taskId: endpoint.taskId, userId: endpoint.userId, sink, window, offset, onProgress: bar.update })
      }).pipe(Effect.timed)
    ).pipe(
      Effect.catchTag("CommandFailed", (e) =>
        Effect.flatMap(fileLength(part), (kept) =>
          kept
            ? Effect.fail(new CommandFailed({ message: `${e.message}; ${part} keeps ${kept} bytes: the next run continues from there` }))
            : // A refused login or an unreachable server: no empty OUT.part left behind.
              Effect.zipRight(removeQuietly(part), Effect.fail(e))
        )
      )
    )
    yield* promote(part, flags.out)
    const sha256 = yield* sha256File(flags.out)
    yield* printTransfer(flags.json, {
      verb: "downloaded",
      taskId: endpoint.taskId,
      path: flags.out,
      bytes: downloaded.bytes,
      offset,
      size: offset + downloaded.bytes,
      elapsed,
      sha256
    })
  }).pipe(failOnInterrupt(`${partPath(flags.out)} keeps what arrived: run the same command again to continue`))
).pipe(
  Command.withDescription(
    helpText(
      "Offline downloader: logs in to an offline task as its downloader (--user is the task's --to) once the upload is " +
        "complete, and pulls the stored file into OUT.part with --window pulls in flight; when the server says DONE, OUT.part " +
        "is renamed to OUT (exit 0). If OUT.part exists (an interrupted download), only the bytes after its end are fetched.",
      [
        "tt-file-server download --server 127.0.0.1:8600 --task 3fa85f64-5717-4562-b3fc-2c963f66afa6 --user 2 --out report.pdf",
        "tt-file-server download --server files.example.com:8600 --task $TASK --user 2 --out report.pdf --window 16 --json"
      ]
    )
  )
)
