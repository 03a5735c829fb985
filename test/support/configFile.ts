import { Effect } from "effect"
import type { Scope } from "effect"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { tempDir } from "./server.js"

/**
 * A fileserver.conf as TeamTalk ships it (its keys, its comments, a commented-out key), in a deployment whose conf
 * directory also holds keys of TeamTalk's other servers, plus some of our own keys.
 */
export const teamTalkConf = [
  "# file_server configuration (TeamTalk)",
  "#Address=0.0.0.0         # address for client",
  "FileServerIp=192.0.2.7;192.0.2.8",
  "ClientListenIP=0.0.0.0;127.0.0.1",
  "ClientListenPort=8600   # Listening Port for client",
  "",
  "MsgServerListenIP=127.0.0.1",
  "MsgServerListenPort=8601",
  "",
  "TaskTimeout=1         # Task Timeout (seconds)",
  "",
  "# shared with the other servers of the deployment",
  "DBServerIP1=127.0.0.1",
  "LoginServerIP=127.0.0.1 # not ours",
  "",
  "# tt-file-server's own",
  "UploadWindow = 12",
  "MsgAllow=127.0.0.0/8;::1"
].join("\n")

/** `text` written to a file in a temporary directory of the scope; returns its path. */
export const writeConf = (text: string, name = "fileserver.conf"): Effect.Effect<string, never, Scope.Scope> =>
  Effect.gen(function* () {
    const path = join(yield* tempDir, name)
    yield* Effect.promise(() => writeFile(path, text))
    return path
  })
