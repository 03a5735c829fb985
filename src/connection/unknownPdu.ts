import { Effect } from "effect"
import type { Frame } from "../protocol/frame.js"

/** Unexpected service/command ids are ignored; each kind is logged once per connection. */
export const makeUnknownPduLog = () => {
  const seen = new Set<number>()
  return (frame: Frame): Effect.Effect<void> => {
    const key = frame.serviceId * 0x10000 + frame.commandId
    if (seen.has(key)) return Effect.void
    seen.add(key)
    return Effect.logWarning("ignoring unexpected PDU").pipe(
      Effect.annotateLogs({ service: frame.serviceId, command: `0x${frame.commandId.toString(16).padStart(4, "0")}` })
    )
  }
}
