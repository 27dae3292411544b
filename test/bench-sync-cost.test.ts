// bench/sync-cost.ts: the file-level probe behind the sync analysis in docs/benchmarks.md.

import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { measureSyncCost } from '../bench/sync-cost.js'

describe('bench: sync cost', () => {
  for (const [threads, pre] of [[1, false], [1, true], [2, false]] as const) {
    it(`${threads} thread(s) ${pre ? 'overwriting a preallocated file' : 'appending'}: every sync timed, rates and CPU reported`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'vvm-sync-cost-test-'))
      try {
        const r = await measureSyncCost(dir, threads, 50, 100, pre)
        assert.equal(r.threads, threads)
        assert.equal(r.preallocated, pre)
        assert.ok(r.syncsPerS > 0 && r.meanUs > 0 && r.p50Us > 0 && r.p99Us >= r.p50Us, JSON.stringify(r))
        assert.ok(r.cpuUs > 0 && r.cpuUs < 1e6, JSON.stringify(r))
        assert.equal((await readdir(dir)).length, threads, 'one file per thread')
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })
  }

  it('refuses a preallocated run on more than one thread', async () => {
    await assert.rejects(measureSyncCost(tmpdir(), 2, 1, 1, true), /one thread/)
  })
})
