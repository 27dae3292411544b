// Nothing acknowledged is lost, nothing is applied twice: concurrent deposits with idempotency
// keys, the server killed with SIGKILL in the middle, restarted, the unanswered deposits retried
// with the same keys. Every balance equals the sum of its deposits exactly, and the
// `bank.Movements` view (a sync projector) agrees with it.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { createAccount, http, spawnServer, tempDir, type ChildServer } from './helpers/server.js'
import { CASSANDRA_HOSTS, cassandraSkip, cassandraUnreachable } from './helpers/cassandra.js'

const WORKSPACES = [1001, 1002, 1003, 1004]
const DEPOSITS = 3000
const CONCURRENCY = 64
const KILL_AFTER_ACKS = 600

interface Deposit { key: string; wsid: number; account: number; amount: number; acked: boolean }

async function deposit(url: string, d: Deposit): Promise<boolean> {
  try {
    const r = await http('POST', `${url}/api/v2/apps/demo/bank/workspaces/${d.wsid}/commands/bank.Deposit`, { args: { account: d.account, amount: d.amount } }, { 'Idempotency-Key': d.key })
    if (r.status === 200) return true
    if (r.status !== 503) throw new Error(`deposit ${d.key}: unexpected ${r.status} ${JSON.stringify(r.body)}`)
    return false
  } catch (err) {
    if ((err as Error).message.startsWith('deposit ')) throw err
    return false // connection refused or reset: unanswered
  }
}

describe('crash recovery on LevelDB', () => {
  it('SIGKILL mid-load, restart, retry with the same keys: balances exact', async () => {
    const dir = await tempDir()
    try {
      await crashAndRecover(['--data-dir', dir.path, '--partitions', '2'])
    } finally {
      await dir.remove()
    }
  })
})

describe('crash recovery on Cassandra', async () => {
  const unreachable = await cassandraUnreachable()
  const skip = cassandraSkip(unreachable, 'the Cassandra crash test')
  it('SIGKILL mid-load, restart, retry with the same keys: balances exact', { skip }, async () => {
    assert.equal(unreachable, undefined, `no Cassandra at ${CASSANDRA_HOSTS}: start one with \`bash scripts/cassandra.sh start\``)
    const prefix = `vvmc_${randomBytes(4).toString('hex')}_`
    // A short lease: the restarted node waits for the killed one's lease to expire.
    await crashAndRecover(['--storage', 'cassandra', '--cassandra-hosts', CASSANDRA_HOSTS, '--cassandra-keyspace-prefix', prefix, '--partitions', '2', '--lease-ttl-s', '2'])
  })
})

async function crashAndRecover(flags: string[]): Promise<void> {
    let server: ChildServer | undefined
    try {
      server = await spawnServer(flags, 60_000)
      const accounts = new Map<number, number>()
      for (const ws of WORKSPACES) accounts.set(ws, await createAccount(`${server.url}/api/v2/apps/demo/bank/workspaces/${ws}`, `acc${ws}`))
      const deposits: Deposit[] = Array.from({ length: DEPOSITS }, (_, i) => {
        const wsid = WORKSPACES[i % WORKSPACES.length]!
        return { key: `dep-${i}`, wsid, account: accounts.get(wsid)!, amount: 1 + ((i * 7919) % 100), acked: false }
      })

      // Phase 1: load until enough acknowledgements, then kill -9 with requests in flight.
      let acks = 0
      let next = 0
      let killed = false
      const first = server
      const workers = Array.from({ length: CONCURRENCY }, async () => {
        while (next < deposits.length && !killed) {
          const d = deposits[next++]!
          d.acked = await deposit(first.url, d)
          if (d.acked && ++acks === KILL_AFTER_ACKS) {
            killed = true
            first.proc.kill('SIGKILL')
          }
        }
      })
      await Promise.all(workers)
      assert.equal(await first.exited, null, 'the server was killed by a signal')
      const unanswered = deposits.filter((d) => !d.acked)
      assert.ok(acks >= KILL_AFTER_ACKS && unanswered.length > 0, `acks ${acks}, unanswered ${unanswered.length}`)

      // Phase 2: restart on the same data, retry every unanswered deposit (some were applied
      // before the kill without an answer) and a sample of answered ones, with the same keys.
      server = await spawnServer(flags, 60_000)
      const second = server
      const retry = [...unanswered, ...deposits.filter((d) => d.acked).slice(0, 100)]
      let i = 0
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (i < retry.length) {
          const d = retry[i++]!
          for (let attempt = 0; !(await deposit(second.url, d)); attempt++) {
            assert.ok(attempt < 50, `deposit ${d.key} never succeeded`)
            await new Promise((r) => setTimeout(r, 50))
          }
        }
      }))

      for (const [ws, account] of accounts) {
        const expected = deposits.filter((d) => d.wsid === ws).reduce((s, d) => s + d.amount, 0)
        const base = `${second.url}/api/v2/apps/demo/bank/workspaces/${ws}`
        const bal = await http('GET', `${base}/queries/bank.Balance?args=${encodeURIComponent(JSON.stringify({ account }))}`)
        assert.equal(bal.body.results[0].balance, expected, `balance of workspace ${ws}`)
        const mv = await http('GET', `${base}/views/bank.Movements?limit=10000&where=${encodeURIComponent(JSON.stringify({ account }))}`)
        assert.equal(mv.status, 200)
        const rows = mv.body.results as { amount: number; offset: number }[]
        assert.equal(rows.length, deposits.filter((d) => d.wsid === ws).length, `movements of workspace ${ws}`)
        assert.equal(rows.reduce((s, r) => s + r.amount, 0), expected)
        // WLog offsets are unique and increasing: no event was applied twice.
        assert.equal(new Set(rows.map((r) => r.offset)).size, rows.length)
      }
    } finally {
      server?.proc.kill('SIGKILL')
      await server?.exited
    }
}
