/**
 * The CLI as a user runs it (the built `node dist/src/cli/main.js`, one
 * process per command) against the daemon (`npm start`): task creation,
 * online send/recv, progress on a terminal, JSON summaries, exit codes.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { hasScript, jsonOf, runCli, runCliOnTerminal, spawnCli, suiteDaemon } from "../support/cli.js"

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex")

const suite = suiteDaemon()

/** A file of `size` random bytes in the suite's directory. */
const payload = (name: string, size: number) =>
  Effect.promise(async () => {
    const data = randomBytes(size)
    const path = join(suite.get().dir, name)
    await writeFile(path, data)
    return { data, path }
  })

const createTask = (file: string, mode: "online" | "offline") =>
  Effect.gen(function* () {
    const r = yield* runCli(["task", "create", "--msg", suite.get().msg, "--from", "1", "--to", "2", "--file", file, "--mode", mode, "--json"])
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    return jsonOf<{ task_id: string; addresses: Array<string>; file_size: number }>(r)
  })

interface TransferJson {
  readonly task_id: string
  readonly bytes: number
  readonly offset: number
  readonly size: number
  readonly seconds: number
  readonly sha256: string
}

describe("CLI: task create, send, recv", () => {
  it.scopedLive("task create prints the task and the advertised address; send and recv move the file and print JSON summaries", () =>
    Effect.gen(function* () {
      const { server } = suite.get()
      const { data, path } = yield* payload("online.bin", 1024 * 1024 + 77)
      const task = yield* createTask(path, "online")
      expect(task.task_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
      expect(task.addresses).toEqual([server])
      expect(task.file_size).toBe(data.length)

      const out = join(suite.get().dir, "online.out")
      // The receiver first: it waits for the sender's arrival (PEER_READY).
      const recv = yield* spawnCli(["recv", "--server", server, "--task", task.task_id, "--user", "2", "--out", out, "--window", "4", "--json"])
      const send = yield* spawnCli(["send", "--server", server, "--task", task.task_id, "--user", "1", "--file", path, "--json"])
      const [sent, received] = yield* Effect.all([send.result, recv.result], { concurrency: 2 })

      expect(sent.code).toBe(0)
      expect(received.code).toBe(0)
      // Not a terminal: no progress bar, nothing on stderr.
      expect(sent.stderr).toBe("")
      expect(received.stderr).toBe("")
      const s = jsonOf<TransferJson>(sent)
      const r = jsonOf<TransferJson>(received)
      expect(s).toMatchObject({ task_id: task.task_id, bytes: data.length, size: data.length, sha256: sha256(data) })
      expect(r).toMatchObject({ task_id: task.task_id, bytes: data.length, size: data.length, sha256: sha256(data) })
      expect(r.seconds).toBeGreaterThan(0)
      expect(sha256(yield* Effect.promise(() => readFile(out)))).toBe(sha256(data))
      expect(existsSync(`${out}.part`)).toBe(false)
    })
  )

  it.scopedLive.skipIf(!hasScript)("draws a progress bar (bytes, rate, ETA) on a terminal, and the text summary", () =>
    Effect.gen(function* () {
      const { server } = suite.get()
      const { data, path } = yield* payload("tty.bin", 2 * 1024 * 1024)
      const task = yield* createTask(path, "online")
      const out = join(suite.get().dir, "tty.out")
      const recv = yield* spawnCli(["recv", "--server", server, "--task", task.task_id, "--user", "2", "--out", out, "--size", String(data.length)])
      const [sent, received] = yield* Effect.all(
        [runCliOnTerminal(["send", "--server", server, "--task", task.task_id, "--user", "1", "--file", path]), recv.result],
        { concurrency: 2 }
      )
      expect(received.code).toBe(0)
      expect(sent.code).toBe(0)
      // Redrawn in place: carriage returns, the bar, the percentage, the rate and the ETA.
      expect(sent.output).toContain("\r")
      expect(sent.output).toMatch(/send \[[#.]+\]\s+100%\s+2\.00 MiB \/ 2\.00 MiB\s+[\d.]+ [KMG]?i?B\/s\s+ETA \d+:\d\d/)
      expect(sent.output).toContain(`sent 2.00 MiB in `)
      expect(sent.output).toContain(sha256(data))
      // The receiver's stdout is a pipe: a text summary, no bar.
      expect(received.stderr).toBe("")
      expect(received.stdout).toMatch(/^received 2\.00 MiB in [\d.]+ s/)
    })
  )

  it.live("a refused login exits 1 with a message naming what to check, and leaves no file", () =>
    Effect.gen(function* () {
      const { server, dir } = suite.get()
      const out = join(dir, "refused.out")
      // A well-formed task id that the server never issued.
      const r = yield* runCli(["recv", "--server", server, "--task", "00000000-0000-4000-8000-000000000000", "--user", "2", "--out", out])
      expect(r.code).toBe(1)
      expect(r.stdout).toBe("")
      expect(r.stderr.trim().split("\n")).toHaveLength(1)
      expect(r.stderr).toContain("refused user 2 as receiver of task 00000000-0000-4000-8000-000000000000")
      expect(r.stderr).toContain("check --task and --user")
      expect(existsSync(out) || existsSync(`${out}.part`)).toBe(false)
    })
  )

  it.live("wrong arguments exit 2 with a message saying what to fix", () =>
    Effect.gen(function* () {
      const { server, dir } = suite.get()
      const task = "00000000-0000-4000-8000-000000000000"
      const cases: ReadonlyArray<[ReadonlyArray<string>, string]> = [
        [["recv", "--server", "127.0.0.1", "--task", task, "--user", "2", "--out", join(dir, "x")], "--server"],
        [["recv", "--server", server, "--task", "not-a-task", "--user", "2", "--out", join(dir, "x")], "--task"],
        [["send", "--server", server, "--task", task, "--user", "1", "--file", join(dir, "missing.bin")], "--file"],
        [["task", "create", "--msg", suite.get().msg, "--from", "1", "--to", "2", "--file", join(dir, "x"), "--mode", "sideways"], "online, offline"],
        [["download", "--server", server, "--task", task, "--user", "two", "--out", join(dir, "x")], "integer"],
        [["store", "ls", "--data-dir", dir], "--data-dir"]
      ]
      const results = yield* Effect.all(
        cases.map(([args]) => runCli(args)),
        { concurrency: "unbounded" }
      )
      results.forEach((r, i) => {
        expect({ args: cases[i]![0], code: r.code }).toEqual({ args: cases[i]![0], code: 2 })
        expect(r.stderr).toContain(cases[i]![1])
        expect(r.stdout).toBe("")
      })
    })
  )

  it.live("commands have --help with examples", () =>
    Effect.gen(function* () {
      // A sample (each is a process start): every command is built with the same help helper.
      const commands = [["task", "create"], ["recv"], ["store", "verify"]]
      const results = yield* Effect.all(
        commands.map((c) => runCli([...c, "--help"])),
        { concurrency: "unbounded" }
      )
      results.forEach((r, i) => {
        expect(r.code).toBe(0)
        expect(r.stdout).toContain("EXAMPLES")
        expect(r.stdout).toContain(`$ tt-file-server ${commands[i]!.join(" ")} `)
      })
    })
  )
})
