import { Command, Options } from "@effect/cli"
import { Effect, Layer } from "effect"
import { ServerLive } from "../server/app.js"
import { defaultSettings, ServerConfig } from "../server/config.js"
import { loggerLayer } from "../server/logging.js"
import { settingsFromFlags, UsageError } from "./settings.js"

const d = defaultSettings

const options = {
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
  taskTimeout: Options.float("task-timeout").pipe(
    Options.withDefault(d.taskTimeoutMs / 1000),
    Options.withDescription(`Seconds an online task may have nobody connected before it ends. Default: ${d.taskTimeoutMs / 1000}.`)
  ),
  maxFrameBytes: Options.integer("max-frame-bytes").pipe(
    Options.withDefault(d.maxFrameBytes),
    Options.withDescription(`Largest PDU accepted, header included; a longer length closes the connection. Default: ${d.maxFrameBytes}.`)
  ),
  loginTimeout: Options.float("login-timeout").pipe(
    Options.withDefault(d.loginTimeoutMs / 1000),
    Options.withDescription(`Seconds a client connection has to log in. Default: ${d.loginTimeoutMs / 1000}.`)
  ),
  idleTimeout: Options.float("idle-timeout").pipe(
    Options.withDefault(d.clientIdleTimeoutMs / 1000),
    Options.withDescription(`Seconds of silence after which a client connection is closed. Default: ${d.clientIdleTimeoutMs / 1000}.`)
  ),
  msgIdleTimeout: Options.float("msg-idle-timeout").pipe(
    Options.withDefault(d.msgIdleTimeoutMs / 1000),
    Options.withDescription(`Seconds of silence after which a msg_server link is closed. Default: ${d.msgIdleTimeoutMs / 1000}.`)
  ),
  logLevel: Options.choice("log-level", ["debug", "info", "warning", "error"]).pipe(
    Options.withDefault(d.logLevel),
    Options.withDescription(`Least severe log level written to stdout. Default: ${d.logLevel}.`)
  )
}

export const serveCommand = Command.make("serve", options, (flags) =>
  Effect.try({
    try: () => settingsFromFlags(flags),
    catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: String(e) }))
  }).pipe(
    Effect.flatMap((settings) =>
      Layer.launch(ServerLive).pipe(
        Effect.provide(ServerConfig.layer(settings)),
        Effect.provide(loggerLayer(settings.logLevel))
      )
    )
  )
).pipe(Command.withDescription("Run the file server daemon (what `npm start` runs)."))
