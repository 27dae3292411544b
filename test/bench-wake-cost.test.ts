// bench/wake-cost.ts: the hand-off probe behind the "one at a time" analysis in docs/benchmarks.md.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { measureWakeCost } from '../bench/wake-cost.js'

describe('bench: wake cost', () => {
  for (const async of [false, true]) {
    it(`passes the token back and forth ${async ? 'through the event loops' : 'blocking'} and reports per round trip`, async () => {
      const r = await measureWakeCost(200, 100, async)
      assert.equal(r.roundTrips, 200)
      assert.equal(r.async, async)
      assert.ok(r.meanUs > 0 && r.p50Us > 0 && r.p99Us >= r.p50Us, JSON.stringify(r))
      // A round trip is two hand-offs: it cannot cost less CPU than nothing, nor more than a second.
      assert.ok(r.cpuUs > 0 && r.cpuUs < 1e6, JSON.stringify(r))
    })
  }
})
