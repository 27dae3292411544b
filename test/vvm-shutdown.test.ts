// Seed 003 on one machine: SIGTERM under load answers every request that reached the server
// (200, or 503 while stopping), keeps every acknowledged command, and the process exits by
// itself with code 0. In-process: after VVM.shutdown() no thread, socket or timer is left.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { loadConfig } from '../src/main/config.js'
import { VVM } from '../src/main/vvm.js'
import { balanceOf, createAccount, http, spawnServer, tempDir } from './helpers/server.js'

const CONCURRENCY = 32

describe('VVM shutdown', () => {
  it('SIGTERM under load: every request answered, every acknowledged deposit kept, clean exit', async () => {
    const dir = await tempDir()
    try {
      const s = await spawnServer(['--data-dir', dir.path])
      const base = `${s.url}/api/v2/apps/demo/bank/workspaces/77`
      const acc = await createAccount(base)
      let acked = 0
      let ackedSum = 0
      let busy = 0
      let refused = 0
      let sent = 0
      let stop = false
      const lost: string[] = []
      const loops = Array.from({ length: CONCURRENCY }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const amount = 1 + ((w * 31 + i) % 50)
          sent++
          try {
            const r = await http('POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount } }, { 'Idempotency-Key': `w${w}-${i}` })
            if (r.status === 200) { acked++; ackedSum += amount }
            else if (r.status === 503) busy++
            else throw new Error(`unexpected ${r.status} ${JSON.stringify(r.body)}`)
            if (acked === 400) s.proc.kill('SIGTERM')
          } catch (err) {
            const code = (err as { cause?: { code?: string } }).cause?.code
            // Refused means the request never reached the server (the listener is closed).
            if (code === 'ECONNREFUSED') refused++
            else if (!(err as Error).message.startsWith('unexpected')) lost.push(`${code ?? ''} ${(err as Error).message}`)
            else throw err
            stop = true
          }
        }
      })
      await Promise.all(loops)
      assert.equal(await s.exited, 0, `exit code; output:\n${s.output()}`)
      assert.deepEqual(lost, [], `requests that reached the server without a reply (sent ${sent}, acked ${acked}, 503 ${busy}, refused ${refused})`)
      assert.ok(acked >= 400)

      const again = await spawnServer(['--data-dir', dir.path])
      try {
        assert.equal(await balanceOf(`${again.url}/api/v2/apps/demo/bank/workspaces/77`, acc), ackedSum)
      } finally {
        again.proc.kill('SIGTERM')
        assert.equal(await again.exited, 0)
      }
    } finally {
      await dir.remove()
    }
  })

  it('after shutdown() nothing of the VVM is left running', async () => {
    const dir = await tempDir()
    const before = new Set(process.getActiveResourcesInfo())
    const vvm = new VVM(loadConfig(['--port', '0', '--metrics-port', '0', '--host', '127.0.0.1', '--data-dir', dir.path, '--auth', 'off'], {}), pino({ level: 'warn' }))
    const problem = vvm.launch()
    const server = await vvm.serving
    const base = `http://127.0.0.1:${server.port}/api/v2/apps/demo/bank/workspaces/5`
    const acc = await createAccount(base)
    assert.equal((await http('POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount: 2 } })).status, 200)
    assert.equal(await balanceOf(base, acc), 2)
    assert.equal(await vvm.shutdown(), undefined)
    assert.equal(problem.aborted, false)
    await new Promise((r) => setTimeout(r, 200))
    const left = process.getActiveResourcesInfo().filter((r) => !before.has(r) && r !== 'Timeout')
    assert.deepEqual(left, [])
    await dir.remove()
  })

  it('a problem while launching is reported once, through the signal, naming the holder', async () => {
    const dir = await tempDir()
    const holder = await spawnServer(['--data-dir', dir.path])
    try {
      const config = loadConfig(['--port', '0', '--metrics-port', '0', '--host', '127.0.0.1', '--data-dir', dir.path], {})
      const b = new VVM(config, pino({ level: 'silent' }))
      const problem = b.launch()
      await new Promise((r) => problem.addEventListener('abort', r, { once: true }))
      assert.match(String((problem.reason as Error).message), new RegExp(`in use by another process.*holder: .*"pid":${holder.proc.pid}`))
      b.updateProblem(new Error('second'))
      assert.match((await b.shutdown())!.message, /in use/, 'the first problem stands')
      // Within one process, a second VVM on the same directory is refused too.
      const c = new VVM(config, pino({ level: 'silent' }))
      c.launch()
      await assert.rejects(c.serving, /in use/)
      await c.shutdown()
    } finally {
      holder.proc.kill('SIGTERM')
      assert.equal(await holder.exited, 0)
    }
    const own = loadConfig(['--port', '0', '--metrics-port', '0', '--host', '127.0.0.1', '--data-dir', dir.path], {})
    const a = new VVM(own, pino({ level: 'silent' }))
    a.launch()
    await a.serving
    const twin = new VVM(own, pino({ level: 'silent' }))
    const twinProblem = twin.launch()
    await new Promise((r) => twinProblem.addEventListener('abort', r, { once: true }))
    assert.match(String((twinProblem.reason as Error).message), /another VVM of this process/)
    assert.equal(await twin.shutdown() !== undefined, true)
    assert.equal(await a.shutdown(), undefined)
    await dir.remove()
  })
})
