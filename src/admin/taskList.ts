import type { TaskSnapshot } from "../task/registry.js"
import { modeName } from "../observability/metrics.js"
import { shortTaskId } from "../task/spec.js"

/** A live task as /tasks shows it: never the full task id (it lets anyone join the transfer), nor the file's name or data. */
export interface TaskView {
  readonly task: string
  readonly mode: "online" | "offline"
  readonly phase: string
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileSize: number
  /** Online: bytes relayed. Offline: bytes stored plus bytes served. */
  readonly bytes: number
  readonly ageSeconds: number
}

export const taskView = (snapshot: TaskSnapshot, now: number): TaskView => ({
  task: shortTaskId(snapshot.taskId),
  mode: modeName(snapshot.mode),
  phase: snapshot.phase,
  fromUserId: snapshot.fromUserId,
  toUserId: snapshot.toUserId,
  fileSize: snapshot.fileSize,
  bytes: snapshot.bytes,
  ageSeconds: Math.max(0, Math.round((now - snapshot.createdAt) / 1000))
})
