import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { runCli } from "../support/cli.js"

describe("tt-file-server config", () => {
  it.live("prints the settings serve would run with, the flags applied, as JSON", () =>
    Effect.gen(function* () {
      const r = yield* runCli(["config", "--client-port", "9600", "--offline-retention", "3d", "--max-store-bytes", "1000"])
      expect(r.code).toBe(0)
      const settings = JSON.parse(r.stdout) as Record<string, unknown>
      expect(settings.clientPort).toBe(9600)
      expect(settings.msgPort).toBe(8601)
      expect(settings.offlineRetentionMs).toBe(3 * 86_400_000)
      expect(settings.maxStoreBytes).toBe(1000)
      expect(settings.maxUserStoreBytes).toBe("unlimited")
      expect(settings.onlineReadahead).toBe(4)
    })
  )

  it.live("a bad value exits 2 naming the flag, as serve does", () =>
    Effect.gen(function* () {
      const r = yield* runCli(["config", "--task-timeout", "soon"])
      expect(r.code).toBe(2)
      expect(r.stderr).toContain("--task-timeout")
      expect(r.stdout).toBe("")
    })
  )
})
