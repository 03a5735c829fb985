import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Logger } from "effect"
import { randomUUID } from "node:crypto"
import { redacting, redactTaskIds } from "../../src/server/logging.js"

describe("log redaction", () => {
  it.prop(
    "a task id anywhere in a string keeps only its first 8 characters",
    { before: fc.string({ maxLength: 20 }), after: fc.string({ maxLength: 20 }), id: fc.uuid() },
    ({ after, before, id }) => {
      const out = redactTaskIds(`${before} ${id}.part ${after}`) as string
      expect(out).not.toContain(id)
      expect(out).toContain(` ${id.slice(0, 8)}.part `)
    }
  )

  it.effect("the JSON logger writes messages and annotations with task ids shortened", () =>
    Effect.gen(function* () {
      const id = randomUUID()
      const lines: Array<string> = []
      const capture = Logger.map(redacting(Logger.jsonLogger), (line) => lines.push(line))
      yield* Effect.logError(`write /data/offline_file/${id.slice(0, 2)}/${id}.part: ENOSPC`).pipe(
        Effect.annotateLogs({ error: `cannot open ${id}`, movedTo: `/data/quarantine/${id}` }),
        Effect.provide(Logger.replace(Logger.defaultLogger, capture))
      )
      expect(lines.length).toBe(1)
      expect(lines[0]).not.toContain(id)
      const entry = JSON.parse(lines[0]!) as { message: string; annotations: Record<string, string> }
      expect(entry.message).toBe(`write /data/offline_file/${id.slice(0, 2)}/${id.slice(0, 8)}.part: ENOSPC`)
      expect(entry.annotations).toEqual({ error: `cannot open ${id.slice(0, 8)}`, movedTo: `/data/quarantine/${id.slice(0, 8)}` })
    })
  )
})
