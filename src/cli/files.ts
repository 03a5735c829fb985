/** The local files of the client commands: checks of the paths given on the command line, `.part` files, checksums. */
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { createReadStream } from "node:fs"
import { rename, rm, stat } from "node:fs/promises"
import { dirname } from "node:path"
import { pipeline } from "node:stream/promises"
import { CommandFailed } from "./failure.js"
import { UsageError } from "./settings.js"

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/** A file to send or upload: it must exist and be a regular file. Returns its size. */
export const checkInputFile = (flag: string, path: string): Effect.Effect<number, UsageError> =>
  Effect.tryPromise(() => stat(path)).pipe(
    Effect.mapError(() => new UsageError({ message: `--${flag}: ${path} does not exist or cannot be read` })),
    Effect.filterOrFail(
      (s) => s.isFile(),
      () => new UsageError({ message: `--${flag}: ${path} is not a regular file` })
    ),
    Effect.map((s) => s.size)
  )

/** A file to write: its directory must exist, and it must not be a directory itself. */
export const checkOutputPath = (flag: string, path: string): Effect.Effect<void, UsageError> =>
  Effect.gen(function* () {
    const dir = dirname(path)
    const parent = yield* Effect.promise(() => stat(dir).catch(() => undefined))
    if (parent === undefined || !parent.isDirectory()) {
      return yield* new UsageError({ message: `--${flag}: directory ${dir} does not exist` })
    }
    const existing = yield* Effect.promise(() => stat(path).catch(() => undefined))
    if (existing?.isDirectory()) return yield* new UsageError({ message: `--${flag}: ${path} is a directory; give a file name` })
  })

/** Where a download or a receive writes until it is complete. */
export const partPath = (path: string): string => `${path}.part`

/** The length of an existing file, or undefined. */
export const fileLength = (path: string): Effect.Effect<number | undefined> =>
  Effect.promise(() => stat(path).then((s) => (s.isFile() ? s.size : undefined), () => undefined))

/** Moves a complete `.part` file to its final name (replacing a file there). */
export const promote = (part: string, path: string): Effect.Effect<void, CommandFailed> =>
  Effect.tryPromise({
    try: () => rename(part, path),
    catch: (e) => new CommandFailed({ message: `the transfer is complete but ${part} could not be renamed to ${path}: ${describe(e)}` })
  })

export const removeQuietly = (path: string): Effect.Effect<void> => Effect.promise(() => rm(path, { force: true }).catch(() => undefined))

/** The sha256 of a whole file, hex. */
export const sha256File = (path: string): Effect.Effect<string, CommandFailed> =>
  Effect.tryPromise({
    try: async () => {
      const hash = createHash("sha256")
      await pipeline(createReadStream(path), hash)
      return hash.digest("hex")
    },
    catch: (e) => new CommandFailed({ message: `cannot read ${path} to checksum it: ${describe(e)}` })
  })
