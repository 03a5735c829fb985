/**
 * Prints where a V8 CPU profile (node --cpu-prof) spent its time: the top
 * functions by self time, and self time per script.
 *
 *   node dist/bench/profileTop.js bench/results/profiles/daemon-*.cpuprofile [--top N]
 */
import { readFileSync } from "node:fs"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const shortUrl = (url: string): string => {
  const nm = url.lastIndexOf("node_modules/")
  if (nm >= 0) return url.slice(nm + "node_modules/".length)
  const dist = url.lastIndexOf("/dist/")
  return dist >= 0 ? url.slice(dist + 1) : url.replace(/^file:\/\//, "")
}

/** A coarse bucket for a frame: where the time went at a glance. */
const category = (functionName: string, url: string): string => {
  if (url === "") return functionName === "(idle)" || functionName === "(garbage collector)" || functionName === "(program)" ? functionName : "native (syscalls, C++)"
  if (url.startsWith("node:")) return "node internals"
  const nm = url.lastIndexOf("node_modules/")
  if (nm >= 0) return url.slice(nm + "node_modules/".length).split("/").slice(0, url.slice(nm + 13).startsWith("@") ? 2 : 1).join("/")
  return url.includes("/dist/src/") ? "our src" : url.includes("/dist/bench/") ? "our bench" : "other"
}

const report = (path: string, top: number): string => {
  const profile = JSON.parse(readFileSync(path, "utf8")) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfMicros = new Map<number, number>()
  profile.samples.forEach((id, i) => selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
  const total = [...selfMicros.values()].reduce((a, b) => a + b, 0)
  const add = (m: Map<string, number>, key: string, v: number) => m.set(key, (m.get(key) ?? 0) + v)
  const byFunction = new Map<string, number>()
  const byScript = new Map<string, number>()
  const byCategory = new Map<string, number>()
  for (const [id, micros] of selfMicros) {
    const frame = byId.get(id)!.callFrame
    const where = frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : ""
    add(byFunction, `${frame.functionName || "(anonymous)"} ${where}`.trim(), micros)
    add(byScript, frame.url ? shortUrl(frame.url).split(":")[0]! : `(${frame.functionName})`, micros)
    add(byCategory, category(frame.functionName, frame.url), micros)
  }
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`)
      .join("\n")
  return (
    `${path}: ${(total / 1e6).toFixed(2)} s sampled\n by category (self time):\n${rows(byCategory)}\n` +
    ` top functions (self time):\n${rows(byFunction)}\n top scripts (self time):\n${rows(byScript)}\n`
  )
}

const args = process.argv.slice(2)
const topIndex = args.indexOf("--top")
const top = topIndex >= 0 ? Number(args[topIndex + 1]) : 25
const files = args.filter((_, i) => topIndex < 0 || (i !== topIndex && i !== topIndex + 1))
if (files.length === 0) {
  process.stderr.write("usage: node dist/bench/profileTop.js FILE.cpuprofile... [--top N]\n")
  process.exit(2)
}
for (const f of files) process.stdout.write(report(f, top) + "\n")
