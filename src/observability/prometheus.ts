/**
 * The Prometheus text exposition format, version 0.0.4: a pure renderer of
 * metric families (what a scrape of /metrics returns).
 */

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

export type Labels = ReadonlyArray<readonly [name: string, value: string]>

export interface ValueSample {
  readonly labels: Labels
  readonly value: number
}

export interface HistogramSample {
  readonly labels: Labels
  /** Upper bounds, ascending, without +Inf. */
  readonly bounds: ReadonlyArray<number>
  /** Observations per bucket, not cumulative: one per bound, then those above every bound. */
  readonly counts: ReadonlyArray<number>
  readonly sum: number
}

export type MetricFamily =
  | { readonly type: "counter" | "gauge"; readonly name: string; readonly help: string; readonly samples: ReadonlyArray<ValueSample> }
  | { readonly type: "histogram"; readonly name: string; readonly help: string; readonly samples: ReadonlyArray<HistogramSample> }

const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")

export const formatValue = (n: number): string =>
  Number.isNaN(n) ? "NaN" : n === Number.POSITIVE_INFINITY ? "+Inf" : n === Number.NEGATIVE_INFINITY ? "-Inf" : String(n)

const formatLabels = (labels: Labels): string =>
  labels.length === 0 ? "" : `{${labels.map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(",")}}`

const line = (name: string, labels: Labels, value: number) => `${name}${formatLabels(labels)} ${formatValue(value)}\n`

const renderHistogram = (name: string, sample: HistogramSample): string => {
  let out = ""
  let cumulative = 0
  sample.bounds.forEach((bound, i) => {
    cumulative += sample.counts[i] ?? 0
    out += line(`${name}_bucket`, [...sample.labels, ["le", formatValue(bound)]], cumulative)
  })
  const total = sample.counts.reduce((a, b) => a + b, 0)
  out += line(`${name}_bucket`, [...sample.labels, ["le", "+Inf"]], total)
  out += line(`${name}_sum`, sample.labels, sample.sum)
  out += line(`${name}_count`, sample.labels, total)
  return out
}

export const render = (families: ReadonlyArray<MetricFamily>): string => {
  let out = ""
  for (const family of families) {
    out += `# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.type}\n`
    if (family.type === "histogram") {
      for (const sample of family.samples) out += renderHistogram(family.name, sample)
    } else {
      for (const sample of family.samples) out += line(family.name, sample.labels, sample.value)
    }
  }
  return out
}
