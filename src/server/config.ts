import { Context, Layer } from "effect"
import { DEFAULT_MAX_FRAME_BYTES } from "../protocol/frame.js"

/** Every setting of the daemon, already validated. Swap the Layer to configure it another way. */
export interface ServerSettings {
  /** Addresses the client port listens on (TeamTalk's `ClientListenIP` list). */
  readonly clientHosts: ReadonlyArray<string>
  readonly clientPort: number
  readonly msgHost: string
  readonly msgPort: number
  /** Addresses told to msg_server for clients to dial; empty means "derive from the client listeners". */
  readonly advertise: ReadonlyArray<{ readonly ip: string; readonly port: number | undefined }>
  readonly dataDir: string
  /** An online task nobody is connected to ends after this long. */
  readonly taskTimeoutMs: number
  readonly maxFrameBytes: number
  /** A client connection that has not logged in by then is closed. */
  readonly loginTimeoutMs: number
  /** A logged-in client that sends nothing for this long is closed (clients heartbeat every 30 s). */
  readonly clientIdleTimeoutMs: number
  /** A msg_server link silent this long is closed (msg_server heartbeats every 5 s). */
  readonly msgIdleTimeoutMs: number
  /** Client connections open at once, over every client listener. */
  readonly maxConnections: number
  /** Client connections open at once from one address. */
  readonly maxConnectionsPerIp: number
  /** Tasks alive at once; more are refused with result_code 1. */
  readonly maxTasks: number
  /** Who may connect to the msg_server port (addresses or CIDR blocks); others are refused on accept. */
  readonly msgAllow: ReadonlyArray<string>
  /** Pulls a receiver may have outstanding at once. */
  readonly maxPullsInFlight: number
  /** Bytes queued for writing to one connection before it is cut off as not reading. */
  readonly maxWriteQueueBytes: number
  /** Blocks an online task asks the sender for ahead of the receiver's pulls (0: off, as TeamTalk). */
  readonly onlineReadahead: number
  /** Bytes all online tasks together may hold or have asked for ahead of their receivers. */
  readonly readaheadMemoryBytes: number
  /** Bytes an online task asks the sender for in one pull when reading ahead (rounded to whole receiver blocks, within one frame). */
  readonly readaheadSegment: number
  /** Bytes the server asks an offline uploader for per PULL_DATA_REQ. */
  readonly uploadSegment: number
  /** Offline upload requests in flight at once. */
  readonly uploadWindow: number
  /** Bytes of upload blocks all offline uploads together may have asked for and not stored yet. */
  readonly uploadMemoryBytes: number
  /** Largest file a task may announce (the protocol's limit is 4 GiB - 1). */
  readonly maxFileSize: number
  /** Bytes all offline files (stored, uploading or announced) may take in total. */
  readonly maxStoreBytes: number
  /** Bytes the offline files of one sending user may take. */
  readonly maxUserStoreBytes: number
  /** Delete a stored file once a downloader that was sent its end (and DONE) disconnects. */
  readonly deleteAfterDownload: boolean
  /** Stored files are deleted this long after their upload completed. */
  readonly offlineRetentionMs: number
  /** A partial upload is kept this long after it last began (or resumed), for a resume. */
  readonly uploadResumeTtlMs: number
  /** How often stored files are swept for the two lifetimes above. */
  readonly sweepIntervalMs: number
  readonly logLevel: "debug" | "info" | "warning" | "error"
  /** Address of the admin HTTP port (health, readiness, metrics, tasks). */
  readonly adminHost: string
  /** Admin HTTP port; 0 turns the admin port off. */
  readonly adminPort: number
  /** On SIGTERM/SIGINT, how long transfers in flight may run before they are cancelled. */
  readonly drainTimeoutMs: number
}

export const defaultSettings: ServerSettings = {
  clientHosts: ["0.0.0.0"],
  clientPort: 8600,
  msgHost: "127.0.0.1",
  msgPort: 8601,
  advertise: [],
  dataDir: "./data",
  taskTimeoutMs: 60_000,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  loginTimeoutMs: 30_000,
  clientIdleTimeoutMs: 120_000,
  msgIdleTimeoutMs: 30_000,
  maxConnections: 20_000,
  maxConnectionsPerIp: 1024,
  maxTasks: 100_000,
  msgAllow: ["127.0.0.0/8", "::1/128"],
  maxPullsInFlight: 256,
  maxWriteQueueBytes: 8 * 1024 * 1024,
  onlineReadahead: 4,
  readaheadMemoryBytes: 16 * 1024 * 1024,
  readaheadSegment: 64 * 1024,
  uploadSegment: 32 * 1024,
  uploadWindow: 8,
  uploadMemoryBytes: 32 * 1024 * 1024,
  maxFileSize: 0xffffffff,
  maxStoreBytes: Number.POSITIVE_INFINITY,
  maxUserStoreBytes: Number.POSITIVE_INFINITY,
  deleteAfterDownload: false,
  offlineRetentionMs: 7 * 24 * 3600_000,
  uploadResumeTtlMs: 24 * 3600_000,
  sweepIntervalMs: 3600_000,
  logLevel: "info",
  adminHost: "127.0.0.1",
  adminPort: 8602,
  drainTimeoutMs: 30_000
}

export class ServerConfig extends Context.Tag("tt-file-server/ServerConfig")<ServerConfig, ServerSettings>() {
  static readonly layer = (overrides: Partial<ServerSettings> = {}) =>
    Layer.succeed(ServerConfig, { ...defaultSettings, ...overrides })
}

