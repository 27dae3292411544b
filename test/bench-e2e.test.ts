// End to end: `vvm bench deposit --quick` starts a real vvm server and the ceiling echo server,
// runs both, and writes the JSON result, the HTML report (charts inline) and the PNG chart.

import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runBench } from './bench-support.js'
import { tempDir } from './helpers/server.js'

describe('bench: end to end', () => {
  it('runs the deposit scenario against a real server and writes result.json, report.html and chart.png', async () => {
    const out = await tempDir('vvm-bench-test-')
    try {
      const r = await runBench(['deposit', '--quick', '--workspaces', '20', '--connections', '16', '--out', out.path])
      assert.equal(r.code, 0, r.output)
      const result = JSON.parse(await readFile(join(out.path, 'result.json'), 'utf8'))
      assert.equal(result.passed, true)
      assert.match(result.commit, /^([0-9a-f]{7,}(-dirty)?|unknown)$/)
      assert.ok(result.machine.nproc >= 1 && result.machine.node.startsWith('v'))
      assert.deepEqual(result.runs.map((x: { scenario: string }) => x.scenario), ['echo', 'deposit'])
      const [ceiling, deposit] = result.runs
      assert.ok(ceiling.throughputPerS > 0 && deposit.throughputPerS > 0)
      assert.equal(deposit.errors.total, 0)
      assert.ok(deposit.ceiling.throughputRatio > 0 && deposit.ceiling.throughputRatio < 1.5, `ratio ${deposit.ceiling.throughputRatio}`)
      assert.ok(deposit.latencyUs.p99 >= deposit.latencyUs.p50 && deposit.latencyUs.max >= deposit.latencyUs.p999)
      assert.ok(deposit.timeline.length >= 4, 'a timeline point per 250 ms interval')
      assert.match(result.durability, /durable/)
      const html = await readFile(join(out.path, 'report.html'), 'utf8')
      assert.match(html, /<svg[^>]*>/)
      assert.ok(!/https?:\/\/(?!www\.w3\.org)/.test(html.replace(/http:\/\/127\.0\.0\.1:\d+/g, '')), 'the report loads nothing from the network')
      const png = await readFile(join(out.path, 'chart.png'))
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
      assert.ok(png.length > 5000)
    } finally {
      await out.remove()
    }
  })
})
