import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
// A subpath, not the package's index (see src/cli/main.ts).
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Clock, Context, Effect, Either, Layer } from "effect"
import { createServer } from "node:http"
import { CONTENT_TYPE } from "../observability/prometheus.js"
import { Lifecycle } from "../server/lifecycle.js"
import type { BoundAddress } from "../server/listener.js"
import { ListenError } from "../server/listener.js"
import { OfflineStore } from "../storage/store.js"
import { TaskRegistry } from "../task/registry.js"
import { scrape } from "./scrape.js"
import { taskView } from "./taskList.js"

/** Where the admin port actually listens (the port resolved when 0 was asked for). */
export class AdminAddress extends Context.Tag("tt-file-server/AdminAddress")<AdminAddress, BoundAddress>() {}

const text = (body: string, status = 200) => HttpServerResponse.text(`${body}\n`, { status })

/** Ready: listening (this port opens after the others), not draining, and the store takes writes. */
const readiness = Effect.gen(function* () {
  if ((yield* Lifecycle).isDraining()) return text("draining", 503)
  const writable = yield* Effect.either((yield* OfflineStore).checkWritable)
  if (Either.isLeft(writable)) {
    yield* Effect.logWarning("not ready").pipe(Effect.annotateLogs({ reason: writable.left.message }))
    return text(`store not writable: ${writable.left.message}`, 503)
  }
  return text("ready")
})

/** Tasks listed by /tasks unless `?limit=` asks for another number: a daemon may hold 100,000. */
const DEFAULT_TASK_LIMIT = 1000

const tasks = Effect.gen(function* () {
  const url = new URL((yield* HttpServerRequest.HttpServerRequest).url, "http://admin")
  const given = url.searchParams.get("limit")
  const limit = given === null ? DEFAULT_TASK_LIMIT : /^\d{1,9}$/.test(given) ? Number(given) : undefined
  if (limit === undefined) return text("limit must be a whole number", 400)
  const now = yield* Clock.currentTimeMillis
  const all = (yield* TaskRegistry).snapshots()
  return HttpServerResponse.unsafeJson(all.slice(0, limit).map((s) => taskView(s, now)), {
    headers: { "x-total-count": String(all.length) }
  })
})

const app = HttpRouter.empty.pipe(
  HttpRouter.get("/healthz", Effect.succeed(text("ok"))),
  HttpRouter.get("/readyz", readiness),
  HttpRouter.get("/metrics", Effect.map(scrape, (body) => HttpServerResponse.text(body, { contentType: CONTENT_TYPE }))),
  HttpRouter.get("/tasks", tasks),
  Effect.catchTag("RouteNotFound", () => Effect.succeed(text("not found", 404)))
)

/** The admin HTTP server on host:port (0: a free port) for the life of the Layer: /healthz, /readyz, /metrics, /tasks. */
export const layer = (host: string, port: number) =>
  Layer.scoped(
    AdminAddress,
    Effect.gen(function* () {
      const server = yield* NodeHttpServer.make(() => createServer(), { host, port }).pipe(
        Effect.mapError((e) => new ListenError({ host, port, cause: e.cause }))
      )
      yield* server.serve(app)
      const bound = server.address._tag === "TcpAddress" ? server.address.port : port
      yield* Effect.logInfo("listening").pipe(Effect.annotateLogs({ port: "admin", host, bound }))
      return { host, port: bound }
    })
  )
