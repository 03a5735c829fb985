import { BlockList, isIPv4 } from "node:net"

/** The address a socket reports, with IPv4 shown as such even on a dual-stack listener. */
export const peerAddress = (address: string | undefined): string => {
  const a = address ?? ""
  return a.startsWith("::ffff:") && isIPv4(a.slice(7)) ? a.slice(7) : a
}

/**
 * Who may open a connection: a global count and a per-address count, both
 * released when the connection ends. Pure bookkeeping, shared by every
 * listener of a port.
 */
export class Admission {
  private open = 0
  private readonly byAddress = new Map<string, number>()

  constructor(
    readonly maxConnections: number,
    readonly maxPerAddress: number
  ) {}

  /** Counts the connection in and returns undefined, or returns why it is refused. */
  admit(address: string): string | undefined {
    if (this.open >= this.maxConnections) return `${this.open} connections open (--max-connections ${this.maxConnections})`
    const mine = this.byAddress.get(address) ?? 0
    if (mine >= this.maxPerAddress) return `${mine} connections open from ${address} (--max-connections-per-ip ${this.maxPerAddress})`
    this.open++
    this.byAddress.set(address, mine + 1)
    return undefined
  }

  release(address: string): void {
    this.open--
    const mine = (this.byAddress.get(address) ?? 1) - 1
    if (mine <= 0) this.byAddress.delete(address)
    else this.byAddress.set(address, mine)
  }

  get connections(): number {
    return this.open
  }
}

/** A `--msg-allow` list: CIDR blocks (or single addresses) of IPv4 and IPv6. */
export const parseAllowList = (entries: ReadonlyArray<string>): { readonly allows: (address: string) => boolean } => {
  const list = new BlockList()
  for (const entry of entries) {
    const [ip, bits] = entry.split("/")
    const type = isIPv4(ip ?? "") ? "ipv4" : "ipv6"
    const prefix = bits === undefined ? (type === "ipv4" ? 32 : 128) : Number(bits)
    if (!ip || !Number.isInteger(prefix) || prefix < 0 || prefix > (type === "ipv4" ? 32 : 128)) {
      throw new Error(`"${entry}" is not an address or CIDR block`)
    }
    list.addSubnet(ip, prefix, type)
  }
  return { allows: (address) => address !== "" && list.check(address, isIPv4(address) ? "ipv4" : "ipv6") }
}
