import type { TransferMode } from "../protocol/commands.js"

/** What a msg_server asked for when it created a task. Immutable for the task's life. */
export interface TaskSpec {
  readonly taskId: string
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly fileSize: number
  readonly mode: TransferMode
  /** Unix milliseconds. */
  readonly createdAt: number
}

/** Task ids in logs are cut to 8 characters: the full id lets anyone who holds it fetch the file. */
export const shortTaskId = (taskId: string): string => taskId.slice(0, 8)

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Task ids we issue are canonical lowercase UUIDs; anything else cannot name a task. */
export const isCanonicalTaskId = (taskId: string): boolean => CANONICAL_UUID.test(taskId)
