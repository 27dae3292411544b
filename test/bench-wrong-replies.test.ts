// The harness refuses to report success when replies are wrong: a server that answers the
// deposit scenario fast but with wrong content (and sometimes 503) gets a failed result, every
// bad reply counted by kind, no throughput, and a non-zero exit code.

import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runBench, startScriptServer } from './bench-support.js'
import { tempDir } from './helpers/server.js'

/** Opens accounts correctly (so setup passes); answers deposits 200 with a string balance, every third one 503. */
const WRONG_BANK = `
const http = require('node:http')
let deposits = 0
const send = (res, status, body) => { const b = Buffer.from(JSON.stringify(body)); res.writeHead(status, { 'content-type': 'application/json', 'content-length': b.length }); res.end(b) }
const server = http.createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    if (req.url.endsWith('/docs/bank.Account')) return send(res, 201, { currentWLogOffset: 1, newIDs: { '1': 65536 }, result: {} })
    if (req.url.endsWith('/commands/bank.Deposit')) {
      if (++deposits % 3 === 0) return send(res, 503, { status: 503, code: 'BUSY', message: 'busy' })
      return send(res, 200, { currentWLogOffset: 2, newIDs: {}, result: { balance: 'plenty' } })
    }
    send(res, 404, { status: 404, code: 'NOT_FOUND', message: req.url })
  })
})
server.listen(0, '127.0.0.1', () => console.log('listening on http://127.0.0.1:' + server.address().port))
`

describe('bench: wrong replies', () => {
  it('fails the run, counts every wrong reply by kind and exits non-zero', async () => {
    const server = await startScriptServer(WRONG_BANK)
    const out = await tempDir('vvm-bench-test-')
    try {
      const r = await runBench(['deposit', '--target', server.url, '--quick', '--workspaces', '10', '--connections', '8', '--no-ceiling', '--out', out.path])
      assert.equal(r.code, 1, r.output)
      assert.match(r.output, /FAILED/)
      const result = JSON.parse(await readFile(join(out.path, 'result.json'), 'utf8'))
      assert.equal(result.passed, false)
      const run = result.runs[0]
      assert.equal(run.passed, false)
      assert.equal(run.ok, 0)
      assert.equal(run.throughputPerS, 0)
      const wrong = run.errors.byKind['content: result.balance is not an integer ≥ 1']
      const busy = run.errors.byKind['status 503 BUSY']
      assert.ok(wrong > 100, `wrong-content replies counted: ${wrong}`)
      assert.ok(busy > 50, `503 replies counted: ${busy}`)
      assert.equal(wrong + busy, run.errors.total)
      assert.ok(Math.abs(wrong / busy - 2) < 0.5, `two wrong replies for each 503: ${wrong} / ${busy}`)
      assert.ok(run.errors.samples.some((s: string) => s.includes('plenty')), 'samples show the wrong reply')
    } finally {
      await server.stop()
      await out.remove()
    }
  })
})
