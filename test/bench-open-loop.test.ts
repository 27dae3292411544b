// Open-loop latency is corrected for coordinated omission: against a server that stalls once
// for a known time, latency measured from the intended send time shows the stall in its p99,
// while latency measured from the actual send (what a naive client reports) does not. And the
// operations due go out on any connection with room: one slow reply holds back only itself.

import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runBench, startScriptServer } from './bench-support.js'
import { tempDir } from './helpers/server.js'

const STALL_MS = 500
const STALL_AFTER_MS = 1000

/** An echo server (node:http, its own process) that blocks its event loop once, STALL_AFTER_MS after the first request. */
const STALLING_ECHO = `
const http = require('node:http')
let armed = false
const server = http.createServer((req, res) => {
  if (!armed) {
    armed = true
    setTimeout(() => { const end = Date.now() + ${STALL_MS}; while (Date.now() < end) {} }, ${STALL_AFTER_MS})
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => { const body = Buffer.concat(chunks); res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body) })
})
server.listen(0, '127.0.0.1', () => console.log('listening on http://127.0.0.1:' + server.address().port))
`

const SLOW_REPLY_MS = 500

/** An echo server that answers one request, STALL_AFTER_MS after the first, SLOW_REPLY_MS late; the rest at once. */
const ONE_SLOW_REPLY_ECHO = `
const http = require('node:http')
let first = 0
let slowDone = false
const server = http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    const reply = () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body) }
    if (first === 0) first = Date.now()
    if (!slowDone && Date.now() - first >= ${STALL_AFTER_MS}) { slowDone = true; setTimeout(reply, ${SLOW_REPLY_MS}) } else reply()
  })
})
server.listen(0, '127.0.0.1', () => console.log('listening on http://127.0.0.1:' + server.address().port))
`

/**
 * The echo scenario against a script server, open loop at 200/s for 3 s on `connections`
 * connections × 1 in flight; the run's result, after checking that it passed and that every
 * operation of the window (600) was scheduled.
 */
async function openLoopRun(script: string, connections: number) {
  const server = await startScriptServer(script)
  const out = await tempDir('vvm-bench-test-')
  try {
    const r = await runBench(['echo', '--target', server.url, '--rate-per-s', '200', '--connections', String(connections), '--duration-s', '3', '--warmup-s', '0', '--drain-s', '3', '--no-ceiling', '--out', out.path])
    assert.equal(r.code, 0, r.output)
    const run = JSON.parse(await readFile(join(out.path, 'result.json'), 'utf8')).runs[0]
    assert.equal(run.mode, 'open')
    assert.equal(run.errors.total, 0)
    assert.ok(run.sent >= 590 && run.sent <= 601, `operations scheduled in the window: ${run.sent}`)
    return run
  } finally {
    await server.stop()
    await out.remove()
  }
}

describe('bench: open loop', () => {
  it('corrects for coordinated omission: a 500 ms stall shows in the corrected p99, not in the uncorrected one', async () => {
    // 2 connections: of the 600 operations about 100 are due during the stall; only the 2 in
    // flight when it starts were *sent* before it.
    const run = await openLoopRun(STALLING_ECHO, 2)
    const correctedP99Ms = run.latencyUs.p99 / 1000
    const uncorrectedP99Ms = run.uncorrectedLatencyUs.p99 / 1000
    assert.ok(correctedP99Ms >= STALL_MS * 0.6, `corrected p99 ${correctedP99Ms} ms should reflect the ${STALL_MS} ms stall`)
    assert.ok(run.latencyUs.max / 1000 >= STALL_MS * 0.9, `corrected max ${run.latencyUs.max / 1000} ms`)
    assert.ok(uncorrectedP99Ms < STALL_MS * 0.2, `uncorrected p99 ${uncorrectedP99Ms} ms should not show the stall`)
    assert.ok(run.uncorrectedLatencyUs.max / 1000 >= STALL_MS * 0.8, 'the requests in flight during the stall do show it uncorrected')
    // The stall shows in the timeline too: one interval's p99 holds it.
    assert.ok(run.timeline.some((t: { p99Us: number }) => t.p99Us / 1000 >= STALL_MS * 0.6))
  })

  it('sends what is due on any connection with room: a slow reply delays only its own operation', async () => {
    // 4 connections. With a schedule per connection, the ~25 operations due on the slow reply's
    // connection during its 500 ms would wait for it (4 % of all, so the corrected p99 would
    // show it); with one schedule, the other three connections carry them and only the slow
    // operation itself is late.
    const run = await openLoopRun(ONE_SLOW_REPLY_ECHO, 4)
    assert.ok(run.latencyUs.max / 1000 >= SLOW_REPLY_MS * 0.9, `the slow reply is counted: corrected max ${run.latencyUs.max / 1000} ms`)
    assert.ok(run.latencyUs.p99 / 1000 < SLOW_REPLY_MS * 0.2, `corrected p99 ${run.latencyUs.p99 / 1000} ms: only one operation was slow`)
  })
})
