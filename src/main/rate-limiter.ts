// Token buckets for the `rate` declared on functions, checked on the main thread before any
// work is queued. Buckets live in a bounded LRU map: past `bucketsMax` the least recently used
// bucket is forgotten, which can only make a limit more lenient, never stricter.

import { RateLimitedError } from '../shared/errors.js'
import type { Rate } from '../shared/appdef/types.js'

interface Bucket {
  tokens: number
  updatedMs: number
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()

  constructor(private readonly bucketsMax: number, private readonly now: () => number = () => performance.now()) {}

  /** Takes one token or throws RateLimitedError (429) with the seconds until the next one. */
  take(key: string, rate: Rate, qname: string): void {
    const now = this.now()
    const perMs = rate.count / (rate.perSeconds * 1000)
    let b = this.buckets.get(key)
    if (b === undefined) {
      b = { tokens: rate.count, updatedMs: now }
    } else {
      this.buckets.delete(key)
      b.tokens = Math.min(rate.count, b.tokens + (now - b.updatedMs) * perMs)
      b.updatedMs = now
    }
    this.buckets.set(key, b)
    if (this.buckets.size > this.bucketsMax) this.buckets.delete(this.buckets.keys().next().value as string)
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
