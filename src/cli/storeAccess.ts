/** How the `store` commands reach the daemon's offline files: the same OfflineStore Layer the daemon runs on. */
import { Options } from "@effect/cli"
import { Effect, Layer } from "effect"
import { stat } from "node:fs/promises"
import { join } from "node:path"
import { ServerConfig } from "../server/config.js"
import * as DiskStore from "../storage/diskStore.js"
import type { OfflineStore } from "../storage/store.js"
import { StoreError } from "../storage/store.js"
import { CommandFailed } from "./failure.js"
import { UsageError } from "./settings.js"

export const dataDir = Options.directory("data-dir").pipe(
  Options.withDefault("./data"),
  Options.withDescription("The daemon's --data-dir (it holds offline_file/). Default: ./data.")
)

/**
 * Runs `use` against the disk store under `dir`. A directory without
 * `offline_file/` is refused rather than created: it is most likely the
 * wrong directory.
 */
export const withStore = <A, E, R>(
  dir: string,
  use: Effect.Effect<A, E | StoreError, R | OfflineStore>
): Effect.Effect<A, E | UsageError | CommandFailed, Exclude<R, OfflineStore>> =>
  Effect.gen(function* () {
    const root = join(dir, "offline_file")
    const found = yield* Effect.promise(() => stat(root).then((s) => s.isDirectory(), () => false))
    if (!found) return yield* new UsageError({ message: `--data-dir: ${dir} has no offline_file/ directory; give the daemon's --data-dir` })
    return yield* use.pipe(
      Effect.provide(DiskStore.layer.pipe(Layer.provide(ServerConfig.layer({ dataDir: dir })))),
      Effect.mapError((e) => (e instanceof StoreError ? new CommandFailed({ message: `${e.message}: check --data-dir and its permissions` }) : e))
    )
  })
