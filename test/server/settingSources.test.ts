/** Settings from layered sources (flags, environment, file, defaults) through the Effect Config, in-process. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Option } from "effect"
import * as fc from "fast-check"
import { defaultSettings } from "../../src/server/config.js"
import type { ServerSettings } from "../../src/server/config.js"
import type { ConfigFileEntry } from "../../src/server/configFile.js"
import type { Source } from "../../src/server/settingSources.js"
import { envSource, fileSource, flagSource, resolveSettings } from "../../src/server/settingSources.js"
import { envName, fileKey, optionList, settingOptions } from "../../src/server/settingsConfig.js"

const flags = (given: Record<string, string>): Source => flagSource(Object.fromEntries(Object.entries(given).map(([k, v]) => [k, Option.some(v)])))
const env = (given: Record<string, string>): Source => Either.getOrThrow(envSource(given))
const file = (lines: ReadonlyArray<readonly [string, string]>, path = "fileserver.conf") =>
  fileSource(
    path,
    lines.map(([key, value], i): ConfigFileEntry => ({ line: i + 1, key, value }))
  )

const resolve = (...sources: ReadonlyArray<Source>): ServerSettings => Effect.runSync(resolveSettings(sources))
const failure = (...sources: ReadonlyArray<Source>): string => {
  const exit = Effect.runSyncExit(resolveSettings(sources))
  if (Exit.isSuccess(exit)) throw new Error("resolved, but a failure was expected")
  return JSON.stringify(exit.cause)
}

/** An option given in some of the three sources (text for each), and the value it must come out as. */
interface Case<A> {
  readonly name: string
  readonly key: keyof ServerSettings
  readonly arb: fc.Arbitrary<readonly [string, A]>
}

const cases: ReadonlyArray<Case<unknown>> = [
  { name: "client-port", key: "clientPort", arb: fc.integer({ min: 0, max: 65535 }).map((p) => [String(p), p] as const) },
  {
    name: "client-host",
    key: "clientHosts",
    arb: fc.array(fc.ipV4(), { minLength: 1, maxLength: 3 }).map((hosts) => [hosts.join(";"), hosts] as const)
  },
  { name: "task-timeout", key: "taskTimeoutMs", arb: fc.integer({ min: 1, max: 100_000 }).map((s) => [`${s}`, s * 1000] as const) },
  { name: "upload-resume-ttl", key: "uploadResumeTtlMs", arb: fc.integer({ min: 1, max: 90 }).map((h) => [`${h}h`, h * 3_600_000] as const) },
  { name: "upload-window", key: "uploadWindow", arb: fc.integer({ min: 1, max: 1024 }).map((n) => [String(n), n] as const) },
  { name: "delete-after-download", key: "deleteAfterDownload", arb: fc.boolean().map((b) => [String(b), b] as const) }
]

/** For each case, a value or nothing in each of flag, environment and file. */
const layersArb = fc.tuple(
  ...cases.map((c) => fc.tuple(fc.option(c.arb, { nil: undefined }), fc.option(c.arb, { nil: undefined }), fc.option(c.arb, { nil: undefined })))
)

describe("settings from layered sources", () => {
  it.prop("each setting comes from the first of flag, environment, file that gives it, else its default", { layers: layersArb }, ({ layers }) => {
    const given = (i: 0 | 1 | 2, name: (c: Case<unknown>) => string) =>
      Object.fromEntries(cases.flatMap((c, n) => (layers[n]![i] === undefined ? [] : [[name(c), layers[n]![i]![0]]])))
    const settings = resolve(
      flags(given(0, (c) => c.name)),
      env(given(1, (c) => envName(c.name))),
      file(Object.entries(given(2, (c) => fileKey(c.name)))).source
    )
    cases.forEach((c, n) => {
      const first = layers[n]!.find((v) => v !== undefined)
      expect(settings[c.key]).toStrictEqual(first === undefined ? defaultSettings[c.key] : first[1])
    })
  })

  it("without any source, the settings are the defaults", () => {
    expect(resolve()).toStrictEqual(defaultSettings)
  })

  it("a bad value names where it was given: the flag, the variable, or the file, line and key", () => {
    expect(failure(flags({ "upload-window": "0" }))).toContain('--upload-window: \\"0\\" must be an integer from 1 to 1024')
    expect(failure(env({ TTFS_UPLOAD_WINDOW: "many" }))).toContain('TTFS_UPLOAD_WINDOW: \\"many\\" must be an integer')
    expect(failure(file([["DBServerIP", "x"], ["UploadWindow", "-3"]]).source)).toContain("fileserver.conf line 2 (UploadWindow): ")
    expect(failure(file([["ClientListenPort", "70000"]]).source)).toContain('fileserver.conf line 1 (ClientListenPort): \\"70000\\" is not a port (0-65535)')
    expect(failure(flags({ "offline-retention": "a week" }))).toContain('--offline-retention: \\"a week\\" is not a positive duration')
    expect(failure(env({ TTFS_CLIENT_HOST: " ; " }))).toContain("TTFS_CLIENT_HOST: give at least one address")
    expect(failure(env({ TTFS_MSG_ALLOW: "10.0.0.0/33" }))).toContain("TTFS_MSG_ALLOW: ")
    expect(failure(env({ TTFS_LOG_LEVEL: "loud" }))).toContain("TTFS_LOG_LEVEL: ")
    expect(failure(env({ TTFS_DELETE_AFTER_DOWNLOAD: "maybe" }))).toContain("TTFS_DELETE_AFTER_DOWNLOAD: ")
  })

  it("a bad value is not replaced by a good one from a source below it, and every bad value is named", () => {
    const message = failure(flags({ "client-port": "x" }), env({ TTFS_CLIENT_PORT: "8700", TTFS_ADMIN_PORT: "-1" }), file([["ClientListenPort", "8800"]]).source)
    expect(message).toContain("--client-port: ")
    expect(message).toContain("TTFS_ADMIN_PORT: ")
  })

  it("the upload segment must fit in a frame of the maximum frame size, wherever each was given", () => {
    expect(failure(flags({ "max-frame-bytes": "1024" }))).toContain("--upload-segment (default): 32768 is more than a frame of max-frame-bytes 1024 carries")
    expect(resolve(flags({ "max-frame-bytes": "1024" }), env({ TTFS_UPLOAD_SEGMENT: "900" })).uploadSegment).toBe(900)
  })

  it("an unknown TTFS_ variable is refused, naming it; TTFS_CONFIG, other variables and empty values are fine", () => {
    const unknown = envSource({ TTFS_CLIENT_PROT: "1", TTFS_UPLOAD_WINDOW: "2", HOME: "/root" })
    expect(Either.isLeft(unknown) && unknown.left.message).toMatch(/^TTFS_CLIENT_PROT: no such setting/)
    const known = env({ TTFS_CONFIG: "x.conf", TTFS_UPLOAD_WINDOW: "2", TTFS_MSG_PORT: "", PATH: "/bin" })
    expect([...known.keys()]).toEqual(["upload-window"])
  })

  it("a file takes TeamTalk's keys and ours; unknown keys and later lines for a setting are warnings; empty values are skipped", () => {
    const { source, warnings } = file([
      ["ClientListenIP", "0.0.0.0;127.0.0.1"],
      ["LoginServerIP", "127.0.0.1"],
      ["UploadWindow", ""],
      ["ClientHost", "10.0.0.1"],
      ["UploadWindow", "16"],
      ["MsgServerListenPort", "9601"],
      ["FileServerIp", "192.0.2.7;192.0.2.8:9000"],
      ["TaskTimeout", "3600"]
    ])
    expect(warnings).toEqual([
      { file: "fileserver.conf", line: 2, key: "LoginServerIP", message: "unknown key LoginServerIP ignored" },
      { file: "fileserver.conf", line: 4, key: "ClientHost", message: "ClientHost ignored: line 1 already sets client-host" }
    ])
    const settings = resolve(source)
    expect(settings.clientHosts).toEqual(["0.0.0.0", "127.0.0.1"])
    expect(settings.uploadWindow).toBe(16)
    expect(settings.msgPort).toBe(9601)
    expect(settings.advertise).toEqual([
      { ip: "192.0.2.7", port: undefined },
      { ip: "192.0.2.8", port: 9000 }
    ])
    expect(settings.taskTimeoutMs).toBe(3_600_000)
  })

  it("every option has its own flag, variable and file keys, and its shown default reads back as the default", () => {
    const names = optionList.flatMap((o) => [o.name, envName(o.name), fileKey(o.name), ...(o.teamTalkKey ? [o.teamTalkKey] : [])])
    expect(new Set(names).size).toBe(names.length)
    for (const [key, o] of Object.entries(settingOptions)) {
      if (key === "advertise") continue // shown as prose: "each client address"
      const read = o.value.read(optionList.find((l) => l.name === o.name)!.shownDefault)
      expect(read).toStrictEqual(Either.right(defaultSettings[key as keyof ServerSettings]))
    }
  })
})
