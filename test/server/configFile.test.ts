/** The fileserver.conf parser: TeamTalk's format, as TeamTalk's CConfigFileReader reads it, and its one refusal. */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "fast-check"
import { parseConfigFile } from "../../src/server/configFile.js"

const blank = fc.stringOf(fc.constantFrom(" ", "\t"), { maxLength: 3 })
/** Text on one line without a comment sign, trimmed and not empty. */
const word = (exclude: string) =>
  fc
    .stringOf(fc.char().filter((c) => !`#\n\r${exclude}`.includes(c)), { minLength: 1, maxLength: 12 })
    .map((s) => s.trim())
    .filter((s) => s !== "")
const entryArb = fc.record({ key: word("="), value: fc.oneof(word(""), fc.constant("")) })
const commentArb = fc.option(fc.string({ maxLength: 12 }).map((s) => `#${s.replace(/[\r\n]/g, "")}`), { nil: undefined })

type Line = { readonly kind: "entry"; readonly key: string; readonly value: string } | { readonly kind: "noise" }

/** Entries written with blanks around their parts and a comment maybe, between blank and comment-only lines. */
const fileArb = fc.array(
  fc.oneof(
    fc.tuple(entryArb, blank, blank, blank, blank, commentArb).map(([e, b1, b2, b3, b4, comment]) => ({
      line: { kind: "entry", ...e } as Line,
      text: `${b1}${e.key}${b2}=${b3}${e.value}${b4}${comment ?? ""}`
    })),
    fc.tuple(blank, commentArb).map(([b, comment]) => ({ line: { kind: "noise" } as Line, text: `${b}${comment ?? ""}` }))
  ),
  { maxLength: 20 }
)

describe("parseConfigFile", () => {
  it.prop(
    "reads key=value lines with their line numbers; blanks are trimmed, comments and blank lines skipped, CRLF or LF",
    { file: fileArb, eol: fc.constantFrom("\n", "\r\n") },
    ({ eol, file }) => {
      const expected = file.flatMap(({ line }, i) => (line.kind === "entry" ? [{ line: i + 1, key: line.key, value: line.value }] : []))
      expect(parseConfigFile(file.map((l) => l.text).join(eol))).toStrictEqual(Either.right(expected))
    }
  )

  it.prop(
    "refuses a line with text but no = before its comment, naming that line",
    { file: fileArb, at: fc.nat(), text: word("="), comment: commentArb },
    ({ at, comment, file, text }) => {
      const lines = file.map((l) => l.text)
      const index = at % (lines.length + 1)
      lines.splice(index, 0, `${text}${comment ?? ""}`)
      const firstBad = lines.findIndex((l) => l.split("#")[0]!.trim() !== "" && !l.split("#")[0]!.includes("="))
      expect(firstBad).toBe(index)
      const result = parseConfigFile(lines.join("\n"))
      expect(Either.isLeft(result) && result.left.line).toBe(index + 1)
    }
  )

  it("reads TeamTalk's own fileserver.conf: a value keeps its inner blanks and = signs, a commented-out key is no key", () => {
    const text = [
      "#Address=0.0.0.0         # address for client",
      "FileServerIp=192.168.226.128",
      "ClientListenIP=0.0.0.0;127.0.0.1",
      "ClientListenPort=8600   # Listening Port for client",
      "",
      "MsgServerListenIP=127.0.0.1",
      "\tTaskTimeout = 60\t\t# Task Timeout (seconds)",
      "Motto = a = b  c",
      "Empty="
    ].join("\n")
    expect(parseConfigFile(text)).toStrictEqual(
      Either.right([
        { line: 2, key: "FileServerIp", value: "192.168.226.128" },
        { line: 3, key: "ClientListenIP", value: "0.0.0.0;127.0.0.1" },
        { line: 4, key: "ClientListenPort", value: "8600" },
        { line: 6, key: "MsgServerListenIP", value: "127.0.0.1" },
        { line: 7, key: "TaskTimeout", value: "60" },
        { line: 8, key: "Motto", value: "a = b  c" },
        { line: 9, key: "Empty", value: "" }
      ])
    )
  })

  it("refuses a line without a key before =", () => {
    expect(parseConfigFile("A=1\n  = 2 # no key\n")).toStrictEqual(Either.left({ line: 2, problem: '"= 2" has no key before "="' }))
  })
})
