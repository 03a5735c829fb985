import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import { createHash } from "node:crypto"
import type { StoredEntry } from "../storage/store.js"
import { OfflineStore } from "../storage/store.js"
import { CommandFailed } from "./failure.js"
import { formatBytes } from "./format.js"
import { helpText } from "./help.js"
import * as Flags from "./options.js"
import type { ProgressBar } from "./progress.js"
import { Progress } from "./progress.js"
import { dataDir, withStore } from "./storeAccess.js"

const CHUNK = 1024 * 1024

type Verdict = { readonly taskId: string } & ({ readonly ok: true } | { readonly ok: false; readonly reason: string })

/**
 * Re-hashes one complete file against the sha256 in its sidecar. Reads go
 * through the store (which knows the layout) but not through `load`, which
 * would quarantine a bad file: verify only reports.
 */
const verifyOne = (entry: StoredEntry, expected: string, fileSize: number, done: number, bar: ProgressBar) =>
  Effect.scoped(
    Effect.gen(function* () {
      if (entry.bytes !== fileSize) return { taskId: entry.taskId, ok: false, reason: `holds ${entry.bytes} bytes, its size is ${fileSize}` } as const
      const store = yield* OfflineStore
      const reader = yield* store.openRead(entry.taskId)
      const hash = createHash("sha256")
      for (let offset = 0; offset < fileSize; offset += CHUNK) {
        hash.update(yield* reader.read(offset, Math.min(CHUNK, fileSize - offset)))
        bar.update(done + Math.min(fileSize, offset + CHUNK))
      }
      const actual = hash.digest("hex")
      return actual === expected ? ({ taskId: entry.taskId, ok: true } as const) : ({ taskId: entry.taskId, ok: false, reason: `sha256 is ${actual}, its sidecar says ${expected}` } as const)
    })
  ).pipe(Effect.catchTag("StoreError", (e) => Effect.succeed({ taskId: entry.taskId, ok: false, reason: e.message } as const)))

export const verifyCommand = Command.make("verify", { dataDir, json: Flags.json }, (flags) =>
  withStore(
    flags.dataDir,
    Effect.gen(function* () {
      const store = yield* OfflineStore
      const entries = (yield* store.list).filter((e) => e.state === "complete")
      // Files adopted from TeamTalk get a sidecar (and a sha256) only when first downloaded.
      const checkable = entries.flatMap((e) => (e.meta?.sha256 === undefined ? [] : [{ entry: e, sha256: e.meta.sha256, fileSize: e.meta.fileSize }]))
      const unchecked = entries.filter((e) => e.meta?.sha256 === undefined).map((e) => e.taskId)
      const total = checkable.reduce((n, c) => n + c.fileSize, 0)
      const verdicts: Array<Verdict> = []
      yield* Effect.scoped(
        Effect.gen(function* () {
          const bar = yield* (yield* Progress).bar({ label: "verify", total })
          let done = 0
          for (const c of checkable) {
            verdicts.push(yield* verifyOne(c.entry, c.sha256, c.fileSize, done, bar))
            done += c.fileSize
          }
        })
      )
      const bad = verdicts.flatMap((v) => (v.ok ? [] : [{ task_id: v.taskId, reason: v.reason }]))
      if (flags.json) {
        yield* Console.log(JSON.stringify({ verified: verdicts.length, bytes: total, ok: verdicts.length - bad.length, mismatched: bad, unchecked }))
      } else {
        for (const b of bad) yield* Console.log(`MISMATCH ${b.task_id}: ${b.reason}`)
        for (const id of unchecked) yield* Console.log(`unchecked ${id}: no sha256 yet (a TeamTalk file; it gets one at its first download)`)
        yield* Console.log(`verified ${verdicts.length} files (${formatBytes(total)}): ${verdicts.length - bad.length} ok, ${bad.length} mismatched`)
      }
      if (bad.length > 0) {
        return yield* new CommandFailed({
          message: `${bad.length} stored file(s) do not match their sha256: delete them with \`store rm\` (the daemon would quarantine them at their next download)`
        })
      }
    })
  )
).pipe(
  Command.withDescription(
    helpText(
      "Re-hashes every complete stored file under --data-dir and compares it with the sha256 recorded when its upload " +
        "completed; lists each mismatch (wrong length or checksum). Exit 0 if all match, 1 if any does not. Read-only: files are " +
        "reported, not moved. Partial uploads have no checksum yet and are skipped.",
      ["tt-file-server store verify --data-dir /var/lib/tt-file-server", "tt-file-server store verify --data-dir ./data --json"]
    )
  )
)
