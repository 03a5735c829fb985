/** The flags the client commands share, and the checks that turn their text into values (UsageError, exit 2, naming the flag). */
import { Options } from "@effect/cli"
import { Effect } from "effect"
import { isIP } from "node:net"
import { isCanonicalTaskId } from "../task/spec.js"
import { UsageError } from "./settings.js"

export interface Address {
  readonly host: string
  readonly port: number
}

/** `host:port`, with an IPv6 host written `[addr]:port`. */
export const parseAddress = (flag: string, value: string): Effect.Effect<Address, UsageError> => {
  const bad = new UsageError({ message: `--${flag}: "${value}" is not HOST:PORT (for example 127.0.0.1:8600, or [::1]:8600)` })
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value.trim()) ?? /^([^:\s/[\]]+):(\d+)$/.exec(value.trim())
  if (!m) return Effect.fail(bad)
  const host = m[1]!
  const port = Number(m[2])
  if (port < 1 || port > 65535) return Effect.fail(new UsageError({ message: `--${flag}: port ${m[2]} is not from 1 to 65535` }))
  if (value.trim().startsWith("[") && isIP(host) !== 6) return Effect.fail(bad)
  return Effect.succeed({ host, port })
}

export const formatAddress = (a: Address): string => (isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)

export const checkTaskId = (value: string): Effect.Effect<string, UsageError> =>
  isCanonicalTaskId(value)
    ? Effect.succeed(value)
    : Effect.fail(new UsageError({ message: `--task: "${value}" is not a task id (a lowercase UUID, as \`task create\` prints it)` }))

/** TeamTalk user ids are uint32. */
export const checkUserId = (flag: string, value: number): Effect.Effect<number, UsageError> =>
  Number.isInteger(value) && value >= 0 && value <= 0xffffffff
    ? Effect.succeed(value)
    : Effect.fail(new UsageError({ message: `--${flag}: ${value} is not a user id (0 to 4294967295)` }))

/** The server allows 256 pulls outstanding per task. */
export const MAX_WINDOW = 256

export const checkWindow = (value: number): Effect.Effect<number, UsageError> =>
  Number.isInteger(value) && value >= 1 && value <= MAX_WINDOW
    ? Effect.succeed(value)
    : Effect.fail(new UsageError({ message: `--window: ${value} must be an integer from 1 to ${MAX_WINDOW}` }))

export const server = Options.text("server").pipe(
  Options.withDescription("HOST:PORT of the file server's client port (one of the addresses `task create` prints).")
)

export const task = Options.text("task").pipe(Options.withDescription("The task id `task create` printed."))

export const user = Options.integer("user").pipe(Options.withDescription("Your user id: the task's --from for send and upload, its --to for recv and download."))

export const json = Options.boolean("json").pipe(Options.withDescription("Print one JSON summary line on stdout instead of the text summary."))

export const window = Options.integer("window").pipe(
  Options.withDefault(8),
  Options.withDescription(`Pulls in flight at once (1 to ${MAX_WINDOW}). Default: 8.`)
)

/** The flags every transfer command takes, checked. */
export interface Endpoint {
  readonly server: Address
  readonly taskId: string
  readonly userId: number
}

export const checkEndpoint = (flags: { readonly server: string; readonly task: string; readonly user: number }): Effect.Effect<Endpoint, UsageError> =>
  Effect.all({
    server: parseAddress("server", flags.server),
    taskId: checkTaskId(flags.task),
    userId: checkUserId("user", flags.user)
  })
