import { Effect } from "effect"
import type { Scope } from "effect"
import { open } from "node:fs/promises"
import { ClientError } from "./errors.js"

/** Where a sender's blocks come from. */
export interface BlockSource {
  readonly size: number
  readonly read: (offset: number, length: number) => Effect.Effect<Buffer, ClientError>
}

/** Where a receiver's blocks go. */
export interface BlockSink {
  readonly write: (offset: number, data: Uint8Array) => Effect.Effect<void, ClientError>
}

const ioError = (what: string) => (cause: unknown) =>
  new ClientError({ reason: "Io", message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })

export const sourceFromBuffer = (data: Buffer): BlockSource => ({
  size: data.length,
  read: (offset, length) => Effect.succeed(data.subarray(offset, Math.min(offset + length, data.length)))
})

/** Reads blocks from a file with positional reads; the file is open for the life of the scope. */
export const sourceFromFile = (path: string): Effect.Effect<BlockSource, ClientError, Scope.Scope> =>
  Effect.gen(function* () {
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(path, "r"), catch: ioError(`cannot open ${path}`) }),
      (h) => Effect.promise(() => h.close())
    )
    const { size } = yield* Effect.tryPromise({ try: () => handle.stat(), catch: ioError(`cannot stat ${path}`) })
    return {
      size,
      read: (offset, length) =>
        Effect.tryPromise({
          try: async () => {
            const n = Math.max(0, Math.min(length, size - offset))
            const buf = Buffer.allocUnsafe(n)
            const { bytesRead } = await handle.read(buf, 0, n, offset)
            return bytesRead === n ? buf : buf.subarray(0, bytesRead)
          },
          catch: ioError(`cannot read ${path}`)
        })
    }
  })

/** Collects blocks into memory (tests, small files). `bytes()` returns what arrived, in offset order. */
export const memorySink = () => {
  const blocks = new Map<number, Buffer>()
  return {
    write: (offset: number, data: Uint8Array) =>
      Effect.sync(() => {
        blocks.set(offset, Buffer.from(data))
      }),
    bytes: (): Buffer => Buffer.concat([...blocks.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b))
  } satisfies BlockSink & { bytes: () => Buffer }
}

/** Writes blocks at their offsets into a file opened for the life of the scope. */
export const fileSink = (path: string, flags: "w" | "r+" = "w"): Effect.Effect<BlockSink, ClientError, Scope.Scope> =>
  Effect.gen(function* () {
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(path, flags), catch: ioError(`cannot open ${path}`) }),
      (h) => Effect.promise(() => h.close())
    )
    return {
      write: (offset, data) =>
        Effect.tryPromise({
          try: async () => {
            // A write may take fewer bytes than given (a disk nearly full): carry on until all are in.
            let done = 0
            while (done < data.length) {
              const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done)
              if (bytesWritten === 0) throw new Error("the disk took no bytes")
              done += bytesWritten
            }
          },
          catch: ioError(`cannot write ${path}`)
        })
    }
  })
