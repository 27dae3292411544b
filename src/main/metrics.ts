// Prometheus metrics, rendered in the text exposition format on their own port. Counters and
// histograms are recorded on the main thread's hot path, so they are plain numbers in Maps
// keyed by a label string; gauges are sampled when scraped.

const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
/** Why 1000: labels come from routes and statuses, never from user input; this is a guard. */
const SERIES_MAX = 1000

type Labels = Record<string, string | number>

/** Why 4096: SERIES_MAX series per metric, a handful of metrics recorded per request. */
const LABEL_TEXTS_MAX = 4096
const labelTexts = new Map<string, string>()

/** The `{k="v",...}` text of a label set, remembered: the hot path records the same few sets. */
function labelText(labels: Labels): string {
  let raw = ''
  for (const k in labels) raw += k + '\u0000' + String(labels[k]) + '\u0001'
  let text = labelTexts.get(raw)
  if (text === undefined) {
    text = renderLabels(labels)
    if (labelTexts.size < LABEL_TEXTS_MAX) labelTexts.set(raw, text)
  }
  return text
}

function renderLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
  return parts.length === 0 ? '' : `{${parts.join(',')}}`
}

export class Counter {
  private readonly series = new Map<string, number>()
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const k = labelText(labels)
    const v = this.series.get(k)
    if (v === undefined && this.series.size >= SERIES_MAX) return
    this.series.set(k, (v ?? 0) + by)
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`
    for (const [k, v] of this.series) out += `${this.name}${k} ${v}\n`
    return out
  }
}

export class Histogram {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number; labels: Labels }>()
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[] = LATENCY_BUCKETS_S) {}

  observe(labels: Labels, value: number): void {
    const k = labelText(labels)
    let s = this.series.get(k)
    if (s === undefined) {
      if (this.series.size >= SERIES_MAX) return
      s = { counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0, labels }
      this.series.set(k, s)
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++
    s.sum += value
    s.count++
  }

  render(): string {
    return renderHistogram(this.name, this.help, this.buckets, [...this.series.values()].map((x) => ({ labels: x.labels, cumulative: x.counts, count: x.count, sum: x.sum })))
  }
}

/** A histogram kept elsewhere (another thread's slots), read when scraped: cumulative counts per bound. */
export interface HistogramSample {
  labels: Labels
  cumulative: readonly number[]
  count: number
  sum: number
}

export class SampledHistogram {
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[], readonly sample: () => HistogramSample[]) {}

  render(): string {
    return renderHistogram(this.name, this.help, this.buckets, this.sample())
  }
}

function renderHistogram(name: string, help: string, buckets: readonly number[], series: Iterable<HistogramSample>): string {
  let out = `# HELP ${name} ${help}\n# TYPE ${name} histogram\n`
  for (const s of series) {
    buckets.forEach((b, i) => { out += `${name}_bucket${labelText({ ...s.labels, le: b })} ${s.cumulative[i]}\n` })
    out += `${name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}\n`
    out += `${name}_sum${labelText(s.labels)} ${s.sum}\n${name}_count${labelText(s.labels)} ${s.count}\n`
  }
  return out
}

export interface GaugeSample {
  labels: Labels
  value: number
}

export class Gauge {
  constructor(readonly name: string, readonly help: string, readonly sample: () => GaugeSample[], readonly type: 'gauge' | 'counter' = 'gauge') {}

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`
    for (const s of this.sample()) out += `${this.name}${labelText(s.labels)} ${s.value}\n`
    return out
  }
}

export class MetricsRegistry {
  private readonly metrics: { render(): string }[] = []

  counter(name: string, help: string): Counter {
    const c = new Counter(name, help)
    this.metrics.push(c)
    return c
  }

  histogram(name: string, help: string, buckets?: readonly number[]): Histogram {
    const h = new Histogram(name, help, buckets)
    this.metrics.push(h)
    return h
  }

  gauge(name: string, help: string, sample: () => GaugeSample[], type: 'gauge' | 'counter' = 'gauge'): void {
    this.metrics.push(new Gauge(name, help, sample, type))
  }

  sampledHistogram(name: string, help: string, buckets: readonly number[], sample: () => HistogramSample[]): void {
    this.metrics.push(new SampledHistogram(name, help, buckets, sample))
  }

  render(): string {
    return this.metrics.map((m) => m.render()).join('')
  }
}

/** The metrics every server records; sampled gauges are registered by the server. */
export class ServerMetrics {
  readonly registry = new MetricsRegistry()
  readonly requests = this.registry.counter('vvm_http_requests_total', 'HTTP requests answered, by route and status')
  readonly latency = this.registry.histogram('vvm_http_request_duration_seconds', 'HTTP request time from arrival to reply, by route')
  readonly errors = this.registry.counter('vvm_errors_total', 'error replies by code')

  recordReply(route: string, status: number, startedMs: number): void {
    this.requests.inc({ route, status })
    this.latency.observe({ route }, (performance.now() - startedMs) / 1000)
  }
}
