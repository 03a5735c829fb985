import { Data, Option } from "effect"
import { isIP } from "node:net"
import type { ServerSettings } from "../server/config.js"
import { defaultSettings } from "../server/config.js"
import { maxBlockBytes } from "../protocol/dataBlock.js"
import { parseAllowList } from "../server/admission.js"
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
  readonly taskTimeout: string
  readonly maxFrameBytes: number
  readonly loginTimeout: string
  readonly idleTimeout: string
  readonly msgIdleTimeout: string
  readonly onlineReadahead: number
  readonly maxConnections: number
  readonly maxConnectionsPerIp: number
  readonly maxTasks: number
  readonly msgAllow: string
  readonly maxWriteQueueBytes: number
  readonly uploadSegment: number
  readonly uploadWindow: number
  readonly maxFileSize: number
  readonly maxStoreBytes: Option.Option<number>
  readonly maxUserStoreBytes: Option.Option<number>
  readonly deleteAfterDownload: boolean
  readonly offlineRetention: string
  readonly uploadResumeTtl: string
  readonly logLevel: LogLevelName
  readonly adminHost: string
  readonly adminPort: number
  readonly drainTimeout: string
}

const MIN_FRAME_BYTES = 1024
const MAX_FRAME_BYTES = 256 * 1024 * 1024

const port = (flag: string, value: number): number => {
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new UsageError({ message: `--${flag}: ${value} is not a port (0-65535)` })
  return value
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86400_000 }

/** A duration: a number of seconds, or a number with a unit (ms, s, m, h, d): "90", "1.5s", "24h", "7d". */
export const parseDuration = (flag: string, value: string): number => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value)
  const ms = m ? Math.round(Number(m[1]) * UNITS[m[2] ?? "s"]!) : NaN
  if (!(ms > 0)) throw new UsageError({ message: `--${flag}: "${value}" is not a positive duration (seconds, or with a unit: 500ms, 30s, 5m, 24h, 7d)` })
  return ms
}

const integerIn = (flag: string, value: number, min: number, max: number): number => {
  if (!Number.isInteger(value) || value < min || value > max) throw new UsageError({ message: `--${flag}: ${value} must be an integer from ${min} to ${max}` })
  return value
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

const allowList = (value: string): ReadonlyArray<string> => {
  const entries = list(value)
  try {
    parseAllowList(entries)
  } catch (e) {
    throw new UsageError({ message: `--msg-allow: ${e instanceof Error ? e.message : String(e)}` })
  }
  return entries
}

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
    taskTimeoutMs: parseDuration("task-timeout", flags.taskTimeout),
    maxFrameBytes: flags.maxFrameBytes,
    loginTimeoutMs: parseDuration("login-timeout", flags.loginTimeout),
    clientIdleTimeoutMs: parseDuration("idle-timeout", flags.idleTimeout),
    msgIdleTimeoutMs: parseDuration("msg-idle-timeout", flags.msgIdleTimeout),
    onlineReadahead: integerIn("online-readahead", flags.onlineReadahead, 0, 64),
    maxConnections: integerIn("max-connections", flags.maxConnections, 1, 10_000_000),
    maxConnectionsPerIp: integerIn("max-connections-per-ip", flags.maxConnectionsPerIp, 1, 10_000_000),
    maxTasks: integerIn("max-tasks", flags.maxTasks, 1, 100_000_000),
    msgAllow: allowList(flags.msgAllow),
    maxWriteQueueBytes: integerIn("max-write-queue-bytes", flags.maxWriteQueueBytes, 64 * 1024, 1024 * 1024 * 1024),
    // A segment must fit in one frame: the largest block of a frame of this size.
    uploadSegment: integerIn("upload-segment", flags.uploadSegment, 1, maxBlockBytes(flags.maxFrameBytes, 36)),
    uploadWindow: integerIn("upload-window", flags.uploadWindow, 1, 1024),
    maxFileSize: integerIn("max-file-size", flags.maxFileSize, 0, 0xffffffff),
    maxStoreBytes: Option.match(flags.maxStoreBytes, {
      onNone: () => Number.POSITIVE_INFINITY,
      onSome: (n) => integerIn("max-store-bytes", n, 0, Number.MAX_SAFE_INTEGER)
    }),
    maxUserStoreBytes: Option.match(flags.maxUserStoreBytes, {
      onNone: () => Number.POSITIVE_INFINITY,
      onSome: (n) => integerIn("max-user-store-bytes", n, 0, Number.MAX_SAFE_INTEGER)
    }),
    deleteAfterDownload: flags.deleteAfterDownload,
    offlineRetentionMs: parseDuration("offline-retention", flags.offlineRetention),
    uploadResumeTtlMs: parseDuration("upload-resume-ttl", flags.uploadResumeTtl),
    logLevel: flags.logLevel,
    adminHost: host("admin-host", flags.adminHost),
    adminPort: port("admin-port", flags.adminPort),
    drainTimeoutMs: parseDuration("drain-timeout", flags.drainTimeout)
  }
}
