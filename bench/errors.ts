import { Data } from "effect"

/** Anything that stops the benchmark: a server that would not start, a transfer that went wrong. */
export class BenchError extends Data.TaggedError("BenchError")<{
  readonly message: string
}> {}
