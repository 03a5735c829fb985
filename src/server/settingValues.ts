/**
 * The kinds of value a setting takes, read from text (a flag, an environment variable or a file line are all text)
 * and shown back as text. A failed read says what is wrong with the value; the caller says where it came from.
 */
import { Either } from "effect"
import { isIP } from "node:net"
import { parseAllowList } from "./admission.js"

export interface ValueKind<A> {
  readonly read: (text: string) => Either.Either<A, string>
  readonly show: (value: A) => string
}

const integerText = /^\s*-?\d+\s*$/

export const integerIn = (min: number, max: number): ValueKind<number> => ({
  read: (text) => {
    const n = integerText.test(text) ? Number(text) : NaN
    return Number.isSafeInteger(n) && n >= min && n <= max ? Either.right(n) : Either.left(`"${text}" must be an integer from ${min} to ${max}`)
  },
  show: String
})

export const port: ValueKind<number> = {
  read: (text) => {
    const n = integerText.test(text) ? Number(text) : NaN
    return Number.isInteger(n) && n >= 0 && n <= 65535 ? Either.right(n) : Either.left(`"${text}" is not a port (0-65535)`)
  },
  show: String
}

/** Bytes, or `unlimited` (what `config` prints for no limit). */
export const byteLimit: ValueKind<number> = {
  read: (text) =>
    text.trim() === "unlimited" ? Either.right(Number.POSITIVE_INFINITY) : integerIn(0, Number.MAX_SAFE_INTEGER).read(text),
  show: (n) => (n === Number.POSITIVE_INFINITY ? "unlimited" : String(n))
}

const UNITS: ReadonlyArray<readonly [string, number]> = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
  ["ms", 1]
]
const unitMs = new Map(UNITS)

/** Milliseconds, from seconds or a number with a unit (ms, s, m, h, d): "90", "1.5s", "24h", "7d". */
export const duration: ValueKind<number> = {
  read: (text) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text)
    const ms = m ? Math.round(Number(m[1]) * unitMs.get(m[2] ?? "s")!) : NaN
    return ms > 0 ? Either.right(ms) : Either.left(`"${text}" is not a positive duration (seconds, or with a unit: 500ms, 30s, 5m, 24h, 7d)`)
  },
  // The largest unit giving a whole number of at least 2 (60s, 2m, 24h, 7d), else whole seconds or milliseconds.
  show: (ms) => {
    const [unit, size] = UNITS.find(([u, size]) => ms % size === 0 && (ms / size >= 2 || u === "s")) ?? ["ms", 1]
    return `${ms / size}${unit}`
  }
}

/** Node's timers take at most 2^31 - 1 ms (about 24.8 days); a longer delay would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** A duration that runs as a timer: at most MAX_TIMER_MS. */
export const timerDuration: ValueKind<number> = {
  read: (text) =>
    Either.flatMap(duration.read(text), (ms) =>
      ms <= MAX_TIMER_MS ? Either.right(ms) : Either.left(`"${text}" is longer than a timer can wait (at most 24d)`)
    ),
  show: duration.show
}

const hostProblem = (h: string): string | undefined => (h === "" || /[\s/]/.test(h) ? `"${h}" is not a host address` : undefined)

export const host: ValueKind<string> = {
  read: (text) => {
    const h = text.trim()
    const problem = hostProblem(h)
    return problem === undefined ? Either.right(h) : Either.left(problem)
  },
  show: (h) => h
}

/** Entries separated by commas or semicolons (TeamTalk's lists use `;`), blanks around them dropped. */
const entries = (text: string): Array<string> =>
  text
    .split(/[,;]/)
    .map((s) => s.trim())
    .filter((s) => s !== "")

const joined = (list: ReadonlyArray<string>) => list.join(",")

export const hostList: ValueKind<ReadonlyArray<string>> = {
  read: (text) => {
    const hosts = entries(text)
    if (hosts.length === 0) return Either.left("give at least one address")
    const problem = hosts.map(hostProblem).find((p) => p !== undefined)
    return problem === undefined ? Either.right(hosts) : Either.left(problem)
  },
  show: joined
}

export interface AdvertisedAddress {
  readonly ip: string
  readonly port: number | undefined
}

/** `host[:port]`, with IPv6 written `[addr]:port` or bare. */
const advertiseEntry = (entry: string): Either.Either<AdvertisedAddress, string> => {
  const withPort = (h: string, p: string | undefined): Either.Either<AdvertisedAddress, string> => {
    const problem = hostProblem(h)
    if (problem !== undefined) return Either.left(problem)
    if (p === undefined) return Either.right({ ip: h, port: undefined })
    return Either.map(port.read(p), (n) => ({ ip: h, port: n }))
  }
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry)
  if (bracketed) return withPort(bracketed[1]!, bracketed[2])
  if (isIP(entry) === 6) return Either.right({ ip: entry, port: undefined })
  const [h, p, ...rest] = entry.split(":")
  if (rest.length > 0) return Either.left(`"${entry}" is not host[:port]`)
  return withPort(h!, p)
}

/** `host[:port],...`; empty means "each client address". */
export const advertiseList: ValueKind<ReadonlyArray<AdvertisedAddress>> = {
  read: (text) => Either.all(entries(text).map(advertiseEntry)),
  show: (list) =>
    list.length === 0
      ? "each client address (a wildcard as this machine's first non-loopback IPv4)"
      : joined(list.map((a) => (a.port === undefined ? a.ip : `${isIP(a.ip) === 6 ? `[${a.ip}]` : a.ip}:${a.port}`)))
}

/** Addresses and CIDR blocks. */
export const allowList: ValueKind<ReadonlyArray<string>> = {
  read: (text) =>
    Either.try({
      try: () => {
        const list = entries(text)
        parseAllowList(list)
        return list
      },
      catch: (e) => (e instanceof Error ? e.message : String(e))
    }),
  show: joined
}

export const nonEmptyText: ValueKind<string> = {
  read: (text) => (text.trim() === "" ? Either.left("must not be empty") : Either.right(text)),
  show: (text) => text
}

const TRUE = ["true", "yes", "on", "1"]
const FALSE = ["false", "no", "off", "0"]

export const boolean: ValueKind<boolean> = {
  read: (text) => {
    const t = text.trim().toLowerCase()
    if (TRUE.includes(t)) return Either.right(true)
    if (FALSE.includes(t)) return Either.right(false)
    return Either.left(`"${text}" is not true or false (also yes/no, on/off, 1/0)`)
  },
  show: String
}

export const oneOf = <const A extends string>(choices: ReadonlyArray<A>): ValueKind<A> => ({
  read: (text) => {
    const found = choices.find((c) => c === text.trim())
    return found === undefined ? Either.left(`"${text}" is not one of ${choices.join(", ")}`) : Either.right(found)
  },
  show: (a) => a
})
