import { Data } from "effect"
import type { ClientError } from "../client/errors.js"
import { formatAddress } from "./options.js"
import type { Endpoint } from "./options.js"

/** A transfer, a task request or a store operation that did not succeed; the CLI exits with status 1. */
export class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

export type Role = "sender" | "receiver" | "uploader" | "downloader"

const ROLE_USER: Record<Role, string> = {
  sender: "--from of an online task",
  receiver: "--to of an online task",
  uploader: "--from of an offline task whose upload is not complete",
  downloader: "--to of an offline task whose upload is complete"
}

/**
 * One line saying what went wrong and what to check, from an SDK error.
 * `after` (what can be resumed) is added to failures other than a refused login.
 */
export const explain = (endpoint: Endpoint, role: Role, after = "") => (error: ClientError): CommandFailed => {
  const server = formatAddress(endpoint.server)
  const hint = (() => {
    switch (error.reason) {
      case "Connect":
        return `${error.message}: check --server and that the daemon is running`
      case "Refused":
        return (
          `the server refused user ${endpoint.userId} as ${role} of task ${endpoint.taskId}: ` +
          `check --task and --user (it must be the ${ROLE_USER[role]}, the task must still exist, and nobody else may hold the role)`
        )
      case "Closed":
        return role === "uploader"
          ? `${server} closed the connection: is --file the file the task was created for (same size)?`
          : `${server} closed the connection (a protocol error, or the server stopped)`
      case "Cancelled":
        return `${error.message}: the other side cancelled, refused or disconnected`
      case "Protocol":
        return `protocol error from ${server}: ${error.message}`
      case "Io":
        return `${error.message}: check the path and its permissions`
    }
  })()
  // A refused login resumes nothing: running the same command again would be refused again.
  return new CommandFailed({ message: error.reason === "Refused" ? hint : hint + after })
}
