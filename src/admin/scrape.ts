import { Effect } from "effect"
import type { Context } from "effect"
import type { Counter, Histogram, ModeName } from "../observability/metrics.js"
import { Metrics, MODES, modeName, OFFLINE_PHASES, ONLINE_PHASES } from "../observability/metrics.js"
import type { Labels, MetricFamily, ValueSample } from "../observability/prometheus.js"
import { render } from "../observability/prometheus.js"
import { ListeningAddresses } from "../server/app.js"
import { OfflineStore } from "../storage/store.js"
import { TaskRegistry } from "../task/registry.js"

const counter = (name: string, help: string, samples: ReadonlyArray<ValueSample>): MetricFamily => ({ type: "counter", name, help, samples })
const gauge = (name: string, help: string, samples: ReadonlyArray<ValueSample>): MetricFamily => ({ type: "gauge", name, help, samples })
const one = (value: number): ReadonlyArray<ValueSample> => [{ labels: [], value }]

/** One sample per key of a record of counters, labelled `label="<key>"` after `labels`. */
const labelled = (label: string, counters: Readonly<Record<string, Counter>>, labels: Labels = []): Array<ValueSample> =>
  Object.entries(counters).map(([key, c]) => ({ labels: [...labels, [label, key]], value: c.value }))

const histogramSample = (labels: Labels, h: Histogram) => ({ labels, bounds: h.bounds, counts: h.counts, sum: h.sum })

/** Tasks alive now by mode and phase, every known phase present (at 0 when no task is in it). */
const tasksByPhase = (registry: Context.Tag.Service<TaskRegistry>): Array<ValueSample> => {
  const counts: Record<ModeName, Map<string, number>> = {
    online: new Map(ONLINE_PHASES.map((p) => [p, 0])),
    offline: new Map(OFFLINE_PHASES.map((p) => [p, 0]))
  }
  for (const task of registry.snapshots()) {
    const byPhase = counts[modeName(task.mode)]
    byPhase.set(task.phase, (byPhase.get(task.phase) ?? 0) + 1)
  }
  return MODES.flatMap((mode) => [...counts[mode]].map(([phase, value]) => ({ labels: [["mode", mode], ["phase", phase]] as Labels, value })))
}

const processFamilies = (): ReadonlyArray<MetricFamily> => {
  const memory = process.memoryUsage()
  const cpu = process.cpuUsage()
  return [
    counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", one((cpu.user + cpu.system) / 1e6)),
    gauge("process_resident_memory_bytes", "Resident memory size, in bytes.", one(memory.rss)),
    gauge("process_start_time_seconds", "Start time of the process, in seconds since the Unix epoch.", one(performance.timeOrigin / 1000)),
    gauge("nodejs_heap_size_total_bytes", "V8 heap size, in bytes.", one(memory.heapTotal)),
    gauge("nodejs_heap_size_used_bytes", "V8 heap in use, in bytes.", one(memory.heapUsed)),
    gauge("nodejs_external_memory_bytes", "Memory of C++ objects bound to JavaScript (Buffers included), in bytes.", one(memory.external))
  ]
}

/** Every series of the server, read now. docs/metrics.md describes each. */
export const collect: Effect.Effect<ReadonlyArray<MetricFamily>, never, Metrics | TaskRegistry | ListeningAddresses | OfflineStore> =
  Effect.gen(function* () {
    const m = yield* Metrics
    const registry = yield* TaskRegistry
    const open = (yield* ListeningAddresses).openConnections()
    const usage = (yield* OfflineStore).usage()
    let storeBytes = 0
    for (const entry of usage.values()) storeBytes += entry.fileSize
    return [
      gauge("ttfs_open_connections", "Connections open now, by port.", [
        { labels: [["port", "client"]], value: open.client },
        { labels: [["port", "msg"]], value: open.msg }
      ]),
      gauge("ttfs_tasks", "Tasks alive now, by transfer mode and phase.", tasksByPhase(registry)),
      counter("ttfs_online_relayed_bytes_total", "File bytes relayed from senders to receivers (online).", one(m.relayedBytes.value)),
      counter("ttfs_offline_stored_bytes_total", "File bytes of offline uploads written to the store.", one(m.storedBytes.value)),
      counter("ttfs_offline_served_bytes_total", "File bytes of stored files sent to downloaders.", one(m.servedBytes.value)),
      counter(
        "ttfs_transfers_completed_total",
        "Transfers that reached their end: online (relayed, DONE sent), upload (stored), download (sent the last block and DONE).",
        labelled("kind", m.transfersCompleted)
      ),
      counter(
        "ttfs_tasks_ended_total",
        "Tasks that ended, by transfer mode and outcome (done: completed; idle: an offline task left memory, its file stays; defect: a bug).",
        MODES.flatMap((mode) => labelled("outcome", m.tasksEnded[mode], [["mode", mode]]))
      ),
      {
        type: "histogram",
        name: "ttfs_task_duration_seconds",
        help: "How long tasks ran, from their first login to their end, by transfer mode.",
        samples: MODES.map((mode) => histogramSample([["mode", mode]], m.taskDuration[mode]))
      },
      counter("ttfs_frames_rejected_total", "Frames not acted on, by port and reason.", [
        ...labelled("reason", m.framesRejected.client, [["port", "client"]]),
        ...labelled("reason", m.framesRejected.msg, [["port", "msg"]])
      ]),
      gauge("ttfs_store_files", "Offline files in the store (complete or partial).", one(usage.size)),
      gauge("ttfs_store_bytes", "Announced sizes of the offline files in the store (what --max-store-bytes counts).", one(storeBytes)),
      ...processFamilies()
    ]
  })

/** The /metrics body. */
export const scrape = Effect.map(collect, render)
