import { Context, Effect, Layer } from "effect"
import { Metrics } from "../observability/metrics.js"
import * as DiskStore from "../storage/diskStore.js"
import type { OfflineStore } from "../storage/store.js"
import * as Sweeper from "../storage/sweeper.js"
import * as TaskRegistryLive from "../task/registry.js"
import { Admission, parseAllowList } from "./admission.js"
import { advertisedAddresses } from "./advertise.js"
import { handleClientConnection } from "./clientConnection.js"
import { ServerConfig } from "./config.js"
import type { Listener } from "./listener.js"
import { listen } from "./listener.js"
import { Lifecycle } from "./lifecycle.js"
import { handleMsgConnection } from "./msgConnection.js"
import type { IpAddr } from "../protocol/messages.js"

/** Where the daemon actually listens (ports resolved when 0 was asked for). */
export class ListeningAddresses extends Context.Tag("tt-file-server/ListeningAddresses")<
  ListeningAddresses,
  {
    readonly client: ReadonlyArray<Listener>
    readonly msg: Listener
    readonly advertised: ReadonlyArray<IpAddr>
    /** Connections open now, per port. */
    readonly openConnections: () => { readonly client: number; readonly msg: number }
  }
>() {}

const portsLive = Layer.scoped(
  ListeningAddresses,
  Effect.gen(function* () {
    const config = yield* ServerConfig
    // One budget for every client listener; the msg port admits only its allow-list (counted too).
    const clients = new Admission(config.maxConnections, config.maxConnectionsPerIp)
    const links = new Admission(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY)
    const allowList = parseAllowList(config.msgAllow)
    const admitTo = (admission: Admission) => (address: string) => {
      const refused = admission.admit(address)
      return refused ?? { release: () => admission.release(address) }
    }
    const client = yield* Effect.forEach(config.clientHosts, (host) =>
      listen(host, config.clientPort, handleClientConnection, admitTo(clients))
    )
    const advertised = advertisedAddresses(config, client)
    const msg = yield* listen(config.msgHost, config.msgPort, handleMsgConnection(advertised), (address) =>
      allowList.allows(address) ? admitTo(links)(address) : `${address} is not in --msg-allow`
    )
    yield* Effect.logInfo("started").pipe(Effect.annotateLogs({ pid: process.pid, node: process.version }))
    for (const c of client) yield* Effect.logInfo("listening").pipe(Effect.annotateLogs({ port: "client", host: c.host, bound: c.port }))
    yield* Effect.logInfo("listening").pipe(Effect.annotateLogs({ port: "msg", host: msg.host, bound: msg.port }))
    yield* Effect.logInfo("advertising").pipe(Effect.annotateLogs({ addresses: advertised.map((a) => `${a.ip}:${a.port}`).join(",") }))
    return { client, msg, advertised, openConnections: () => ({ client: clients.connections, msg: links.connections }) }
  })
)

/**
 * The admin HTTP port, unless --admin-port is 0. Its module is loaded only then: the HTTP
 * stack costs start-up time that the CLI's one-shot commands (which import this file) need not pay.
 */
const adminLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const { adminHost, adminPort } = yield* ServerConfig
    if (adminPort === 0) return
    const admin = yield* Effect.promise(() => import("../admin/server.js"))
    yield* Layer.build(admin.layer(adminHost, adminPort))
  })
)

/** The whole server on a given offline store (a test double, S3 later), given a ServerConfig. */
export const serverWith = <E, R>(store: Layer.Layer<OfflineStore, E, R>) =>
  adminLive.pipe(
    Layer.provideMerge(Layer.merge(portsLive, Sweeper.layer)),
    Layer.provideMerge(TaskRegistryLive.layer),
    Layer.provideMerge(store),
    Layer.provideMerge(Lifecycle.layer),
    Layer.provideMerge(Metrics.layer)
  )

/** The whole server, given a ServerConfig: offline files on local disk. */
export const ServerLive = serverWith(DiskStore.layer)
