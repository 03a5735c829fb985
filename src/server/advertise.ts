import { networkInterfaces } from "node:os"
import type { IpAddr } from "../protocol/messages.js"
import type { BoundAddress } from "./listener.js"
import type { ServerSettings } from "./config.js"

const isWildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === ""

/** The first non-loopback IPv4 address of this machine, or 127.0.0.1 when it has none. */
export const primaryIPv4 = (): string => {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (a.family === "IPv4" && !a.internal) return a.address
    }
  }
  return "127.0.0.1"
}

/**
 * The client addresses told to msg_server (and through it to clients).
 * `--advertise` wins; an entry without a port takes the client port. By
 * default each client listener is advertised, a wildcard one (0.0.0.0 or ::)
 * as this machine's first non-loopback IPv4 address.
 */
export const advertisedAddresses = (settings: ServerSettings, bound: ReadonlyArray<BoundAddress>): ReadonlyArray<IpAddr> => {
  const clientPort = bound[0]?.port ?? settings.clientPort
  if (settings.advertise.length > 0) {
    return settings.advertise.map((a) => ({ ip: a.ip, port: a.port ?? clientPort }))
  }
  return bound.map((b) => ({ ip: isWildcard(b.host) ? primaryIPv4() : b.host, port: b.port }))
}
