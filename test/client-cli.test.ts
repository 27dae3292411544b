// `vvm call`, spawned as a person would run it: each op prints its reply as JSON (exit 0), an
// error reply prints the error as JSON (exit 1), bad usage explains itself (exit 2).

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { VVM_BIN, http, startTestServer, type TestServer } from './helpers/server.js'

const WSID = 8080

function vvm(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VVM_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(stdin ?? '')
  })
}

describe('vvm call', () => {
  let t: TestServer
  let wsUrl: string
  let httpUrl: string
  before(async () => {
    t = await startTestServer(['--storage', 'mem'])
    wsUrl = `ws://127.0.0.1:${t.server.port}/api/ws`
    httpUrl = `http://127.0.0.1:${t.server.port}`
  })
  after(() => t.close())

  it('creates, commands, queries and reads, printing each reply as JSON', async () => {
    const created = await vvm(['call', httpUrl, 'demo/bank', String(WSID), 'bank.Account', '{"name":"cli","balance":1}', '--op', 'create'])
    assert.equal(created.code, 0, created.stderr)
    const id = JSON.parse(created.stdout).newIDs['1'] as number
    const dep = await vvm(['call', wsUrl, 'demo/bank', String(WSID), 'bank.Deposit', JSON.stringify({ account: id, amount: 41 })])
    assert.equal(dep.code, 0, dep.stderr)
    assert.deepEqual(JSON.parse(dep.stdout).result, { balance: 42 })
    const q = await vvm(['call', wsUrl, 'demo/bank', String(WSID), 'bank.Balance', '-', '--op', 'query'], JSON.stringify({ account: id }))
    assert.equal(q.code, 0, q.stderr)
    assert.deepEqual(JSON.parse(q.stdout), { results: [{ balance: 42 }] })
    // The same as the HTTP API, for a document read.
    const get = await vvm(['call', wsUrl, 'demo/bank', String(WSID), 'bank.Account', '--op', 'get', '--id', String(id)])
    assert.equal(get.code, 0, get.stderr)
    assert.deepEqual(JSON.parse(get.stdout), (await http('GET', `${t.ws(WSID)}/docs/bank.Account/${id}`)).body)
    const view = await vvm(['call', wsUrl, 'demo/bank', String(WSID), 'bank.Movements', '--op', 'view', '--where', JSON.stringify({ account: id }), '--keys', 'amount'])
    assert.equal(view.code, 0, view.stderr)
    assert.deepEqual(JSON.parse(view.stdout), { results: [{ amount: 41 }] })
    assert.match(get.stdout, /\n {2}"sys\.ID"/, 'the JSON is indented for a person')
  })

  it('prints an error reply as JSON and exits 1', async () => {
    const r = await vvm(['call', wsUrl, 'demo/bank', String(WSID), 'bank.Deposit', '{"account":1}'])
    assert.equal(r.code, 1)
    const e = JSON.parse(r.stdout)
    assert.equal(e.status, 400)
    assert.equal(e.code, 'VALIDATION')
    assert.equal(typeof e.message, 'string')
    const nf = await vvm(['call', wsUrl, 'demo/bank', String(WSID), 'bank.Missing'])
    assert.equal(nf.code, 1)
    assert.deepEqual(JSON.parse(nf.stdout), { status: 404, code: 'NOT_FOUND', message: 'command bank.Missing is not defined in app demo/bank', qname: 'bank.Missing' })
  })

  it('explains bad usage (exit 2) and a failed connection (exit 1)', async () => {
    const help = await vvm(['call', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /Usage: vvm call <url> <app> <wsid> <pkg.Name>/)
    for (const args of [
      ['call', wsUrl, 'demo/bank'],
      ['call', wsUrl, 'demo/bank', 'x', 'bank.Deposit'],
      ['call', wsUrl, 'demo/bank', '1', 'bank.Deposit', '{bad'],
      ['call', wsUrl, 'demo/bank', '1', 'bank.Deposit', '--op', 'nope'],
      ['call', wsUrl, 'demo/bank', '1', 'bank.Account', '--op', 'get'],
    ]) {
      const r = await vvm(args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, /^vvm call: /)
    }
    const down = await vvm(['call', 'ws://127.0.0.1:1/api/ws', 'demo/bank', '1', 'bank.Deposit', '--timeout-ms', '2000'])
    assert.equal(down.code, 1)
    assert.match(down.stderr, /vvm call: .*127\.0\.0\.1:1/)
  })
})
