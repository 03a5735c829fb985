/** The bench's command line (bench/args.ts): defaults, --quick, case groups, and the daemon flag helpers. */
import { describe, expect, it } from "@effect/vitest"
import { concurrentDaemonArgs, flagValue, parseBenchArgs, withFlag } from "../../bench/args.js"

const parse = (...argv: Array<string>) => {
  const args = parseBenchArgs(argv)
  if (args === undefined) throw new Error("expected arguments, got --help")
  return args
}

describe("parseBenchArgs", () => {
  it("runs every group by default, with the issue's concurrency and a window-16 stall", () => {
    const args = parse()
    expect(args.cases).toEqual(["online", "offline", "concurrent", "stall"])
    expect(args.concurrency).toEqual([100, 1000])
    expect(args.concurrentWindow).toBe(1)
    expect(args.concurrentRounds).toBe(1)
    expect(args.stallWindows).toEqual([16, 256])
    expect(args.stallSeconds).toBe(3)
    expect(args.rounds).toBe(3)
    expect(args.sizeMiB).toBe(256)
  })

  it("selects groups with --cases and names the valid ones on a typo", () => {
    expect(parse("--cases", "concurrent,stall").cases).toEqual(["concurrent", "stall"])
    expect(() => parse("--cases", "online,stal")).toThrow(/"stal" is not one of online, offline, concurrent, stall/)
  })

  it("reads --concurrency and the stall flags as lists of positive integers", () => {
    const args = parse("--concurrency", "10, 50,10", "--stall-windows", "4", "--stall-seconds", "1", "--concurrent-window", "4", "--concurrent-rounds", "2")
    expect(args.concurrency).toEqual([10, 50])
    expect(args.stallWindows).toEqual([4])
    expect(args.stallSeconds).toBe(1)
    expect(args.concurrentWindow).toBe(4)
    expect(args.concurrentRounds).toBe(2)
    expect(() => parse("--concurrency", "0")).toThrow(/--concurrency wants a positive integer/)
  })

  it("--quick shortens the run, and flags given explicitly win", () => {
    const quick = parse("--quick")
    expect([quick.rounds, quick.sizeMiB, quick.warmupMiB, quick.concurrency, quick.stallWindows]).toEqual([1, 32, 4, [100], [16]])
    const mixed = parse("--quick", "--rounds", "2", "--concurrency", "1000")
    expect([mixed.rounds, mixed.sizeMiB, mixed.concurrency]).toEqual([2, 32, [1000]])
  })

  it("refuses an upload window in --daemon-args only when the offline group runs", () => {
    expect(() => parse("--daemon-args=--upload-window 4")).toThrow(/--upload-windows/)
    expect(parse("--cases", "concurrent", "--daemon-args=--upload-window 4").daemonArgs).toEqual(["--upload-window", "4"])
  })

  it("returns undefined for --help", () => {
    expect(parseBenchArgs(["--help"])).toBeUndefined()
  })
})

describe("serve flag helpers", () => {
  it("flagValue finds both spellings, the last one, and bare booleans", () => {
    expect(flagValue(["--online-readahead", "8"], "--online-readahead")).toBe("8")
    expect(flagValue(["--online-readahead=2", "--online-readahead", "6"], "--online-readahead")).toBe("6")
    expect(flagValue(["--delete-after-download", "--log-level", "debug"], "--delete-after-download")).toBe("")
    expect(flagValue(["--max-connections", "5"], "--max-connections-per-ip")).toBeUndefined()
  })

  it("withFlag replaces every earlier setting and keeps the rest", () => {
    expect(withFlag(["--online-readahead=2", "--log-level", "debug", "--online-readahead", "8"], "--online-readahead", "0")).toEqual([
      "--log-level",
      "debug",
      "--online-readahead",
      "0"
    ])
    expect(withFlag(["--log-level", "debug"], "--delete-after-download")).toEqual(["--log-level", "debug", "--delete-after-download"])
  })

  it("the concurrent daemon allows every connection from 127.0.0.1 and deletes what was downloaded, unless told otherwise", () => {
    expect(concurrentDaemonArgs({ concurrency: [100, 1000], daemonArgs: [] })).toEqual(["--max-connections-per-ip", "2064", "--delete-after-download"])
    expect(concurrentDaemonArgs({ concurrency: [10], daemonArgs: [] })).toEqual(["--max-connections-per-ip", "1024", "--delete-after-download"])
    expect(concurrentDaemonArgs({ concurrency: [1000], daemonArgs: ["--max-connections-per-ip", "5000", "--delete-after-download"] })).toEqual([
      "--max-connections-per-ip",
      "5000",
      "--delete-after-download"
    ])
    expect(concurrentDaemonArgs({ concurrency: [15000], daemonArgs: [] })).toEqual([
      "--max-connections-per-ip",
      "30064",
      "--max-connections",
      "30064",
      "--delete-after-download"
    ])
  })
})
