import { Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import { basename } from "node:path"
import * as Client from "../client/index.js"
import { TransferMode } from "../protocol/commands.js"
import { CommandFailed } from "./failure.js"
import { checkInputFile } from "./files.js"
import { formatBytes } from "./format.js"
import { helpText } from "./help.js"
import * as Flags from "./options.js"
import { UsageError } from "./settings.js"

const options = {
  msg: Options.text("msg").pipe(Options.withDescription("HOST:PORT of the file server's msg_server port (the daemon's --msg-host:--msg-port, private).")),
  from: Options.integer("from").pipe(Options.withDescription("The sending user's id (send or upload with --user this).")),
  to: Options.integer("to").pipe(Options.withDescription("The receiving user's id (recv or download with --user this).")),
  file: Options.file("file").pipe(Options.withDescription("The file to transfer: its name and size go into the task.")),
  mode: Options.choice("mode", ["online", "offline"]).pipe(
    Options.withDescription("online: the receiver pulls from a connected sender (send/recv). offline: the server stores the file (upload/download).")
  ),
  json: Flags.json
}

/** The protocol's file_size is a uint32. */
const MAX_FILE_SIZE = 0xffffffff

const createCommand = Command.make("create", options, (flags) =>
  Effect.gen(function* () {
    const msg = yield* Flags.parseAddress("msg", flags.msg)
    const fromUserId = yield* Flags.checkUserId("from", flags.from)
    const toUserId = yield* Flags.checkUserId("to", flags.to)
    const fileSize = yield* checkInputFile("file", flags.file)
    if (fileSize > MAX_FILE_SIZE) return yield* new UsageError({ message: `--file: ${flags.file} is larger than the protocol's 4 GiB - 1 bytes` })
    const fileName = basename(flags.file)
    const mode = flags.mode === "online" ? TransferMode.Online : TransferMode.Offline
    const { addresses, rsp } = yield* Effect.scoped(
      Effect.gen(function* () {
        const link = yield* Client.connectMsgLink(msg)
        const addresses = yield* link.serverAddresses
        const rsp = yield* link.createTask({ fromUserId, toUserId, fileName, fileSize, mode })
        return { addresses, rsp }
      })
    ).pipe(
      Effect.mapError(
        (e) =>
          new CommandFailed({
            message:
              e.reason === "Connect"
                ? `${e.message}: check --msg (the daemon's --msg-host:--msg-port) and that the daemon is running`
                : `the msg port at ${Flags.formatAddress(msg)} failed: ${e.message}`
          })
      )
    )
    if (rsp.resultCode !== 0 || !rsp.taskId) {
      return yield* new CommandFailed({
        message:
          `the server refused to create the task (result ${rsp.resultCode}): the file may be over its --max-file-size, ` +
          "or an offline one over its --max-store-bytes or --max-user-store-bytes"
      })
    }
    const dial = addresses.map((a) => Flags.formatAddress({ host: a.ip, port: a.port }))
    if (flags.json) {
      return yield* Console.log(JSON.stringify({ task_id: rsp.taskId, addresses: dial, mode: flags.mode, file_name: fileName, file_size: fileSize, from: fromUserId, to: toUserId }))
    }
    // The id alone on the first line, for TASK=$(tt-file-server task create ... | head -n1).
    yield* Console.log(rsp.taskId)
    yield* Console.log(`${flags.mode} task for ${fileName} (${formatBytes(fileSize)}) from user ${fromUserId} to user ${toUserId}; clients connect to ${dial.join(", ")}`)
  })
).pipe(
  Command.withDescription(
    helpText(
      "Asks the file server's msg_server port for a transfer task, as TeamTalk's msg_server does, for --file (its name and size). " +
        "Prints the task id on the first line, then the addresses clients connect to (with --json: " +
        '{"task_id":...,"addresses":["host:port",...],...}). Exit 1 if the server refuses the task.',
      [
        "tt-file-server task create --msg 127.0.0.1:8601 --from 1 --to 2 --file report.pdf --mode online",
        "TASK=$(tt-file-server task create --msg 127.0.0.1:8601 --from 1 --to 2 --file report.pdf --mode offline | head -n1)",
        "tt-file-server task create --msg 127.0.0.1:8601 --from 1 --to 2 --file report.pdf --mode offline --json"
      ]
    )
  )
)

export const taskCommand = Command.make("task", {}, () =>
  Effect.fail(new UsageError({ message: "task: say which: task create (see task create --help)" }))
).pipe(
  Command.withDescription("Transfer tasks: `task create` asks the server for one (see `task create --help`)."),
  Command.withSubcommands([createCommand])
)
