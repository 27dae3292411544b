// /metrics on its own port: the figures move with the load; /healthz and /readyz answer.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createAccount, http, startTestServer } from './helpers/server.js'

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

describe('metrics and health', () => {
  it('counts requests, statuses, commits and errors as load runs', async () => {
    const t = await startTestServer(['--partitions', '1'])
    try {
      assert.notEqual(t.server.metricsPort, t.server.port)
      const scrape = async () => (await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text())
      const before = await scrape()
      const acc = await createAccount(t.ws(3))
      for (let i = 0; i < 20; i++) await http('POST', `${t.ws(3)}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } })
      await http('POST', `${t.ws(3)}/commands/bank.Deposit`, { args: { account: acc, amount: -1 } })
      const after = await scrape()
      const ok = 'vvm_http_requests_total{route="v2/commands",status="200"}'
      assert.equal(value(after, ok) - value(before, ok), 20)
      assert.equal(value(after, 'vvm_http_requests_total{route="v2/commands",status="400"}'), 1)
      assert.equal(value(after, 'vvm_errors_total{code="VALIDATION"}'), 1)
      assert.equal(value(after, 'vvm_partition_commands_committed_total{app="demo/bank",partition="0"}'), 21)
      assert.equal(value(after, 'vvm_partition_plog_offset{app="demo/bank",partition="0"}'), 21)
      assert.ok(value(after, 'vvm_http_request_duration_seconds_count{route="v2/commands"}') >= 21)
      assert.ok(value(after, 'vvm_partition_commit_seconds_total{app="demo/bank",partition="0"}') > 0)
      assert.ok(value(after, 'vvm_partition_execute_seconds_total{app="demo/bank",partition="0"}') > 0)
      // One command at a time: each batch's commit is waited for with nothing else to do.
      assert.ok(value(after, 'vvm_partition_commit_wait_seconds_total{app="demo/bank",partition="0"}') > 0)
      assert.equal(value(after, 'vvm_partition_commands_joined_total{app="demo/bank",partition="0"}'), 0)
      // demo/bank binds bank.TransferWasm: the partition worker pre-instantiated its engines.
      assert.ok(value(after, 'vvm_engine_pool_instances{app="demo/bank",partition="0"}') > 0)
      assert.equal(value(after, 'vvm_engine_pool_replaced_total{app="demo/bank",partition="0"}'), 0)
      // Memory figures: the process, the main thread's heap, each partition worker's heap.
      assert.ok(value(after, 'vvm_process_resident_memory_bytes') > 10 * 2 ** 20)
      assert.ok(value(after, 'vvm_heap_used_bytes{thread="main"}') > 2 ** 20)
      assert.ok(value(after, 'vvm_heap_used_bytes{thread="partition",app="demo/bank",partition="0"}') > 2 ** 20)
      assert.equal((await http('GET', `${t.url}/healthz`)).status, 200)
      assert.equal((await http('GET', `${t.url}/readyz`)).status, 200)
    } finally {
      await t.close()
    }
  })
})
