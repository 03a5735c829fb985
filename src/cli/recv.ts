import { Command, Options } from "@effect/cli"
import { Effect, Option } from "effect"
import * as Client from "../client/index.js"
import { FileRole } from "../protocol/commands.js"
import { checkOutputPath, partPath, promote, removeQuietly, sha256File } from "./files.js"
import { helpText } from "./help.js"
import * as Flags from "./options.js"
import { Progress } from "./progress.js"
import { UsageError } from "./settings.js"
import { failOnInterrupt, printTransfer, withSession } from "./transfer.js"

const options = {
  server: Flags.server,
  task: Flags.task,
  user: Flags.user,
  out: Options.file("out").pipe(Options.withDescription("Where to write the file. Data goes to OUT.part, renamed to OUT once complete.")),
  window: Flags.window,
  size: Options.integer("size").pipe(
    Options.optional,
    Options.withDescription(
      "The file's size in bytes (as given to `task create`), if you know it: shows a percentage and an ETA; pulls stop there and a shorter file fails. " +
        "Without it the file ends at the first block shorter than asked."
    )
  ),
  json: Flags.json
}

const checkSize = (size: Option.Option<number>) =>
  Option.match(size, {
    onNone: () => Effect.succeed(undefined),
    onSome: (n) =>
      Number.isInteger(n) && n >= 0 && n <= 0xffffffff
        ? Effect.succeed(n)
        : Effect.fail(new UsageError({ message: `--size: ${n} is not a file size (0 to 4294967295 bytes)` }))
  })

export const recvCommand = Command.make("recv", options, (flags) =>
  Effect.gen(function* () {
    const endpoint = yield* Flags.checkEndpoint(flags)
    const window = yield* Flags.checkWindow(flags.window)
    const size = yield* checkSize(flags.size)
    yield* checkOutputPath("out", flags.out)
    const progress = yield* Progress
    const part = partPath(flags.out)
    const [elapsed, received] = yield* withSession(endpoint, "receiver", (sock) =>
      Effect.gen(function* () {
        yield* Client.login(sock, { taskId: endpoint.taskId, userId: endpoint.userId, role: FileRole.Receiver })
        const sink = yield* Client.fileSink(part, "w")
        const bar = yield* progress.bar({ label: "recv", total: size })
        const result = yield* Client.receiveFile(sock, {
          taskId: endpoint.taskId,
          userId: endpoint.userId,
          sink,
          window,
          ...(size === undefined ? {} : { size }),
          onProgress: bar.update
        })
        // receiveFile has queued DONE: make sure it leaves before the process does, or the sender would see us vanish.
        yield* Client.closeGracefully(sock)
        return result
      }).pipe(Effect.timed)
    ).pipe(
      // An online task ends with its transfer: a partial file can never be completed.
      Effect.onError(() => removeQuietly(part))
    )
    yield* promote(part, flags.out)
    const sha256 = yield* sha256File(flags.out)
    yield* printTransfer(flags.json, {
      verb: "received",
      taskId: endpoint.taskId,
      path: flags.out,
      bytes: received.bytes,
      offset: 0,
      size: received.bytes,
      elapsed,
      sha256
    })
  }).pipe(failOnInterrupt("the file was not received; an online task cannot be resumed"))
).pipe(
  Command.withDescription(
    helpText(
      "Online receiver: logs in to an online task as its receiver (--user is the task's --to), waits for the sender, " +
        "pulls the file with --window pulls in flight into OUT.part, tells the sender DONE and renames OUT.part to OUT. " +
        "Exit 0 once the file is complete, 1 if the transfer failed (OUT.part is removed: an online task cannot be resumed).",
      [
        "tt-file-server recv --server 127.0.0.1:8600 --task 3fa85f64-5717-4562-b3fc-2c963f66afa6 --user 2 --out report.pdf",
        "tt-file-server recv --server files.example.com:8600 --task $TASK --user 2 --out report.pdf --size 1048576 --window 16 --json"
      ]
    )
  )
)
