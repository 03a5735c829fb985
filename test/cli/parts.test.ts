/** The pure pieces of the CLI: address parsing, sizes and the progress line. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { formatAge, formatBytes, formatClock } from "../../src/cli/format.js"
import { parseAddress } from "../../src/cli/options.js"
import { renderBar } from "../../src/cli/progress.js"

describe("CLI parts", () => {
  it("parses HOST:PORT, IPv6 in brackets, and refuses the rest naming the flag", () => {
    expect(Effect.runSync(parseAddress("server", "127.0.0.1:8600"))).toEqual({ host: "127.0.0.1", port: 8600 })
    expect(Effect.runSync(parseAddress("server", "files.example.com:1"))).toEqual({ host: "files.example.com", port: 1 })
    expect(Effect.runSync(parseAddress("server", "[::1]:8600"))).toEqual({ host: "::1", port: 8600 })
    for (const bad of ["127.0.0.1", "::1:8600", "host:0", "host:65536", ":8600", "a b:1", "[nothost]:1"]) {
      const exit = Effect.runSyncExit(parseAddress("msg", bad))
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("--msg")
    }
  })

  it("formats sizes, clocks and ages", () => {
    expect(formatBytes(0)).toBe("0 B")
    expect(formatBytes(1023)).toBe("1023 B")
    expect(formatBytes(1536)).toBe("1.50 KiB")
    expect(formatBytes(50 * 1024 * 1024)).toBe("50.0 MiB")
    expect(formatClock(65)).toBe("1:05")
    expect(formatClock(3723)).toBe("1:02:03")
    expect(formatAge(59_000)).toBe("59s")
    expect(formatAge(2 * 86400_000 + 5)).toBe("2d")
  })

  it("draws the bar with percentage, rate and ETA, within the terminal's width", () => {
    const line = renderBar({ label: "send", total: 4 * 1024 * 1024 }, 1024 * 1024, 1000, 120)
    expect(line).toMatch(/^send \[#+\.+\]\s+25%  1\.00 MiB \/ 4\.00 MiB  1\.00 MiB\/s  ETA 0:03$/)
    expect(line.length).toBeLessThanOrEqual(120)
    // A narrow terminal drops the bar, not the numbers; a resumed transfer's rate counts only this run's bytes.
    expect(renderBar({ label: "download", total: 100, start: 50 }, 75, 1000, 40)).toBe("download   75%  75 B / 100 B  25 B/s  ETA 0:01")
    // Without a size: bytes and rate only.
    expect(renderBar({ label: "recv" }, 2048, 2000, 80)).toBe("recv  2.00 KiB  1.00 KiB/s")
  })
})
