/**
 * The read-ahead memory all online tasks share (--readahead-memory). Each task
 * may hold ahead what is free plus what it holds already, so the total stays
 * within the budget however many tasks there are; a task that gets no room
 * relays its receiver's pulls as they come, as TeamTalk does.
 */
export class ReadaheadBudget {
  private used = 0

  constructor(readonly totalBytes: number) {}

  /** Bytes held ahead by every task now. */
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
