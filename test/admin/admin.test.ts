/**
 * The admin HTTP port on a real in-process server: /metrics (every series from
 * the start, byte counts that match the transfers exactly, rejected frames by
 * reason), /tasks (short ids only), /readyz (draining, an unwritable store),
 * /healthz and 404s, all over real HTTP.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { readdir, rename, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import * as Client from "../../src/client/index.js"
import { FileRole, TransferMode } from "../../src/protocol/commands.js"
import { Pdu } from "../../src/protocol/messages.js"
import type { ServerSettings } from "../../src/server/config.js"
import { httpRequest } from "../support/http.js"
import type { Exposition } from "../support/prometheus.js"
import { parseExposition, valueOf } from "../support/prometheus.js"
import { FROM, headerOnly, loginPdu, onlineTask, pullReqPdu, rawConnect, rawLogin, rawPdu, TO } from "../support/raw.js"
import type { TestServer } from "../support/server.js"
import { createTask, eventually, startServerWith } from "../support/server.js"

const start = (settings: Partial<ServerSettings> = {}) => startServerWith({ admin: true, settings })

const get = (server: TestServer, path: string, method = "GET") => httpRequest(server.admin!, path, method)

const scrape = (server: TestServer) => Effect.map(get(server, "/metrics"), (r) => parseExposition(r.body))

/** Scrapes until `check` holds (counters move as the server gets to it), or returns the last scrape after 5 s. */
const scrapeUntil = (server: TestServer, check: (m: Exposition) => boolean) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 5000
    for (;;) {
      const m = yield* scrape(server)
      if (check(m) || Date.now() > deadline) return m
      yield* Effect.sleep(20)
    }
  })

const MODES = ["online", "offline"]
const PHASES: Record<string, ReadonlyArray<string>> = {
  online: ["Ready", "WaitingReceiver", "WaitingSender", "WaitingTransfer", "Transferring", "Ended"],
  offline: ["Ready", "Opening", "Uploading", "Finishing", "Stored", "Ended"]
}
const OUTCOMES = ["done", "cancelled", "refused", "peer-left", "protocol-error", "expired", "shutdown", "idle", "defect"]
const CLIENT_REJECTS = ["too-long", "too-short", "malformed", "before-login", "duplicate-login", "unknown-task", "unknown-pdu"]
const MSG_REJECTS = ["too-long", "too-short", "malformed", "unknown-pdu"]
const LE = ["0.1", "0.5", "1", "5", "10", "30", "60", "120", "300", "600", "1800", "3600", "+Inf"]

/** Every ttfs_ series the server exposes, as [name, labels]. */
const SERIES: ReadonlyArray<readonly [string, Record<string, string>]> = [
  ["ttfs_open_connections", { port: "client" }],
  ["ttfs_open_connections", { port: "msg" }],
  ...MODES.flatMap((mode) => PHASES[mode]!.map((phase) => ["ttfs_tasks", { mode, phase }] as const)),
  ["ttfs_online_relayed_bytes_total", {}],
  ["ttfs_offline_stored_bytes_total", {}],
  ["ttfs_offline_served_bytes_total", {}],
  ...["online", "upload", "download"].map((kind) => ["ttfs_transfers_completed_total", { kind }] as const),
  ...MODES.flatMap((mode) => OUTCOMES.map((outcome) => ["ttfs_tasks_ended_total", { mode, outcome }] as const)),
  ...MODES.flatMap((mode) => [
    ...LE.map((le) => ["ttfs_task_duration_seconds_bucket", { mode, le }] as const),
    ["ttfs_task_duration_seconds_sum", { mode }] as const,
    ["ttfs_task_duration_seconds_count", { mode }] as const
  ]),
  ...CLIENT_REJECTS.map((reason) => ["ttfs_frames_rejected_total", { port: "client", reason }] as const),
  ...MSG_REJECTS.map((reason) => ["ttfs_frames_rejected_total", { port: "msg", reason }] as const),
  ["ttfs_store_files", {}],
  ["ttfs_store_bytes", {}]
]

const FAMILIES = {
  ttfs_open_connections: "gauge",
  ttfs_tasks: "gauge",
  ttfs_online_relayed_bytes_total: "counter",
  ttfs_offline_stored_bytes_total: "counter",
  ttfs_offline_served_bytes_total: "counter",
  ttfs_transfers_completed_total: "counter",
  ttfs_tasks_ended_total: "counter",
  ttfs_task_duration_seconds: "histogram",
  ttfs_frames_rejected_total: "counter",
  ttfs_store_files: "gauge",
  ttfs_store_bytes: "gauge"
}

describe("admin port: /metrics", () => {
  it.scopedLive("has every series from the start, at 0, and the process figures", () =>
    Effect.gen(function* () {
      const server = yield* start()
      const res = yield* get(server, "/metrics")
      expect(res.status).toBe(200)
      expect(res.contentType).toMatch(/^text\/plain; version=0\.0\.4/)
      const m = parseExposition(res.body)
      for (const [name, type] of Object.entries(FAMILIES)) {
        expect(m.type.get(name), name).toBe(type)
        expect(m.help.get(name), name).toBeTruthy()
      }
      for (const [name, labels] of SERIES) expect(valueOf(m, name, labels), `${name}${JSON.stringify(labels)}`).toBe(0)
      expect(m.samples.filter((s) => s.name.startsWith("ttfs_")).length).toBe(SERIES.length)
      for (const name of ["process_resident_memory_bytes", "process_cpu_seconds_total", "nodejs_heap_size_used_bytes", "process_start_time_seconds"]) {
        expect(valueOf(m, name), name).toBeGreaterThan(0)
      }
    })
  )

  it.scopedLive("counts exactly the bytes relayed, stored and served, the completed transfers and the task durations", () =>
    Effect.gen(function* () {
      // Read-ahead on (the daemon's default): blocks asked ahead count once, when relayed.
      const server = yield* start({ onlineReadahead: 4, taskTimeoutMs: 1000 })
      const N = 300_001
      const M = 200_003
      const online = randomBytes(N)
      const onlineId = yield* createTask(server, { fromUserId: 1, toUserId: 2, fileName: "a.bin", fileSize: N, mode: TransferMode.Online })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const sender = yield* Client.connect(server.client)
          const receiver = yield* Client.connect(server.client)
          yield* Client.login(sender, { taskId: onlineId, userId: 1, role: FileRole.Sender })
          yield* Client.login(receiver, { taskId: onlineId, userId: 2, role: FileRole.Receiver })
          yield* Effect.all(
            [
              Client.serveFile(sender, { taskId: onlineId, userId: 1, source: Client.sourceFromBuffer(online) }),
              Client.receiveFile(receiver, { taskId: onlineId, userId: 2, sink: Client.memorySink(), size: N, window: 8 })
            ],
            { concurrency: 2 }
          )
        })
      )
      const offline = randomBytes(M)
      const offlineId = yield* createTask(server, { fromUserId: 1, toUserId: 2, fileName: "b.bin", fileSize: M, mode: TransferMode.Offline })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const up = yield* Client.connect(server.client)
          yield* Client.uploadFile(up, { taskId: offlineId, userId: 1, source: Client.sourceFromBuffer(offline) })
        })
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const down = yield* Client.connect(server.client)
          const got = yield* Client.downloadFile(down, { taskId: offlineId, userId: 2, sink: Client.memorySink(), size: M, window: 4 })
          expect(got.bytes).toBe(M)
        })
      )
      // Both tasks end: the online one at DONE, the offline one (stored, nobody connected) at its timeout.
      yield* eventually(() => server.registry.size() === 0, 10_000)
      const m = yield* scrapeUntil(server, (m) => valueOf(m, "ttfs_tasks_ended_total", { mode: "offline", outcome: "idle" }) === 1)
      expect(valueOf(m, "ttfs_online_relayed_bytes_total")).toBe(N)
      expect(valueOf(m, "ttfs_offline_stored_bytes_total")).toBe(M)
      expect(valueOf(m, "ttfs_offline_served_bytes_total")).toBe(M)
      for (const kind of ["online", "upload", "download"]) expect(valueOf(m, "ttfs_transfers_completed_total", { kind }), kind).toBe(1)
      expect(valueOf(m, "ttfs_tasks_ended_total", { mode: "online", outcome: "done" })).toBe(1)
      expect(valueOf(m, "ttfs_tasks_ended_total", { mode: "offline", outcome: "idle" })).toBe(1)
      for (const mode of MODES) {
        expect(valueOf(m, "ttfs_task_duration_seconds_count", { mode }), mode).toBe(1)
        expect(valueOf(m, "ttfs_task_duration_seconds_bucket", { mode, le: "+Inf" }), mode).toBe(1)
        expect(valueOf(m, "ttfs_task_duration_seconds_sum", { mode }), mode).toBeGreaterThan(0)
      }
      expect(valueOf(m, "ttfs_store_files")).toBe(1)
      expect(valueOf(m, "ttfs_store_bytes")).toBe(M)
      for (const mode of MODES) for (const phase of PHASES[mode]!) expect(valueOf(m, "ttfs_tasks", { mode, phase })).toBe(0)
    })
  )

  it.scopedLive("shows live tasks by phase and open connections by port", () =>
    Effect.gen(function* () {
      const server = yield* start()
      const taskId = yield* onlineTask(server, 1000)
      yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      const link = yield* rawConnect(server.msg)
      const m = yield* scrapeUntil(server, (m) => valueOf(m, "ttfs_open_connections", { port: "msg" }) === 1)
      expect(valueOf(m, "ttfs_tasks", { mode: "online", phase: "WaitingReceiver" })).toBe(1)
      expect(valueOf(m, "ttfs_open_connections", { port: "client" })).toBe(1)
      expect(valueOf(m, "ttfs_open_connections", { port: "msg" })).toBe(1)
      link.destroy()
    })
  )

  it.scopedLive("counts each rejected frame under its port and reason", () =>
    Effect.gen(function* () {
      const server = yield* start()
      const client = () => rawConnect(server.client)
      const taskId = yield* onlineTask(server, 1000)
      // Each of these closes its connection; they are sent one per connection.
      const closing = [
        pullReqPdu(1, { taskId, userId: TO, offset: 0, dataSize: 10 }), // before-login
        headerOnly(2 * 1024 * 1024 + 1), // too-long
        headerOnly(5), // too-short
        rawPdu(Pdu.LoginReq, 1, Buffer.from([0xff, 0xff, 0xff])), // malformed
        loginPdu(1, randomUUID(), FROM, FileRole.Sender) // unknown-task
      ]
      for (const pdu of closing) {
        const c = yield* client()
        c.send(pdu)
        yield* c.expectClosed()
      }
      const unknown = yield* client()
      unknown.send(rawPdu({ serviceId: 5, commandId: 0x0599 }, 1, Buffer.alloc(0)))
      const sender = yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      sender.send(loginPdu(8, taskId, FROM, FileRole.Sender))
      yield* sender.expectClosed()
      for (const pdu of [rawPdu(Pdu.TransferReq, 1, Buffer.from([0xff])), rawPdu({ serviceId: 7, commandId: 0x0799 }, 2, Buffer.alloc(0)), headerOnly(2 * 1024 * 1024 + 1, Pdu.HeartBeat), headerOnly(3, Pdu.HeartBeat)]) {
        const link = yield* rawConnect(server.msg)
        link.send(pdu)
      }
      const all = (m: Exposition) =>
        [...CLIENT_REJECTS.map((reason) => valueOf(m, "ttfs_frames_rejected_total", { port: "client", reason })),
          ...MSG_REJECTS.map((reason) => valueOf(m, "ttfs_frames_rejected_total", { port: "msg", reason }))]
      const m = yield* scrapeUntil(server, (m) => all(m).every((n) => n === 1))
      for (const reason of CLIENT_REJECTS) expect(valueOf(m, "ttfs_frames_rejected_total", { port: "client", reason }), reason).toBe(1)
      for (const reason of MSG_REJECTS) expect(valueOf(m, "ttfs_frames_rejected_total", { port: "msg", reason }), reason).toBe(1)
    })
  )
})

describe("admin port: /tasks", () => {
  it.scopedLive("lists live tasks with ids cut to 8 characters, and never a full id", () =>
    Effect.gen(function* () {
      const server = yield* start()
      const taskId = yield* onlineTask(server, 12345, "secret-name.bin")
      yield* rawLogin(server, taskId, FROM, FileRole.Sender)
      yield* eventually(() => server.registry.snapshots()[0]?.phase === "WaitingReceiver")
      const res = yield* get(server, "/tasks")
      expect(res.status).toBe(200)
      expect(res.contentType).toMatch(/^application\/json/)
      expect(JSON.parse(res.body)).toEqual([
        { task: taskId.slice(0, 8), mode: "online", phase: "WaitingReceiver", fromUserId: FROM, toUserId: TO, fileSize: 12345, bytes: 0, ageSeconds: expect.any(Number) }
      ])
      expect(res.body).not.toContain(taskId)
      expect(res.body).not.toContain(taskId.slice(8))
      expect(res.body).not.toContain("secret-name")
      expect((yield* get(server, "/metrics")).body).not.toContain(taskId.slice(0, 8))
    })
  )

  it.scopedLive("lists at most ?limit= tasks (1000 by default), oldest first, and says how many are alive in X-Total-Count", () =>
    Effect.gen(function* () {
      const server = yield* start()
      const ids = [yield* onlineTask(server, 1), yield* onlineTask(server, 2), yield* onlineTask(server, 3)]
      const all = yield* get(server, "/tasks")
      expect(all.headers["x-total-count"]).toBe("3")
      expect((JSON.parse(all.body) as Array<{ task: string }>).map((t) => t.task)).toEqual(ids.map((id) => id.slice(0, 8)))
      const two = yield* get(server, "/tasks?limit=2")
      expect(two.headers["x-total-count"]).toBe("3")
      expect((JSON.parse(two.body) as Array<{ task: string }>).map((t) => t.task)).toEqual(ids.slice(0, 2).map((id) => id.slice(0, 8)))
      expect(JSON.parse((yield* get(server, "/tasks?limit=0")).body)).toEqual([])
      for (const bad of ["-1", "x", "1.5", ""]) expect((yield* get(server, `/tasks?limit=${bad}`)).status, bad).toBe(400)
      for (let i = 0; i < 1000; i++) {
        yield* server.registry.create({ fromUserId: FROM, toUserId: TO, fileName: "f", fileSize: 1, mode: TransferMode.Online })
      }
      const capped = yield* get(server, "/tasks")
      expect(capped.headers["x-total-count"]).toBe("1003")
      expect(JSON.parse(capped.body)).toHaveLength(1000)
    })
  )

  it.scopedLive("is an empty list when no task is alive", () =>
    Effect.gen(function* () {
      const server = yield* start()
      expect(JSON.parse((yield* get(server, "/tasks")).body)).toEqual([])
    })
  )
})

describe("admin port: health and readiness", () => {
  it.scopedLive("/healthz answers ok; unknown paths and methods get 404", () =>
    Effect.gen(function* () {
      const server = yield* start()
      const health = yield* get(server, "/healthz")
      expect(health.status).toBe(200)
      expect(health.body.trim()).toBe("ok")
      for (const [path, method] of [["/", "GET"], ["/nope", "GET"], ["/metrics/x", "GET"], ["/metrics", "POST"], ["/tasks", "DELETE"]] as const) {
        expect((yield* get(server, path, method)).status, `${method} ${path}`).toBe(404)
      }
    })
  )

  it.scopedLive("/readyz is 200 while serving and 503 once draining has started", () =>
    Effect.gen(function* () {
      const server = yield* start()
      const ready = yield* get(server, "/readyz")
      expect(ready.status).toBe(200)
      expect(ready.body.trim()).toBe("ready")
      // The probe file is gone once answered.
      expect((yield* Effect.promise(() => readdir(join(server.dataDir, "offline_file")))).filter((n) => n.startsWith("."))).toEqual([])
      yield* server.lifecycle.startDrain
      const draining = yield* get(server, "/readyz")
      expect(draining.status).toBe(503)
      expect(draining.body.trim()).toBe("draining")
      // Alive all the same.
      expect((yield* get(server, "/healthz")).status).toBe(200)
    })
  )

  it.scopedLive("/readyz is 503 while the store cannot be written, 200 again once it can", () =>
    Effect.gen(function* () {
      const server = yield* start()
      const root = join(server.dataDir, "offline_file")
      // A file where the store's directory was: no file can be created in it (even by root).
      yield* Effect.promise(() => rename(root, `${root}.away`).then(() => writeFile(root, "")))
      const broken = yield* get(server, "/readyz")
      expect(broken.status).toBe(503)
      expect(broken.body).toContain("store not writable")
      yield* Effect.promise(() => rm(root).then(() => rename(`${root}.away`, root)))
      expect((yield* get(server, "/readyz")).status).toBe(200)
    })
  )
})
