import { Clock, Effect, Layer, Schedule } from "effect"
import { ServerConfig } from "../server/config.js"
import { TaskRegistry } from "../task/registry.js"
import { shortTaskId } from "../task/spec.js"
import type { StoredEntry } from "./store.js"
import { OfflineStore } from "./store.js"

/** Why an entry is due for deletion at `now`, or undefined while it is kept. */
export const dueReason = (
  entry: StoredEntry,
  now: number,
  lifetimes: { readonly retentionMs: number; readonly resumeTtlMs: number }
): string | undefined => {
  if (entry.state === "complete") {
    const since = entry.meta?.completedAt ?? entry.modifiedAt
    return now - since > lifetimes.retentionMs ? "retention expired" : undefined
  }
  const since = entry.meta?.uploadedAt ?? entry.modifiedAt
  return now - since > lifetimes.resumeTtlMs ? "partial upload not resumed in time" : undefined
}

/**
 * Deletes stored files past `--offline-retention` and partial uploads past
 * `--upload-resume-ttl`, at start-up and every `sweepIntervalMs`. Tasks live
 * in memory (someone connected) are left alone; their turn comes later.
 */
export const sweepOnce = Effect.gen(function* () {
  const config = yield* ServerConfig
  const store = yield* OfflineStore
  const registry = yield* TaskRegistry
  const now = yield* Clock.currentTimeMillis
  let removed = 0
  for (const entry of yield* store.list) {
    if (registry.get(entry.taskId) !== undefined) continue
    const reason = dueReason(entry, now, { retentionMs: config.offlineRetentionMs, resumeTtlMs: config.uploadResumeTtlMs })
    if (reason === undefined) continue
    yield* store.remove(entry.taskId)
    removed++
    yield* Effect.logInfo("stored file deleted").pipe(
      Effect.annotateLogs({ task: shortTaskId(entry.taskId), state: entry.state, bytes: entry.bytes, reason })
    )
  }
  return removed
})

export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    const { sweepIntervalMs } = yield* ServerConfig
    const sweep = sweepOnce.pipe(
      Effect.catchAll((e) => Effect.logError("storage sweep failed").pipe(Effect.annotateLogs({ error: e.message }))),
      Effect.asVoid
    )
    yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(sweepIntervalMs)))
  })
)
