import { HashMap, Layer, Logger, LogLevel } from "effect"

export type LogLevelName = "debug" | "info" | "warning" | "error"

const levels: Record<LogLevelName, LogLevel.LogLevel> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error
}

/** A task id (a UUID) anywhere in a string: in a file path of an error message, say. */
const TASK_ID = /\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi

/** Whoever holds a full task id can download its file: logs show its first 8 characters only. */
export const redactTaskIds = (value: unknown): unknown => (typeof value === "string" ? value.replace(TASK_ID, "$1") : value)

/** `logger` with every task id in its messages and annotations shortened. */
export const redacting = <O>(logger: Logger.Logger<unknown, O>): Logger.Logger<unknown, O> =>
  Logger.mapInputOptions(logger, (options) => ({
    ...options,
    message: Array.isArray(options.message) ? options.message.map(redactTaskIds) : redactTaskIds(options.message),
    annotations: HashMap.map(options.annotations, redactTaskIds)
  }))

/** Logs on stdout: one JSON object per line for machines, readable lines on a terminal; task ids shortened. */
export const loggerLayer = (level: LogLevelName, pretty: boolean = process.stdout.isTTY === true) =>
  Layer.merge(
    Logger.replace(Logger.defaultLogger, pretty ? redacting(Logger.prettyLogger()) : Logger.withConsoleLog(redacting(Logger.jsonLogger))),
    Logger.minimumLogLevel(levels[level])
  )
