import { Data } from "effect"

/** Why a client operation failed; `reason` says which kind of failure it was. */
export class ClientError extends Data.TaggedError("ClientError")<{
  readonly reason: "Connect" | "Closed" | "Protocol" | "Refused" | "Cancelled" | "Io"
  readonly message: string
}> {}
