import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import { formatBytes, formatClock, formatRate } from "./format.js"

export interface ProgressBar {
  /** Where the work stands: bytes of the file done so far, a resumed part included. Cheap: called for every block. */
  readonly update: (position: number) => void
}

export interface BarOptions {
  readonly label: string
  /** The file's size, when known: adds a percentage and an ETA. */
  readonly total?: number | undefined
  /** Where this run started (a resume): the rate counts only bytes moved by this run. */
  readonly start?: number
}

/** Progress bars for long work; the bar is drawn until the scope closes, then left on its own line. */
export class Progress extends Context.Tag("tt-file-server/cli/Progress")<
  Progress,
  { readonly bar: (options: BarOptions) => Effect.Effect<ProgressBar, never, Scope.Scope> }
>() {
  /** Draws nothing: for output that is not a terminal (a log file, a pipe, a test). */
  static readonly silent = Layer.succeed(Progress, { bar: () => Effect.succeed({ update: () => {} }) })

  /** Redraws one line on `stream` at most every 100 ms. */
  static readonly terminal = (stream: NodeJS.WriteStream) => Layer.succeed(Progress, { bar: (options) => terminalBar(stream, options) })

  /** A bar on stderr when stderr is a terminal, nothing otherwise (stdout stays for results). */
  static readonly layer = Layer.suspend(() => (process.stderr.isTTY ? Progress.terminal(process.stderr) : Progress.silent))
}

const REDRAW_MS = 100

/** Room kept for the text after the bar: "100%  1023.9 MiB / 1023.9 MiB  1023.9 MiB/s  ETA 99:59:59". */
const TAIL_ROOM = 58

/**
 * `label [#####.....]  40%  1.20 MiB / 3.00 MiB  5.10 MiB/s  ETA 0:02`, fitted to the terminal's width;
 * without a total, `label  1.20 MiB  5.10 MiB/s`. `elapsedMs` counts from the first byte moved.
 */
export const renderBar = (options: BarOptions, position: number, elapsedMs: number, columns: number): string => {
  const rate = elapsedMs > 0 ? ((position - (options.start ?? 0)) * 1000) / elapsedMs : 0
  const total = options.total
  if (total === undefined) return `${options.label}  ${formatBytes(position)}  ${formatRate(rate)}`
  const fraction = total === 0 ? 1 : Math.min(1, position / total)
  const eta = rate > 0 ? formatClock((total - position) / rate) : "-:--"
  const tail = `${String(Math.floor(fraction * 100)).padStart(3)}%  ${formatBytes(position)} / ${formatBytes(total)}  ${formatRate(rate)}  ETA ${eta}`
  const width = Math.min(30, columns - options.label.length - TAIL_ROOM - 4)
  if (width < 5) return `${options.label}  ${tail}`
  const filled = Math.round(fraction * width)
  return `${options.label} [${"#".repeat(filled)}${".".repeat(width - filled)}]  ${tail}`
}

const terminalBar = (stream: NodeJS.WriteStream, options: BarOptions): Effect.Effect<ProgressBar, never, Scope.Scope> => {
  // The rate counts from the first byte, not from the start: a sender may wait a while for its receiver.
  let started: number | undefined
  let position = options.start ?? 0
  let drawnAt = Number.NEGATIVE_INFINITY
  const draw = (now: number) => {
    drawnAt = now
    stream.write(`\r${renderBar(options, position, started === undefined ? 0 : now - started, stream.columns || 80)}\x1b[K`)
  }
  return Effect.acquireRelease(
    Effect.sync(() => {
      draw(performance.now())
      return {
        update: (p: number) => {
          const now = performance.now()
          started ??= now
          position = p
          if (now - drawnAt >= REDRAW_MS) draw(now)
        }
      }
    }),
    () =>
      Effect.sync(() => {
        draw(performance.now())
        stream.write("\n")
      })
  )
}
