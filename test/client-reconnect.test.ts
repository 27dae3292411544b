// The SDK across a server restart: commands stream in, the server is stopped and started again
// on the same data directory and port, the SDK reconnects and sends again what was in flight,
// with the same idempotency keys. Every command must be applied exactly once: the demo/bank
// balance equals the sum of the deposits, and the Movements view holds one row per deposit.

import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { connect, type ClientState } from '../src/client/index.js'
import { loadConfig } from '../src/main/config.js'
import { startServer, type VvmServer } from '../src/main/server.js'
import { http, tempDir } from './helpers/server.js'

const DEPOSITS = 3000
const CONCURRENCY = 200
const WSID = 1717

async function start(dataDir: string, port: number): Promise<VvmServer> {
  const config = loadConfig(['--port', String(port), '--metrics-port', '0', '--host', '127.0.0.1', '--storage', 'level', '--data-dir', dataDir, '--partitions', '2', '--auth', 'off'], {})
  return startServer(config, pino({ level: 'warn' }))
}

/**
 * A free port, picked before the first start: uSockets sets SO_REUSEADDR only when it is given a
 * port (not 0), and without it the restarted server could not bind while the first one's
 * connections linger in TIME_WAIT.
 */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

describe('client SDK reconnect', () => {
  it('applies every command exactly once across a server restart', { timeout: 120_000 }, async () => {
    const dir = await tempDir('vvm-reconnect-')
    const port = await freePort()
    let server = await start(dir.path, port)
    const base = `http://127.0.0.1:${port}/api/v2/apps/demo/bank/workspaces/${WSID}`
    const created = await http('POST', `${base}/docs/bank.Account`, { name: 'a', balance: 0 })
    assert.equal(created.status, 201)
    const account = created.body.newIDs['1'] as number

    const states: ClientState[] = []
    const client = await connect(`ws://127.0.0.1:${port}/api/ws`, {
      app: 'demo/bank', wsid: WSID, timeoutMs: 60_000, retriesMax: 50,
      reconnect: { delayMinMs: 50, delayMaxMs: 500 }, onStateChange: (s) => states.push(s),
    })

    // A stream of deposits, amount i for the i-th, CONCURRENCY at a time.
    let next = 1
    let acked = 0
    let restarted = false
    const failures: string[] = []
    const worker = async (): Promise<void> => {
      while (next <= DEPOSITS) {
        const amount = next++
        try {
          await client.command('bank.Deposit', { account, amount })
          acked++
        } catch (err) {
          failures.push(`${amount}: ${(err as Error).message}`)
        }
      }
    }
    const stream = Promise.all(Array.from({ length: CONCURRENCY }, worker))

    // Mid-stream: stop the server (replies in flight are written, then close 1001) and start
    // it again on the same port and data directory.
    while (acked < DEPOSITS / 3) await new Promise((r) => setTimeout(r, 5))
    const ackedAtStop = acked
    await server.close()
    const downAt = performance.now()
    await new Promise((r) => setTimeout(r, 300)) // calls issued meanwhile wait in the SDK
    server = await start(dir.path, port)
    restarted = true
    await stream
    const downMs = performance.now() - downAt

    assert.deepEqual(failures, [], 'a command failed instead of being retried')
    assert.ok(restarted)
    assert.ok(ackedAtStop < DEPOSITS, 'the restart came after the stream ended')
    assert.ok(states.includes('reconnecting') && states.at(-1) === 'open', `states ${states.join(' → ')}`)
    const expected = (DEPOSITS * (DEPOSITS + 1)) / 2
    const rec = await http('GET', `${base}/docs/bank.Account/${account}`)
    assert.equal(rec.body.balance, expected, 'a deposit was lost or applied twice')
    const movements = await http('GET', `${base}/views/bank.Movements?where=${encodeURIComponent(JSON.stringify({ account }))}&limit=10000`)
    const amounts = (movements.body.results as { amount: number }[]).map((m) => m.amount).sort((a, b) => a - b)
    assert.deepEqual(amounts, Array.from({ length: DEPOSITS }, (_, i) => i + 1), 'one movement per deposit')
    console.log(`# reconnect: ${DEPOSITS} deposits, restart after ${ackedAtStop}, back in ${downMs.toFixed(0)} ms; states ${states.join(' → ')}`)

    await client.close()
    await server.close()
    await dir.remove()
  })
})
