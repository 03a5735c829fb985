import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

/**
 * This process's memory after a full GC: the JS heap, the off-heap bytes (buffers: where
 * socket data would pile up), both together, and the RSS.
 */
export const collectedMemory = () => {
  gc()
  gc()
  const m = process.memoryUsage()
  const off = m.arrayBuffers + m.external
  return { heap: m.heapUsed, off, total: m.heapUsed + off, rss: m.rss }
}
