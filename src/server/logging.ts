import { Layer, Logger, LogLevel } from "effect"

export type LogLevelName = "debug" | "info" | "warning" | "error"

const levels: Record<LogLevelName, LogLevel.LogLevel> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error
}

/** Logs on stdout: one JSON object per line for machines, readable lines on a terminal. */
export const loggerLayer = (level: LogLevelName, pretty: boolean = process.stdout.isTTY === true) =>
  Layer.merge(pretty ? Logger.pretty : Logger.json, Logger.minimumLogLevel(levels[level]))
