import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import { ServerLive } from "../server/app.js"
import { defaultSettings, ServerConfig } from "../server/config.js"
import { loggerLayer } from "../server/logging.js"
import { runUntilStopped } from "../server/shutdown.js"
import { settingsFromFlags, UsageError } from "./settings.js"

const d = defaultSettings

/** The daemon's flags; `config` takes the same ones. */
export const serveOptions = {
  clientHost: Options.text("client-host").pipe(
    Options.withDefault(d.clientHosts.join(",")),
    Options.withDescription(`Address(es) the client port listens on, comma-separated (TeamTalk's ClientListenIP). Default: ${d.clientHosts.join(",")}.`)
  ),
  clientPort: Options.integer("client-port").pipe(
    Options.withDefault(d.clientPort),
    Options.withDescription(`Client port (0 picks a free port). Default: ${d.clientPort}.`)
  ),
  msgHost: Options.text("msg-host").pipe(
    Options.withDefault(d.msgHost),
    Options.withDescription(`Address the msg_server port listens on; keep it private. Default: ${d.msgHost}.`)
  ),
  msgPort: Options.integer("msg-port").pipe(
    Options.withDefault(d.msgPort),
    Options.withDescription(`msg_server port (0 picks a free port). Default: ${d.msgPort}.`)
  ),
  advertise: Options.text("advertise").pipe(
    Options.withDefault(""),
    Options.withDescription(
      "host[:port],... told to msg_server for clients to dial. Default: each client address, 0.0.0.0 as this machine's first non-loopback IPv4."
    )
  ),
  dataDir: Options.text("data-dir").pipe(
    Options.withDefault(d.dataDir),
    Options.withDescription(`Directory for server state (created if missing). Default: ${d.dataDir}.`)
  ),
  taskTimeout: Options.text("task-timeout").pipe(
    Options.withDefault(String(d.taskTimeoutMs / 1000)),
    Options.withDescription(`How long a task may have nobody connected before it ends (seconds, or with a unit). Default: ${d.taskTimeoutMs / 1000}.`)
  ),
  maxFrameBytes: Options.integer("max-frame-bytes").pipe(
    Options.withDefault(d.maxFrameBytes),
    Options.withDescription(`Largest PDU accepted, header included; a longer length closes the connection. Default: ${d.maxFrameBytes}.`)
  ),
  loginTimeout: Options.text("login-timeout").pipe(
    Options.withDefault(String(d.loginTimeoutMs / 1000)),
    Options.withDescription(`How long a client connection has to log in. Default: ${d.loginTimeoutMs / 1000}.`)
  ),
  idleTimeout: Options.text("idle-timeout").pipe(
    Options.withDefault(String(d.clientIdleTimeoutMs / 1000)),
    Options.withDescription(`Silence after which a client connection is closed. Default: ${d.clientIdleTimeoutMs / 1000}.`)
  ),
  msgIdleTimeout: Options.text("msg-idle-timeout").pipe(
    Options.withDefault(String(d.msgIdleTimeoutMs / 1000)),
    Options.withDescription(`Silence after which a msg_server link is closed. Default: ${d.msgIdleTimeoutMs / 1000}.`)
  ),
  onlineReadahead: Options.integer("online-readahead").pipe(
    Options.withDefault(d.onlineReadahead),
    Options.withDescription(
      `Blocks an online transfer asks the sender for ahead of the receiver, answered from memory when the receiver pulls them (0: off; with --upload-window 1 the server's PDUs are exactly TeamTalk's). Default: ${d.onlineReadahead}.`
    )
  ),
  maxConnections: Options.integer("max-connections").pipe(
    Options.withDefault(d.maxConnections),
    Options.withDescription(`Client connections open at once (all client addresses together); more are refused on accept. Default: ${d.maxConnections}.`)
  ),
  maxConnectionsPerIp: Options.integer("max-connections-per-ip").pipe(
    Options.withDefault(d.maxConnectionsPerIp),
    Options.withDescription(`Client connections open at once from one address. Default: ${d.maxConnectionsPerIp}.`)
  ),
  maxTasks: Options.integer("max-tasks").pipe(
    Options.withDefault(d.maxTasks),
    Options.withDescription(`Tasks alive at once; more get result_code 1. Default: ${d.maxTasks}.`)
  ),
  msgAllow: Options.text("msg-allow").pipe(
    Options.withDefault(d.msgAllow.join(",")),
    Options.withDescription(
      `Who may connect to the msg_server port: addresses or CIDR blocks, comma-separated; others are refused on accept and logged. Default: ${d.msgAllow.join(",")} (loopback).`
    )
  ),
  maxWriteQueueBytes: Options.integer("max-write-queue-bytes").pipe(
    Options.withDefault(d.maxWriteQueueBytes),
    Options.withDescription(`Bytes queued for writing to one connection before it is cut off as not reading. Default: ${d.maxWriteQueueBytes}.`)
  ),
  uploadSegment: Options.integer("upload-segment").pipe(
    Options.withDefault(d.uploadSegment),
    Options.withDescription(`Bytes the server asks an offline uploader for per pull. Default: ${d.uploadSegment}.`)
  ),
  uploadWindow: Options.integer("upload-window").pipe(
    Options.withDefault(d.uploadWindow),
    Options.withDescription(`Offline upload pulls in flight at once. Default: ${d.uploadWindow}.`)
  ),
  maxFileSize: Options.integer("max-file-size").pipe(
    Options.withDefault(d.maxFileSize),
    Options.withDescription(`Largest file a task may announce, in bytes; larger requests get result_code 1. Default: ${d.maxFileSize}.`)
  ),
  maxStoreBytes: Options.integer("max-store-bytes").pipe(
    Options.optional,
    Options.withDescription("Bytes all offline files may take together; a task that would exceed it gets result_code 1. Default: unlimited.")
  ),
  maxUserStoreBytes: Options.integer("max-user-store-bytes").pipe(
    Options.optional,
    Options.withDescription("Bytes the offline files of one sending user may take. Default: unlimited.")
  ),
  deleteAfterDownload: Options.boolean("delete-after-download").pipe(
    Options.withDescription("Delete a stored file once a downloader that was sent its end (and DONE) disconnects.")
  ),
  offlineRetention: Options.text("offline-retention").pipe(
    Options.withDefault("7d"),
    Options.withDescription("How long a stored offline file is kept after its upload completed (units: ms, s, m, h, d). Default: 7d.")
  ),
  uploadResumeTtl: Options.text("upload-resume-ttl").pipe(
    Options.withDefault("24h"),
    Options.withDescription("How long an unfinished upload is kept for a resume after it last began (units: ms, s, m, h, d). Default: 24h.")
  ),
  logLevel: Options.choice("log-level", ["debug", "info", "warning", "error"]).pipe(
    Options.withDefault(d.logLevel),
    Options.withDescription(`Least severe log level written to stdout. Default: ${d.logLevel}.`)
  ),
  adminHost: Options.text("admin-host").pipe(
    Options.withDefault(d.adminHost),
    Options.withDescription(`Address of the admin HTTP port (/healthz, /readyz, /metrics, /tasks). Default: ${d.adminHost}.`)
  ),
  adminPort: Options.integer("admin-port").pipe(
    Options.withDefault(d.adminPort),
    Options.withDescription(`Admin HTTP port; 0 turns it off. Default: ${d.adminPort}.`)
  ),
  drainTimeout: Options.text("drain-timeout").pipe(
    Options.withDefault(String(d.drainTimeoutMs / 1000)),
    Options.withDescription(`On SIGTERM/SIGINT, how long transfers in flight may finish before the rest are cancelled. Default: ${d.drainTimeoutMs / 1000}.`)
  )
}

/** The flags checked and turned into settings, or the UsageError naming the one at fault. */
export const settingsOf = (flags: Parameters<typeof settingsFromFlags>[0]) =>
  Effect.try({
    try: () => settingsFromFlags(flags),
    catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: String(e) }))
  })

export const serveCommand = Command.make("serve", serveOptions, (flags) =>
  settingsOf(flags).pipe(
    Effect.flatMap((settings) =>
      // Until the first SIGINT/SIGTERM (runMain interrupts), then a graceful drain; a second signal exits at once.
      runUntilStopped(ServerLive).pipe(
        Effect.provide(ServerConfig.layer(settings)),
        Effect.provide(loggerLayer(settings.logLevel))
      )
    )
  )
).pipe(Command.withDescription("Run the file server daemon (what `npm start` runs)."))
