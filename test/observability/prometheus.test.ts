/**
 * The Prometheus text renderer (src/observability/prometheus.ts): exact output
 * for known families, escaping, cumulative histogram buckets, and a property:
 * whatever families are rendered, a strict reader of the format gets them back.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Counter, Histogram } from "../../src/observability/metrics.js"
import type { HistogramSample, MetricFamily, ValueSample } from "../../src/observability/prometheus.js"
import { render } from "../../src/observability/prometheus.js"
import { parseExposition, valueOf } from "../support/prometheus.js"

describe("prometheus text format", () => {
  it("renders HELP and TYPE before the samples of each family", () => {
    const text = render([
      { type: "counter", name: "a_total", help: "Things done.", samples: [{ labels: [], value: 3 }] },
      {
        type: "gauge",
        name: "b",
        help: "Things now.",
        samples: [
          { labels: [["port", "client"]], value: 1 },
          { labels: [["port", "msg"], ["x", "y"]], value: 0.5 }
        ]
      }
    ])
    expect(text).toBe(
      "# HELP a_total Things done.\n# TYPE a_total counter\na_total 3\n" +
        '# HELP b Things now.\n# TYPE b gauge\nb{port="client"} 1\nb{port="msg",x="y"} 0.5\n'
    )
  })

  it("escapes backslash, double quote and newline in label values, backslash and newline in HELP", () => {
    const text = render([{ type: "gauge", name: "g", help: 'a \\ b\nc "d"', samples: [{ labels: [["v", 'x\\y"z\nw']], value: 1 }] }])
    expect(text).toBe('# HELP g a \\\\ b\\nc "d"\n# TYPE g gauge\ng{v="x\\\\y\\"z\\nw"} 1\n')
  })

  it("writes NaN and the infinities as the format spells them", () => {
    const text = render([
      {
        type: "gauge",
        name: "g",
        help: "",
        samples: [
          { labels: [["k", "nan"]], value: Number.NaN },
          { labels: [["k", "inf"]], value: Number.POSITIVE_INFINITY },
          { labels: [["k", "-inf"]], value: Number.NEGATIVE_INFINITY }
        ]
      }
    ])
    expect(text.split("\n").slice(2, 5)).toEqual(['g{k="nan"} NaN', 'g{k="inf"} +Inf', 'g{k="-inf"} -Inf'])
  })

  it("renders a histogram as cumulative buckets, +Inf, _sum and _count", () => {
    const h = new Histogram([0.1, 1, 10])
    for (const v of [0.05, 0.1, 0.5, 2, 3, 100]) h.observe(v)
    const text = render([
      { type: "histogram", name: "d_seconds", help: "Durations.", samples: [{ labels: [["mode", "online"]], bounds: h.bounds, counts: h.counts, sum: h.sum }] }
    ])
    expect(text).toBe(
      [
        "# HELP d_seconds Durations.",
        "# TYPE d_seconds histogram",
        'd_seconds_bucket{mode="online",le="0.1"} 2',
        'd_seconds_bucket{mode="online",le="1"} 3',
        'd_seconds_bucket{mode="online",le="10"} 5',
        'd_seconds_bucket{mode="online",le="+Inf"} 6',
        'd_seconds_sum{mode="online"} 105.65',
        'd_seconds_count{mode="online"} 6',
        ""
      ].join("\n")
    )
  })

  it("counters count", () => {
    const c = new Counter()
    c.inc()
    c.inc(32768)
    expect(c.value).toBe(32769)
  })

  it("parses back whatever it renders", () => {
    const name = fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,20}$/)
    const labelName = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,10}$/).filter((n) => n !== "le")
    const text = fc.oneof(fc.string({ unit: "binary" }), fc.string({ unit: fc.constantFrom("\\", '"', "\n", "{", "}", ",", "=", " ", "a", "é") }))
    const labels = fc.uniqueArray(fc.tuple(labelName, text), { maxLength: 4, selector: ([n]) => n })
    const value = fc.double().map((v) => (Object.is(v, -0) ? 0 : v))
    const valueSample: fc.Arbitrary<ValueSample> = fc.record({ labels, value })
    const histogramSample: fc.Arbitrary<HistogramSample> = fc
      .uniqueArray(fc.double({ min: -1e9, max: 1e9, noNaN: true }).map((v) => (Object.is(v, -0) ? 0 : v)), { maxLength: 6 })
      .chain((bounds) =>
        fc.record({
          labels,
          bounds: fc.constant([...bounds].sort((a, b) => a - b)),
          counts: fc.array(fc.nat(1000), { minLength: bounds.length + 1, maxLength: bounds.length + 1 }),
          sum: fc.double({ min: -1e12, max: 1e12, noNaN: true }).map((v) => (Object.is(v, -0) ? 0 : v))
        })
      )
    const family = fc.oneof(
      fc.record({ type: fc.constantFrom("counter" as const, "gauge" as const), help: text, samples: fc.array(valueSample, { maxLength: 4 }) }),
      fc.record({
        type: fc.constant("histogram" as const),
        help: text,
        // Two series of one family never share their labels.
        samples: fc.uniqueArray(histogramSample, { maxLength: 3, selector: (s) => JSON.stringify([...s.labels].sort()) })
      })
    )
    const families = fc
      .uniqueArray(fc.tuple(name, family), { maxLength: 5, selector: ([n]) => n })
      .map((list) => list.map(([n, f]) => ({ ...f, name: n }) as MetricFamily))
      // A histogram's _bucket/_sum/_count names must not be another family's.
      .filter((list) => {
        const names = list.flatMap((f) => (f.type === "histogram" ? [f.name, `${f.name}_bucket`, `${f.name}_sum`, `${f.name}_count`] : [f.name]))
        return new Set(names).size === names.length
      })

    fc.assert(
      fc.property(families, (list) => {
        const parsed = parseExposition(render(list))
        for (const f of list) {
          expect(parsed.help.get(f.name)).toBe(f.help)
          expect(parsed.type.get(f.name)).toBe(f.type)
          const own = (s: { readonly labels: ValueSample["labels"] }) => Object.fromEntries(s.labels)
          if (f.type !== "histogram") {
            const got = parsed.samples.filter((s) => s.name === f.name)
            expect(got).toEqual(f.samples.map((s) => ({ name: f.name, labels: own(s), value: s.value })))
            continue
          }
          for (const s of f.samples) {
            const total = s.counts.reduce((a, b) => a + b, 0)
            let cumulative = 0
            s.bounds.forEach((bound, i) => {
              cumulative += s.counts[i]!
              expect(valueOf(parsed, `${f.name}_bucket`, { ...own(s), le: String(bound) })).toBe(cumulative)
            })
            expect(valueOf(parsed, `${f.name}_bucket`, { ...own(s), le: "+Inf" })).toBe(total)
            expect(valueOf(parsed, `${f.name}_count`, own(s))).toBe(total)
            expect(valueOf(parsed, `${f.name}_sum`, own(s))).toBe(s.sum)
          }
        }
        expect(parsed.samples.length).toBe(
          list.reduce((n, f) => n + (f.type === "histogram" ? f.samples.reduce((m, s) => m + s.bounds.length + 3, 0) : f.samples.length), 0)
        )
      })
    )
  })
})
