import { Data } from "effect"
import { isIP } from "node:net"
import type { ServerSettings } from "../server/config.js"
import { defaultSettings } from "../server/config.js"
import type { LogLevelName } from "../server/logging.js"

/** A flag or value the user has to fix; the CLI exits with status 2. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

export interface ServeFlags {
  readonly clientHost: string
  readonly clientPort: number
  readonly msgHost: string
  readonly msgPort: number
  readonly advertise: string
  readonly dataDir: string
  readonly taskTimeout: number
  readonly maxFrameBytes: number
  readonly loginTimeout: number
  readonly idleTimeout: number
  readonly msgIdleTimeout: number
  readonly logLevel: LogLevelName
}

const MIN_FRAME_BYTES = 1024
const MAX_FRAME_BYTES = 256 * 1024 * 1024

const port = (flag: string, value: number): number => {
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new UsageError({ message: `--${flag}: ${value} is not a port (0-65535)` })
  return value
}

const seconds = (flag: string, value: number): number => {
  if (!Number.isFinite(value) || value <= 0) throw new UsageError({ message: `--${flag}: ${value} must be a positive number of seconds` })
  return Math.round(value * 1000)
}

const host = (flag: string, value: string): string => {
  const h = value.trim()
  if (h === "" || /[\s/]/.test(h)) throw new UsageError({ message: `--${flag}: "${value}" is not a host address` })
  return h
}

/** `host[:port]`, with IPv6 written `[addr]:port` or bare. */
const advertiseEntry = (entry: string): { ip: string; port: number | undefined } => {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry)
  if (bracketed) return { ip: host("advertise", bracketed[1]!), port: bracketed[2] ? port("advertise", Number(bracketed[2])) : undefined }
  if (isIP(entry) === 6) return { ip: entry, port: undefined }
  const [h, p, ...rest] = entry.split(":")
  if (rest.length > 0 || h === undefined) throw new UsageError({ message: `--advertise: "${entry}" is not host[:port]` })
  if (p !== undefined && !/^\d+$/.test(p)) throw new UsageError({ message: `--advertise: "${entry}" has a bad port` })
  return { ip: host("advertise", h), port: p === undefined ? undefined : port("advertise", Number(p)) }
}

const list = (value: string) =>
  value
    .split(/[,;]/)
    .map((s) => s.trim())
    .filter((s) => s !== "")

/** Checks the serve flags and turns them into settings; throws UsageError naming the flag at fault. */
export const settingsFromFlags = (flags: ServeFlags): ServerSettings => {
  const clientHosts = list(flags.clientHost).map((h) => host("client-host", h))
  if (clientHosts.length === 0) throw new UsageError({ message: "--client-host: give at least one address" })
  if (!Number.isInteger(flags.maxFrameBytes) || flags.maxFrameBytes < MIN_FRAME_BYTES || flags.maxFrameBytes > MAX_FRAME_BYTES) {
    throw new UsageError({ message: `--max-frame-bytes: ${flags.maxFrameBytes} must be between ${MIN_FRAME_BYTES} and ${MAX_FRAME_BYTES}` })
  }
  if (flags.dataDir.trim() === "") throw new UsageError({ message: "--data-dir: must not be empty" })
  return {
    ...defaultSettings,
    clientHosts,
    clientPort: port("client-port", flags.clientPort),
    msgHost: host("msg-host", flags.msgHost),
    msgPort: port("msg-port", flags.msgPort),
    advertise: list(flags.advertise).map(advertiseEntry),
    dataDir: flags.dataDir,
    taskTimeoutMs: seconds("task-timeout", flags.taskTimeout),
    maxFrameBytes: flags.maxFrameBytes,
    loginTimeoutMs: seconds("login-timeout", flags.loginTimeout),
    clientIdleTimeoutMs: seconds("idle-timeout", flags.idleTimeout),
    msgIdleTimeoutMs: seconds("msg-idle-timeout", flags.msgIdleTimeout),
    logLevel: flags.logLevel
  }
}
