/**
 * The daemon's settings as an Effect `Config`: one entry per option (its name, what it means, how its text is read,
 * its default), read from whatever ConfigProvider is in place. settingSources.ts layers the flags, the environment
 * and the configuration file into one provider; serve.ts makes the flags from the same table.
 */
import { Config, ConfigError, Either, Record } from "effect"
import { maxBlockBytes } from "../protocol/dataBlock.js"
import type { ServerSettings } from "./config.js"
import { defaultSettings } from "./config.js"
import type { LogLevelName } from "./logging.js"
import * as Value from "./settingValues.js"

/** How the option is written on the command line. */
export type FlagKind = "integer" | "text" | "switch" | { readonly choices: ReadonlyArray<string> }

export interface SettingOption<A> {
  /** The flag without `--`. The environment variable and the file key are made from it. */
  readonly name: string
  readonly flag: FlagKind
  readonly description: string
  readonly value: Value.ValueKind<A>
  /** TeamTalk's fileserver.conf key for the same setting, accepted in a file besides ours. */
  readonly teamTalkKey?: string
}

const LOG_LEVELS: ReadonlyArray<LogLevelName> = ["debug", "info", "warning", "error"]
const MIN_FRAME_BYTES = 1024
const MAX_FRAME_BYTES = 256 * 1024 * 1024
/** The widest task id a PULL_DATA_RSP carries (a UUID). */
const TASK_ID_BYTES = 36

const option = <A>(
  name: string,
  flag: FlagKind,
  value: Value.ValueKind<A>,
  description: string,
  teamTalkKey?: string
): SettingOption<A> => (teamTalkKey === undefined ? { name, flag, value, description } : { name, flag, value, description, teamTalkKey })

const integer = (name: string, min: number, max: number, description: string) => option(name, "integer", Value.integerIn(min, max), description)
const duration = (name: string, description: string) => option(name, "text", Value.duration, description)
/** A duration that runs as a timer (Node's timers wait at most about 24.8 days). */
const timer = (name: string, description: string) => option(name, "text", Value.timerDuration, description)

/** Every setting a user can give; the two left out (pulls in flight, sweep interval) are fixed. */
type Configurable = Exclude<keyof ServerSettings, "maxPullsInFlight" | "sweepIntervalMs">

export const settingOptions: { readonly [K in Configurable]: SettingOption<ServerSettings[K]> } = {
  clientHosts: option("client-host", "text", Value.hostList, "Address(es) the client port listens on, comma- or ;-separated; one listener each.", "ClientListenIP"),
  clientPort: option("client-port", "integer", Value.port, "Client port (0 picks a free port, logged).", "ClientListenPort"),
  msgHost: option("msg-host", "text", Value.host, "Address the msg_server port listens on; keep it private.", "MsgServerListenIP"),
  msgPort: option("msg-port", "integer", Value.port, "msg_server port (0 picks a free port, logged).", "MsgServerListenPort"),
  advertise: option(
    "advertise",
    "text",
    Value.advertiseList,
    "host[:port],... told to msg_server for clients to dial; an entry without a port gets the client port.",
    "FileServerIp"
  ),
  dataDir: option("data-dir", "text", Value.nonEmptyText, "Directory for server state (created if missing); offline files live in offline_file/ under it."),
  // Its file key, TaskTimeout, is TeamTalk's already.
  taskTimeoutMs: timer("task-timeout", "How long a task may have nobody connected before it ends (seconds, or with a unit)."),
  maxFrameBytes: integer("max-frame-bytes", MIN_FRAME_BYTES, MAX_FRAME_BYTES, "Largest PDU accepted, header included; a longer length closes the connection."),
  loginTimeoutMs: timer("login-timeout", "How long a client connection has to log in."),
  clientIdleTimeoutMs: timer("idle-timeout", "Silence after which a client connection is closed (clients heartbeat every 30 s)."),
  msgIdleTimeoutMs: timer("msg-idle-timeout", "Silence after which a msg_server link is closed (msg_server heartbeats every 5 s)."),
  onlineReadahead: integer(
    "online-readahead",
    0,
    64,
    "Blocks an online transfer asks the sender for ahead of the receiver, answered from memory when the receiver pulls them " +
      "(0: off; with --upload-window 1 the server's PDUs are exactly TeamTalk's)."
  ),
  readaheadMemoryBytes: integer(
    "readahead-memory",
    0,
    Number.MAX_SAFE_INTEGER,
    "Bytes all online transfers together may hold read ahead; a transfer that finds none free relays pulls as they come."
  ),
  readaheadSegment: integer(
    "readahead-segment",
    1,
    MAX_FRAME_BYTES,
    "Bytes an online transfer asks the sender for in one pull when reading ahead, rounded to the nearest whole number " +
      "of receiver blocks (at least one, at most --online-readahead of them, at most what one frame carries)."
  ),
  maxConnections: integer("max-connections", 1, 10_000_000, "Client connections open at once (all client addresses together); more are refused on accept."),
  maxConnectionsPerIp: integer("max-connections-per-ip", 1, 10_000_000, "Client connections open at once from one address."),
  maxTasks: integer("max-tasks", 1, 100_000_000, "Tasks alive at once; more get result_code 1."),
  msgAllow: option("msg-allow", "text", Value.allowList, "Who may connect to the msg_server port: addresses or CIDR blocks; others are refused on accept and logged."),
  maxWriteQueueBytes: integer("max-write-queue-bytes", 64 * 1024, 1024 * 1024 * 1024, "Bytes queued for writing to one connection before it is cut off as not reading."),
  // The upper bound depends on --max-frame-bytes: checked below, once both are known.
  uploadSegment: integer("upload-segment", 1, MAX_FRAME_BYTES, "Bytes the server asks an offline uploader for per pull (at most what one frame can carry)."),
  uploadWindow: integer("upload-window", 1, 1024, "Offline upload pulls in flight at once (1: TeamTalk's stop-and-wait)."),
  uploadMemoryBytes: integer(
    "upload-memory",
    0,
    Number.MAX_SAFE_INTEGER,
    "Bytes of upload blocks all offline uploads together may have asked for and not stored yet; an upload that finds none free asks for one block at a time."
  ),
  maxFileSize: integer("max-file-size", 0, 0xffffffff, "Largest file a task may announce, in bytes; larger requests get result_code 1."),
  maxStoreBytes: option(
    "max-store-bytes",
    "text",
    Value.byteLimit,
    "Bytes all offline files may take together (announced sizes count from task creation); a task that would exceed it gets result_code 1."
  ),
  maxUserStoreBytes: option("max-user-store-bytes", "text", Value.byteLimit, "Bytes the offline files of one sending user may take."),
  deleteAfterDownload: option(
    "delete-after-download",
    "switch",
    Value.boolean,
    "Delete a stored file once a downloader that was sent its end (and DONE) disconnects."
  ),
  offlineRetentionMs: duration("offline-retention", "How long a stored offline file is kept after its upload completed."),
  uploadResumeTtlMs: duration("upload-resume-ttl", "How long an unfinished upload is kept for a resume after it last began."),
  logLevel: option("log-level", { choices: LOG_LEVELS }, Value.oneOf(LOG_LEVELS), "Least severe log level written to stdout."),
  adminHost: option("admin-host", "text", Value.host, "Address of the admin HTTP port (/healthz, /readyz, /metrics, /tasks)."),
  adminPort: option("admin-port", "integer", Value.port, "Admin HTTP port; 0 turns it off."),
  drainTimeoutMs: timer("drain-timeout", "On SIGTERM/SIGINT, how long transfers in flight may finish before the rest are cancelled.")
}

/** The table as a list, each with its default shown as text. */
export const optionList: ReadonlyArray<SettingOption<unknown> & { readonly shownDefault: string }> = Object.entries(settingOptions).map(
  ([key, o]) => {
    const opt = o as SettingOption<unknown>
    return { ...opt, shownDefault: opt.value.show(defaultSettings[key as Configurable]) }
  }
)

/** `upload-window` -> `TTFS_UPLOAD_WINDOW`. */
export const envName = (name: string): string => `TTFS_${name.toUpperCase().replace(/-/g, "_")}`

/** `upload-window` -> `UploadWindow`, in the style of TeamTalk's keys. */
export const fileKey = (name: string): string =>
  name
    .split("-")
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("")

const settingConfig = <A>(o: SettingOption<A>, fallback: A): Config.Config<A> =>
  Config.string(o.name).pipe(
    Config.mapOrFail((text) => Either.mapLeft(o.value.read(text), (problem) => ConfigError.InvalidData([], problem))),
    Config.withDescription(o.description),
    Config.withDefault(fallback)
  )

const checkUploadSegment = (s: ServerSettings): Either.Either<ServerSettings, ConfigError.ConfigError> => {
  const max = maxBlockBytes(s.maxFrameBytes, TASK_ID_BYTES)
  return s.uploadSegment <= max
    ? Either.right(s)
    : Either.left(ConfigError.InvalidData([settingOptions.uploadSegment.name], `${s.uploadSegment} is more than a frame of max-frame-bytes ${s.maxFrameBytes} carries (${max})`))
}

/** The settings: every option from the provider in place, or its default; each value checked. */
export const settingsConfig: Config.Config<ServerSettings> = Config.all(
  // Record.map loses the per-key types of the table; each entry keeps its own A, so the record is as typed here.
  Record.map(settingOptions, (o, key) => settingConfig(o as SettingOption<unknown>, defaultSettings[key])) as {
    readonly [K in Configurable]: Config.Config<ServerSettings[K]>
  }
).pipe(
  Config.map((given): ServerSettings => ({ ...defaultSettings, ...given })),
  Config.mapOrFail(checkUploadSegment)
)
