/**
 * The deployment files stay true to the code: the systemd unit (docs/deploy/tt-file-server.service), its example
 * environment file and the Dockerfile name only settings that exist, run the built CLI, and the image's command with
 * the image's environment serves and passes the image's own health check. Neither systemd nor Docker is needed: their
 * files are read here and what they would run is run directly.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { DAEMON_NODE_FLAGS } from "../../src/cli/nodeFlags.js"
import { defaultSettings } from "../../src/server/config.js"
import { CONFIG_ENV } from "../../src/server/settingSources.js"
import { envName, optionList } from "../../src/server/settingsConfig.js"
import { cliPath, runCli, runNode, spawnNode } from "../support/cli.js"
import { freePort, repoRoot } from "../support/daemon.js"
import { tempDir } from "../support/server.js"

const read = (path: string) => readFileSync(join(repoRoot, path), "utf8")
const files = {
  unit: "docs/deploy/tt-file-server.service",
  envExample: "docs/deploy/env.example",
  dockerfile: "Dockerfile"
}

/** `NAME=value` at the first `=`. */
const assignment = (text: string): readonly [string, string] => {
  const equals = text.indexOf("=")
  return [text.slice(0, equals), text.slice(equals + 1)]
}

/** The unit's `Key=value` lines, comments and section headers dropped; a key may repeat. */
const unit = read(files.unit)
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l !== "" && !l.startsWith("#") && !l.startsWith("["))
  .map(assignment)
const unitValues = (key: string) => unit.filter(([k]) => k === key).map(([, v]) => v)
const unitValue = (key: string): string => {
  const values = unitValues(key)
  expect(values, key).toHaveLength(1)
  return values[0]!
}

/** The instructions of the Dockerfile's last stage (the image): continuation lines joined, comments dropped. */
const image = (() => {
  const all = read(files.dockerfile)
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const [, op, args] = /^(\S+)\s+(.*)$/.exec(l)!
      return { op: op!.toUpperCase(), args: args! }
    })
  return all.slice(all.map((i) => i.op).lastIndexOf("FROM"))
})()
const imageArgs = (op: string) => image.filter((i) => i.op === op).map((i) => i.args)
const imageArg = (op: string): string => {
  const args = imageArgs(op)
  expect(args, op).toHaveLength(1)
  return args[0]!
}
const imageEnv: Record<string, string> = Object.fromEntries(imageArgs("ENV").flatMap((a) => a.split(/\s+/).map(assignment)))
const imageCmd = JSON.parse(imageArg("CMD")) as Array<string>
/** The image's command after `node` and its flags: the script and its arguments. */
const imageScript = imageCmd.slice(1 + DAEMON_NODE_FLAGS.length)
const healthCmd = JSON.parse(imageArg("HEALTHCHECK").replace(/^.*?\bCMD\s+/, "")) as Array<string>

/** A path the unit runs, under the directory it expects the package in, as a path of this repository. */
const INSTALLED = "/opt/tt-file-server/"

describe("deployment files", () => {
  it("name only TTFS_ variables the daemon knows", () => {
    const known = [CONFIG_ENV, ...optionList.map((o) => envName(o.name))]
    for (const file of Object.values(files)) {
      const named = read(file).match(/TTFS_[A-Z0-9_]+/g) ?? []
      expect(named.length, file).toBeGreaterThan(0)
      for (const name of named) expect(known, `${file}: ${name}`).toContain(name)
    }
  })

  it.live("the unit runs the built CLI's serve on its state directory, and its environment and the example's are accepted", () =>
    Effect.gen(function* () {
      const [node, ...rest] = unitValue("ExecStart").split(" ")
      expect(node).toBe("/usr/bin/node")
      expect(rest.slice(0, DAEMON_NODE_FLAGS.length)).toEqual(DAEMON_NODE_FLAGS)
      const [script, ...args] = rest.slice(DAEMON_NODE_FLAGS.length)
      expect(script!.startsWith(INSTALLED), script).toBe(true)
      expect(join(repoRoot, script!.slice(INSTALLED.length))).toBe(cliPath)
      expect(existsSync(cliPath)).toBe(true)
      expect(args).toEqual(["serve"])

      const env = Object.fromEntries(unitValues("Environment").map(assignment))
      expect(env.TTFS_DATA_DIR).toBe(`/var/lib/${unitValue("StateDirectory")}`)
      // The example's settings, uncommented; TTFS_CONFIG would name a file that does not exist here.
      const example = read(files.envExample)
        .split("\n")
        .flatMap((l) => (/^#TTFS_[A-Z0-9_]+=/.test(l) ? [assignment(l.slice(1))] : []))
        .filter(([name]) => name !== CONFIG_ENV)
      expect(example.length).toBeGreaterThan(0)
      const r = yield* runCli(["config"], { ...env, ...Object.fromEntries(example) })
      expect(r.stderr).toBe("")
      expect(r.code).toBe(0)
      expect((JSON.parse(r.stdout) as { dataDir: string }).dataDir).toBe(env.TTFS_DATA_DIR)
    })
  )

  it("npm start runs the daemon with the same node flags as the unit and the image", () => {
    const start = (JSON.parse(read("package.json")) as { scripts: { start: string } }).scripts.start
    expect(start).toBe(`exec node ${DAEMON_NODE_FLAGS.join(" ")} dist/src/cli/main.js serve`)
  })

  it("the unit waits longer than the drain to stop, and allows a descriptor per connection and per open file", () => {
    expect(unitValue("KillSignal")).toBe("SIGTERM")
    const stop = /^(\d+)s$/.exec(unitValue("TimeoutStopSec"))
    expect(stop).not.toBeNull()
    expect(Number(stop![1]) * 1000).toBeGreaterThan(defaultSettings.drainTimeoutMs)
    expect(Number(unitValue("LimitNOFILE"))).toBeGreaterThanOrEqual(2 * defaultSettings.maxConnections)
  })

  it("the image runs the built CLI as the node user, from what it copies, and exposes the default ports", () => {
    expect(imageArg("WORKDIR")).toBe("/app")
    expect(imageArg("USER")).toBe("node")
    expect(imageCmd[0]).toBe("node")
    expect(imageCmd.slice(1, 1 + DAEMON_NODE_FLAGS.length)).toEqual(DAEMON_NODE_FLAGS)
    expect(imageScript.slice(1)).toEqual(["serve"])
    expect(join(repoRoot, imageScript[0]!)).toBe(cliPath)
    // The CLI reads package.json and proto/ next to dist/ (src/packageRoot.ts).
    expect(imageArgs("COPY")).toEqual(["package.json package-lock.json ./", "proto proto", "--from=build /app/dist/src dist/src"])
    expect(imageScript[0]!.startsWith("dist/src/")).toBe(true)
    expect(imageArg("EXPOSE").split(/\s+/).map(Number)).toEqual([defaultSettings.clientPort, defaultSettings.msgPort, defaultSettings.adminPort])
    expect(imageEnv.TTFS_DATA_DIR).toBe(imageArg("VOLUME"))
  })

  it.scopedLive("the image's command with the image's environment listens on every interface, passes the health check, and exits 0 on SIGTERM", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const adminPort = yield* freePort
      // Free ports and a temporary directory instead of the image's defaults and its /data volume.
      const env = { ...imageEnv, TTFS_DATA_DIR: join(dir, "data"), TTFS_CLIENT_PORT: "0", TTFS_MSG_PORT: "0", TTFS_ADMIN_PORT: String(adminPort) }
      const daemon = yield* spawnNode(imageCmd.slice(1), env)

      expect(healthCmd[0]).toBe("node")
      const healthy = runNode(healthCmd.slice(1), env).pipe(
        Effect.filterOrFail(
          (r) => r.code === 0,
          (r) => new Error(`health check exited ${r.code}: ${r.stderr}`)
        )
      )
      const exited = daemon.result.pipe(Effect.flatMap((r) => Effect.fail(new Error(`the daemon exited ${r.code} before it was healthy: ${r.stderr}`))))
      yield* Effect.raceFirst(Effect.retry(healthy, { schedule: Schedule.spaced("200 millis"), times: 100 }), exited)

      daemon.process.kill("SIGTERM")
      const result = yield* daemon.result
      expect(result.code).toBe(0)
      const listening = result.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { message: string; annotations: { port?: string; host?: string } })
        .filter((l) => l.message === "listening")
        .map((l) => [l.annotations.port, l.annotations.host])
      expect(listening).toEqual(
        expect.arrayContaining([
          ["client", "0.0.0.0"],
          ["msg", "0.0.0.0"],
          ["admin", "0.0.0.0"]
        ])
      )
    })
  )
})
