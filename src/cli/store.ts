import { Command } from "@effect/cli"
import { Clock, Console, Effect } from "effect"
import type { StoredEntry } from "../storage/store.js"
import { OfflineStore } from "../storage/store.js"
import { CommandFailed } from "./failure.js"
import { formatAge, formatBytes } from "./format.js"
import { helpText } from "./help.js"
import * as Flags from "./options.js"
import { UsageError } from "./settings.js"
import { dataDir, withStore } from "./storeAccess.js"
import { verifyCommand } from "./storeVerify.js"

/** What a stored file's age counts from: completion for a complete file, the last (re)start for a partial upload (as the sweeper judges them). */
const since = (e: StoredEntry): number => (e.state === "complete" ? e.meta?.completedAt : e.meta?.uploadedAt) ?? e.modifiedAt

const row = (e: StoredEntry, now: number) => ({
  task_id: e.taskId,
  state: e.state,
  from: e.meta?.fromUserId ?? null,
  to: e.meta?.toUserId ?? null,
  file_name: e.meta?.fileName ?? null,
  file_size: e.meta?.fileSize ?? e.bytes,
  bytes: e.bytes,
  age_seconds: Math.floor((now - since(e)) / 1000)
})

const table = (entries: ReadonlyArray<StoredEntry>, now: number): string => {
  const rows = entries.map((e) => {
    const size = e.meta?.fileSize ?? e.bytes
    const state = e.state === "complete" ? "complete" : `partial ${formatBytes(e.bytes)}`
    return [e.taskId, String(e.meta?.fromUserId ?? "-"), String(e.meta?.toUserId ?? "-"), formatBytes(size), formatAge(now - since(e)), state, e.meta?.fileName || "-"]
  })
  const all = [["TASK", "FROM", "TO", "SIZE", "AGE", "STATE", "NAME"], ...rows]
  const widths = all[0]!.map((_, i) => Math.max(...all.map((r) => r[i]!.length)))
  // The name goes last and unpadded: it is the only free-form column.
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n")
}

const lsCommand = Command.make("ls", { dataDir, json: Flags.json }, (flags) =>
  withStore(
    flags.dataDir,
    Effect.gen(function* () {
      const store = yield* OfflineStore
      const now = yield* Clock.currentTimeMillis
      const entries = [...(yield* store.list)].sort((a, b) => since(b) - since(a))
      if (flags.json) return yield* Console.log(JSON.stringify({ files: entries.map((e) => row(e, now)) }))
      yield* Console.log(entries.length === 0 ? `no offline files under ${flags.dataDir}` : table(entries, now))
    })
  )
).pipe(
  Command.withDescription(
    helpText(
      "Lists the stored offline files under --data-dir, newest first: task id, sending and receiving user, size, age " +
        "(since the upload completed, or for a partial upload since it last began) and state (complete, or partial with the bytes " +
        "received). Read-only: safe while the daemon runs.",
      ["tt-file-server store ls --data-dir /var/lib/tt-file-server", "tt-file-server store ls --data-dir ./data --json"]
    )
  )
)

const rmCommand = Command.make("rm", { dataDir, task: Flags.task, json: Flags.json }, (flags) =>
  Effect.gen(function* () {
    const taskId = yield* Flags.checkTaskId(flags.task)
    yield* withStore(
      flags.dataDir,
      Effect.gen(function* () {
        const store = yield* OfflineStore
        const entry = (yield* store.list).find((e) => e.taskId === taskId)
        if (entry === undefined) {
          return yield* new CommandFailed({ message: `nothing is stored for task ${taskId} under ${flags.dataDir} (see \`store ls\`)` })
        }
        yield* store.remove(taskId)
        yield* Console.log(
          flags.json
            ? JSON.stringify({ task_id: taskId, removed: true, state: entry.state, bytes: entry.bytes })
            : `removed ${entry.state} file ${entry.meta?.fileName || "(no name)"} (${formatBytes(entry.bytes)}) of task ${taskId}`
        )
      })
    )
  })
).pipe(
  Command.withDescription(
    helpText(
      "Deletes what is stored for one task (complete or partial file, and its metadata). Exit 1 if nothing is stored for it. " +
        "Stop the daemon first, or it may still hold the task in memory (and count it against the quotas) until it restarts.",
      ["tt-file-server store rm --data-dir ./data --task 3fa85f64-5717-4562-b3fc-2c963f66afa6"]
    )
  )
)

export const storeCommand = Command.make("store", {}, () =>
  Effect.fail(new UsageError({ message: "store: say which: store ls, store rm or store verify (see store --help)" }))
).pipe(
  Command.withDescription("The daemon's stored offline files: `store ls`, `store rm`, `store verify` (each takes --data-dir)."),
  Command.withSubcommands([lsCommand, rmCommand, verifyCommand])
)
