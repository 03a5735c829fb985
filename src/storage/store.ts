import { Context, Data } from "effect"
import type { Effect, Option, Scope } from "effect"

/** What the server remembers about an offline file, beside it on disk (the sidecar). */
export interface StoredMeta {
  readonly taskId: string
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly fileSize: number
  /** Unix milliseconds: when the task was created. */
  readonly createdAt: number
  /** Unix milliseconds: when the upload began, or last resumed. */
  readonly uploadedAt: number
  /** Set once the whole file is durable. */
  readonly sha256?: string
  readonly completedAt?: number
}

/** A task found on disk: an upload to resume, or a complete (verified) file. */
export type StoredTask =
  | { readonly state: "partial"; readonly meta: StoredMeta; readonly received: number }
  | { readonly state: "complete"; readonly meta: StoredMeta }

export class StoreError extends Data.TaggedError("StoreError")<{
  /** NoSpace: the disk or a quota is full. Corrupt: a stored file failed its check and was quarantined. */
  readonly reason: "Io" | "NoSpace" | "Corrupt"
  readonly message: string
}> {}

/** An upload in progress: blocks are appended in order; `finish` makes the file durable and visible. */
export interface UploadWriter {
  /** Bytes already in the partial file when it was opened (where the upload resumes). */
  readonly received: number
  /** Appends one block: whole, or in the pieces it arrived in. */
  readonly write: (block: Uint8Array | ReadonlyArray<Uint8Array>) => Effect.Effect<void, StoreError>
  /** fsync, record the sha256, rename into place, fsync the directory. Returns the sha256. */
  readonly finish: Effect.Effect<string, StoreError>
}

export interface StoredReader {
  readonly read: (offset: number, length: number) => Effect.Effect<Buffer, StoreError>
}

export interface StoredEntry {
  readonly taskId: string
  readonly state: "partial" | "complete"
  readonly meta: StoredMeta | undefined
  /** Bytes of file data on disk (header excluded). */
  readonly bytes: number
  /** Unix milliseconds of the last write, from the file system. */
  readonly modifiedAt: number
}

/**
 * Where offline files live. The disk implementation (diskStore.ts) keeps
 * TeamTalk's layout; another Layer (S3, a test double) can take its place.
 */
export class OfflineStore extends Context.Tag("tt-file-server/OfflineStore")<
  OfflineStore,
  {
    /**
     * Opens (or reopens, to resume) the partial file of an upload and records
     * its metadata: from here the task survives a restart. The writer's file
     * handle is released with the scope.
     */
    readonly openUpload: (meta: StoredMeta) => Effect.Effect<UploadWriter, StoreError, Scope.Scope>
    /** The task on disk under this id, a complete file verified against its sha256 first. */
    readonly load: (taskId: string) => Effect.Effect<Option.Option<StoredTask>, StoreError>
    /** Positional reads of a complete file, for the life of the scope. */
    readonly openRead: (taskId: string) => Effect.Effect<StoredReader, StoreError, Scope.Scope>
    /** Deletes whatever is stored under this id (complete or partial, and its metadata). */
    readonly remove: (taskId: string) => Effect.Effect<void, StoreError>
    readonly list: Effect.Effect<ReadonlyArray<StoredEntry>, StoreError>
    /** The file sizes of every task with something stored (complete or partial), by task id, for quotas. */
    readonly usage: () => ReadonlyMap<string, { readonly fromUserId: number; readonly fileSize: number }>
    /** Succeeds when a new upload could be written now (for the readiness check): cheap, leaves nothing behind. */
    readonly checkWritable: Effect.Effect<void, StoreError>
  }
>() {}
