/**
 * Preloaded into the load script's daemons (node --expose-gc --import): on
 * SIGUSR2 runs a full garbage collection and prints the heap figures as one
 * JSON log line ("bench gc"), so the task-leak run can tell memory still
 * referenced (a leak) from garbage not yet collected. Nothing else changes.
 */
const gc = (globalThis as { gc?: () => void }).gc
process.on("SIGUSR2", () => {
  gc?.()
  gc?.()
  const m = process.memoryUsage()
  process.stdout.write(
    JSON.stringify({ message: "bench gc", logLevel: "DEBUG", annotations: { heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss, forced: gc !== undefined } }) + "\n"
  )
})
export {}
