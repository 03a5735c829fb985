/**
 * A strict reader of the Prometheus text format 0.0.4, written from the format's
 * description (not from our renderer): tests read /metrics with it, and the
 * renderer's property test parses back what it rendered.
 */

export interface ParsedSample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Exposition {
  readonly help: ReadonlyMap<string, string>
  readonly type: ReadonlyMap<string, string>
  readonly samples: ReadonlyArray<ParsedSample>
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/

const unescape = (text: string, quotes: boolean) =>
  text.replace(quotes ? /\\(\\|n|")/g : /\\(\\|n)/g, (_, c: string) => (c === "n" ? "\n" : c))

const parseValue = (text: string): number => {
  if (text === "+Inf") return Number.POSITIVE_INFINITY
  if (text === "-Inf") return Number.NEGATIVE_INFINITY
  if (text === "NaN") return Number.NaN
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value ${JSON.stringify(text)}`)
  return Number(text)
}

/** Label pairs `a="x",b="y"` from the start of `text` up to the closing brace; returns them and the rest. */
const parseLabels = (text: string): [Record<string, string>, string] => {
  const labels: Record<string, string> = {}
  let rest = text
  while (!rest.startsWith("}")) {
    const name = LABEL_NAME.exec(rest)?.[0]
    if (name === undefined || !rest.startsWith(`${name}="`, 0)) throw new Error(`bad label at ${JSON.stringify(rest)}`)
    let i = name.length + 2
    let raw = ""
    while (rest[i] !== '"') {
      if (i >= rest.length) throw new Error("unterminated label value")
      if (rest[i] === "\\") {
        raw += rest.slice(i, i + 2)
        i += 2
      } else {
        raw += rest[i]
        i++
      }
    }
    if (name in labels) throw new Error(`label ${name} twice`)
    labels[name] = unescape(raw, true)
    rest = rest.slice(i + 1)
    if (rest.startsWith(",")) rest = rest.slice(1)
    else if (!rest.startsWith("}")) throw new Error(`expected , or } at ${JSON.stringify(rest)}`)
  }
  return [labels, rest.slice(1)]
}

export const parseExposition = (text: string): Exposition => {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the exposition must end with a newline")
  const help = new Map<string, string>()
  const type = new Map<string, string>()
  const samples: Array<ParsedSample> = []
  for (const line of text.split("\n").slice(0, -1)) {
    const meta = /^# (HELP|TYPE) ([^ ]+) (.*)$/s.exec(line)
    if (meta) {
      const [, kind, name, rest] = meta
      if (kind === "HELP") help.set(name!, unescape(rest!, false))
      else if (["counter", "gauge", "histogram", "summary", "untyped"].includes(rest!)) type.set(name!, rest!)
      else throw new Error(`bad TYPE line ${JSON.stringify(line)}`)
      continue
    }
    const name = NAME.exec(line)?.[0]
    if (name === undefined) throw new Error(`bad line ${JSON.stringify(line)}`)
    let rest = line.slice(name.length)
    let labels: Record<string, string> = {}
    if (rest.startsWith("{")) [labels, rest] = parseLabels(rest.slice(1))
    if (!rest.startsWith(" ")) throw new Error(`expected a space before the value in ${JSON.stringify(line)}`)
    samples.push({ name, labels, value: parseValue(rest.slice(1)) })
  }
  return { help, type, samples }
}

const sameLabels = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v)

/** The value of the one sample with exactly these labels; throws when there is none. */
export const valueOf = (exposition: Exposition, name: string, labels: Readonly<Record<string, string>> = {}): number => {
  const found = exposition.samples.filter((s) => s.name === name && sameLabels(s.labels, labels))
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name}${JSON.stringify(labels)}`)
  return found[0]!.value
}
