// /metrics on its own port: the figures move with the load; /healthz and /readyz answer.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createAccount, http, startTestServer } from './helpers/server.js'
import { STAGES, STAGE_BUCKETS_S, Stage, StageRecorder, readStages } from '../src/shared/stage-histogram.js'
import { MetricsRegistry } from '../src/main/metrics.js'

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
      // Every request the partition drained passed each stage once: the account's create and 21 deposits.
      const stage = (name: string, suffix: string, le?: string) =>
        value(after, `vvm_partition_stage_seconds_${suffix}{app="demo/bank",partition="0",stage="${name}"${le === undefined ? '' : `,le="${le}"`}}`)
      for (const name of STAGES) {
        assert.equal(stage(name, 'count'), 22, name)
        assert.equal(stage(name, 'bucket', '+Inf'), 22, name)
        let previous = 0
        for (const b of STAGE_BUCKETS_S) {
          assert.ok(stage(name, 'bucket', String(b)) >= previous, `${name} buckets are cumulative`)
          previous = stage(name, 'bucket', String(b))
        }
      }
      // A commit with sync takes time; its sum is what the commit counter above adds up too.
      assert.ok(stage('commit', 'sum') > 0)
      assert.equal((await http('GET', `${t.url}/healthz`)).status, 200)
      assert.equal((await http('GET', `${t.url}/readyz`)).status, 200)
    } finally {
      await t.close()
    }
  })
})

describe('stage histograms', () => {
  it('bucket each observation by its upper bound, weighted, and render as Prometheus histograms', () => {
    const slots = new Float64Array(10 + 4 * (STAGE_BUCKETS_S.length + 2))
    const rec = new StageRecorder(slots, 10)
    rec.observe(Stage.COMMIT, 0.05) // 50 µs: the first bucket (le 0.0001)
    rec.observe(Stage.COMMIT, 1, 3) // 1 ms exactly, three commands: le 0.001
    rec.observe(Stage.COMMIT, 2000) // 2 s: +Inf only
    rec.observe(Stage.QUEUED, -0.01) // clocks a hair apart: counted as 0
    rec.observe(Stage.REPLY, 5, 0) // a batch of none: nothing
    assert.deepEqual(slots.subarray(0, 10), new Float64Array(10), 'slots before the base untouched')
    const read = readStages(slots, 10)
    assert.deepEqual(read.map((s) => s.stage), [...STAGES])
    const commit = read[Stage.COMMIT]!
    const at = (bound: number) => commit.cumulative[STAGE_BUCKETS_S.indexOf(bound as (typeof STAGE_BUCKETS_S)[number])]
    assert.equal(at(0.0001), 1)
    assert.equal(at(0.0005), 1)
    assert.equal(at(0.001), 4)
    assert.equal(at(1), 4)
    assert.equal(commit.count, 5)
    assert.ok(Math.abs(commit.sumS - (0.00005 + 0.003 + 2)) < 1e-12)
    assert.equal(read[Stage.QUEUED]!.cumulative[0], 1)
    assert.equal(read[Stage.QUEUED]!.sumS, 0)
    assert.equal(read[Stage.REPLY]!.count, 0)

    const registry = new MetricsRegistry()
    registry.sampledHistogram('x_seconds', 'help', STAGE_BUCKETS_S, () => [{ labels: { stage: 'commit' }, cumulative: commit.cumulative, count: commit.count, sum: commit.sumS }])
    const text = registry.render()
    assert.match(text, /^# TYPE x_seconds histogram$/m)
    assert.match(text, /^x_seconds_bucket\{stage="commit",le="0.001"\} 4$/m)
    assert.match(text, /^x_seconds_bucket\{stage="commit",le="\+Inf"\} 5$/m)
    assert.match(text, /^x_seconds_count\{stage="commit"\} 5$/m)
  })
})
