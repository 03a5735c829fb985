import { Data } from "effect"
import type { ClientError } from "../src/client/index.js"

/** Anything that stops the benchmark: a server that would not start, a transfer that went wrong. */
export class BenchError extends Data.TaggedError("BenchError")<{
  readonly message: string
}> {}

export const fail = (message: string) => new BenchError({ message })

/** An SDK error as a BenchError saying what failed (a BenchError passes through). */
export const asBench = (what: string) => (e: ClientError | BenchError): BenchError =>
  e instanceof BenchError ? e : fail(`${what}: [${e.reason}] ${e.message}`)
