// Errors of a bench/subscriptions.ts run, counted by kind (a short, id-free string such as
// `order: …`, `content: …`, `transport: …`) with a few samples each. Every reply, snapshot and
// diff is checked; any error fails the run.

/** Distinct error kinds kept, with a few samples each: kinds are low-cardinality strings. */
const ERROR_KINDS_MAX = 64
const ERROR_SAMPLES_MAX = 3

export interface ErrorCount {
  count: number
  samples: string[]
}

/** Errors by kind (a short, id-free string) with a few samples each. */
export class Errors {
  readonly byKind = new Map<string, ErrorCount>()

  add(kind: string, sample: string): void {
    let e = this.byKind.get(kind)
    if (e === undefined) {
      if (this.byKind.size >= ERROR_KINDS_MAX) kind = 'other'
      e = this.byKind.get(kind) ?? { count: 0, samples: [] }
      this.byKind.set(kind, e)
    }
    e.count++
    if (e.samples.length < ERROR_SAMPLES_MAX) e.samples.push(sample.slice(0, 300))
  }

  merge(o: Record<string, ErrorCount>): void {
    for (const [k, v] of Object.entries(o)) {
      const e = this.byKind.get(k) ?? { count: 0, samples: [] }
      e.count += v.count
      for (const s of v.samples) if (e.samples.length < ERROR_SAMPLES_MAX) e.samples.push(s)
      this.byKind.set(k, e)
    }
  }

  get total(): number {
    let n = 0
    for (const e of this.byKind.values()) n += e.count
    return n
  }

  toJSON(): Record<string, ErrorCount> {
    return Object.fromEntries(this.byKind)
  }
}
