// Async projectors (actualizers) and jobs: exactly-once views across kill -9 while lagging
// thousands of events behind; a failing projector retries with backoff without blocking
// commands or its neighbour, and catches up once the fault is gone; a job runs every second
// and stops when its app is undeployed.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { REPO_ROOT, http, scrape, spawnServer, startTestServer, tempDir, type ChildServer } from './helpers/server.js'

const APP = join(REPO_ROOT, 'dist/test/fixtures/apps/actualizers.js')
const WS = 500
const lagSeries = (projector: string) => `vvm_actualizer_lag_events{app="test/act",partition="0",projector="${projector}"}`

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await cond())) {
    assert.ok(Date.now() < until, `timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function view(base: string, name: string, account: number, limit = 10_000): Promise<any[]> {
  const r = await http('GET', `${base}/views/${name}?limit=${limit}&where=${encodeURIComponent(JSON.stringify({ account }))}`)
  assert.equal(r.status, 200, JSON.stringify(r.body))
  return r.body.results
}

describe('async actualizers', () => {
  it('kill -9 while a projector lags thousands behind: after restart the view equals a fresh projection of the log', async () => {
    const dir = await tempDir()
    // 10 ms per event (an async wait, not CPU): at most ~100 events/s, so the lag stays in the
    // thousands however fast or slow this machine serves the 3,000 commands.
    const env = { ...process.env, VVM_TEST_SLOW_PROJECTOR_MS: '10' }
    const flags = ['--data-dir', dir.path, '--app', APP, '--actualizer-batch-events-max', '50']
    let s: ChildServer | undefined
    try {
      s = await spawnServer(flags, 20_000, env)
      const base = `${s.url}/api/v2/apps/test/act/workspaces/${WS}`
      const acc = (await http('POST', `${base}/docs/act.Account`, { balance: 0 })).body.newIDs['1'] as number
      let sent = 0
      await Promise.all(Array.from({ length: 32 }, async () => {
        while (sent < 3000) {
          sent++
          const r = await http('POST', `${base}/commands/act.Add`, { args: { account: acc, amount: 1 + (sent % 7) } })
          assert.equal(r.status, 200)
        }
      }))
      const lag = await scrape(s.metricsUrl, lagSeries('act.TotalsProjector'))
      assert.ok(lag > 1000, `the projector should lag thousands behind, lags ${lag}`)
      s.proc.kill('SIGKILL')
      await s.exited

      s = await spawnServer(flags, 20_000, { ...process.env, VVM_TEST_SLOW_PROJECTOR_MS: '0' })
      const s2 = s
      await waitFor('the projector to catch up', async () => (await scrape(s2.metricsUrl, 'vvm_partition_plog_offset{app="test/act",partition="0"}')) > 0
        && (await scrape(s2.metricsUrl, lagSeries('act.TotalsProjector'))) === 0)
      const base2 = `${s2.url}/api/v2/apps/test/act/workspaces/${WS}`
      const moves = await view(base2, 'act.Moves', acc)
      assert.equal(moves.length, 3000)
      const [totals] = await view(base2, 'act.Totals', acc)
      assert.deepEqual({ total: totals.total, count: totals.count }, { total: moves.reduce((t: number, m: any) => t + m.amount, 0), count: moves.length })
      const balance = (await http('GET', `${base2}/docs/act.Account/${acc}`)).body.balance
      assert.equal(totals.total, balance)
    } finally {
      s?.proc.kill('SIGKILL')
      await s?.exited
      await dir.remove()
    }
  })

  it('a failing projector retries with backoff, blocks neither commands nor its neighbour, and catches up', async () => {
    const dir = await tempDir()
    const s = await spawnServer(['--data-dir', dir.path, '--app', APP, '--actualizer-retry-max-ms', '400'])
    try {
      const base = `${s.url}/api/v2/apps/test/act/workspaces/${WS}`
      const acc = (await http('POST', `${base}/docs/act.Account`, { balance: 0 })).body.newIDs['1'] as number
      const sw = (await http('POST', `${base}/docs/act.Switch`, { broken: true })).body.newIDs['1'] as number
      for (let i = 0; i < 20; i++) assert.equal((await http('POST', `${base}/commands/act.Add`, { args: { account: acc, amount: 5, sw } })).status, 200)
      // The neighbour keeps up while Fragile fails.
      await waitFor('Totals to keep up', async () => (await view(base, 'act.Totals', acc))[0]?.count === 20)
      await new Promise((r) => setTimeout(r, 1500))
      assert.ok((await scrape(s.metricsUrl, lagSeries('act.FragileProjector'))) > 0, 'Fragile must lag while failing')
      assert.deepEqual(await view(base, 'act.FragileTotals', acc), [])
      // Backoff doubles from 100 ms up to the configured maximum, and names the event's offset.
      const out = s.output()
      assert.match(out, /act\.FragileProjector p0: event at PLog offset \d+ \(act\.Add, workspace 500\): the switch is broken; retry 1 in 100 ms/)
      assert.match(out, /retry 2 in 200 ms/)
      assert.match(out, /retry \d+ in 400 ms/)
      assert.doesNotMatch(out, /retry \d+ in 800 ms/)
      // Remove the fault: Fragile catches up to exactly the same figures.
      assert.equal((await http('PATCH', `${base}/docs/act.Switch/${sw}`, { broken: false })).status, 200)
      await waitFor('Fragile to catch up', async () => (await scrape(s.metricsUrl, lagSeries('act.FragileProjector'))) === 0)
      assert.deepEqual((await view(base, 'act.FragileTotals', acc)).map((r) => [r.total, r.count]), [[100, 20]])
    } finally {
      s.proc.kill('SIGKILL')
      await s.exited
      await dir.remove()
    }
  })
})

describe('jobs and deployment', () => {
  it('a job every second runs, stops when the app is undeployed, and runs again after a redeploy', async () => {
    const t = await startTestServer(['--app', APP])
    try {
      const offset = () => t.server.partitions.stats().find((s) => s.app === 'test/act')!.plogOffset
      await waitFor('two job runs', async () => offset() >= 2, 10_000)
      await t.server.undeployApp('test/act')
      const stopped = offset()
      await new Promise((r) => setTimeout(r, 2500))
      assert.ok(offset() <= stopped + 1, `runs after undeploy: ${offset() - stopped}`)
      assert.equal((await http('POST', `${t.ws(1, 'test/act')}/commands/act.Add`, { args: { account: 1, amount: 1 } })).status, 404)
      await t.server.redeployApp('test/act', `${new URL(`file://${APP}`).href}?v=2`)
      const resumed = offset()
      await waitFor('a run after redeploy', async () => offset() > resumed, 10_000)
    } finally {
      await t.close()
    }
  })
})
