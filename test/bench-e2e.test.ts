// End to end: `vvm bench deposit --quick` starts a real vvm server and the ceiling echo server,
// runs both, and writes the JSON result, the HTML report (charts inline) and the PNG chart;
// `vvm bench standard --quick` runs every step of the standard report, the resource steps
// (idle WebSocket connections, restart with a filled PLog) included, against real servers.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runBench } from './bench-support.js'
import { REPO_ROOT, tempDir } from './helpers/server.js'

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

  it('alternates fresh servers with and without a flag (--rounds, --compare-server-arg) and compares the means', async () => {
    const out = await tempDir('vvm-bench-ab-test-')
    try {
      const r = await runBench(['deposit', '--storage', 'mem', '--rounds', '2', '--compare-server-arg=--batch-commands-max=4', '--duration-s', '0.5', '--warmup-s', '0.2',
        '--workspaces', '20', '--connections', '4', '--no-ceiling', '--out', out.path])
      assert.equal(r.code, 0, r.output)
      const result = JSON.parse(await readFile(join(out.path, 'result.json'), 'utf8'))
      assert.equal(result.passed, true)
      assert.deepEqual(result.runs.map((x: { label: string }) => x.label.replace(/.* · /, '')), ['A round 1', 'B round 1', 'A round 2', 'B round 2'])
      for (const run of result.runs) assert.ok(run.throughputPerS > 0 && run.serverCores > 0, run.label)
      const notes: string[] = result.notes
      assert.ok(notes.some((n) => /^server B: .*--batch-commands-max=4$/.test(n)), notes.join('\n'))
      assert.ok(notes.some((n) => /^server A: /.test(n) && !n.includes('--batch-commands-max')), notes.join('\n'))
      assert.ok(notes.some((n) => /^A \(as configured\), 2 rounds, mean \(range\): ok\/s [\d,]+ \(/.test(n)), notes.join('\n'))
      assert.ok(notes.some((n) => /^B against A, means: ok\/s [+−]\d+\.\d %/.test(n)), notes.join('\n'))
      assert.match(r.output, /B against A/)
    } finally {
      await out.remove()
    }
  })

  it('runs the quick standard report, with the memory and restart targets measured on real servers', async () => {
    const out = await tempDir('vvm-bench-standard-test-')
    try {
      // Why 300 s: the quick report takes about a minute here; a loaded CI machine may need several.
      const r = await runBench(['standard', '--quick', '--out', out.path], 300_000)
      assert.equal(r.code, 0, r.output)
      const result = JSON.parse(await readFile(join(out.path, 'result.json'), 'utf8'))
      assert.equal(result.kind, 'standard')
      assert.equal(result.passed, true)
      const target = (figure: string): { measured: string; met: boolean | null; noVerdict?: string } => {
        const t = result.targets.find((x: { figure: string }) => x.figure.startsWith(figure))
        assert.ok(t !== undefined, `no target row '${figure}'`)
        return t
      }

      // The half-rate run's tail by stage, from the server's own histograms.
      const tail: string | undefined = result.notes.find((n: string) => n.startsWith('where the time went in "deposit, open loop at half the maximum'))
      assert.ok(tail !== undefined, result.notes.join('\n'))
      for (const part of ['server (arrival to reply)', 'queued', 'execute', 'commit', 'reply']) {
        assert.match(tail, new RegExp(`${part.replace(/[()]/g, '\\$&')} \\d+\\.\\d\\d % / \\d+\\.\\d\\d % / \\d+\\.\\d\\d %`), tail)
      }

      // Restart: the PLog filled past --quick's 20,000 events, killed, restarted, a command served.
      const restart = result.restart
      assert.equal(restart.status, 'measured', restart.reason)
      assert.ok(restart.eventsBeforeKill >= 20_000, `${restart.eventsBeforeKill} events`)
      assert.ok(restart.eventsAfterRestart > restart.eventsBeforeKill, 'the restarted server kept every event and logged the create')
      assert.ok(restart.listeningMs > 0 && restart.firstCommandMs >= restart.listeningMs, `${restart.listeningMs} / ${restart.firstCommandMs} ms`)
      assert.equal(restart.fill.errors, 0)
      const restartRow = target('restart with 1M events')
      assert.doesNotMatch(restartRow.measured, /not measured/)
      assert.match(restartRow.measured, /^[\d,]+ ms with [\d,]+ events in the log/)
      assert.equal(restartRow.met, null, 'no verdict below 1M events')
      assert.match(restartRow.noVerdict ?? '', /not 1,000,000/)

      // Memory: 1,000 connections (--quick) opened, counted by the server, RSS read — unless this
      // machine's open-files limit cannot hold them, which the step must then say.
      const memory = result.idleConnections
      const memoryRow = target('memory with 10k idle WebSocket connections')
      if (openFilesMax() < 1000 + 256) {
        assert.equal(memory.status, 'skipped')
        assert.match(memoryRow.measured, /not measured: the open-files limit/)
      } else {
        assert.equal(memory.status, 'measured', memory.reason)
        assert.equal(memory.openedCount, 1000)
        assert.equal(memory.serverConnectionsCount, 1000)
        assert.ok(memory.rssBeforeKiB > 0 && memory.rssWithKiB > 0 && Number.isFinite(memory.perConnectionKiB))
        assert.doesNotMatch(memoryRow.measured, /not measured/)
        assert.match(memoryRow.measured, /^[\d.]+ MiB with 1,000 idle connections/)
        assert.equal(memoryRow.met, null, 'no verdict below 10k connections')
        assert.match(memoryRow.noVerdict ?? '', /not 10,000/)
      }

      // WASM vs builtin: bank.TransferWasm between two bank.Transfer runs on the same server.
      assert.deepEqual(result.runs.filter((x: { scenario: string }) => x.scenario.startsWith('transfer')).map((x: { scenario: string }) => x.scenario), ['transfer', 'transfer-wasm', 'transfer'])
      const wasmRow = target('command with a WASM extension vs builtin')
      assert.match(wasmRow.measured, /^[\d.]+ %: bank\.TransferWasm [\d,]+\/s vs bank\.Transfer [\d,]+\/s and [\d,]+\/s/)
      assert.equal(typeof wasmRow.met, 'boolean')
      // One at a time, beside the synced-put ceiling measured in the same run.
      assert.ok(result.syncPut.putsPerS > 0 && result.syncPut.p50Us > 0 && result.syncPut.p99Us >= result.syncPut.p50Us, JSON.stringify(result.syncPut))
      assert.match(target('p99 at half the maximum').measured, /one synced put alone: p99 [\d.]+ ms\)$/)
      assert.match(target('commands/s one at a time').measured, /^[\d,]+\/s = [\d.]+ % of the synced-put ceiling [\d,]+\/s/)

      const md = await readFile(join(out.path, 'report.md'), 'utf8')
      assert.match(md, /\*\*Restart with [\d,]+ events in the log/)
      if (memory.status === 'measured') assert.match(md, /\*\*Memory with 1,000 idle WebSocket connections/)
      // Memory by connection count: --quick's 200 and 1,000, each on a fresh server.
      assert.deepEqual(result.idleConnectionsSweep.map((x: { connectionsCount: number }) => x.connectionsCount), [200, 1000])
      assert.match(md, /\*\*Memory by idle WebSocket connections \(200 \/ 1,000;/)
      if (memory.status === 'measured') {
        assert.equal(result.idleConnectionsSweep[0].status, 'measured', result.idleConnectionsSweep[0].reason)
        assert.match(md, /\| 200 connections \| [\d.]+ MiB \([\d.]+ MiB before; [\d.]+ KiB per connection\) \|/)
        assert.match(await readFile(join(out.path, 'report.html'), 'utf8'), /Server RSS with idle WebSocket connections/)
      }
    } finally {
      await out.remove()
    }
  })

  it('memory step: more connections than the open-files limit allows are skipped with the limits, not failed', async () => {
    const { idleConnectionsStep, sourceAddressOf } = await import('../bench/idle-connections.js')
    const { ProgressLine } = await import('../bench/report/progress.js')
    // More than Linux lets any process open (fs.nr_open caps the limit; 1,048,576 by default).
    const r = await idleConnectionsStep({ engine: { partitions: 2, storage: 'level', app: 'demo/bank', extraArgs: [] }, connectionsCount: 2_000_000_000, token: undefined, progress: new ProgressLine() })
    if (openFilesMax() === Infinity) return // not Linux: the step finds out when a connection fails
    assert.equal(r.status, 'skipped')
    assert.match(r.reason, /^the open-files limit \(ulimit -n\) is [\d,]+.*hard limit [\d,]+.*2,000,000,000 connections need about/)
    // 100k connections come from several loopback addresses (~28k ephemeral ports per address pair).
    assert.deepEqual([0, 19_999, 20_000, 99_999].map(sourceAddressOf), ['127.0.0.1', '127.0.0.1', '127.0.0.2', '127.0.0.5'])
  })

  it('re-renders a standard result.json written before the resource steps existed', async () => {
    const out = await tempDir('vvm-bench-rerender-test-')
    try {
      const r = await runBench(['report', join(REPO_ROOT, 'bench/reports/2026-11-23-standard/result.json'), '--out', out.path])
      assert.equal(r.code, 0, r.output)
      const md = await readFile(join(out.path, 'report.md'), 'utf8')
      assert.match(md, /\| memory with 10k idle WebSocket connections \| ≤ 300 MiB RSS \| not measured by bench yet \| not measured \|/)
      assert.doesNotMatch(md, /\*\*Memory with|\*\*Restart with/)
      // Server CPU per operation = server cores ÷ ok/s, in every run table.
      const result = JSON.parse(await readFile(join(REPO_ROOT, 'bench/reports/2026-11-23-standard/result.json'), 'utf8')) as { runs: { label: string; throughputPerS: number; serverCores: number | null }[] }
      const run = result.runs.find((x) => x.serverCores !== null && x.throughputPerS > 0)!
      const us = (run.serverCores! / run.throughputPerS) * 1e6
      const row = md.split('\n').find((l) => l.startsWith(`| ${run.label} |`))!
      assert.match(md, /\| server cores \| server µs\/op \| other cores \|/)
      assert.equal(row.split(' | ').at(-2), us >= 100 ? Math.round(us).toLocaleString('en-US') : us.toFixed(1), row)
    } finally {
      await out.remove()
    }
  })
})


/** This process's open-files limit, which the bench inherits (Linux /proc; elsewhere: unknown, taken as enough). */
function openFilesMax(): number {
  try {
    return Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'latin1'))?.[1] ?? Infinity)
  } catch {
    return Infinity // not Linux: the bench does not check either
  }
}
