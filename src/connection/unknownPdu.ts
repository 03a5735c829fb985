import { Effect } from "effect"
import type { Counter } from "../observability/metrics.js"
import type { Frame } from "../protocol/frame.js"

/**
 * Unexpected service/command ids are ignored: each kind is logged once per
 * connection, and all of them are counted for the connection's closing log.
 */
export const makeUnknownPduLog = (counter: Counter) => {
  const seen = new Set<number>()
  let count = 0
  const log = (frame: Frame): Effect.Effect<void> => {
    count++
    counter.inc()
    const key = frame.serviceId * 0x10000 + frame.commandId
    if (seen.has(key)) return Effect.void
    seen.add(key)
    return Effect.logWarning("ignoring unexpected PDU").pipe(
      Effect.annotateLogs({ service: frame.serviceId, command: `0x${frame.commandId.toString(16).padStart(4, "0")}` })
    )
  }
  return Object.assign(log, { count: () => count })
}
