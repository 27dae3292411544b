// Rate limits: token buckets per workspace, per app partition and per client address, declared
// with the function or overridden in the config; the 429 comes at the declared rate, before any
// work is queued, with a Retry-After that is the time until the next token.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { RateLimiter } from '../src/main/rate-limiter.js'
import { RateLimitedError } from '../src/shared/errors.js'
import { REPO_ROOT, http, startTestServer } from './helpers/server.js'

const LIMITS_APP = join(REPO_ROOT, 'dist/test/fixtures/apps/limits.js')

describe('rate limits', () => {
  it('token bucket: the count per period, then Retry-After until the next token', () => {
    let now = 0
    const rl = new RateLimiter(10, () => now)
    const rate = { count: 4, perSeconds: 60 }
    for (let i = 0; i < 4; i++) rl.take('k', rate, 'p.F')
    assert.throws(() => rl.take('k', rate, 'p.F'), (e: unknown) => e instanceof RateLimitedError && e.retryAfterS === 15 && e.status === 429)
    now += 14_000
    assert.throws(() => rl.take('k', rate, 'p.F'), (e: unknown) => e instanceof RateLimitedError && e.retryAfterS === 1)
    now += 1_000
    rl.take('k', rate, 'p.F')
    // Past bucketsMax the least recently used bucket is forgotten (a fresh, full bucket).
    for (let i = 0; i < 10; i++) rl.take(`other${i}`, rate, 'p.F')
    assert.equal(rl.size, 10)
  })

  it('forgets the least recently used bucket first (order kept to within a second)', () => {
    let now = 0
    const rl = new RateLimiter(3, () => now)
    const rate = { count: 2, perSeconds: 600 }
    const empty = (k: string) => assert.throws(() => rl.take(k, rate, 'p.F'), RateLimitedError)
    for (const k of ['a', 'b', 'c']) { rl.take(k, rate, 'p.F'); rl.take(k, rate, 'p.F') }
    now += 2_000
    empty('a') // used again: now the youngest, although refused
    rl.take('d', rate, 'p.F') // forgets b, the oldest
    empty('a')
    rl.take('b', rate, 'p.F') // a fresh, full bucket (forgetting c)
    rl.take('b', rate, 'p.F')
    empty('a')
  })

  it('per workspace, per partition and per address over HTTP; nothing queued when refused', async () => {
    const t = await startTestServer(['--app', LIMITS_APP])
    try {
      const call = (ws: number, fn: string) => http('POST', `${t.ws(ws, 'test/limits')}/commands/lim.${fn}`, { args: fn === 'Limited' ? { n: 1 } : {} })
      for (let i = 0; i < 3; i++) assert.equal((await call(1, 'Limited')).status, 200)
      const offset = t.server.partitions.stats()[0]!.plogOffset
      const r = await call(1, 'Limited')
      assert.equal(r.status, 429)
      const retry = Number(r.headers.get('retry-after'))
      assert.ok(retry >= 19 && retry <= 20, `3 per minute: the next token in ~20 s, got ${retry}`)
      assert.equal(t.server.partitions.stats()[0]!.plogOffset, offset, 'a refused command is never queued')
      assert.equal((await call(2, 'Limited')).status, 200, 'another workspace has its own bucket')
      // One partition (the app declares 1): workspaces share the partition's bucket.
      assert.equal((await call(1, 'LimitedByPartition')).status, 200)
      assert.equal((await call(2, 'LimitedByPartition')).status, 200)
      assert.equal((await call(3, 'LimitedByPartition')).status, 429)
      // One client address: all workspaces share it.
      assert.equal((await call(4, 'LimitedByAddress')).status, 200)
      assert.equal((await call(5, 'LimitedByAddress')).status, 200)
      assert.equal((await call(6, 'LimitedByAddress')).status, 429)
      for (let i = 0; i < 10; i++) assert.equal((await call(1, 'Unlimited')).status, 200)
    } finally {
      await t.close()
    }
  })

  it('the config overrides a declared rate and can limit an undeclared one', async () => {
    const overrides = { 'test/limits:lim.Limited': { count: 1, perSeconds: 3600 }, 'test/limits:lim.Unlimited': { count: 2, perSeconds: 1, scope: 'address' } }
    const t = await startTestServer(['--app', LIMITS_APP, '--rate-overrides', JSON.stringify(overrides)])
    try {
      const base = t.ws(1, 'test/limits')
      assert.equal((await http('POST', `${base}/commands/lim.Limited`, { args: { n: 1 } })).status, 200)
      const r = await http('POST', `${base}/commands/lim.Limited`, { args: { n: 1 } })
      assert.equal(r.status, 429)
      assert.ok(Number(r.headers.get('retry-after')) > 3000)
      assert.equal((await http('POST', `${base}/commands/lim.Unlimited`, {})).status, 200)
      assert.equal((await http('POST', `${t.ws(2, 'test/limits')}/commands/lim.Unlimited`, {})).status, 200)
      assert.equal((await http('POST', `${t.ws(3, 'test/limits')}/commands/lim.Unlimited`, {})).status, 429)
    } finally {
      await t.close()
    }
  })
})
