// Token buckets for the `rate` declared on functions, checked on the main thread before any
// work is queued. Buckets live in a bounded LRU map: past `bucketsMax` the least recently used
// bucket is forgotten, which can only make a limit more lenient, never stricter. The order is
// approximate: a bucket moves to the young end when it was last moved over REORDER_MS ago, not
// on every take (a Map delete and insert per request cost 3 % of the main thread under load).

import { RateLimitedError } from '../shared/errors.js'
import type { Rate } from '../shared/appdef/types.js'

interface Bucket {
  tokens: number
  updatedMs: number
  /** When the bucket was last put at the young end of the map. */
  movedMs: number
}

/** Why 1 s: a bucket in use is never the oldest of more than a second's worth of new keys. */
const REORDER_MS = 1_000

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()

  constructor(private readonly bucketsMax: number, private readonly now: () => number = () => performance.now()) {}

  /** Takes one token or throws RateLimitedError (429) with the seconds until the next one. */
  take(key: string, rate: Rate, qname: string): void {
    const now = this.now()
    const perMs = rate.count / (rate.perSeconds * 1000)
    let b = this.buckets.get(key)
    if (b === undefined) {
      b = { tokens: rate.count, updatedMs: now, movedMs: now }
      this.buckets.set(key, b)
      if (this.buckets.size > this.bucketsMax) this.buckets.delete(this.buckets.keys().next().value as string)
    } else {
      b.tokens = Math.min(rate.count, b.tokens + (now - b.updatedMs) * perMs)
      b.updatedMs = now
      if (now - b.movedMs >= REORDER_MS) {
        this.buckets.delete(key)
        this.buckets.set(key, b)
        b.movedMs = now
      }
    }
    if (b.tokens >= 1) {
      b.tokens -= 1
      return
    }
    const waitMs = (1 - b.tokens) / perMs
    throw new RateLimitedError(`rate limit of ${qname} exceeded: ${rate.count} per ${rate.perSeconds} s`, Math.max(1, Math.ceil(waitMs / 1000)), qname)
  }

  get size(): number {
    return this.buckets.size
  }
}
