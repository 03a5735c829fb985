/**
 * Memory that all tasks of one kind share: online read-ahead (--readahead-memory), offline
 * upload windows (--upload-memory). Each task may hold what is free plus what it holds
 * already, so the total stays within the budget however many tasks there are; a task that
 * gets no room falls back to one block at a time, as TeamTalk works.
 */
export class MemoryBudget {
  private used = 0

  constructor(readonly totalBytes: number) {}

  /** Bytes held by every task now. */
  get usedBytes(): number {
    return this.used
  }

  /** What a task holding `held` bytes may hold in all. */
  allowance(held: number): number {
    return Math.max(held, this.totalBytes - this.used + held)
  }

  /** A task's holding went from `before` to `after` bytes. */
  change(before: number, after: number): void {
    this.used += after - before
  }
}
