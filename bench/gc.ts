/**
 * Forced garbage collections in a daemon started with `gcNodeFlags`
 * (bench/gcHook.ts preloaded): tells memory still referenced from garbage
 * not yet collected.
 */
import { Duration, Effect } from "effect"
import { fileURLToPath, pathToFileURL } from "node:url"
import { alive } from "./procStats.js"
import type { Target } from "./targets.js"

const MiB = 1024 * 1024
const gcHook = pathToFileURL(fileURLToPath(new URL("./gcHook.js", import.meta.url))).href

/** Node flags for a server that answers SIGUSR2 with a full GC and its heap figures on stdout. */
export const gcNodeFlags: ReadonlyArray<string> = ["--expose-gc", "--import", gcHook]

export interface GcFigures {
  readonly heapUsedMiB: number
  readonly externalMiB: number
  /** Buffers and other ArrayBuffers (part of external): where blocks of data live. */
  readonly arrayBuffersMiB: number
  readonly rssMiB: number
}

interface GcLine {
  readonly annotations: { readonly heapUsed: number; readonly external: number; readonly arrayBuffers: number; readonly rss: number }
}

/** Asks the server (SIGUSR2, bench/gcHook.ts) for a full GC and reads the heap figures it prints. */
export const forcedGc = (server: Target): Effect.Effect<GcFigures | undefined> =>
  Effect.gen(function* () {
    const seen = (server.process.tail().match(/"bench gc"/g) ?? []).length
    if (!alive(server.process.pid)) return undefined
    process.kill(server.process.pid, "SIGUSR2")
    for (let i = 0; i < 100; i++) {
      yield* Effect.sleep(Duration.millis(100))
      const lines = server.process.tail().split("\n").filter((l) => l.includes('"bench gc"'))
      // The tail is a window of the last lines: a new one is the last "bench gc" line once the count changed or after a wait.
      if (lines.length > seen || (lines.length > 0 && i > 20)) {
        const a = (JSON.parse(lines[lines.length - 1]!) as GcLine).annotations
        return { heapUsedMiB: a.heapUsed / MiB, externalMiB: a.external / MiB, arrayBuffersMiB: a.arrayBuffers / MiB, rssMiB: a.rss / MiB }
      }
    }
    return undefined
  })
