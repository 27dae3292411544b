// Two vvm nodes on one Cassandra share the partitions (cluster mode, --advertise). Both serve,
// redirecting requests for partitions the other owns; one is killed with SIGKILL under load;
// within the lease TTL the survivor serves every partition; no acknowledged command is lost
// and, with deposits retried under their idempotency keys, every balance is exact.
//
// Needs a Cassandra server (`bash scripts/cassandra.sh start`); fails without one unless
// VVM_SKIP_CASSANDRA=1, which skips it loudly.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { balanceOf, createAccount, http, scrape, spawnServer, type ChildServer } from './helpers/server.js'
import { CASSANDRA_HOSTS as HOSTS, cassandraSkip, cassandraUnreachable } from './helpers/cassandra.js'

const LEASE_TTL_S = 3
const PARTITIONS = 4
const WORKSPACES = [11, 12, 13, 14, 15, 16, 17, 18]
const PORTS = [18101 + (process.pid % 500) * 2, 18102 + (process.pid % 500) * 2]

const down = await cassandraUnreachable()
const skip = cassandraSkip(down, 'the two-node test')

describe('two nodes on Cassandra', () => {
  it('share the partitions; SIGKILL one under load; the other serves all within the TTL; balances exact', { skip }, async () => {
    assert.equal(down, undefined, `no Cassandra at ${HOSTS}: start one with \`bash scripts/cassandra.sh start\``)
    const prefix = `vvmn_${randomBytes(4).toString('hex')}_`
    // The advertised URL must be known before start, so these nodes listen on fixed ports.
    const flags = (i: number) => ['--storage', 'cassandra', '--cassandra-hosts', HOSTS, '--cassandra-keyspace-prefix', prefix,
      '--partitions', String(PARTITIONS), '--lease-ttl-s', String(LEASE_TTL_S), '--port', String(PORTS[i]), '--node-id', `node-${i}`, '--advertise', `http://127.0.0.1:${PORTS[i]}`]
    const nodes: ChildServer[] = []
    try {
      nodes.push(await spawnServer(flags(0), 60_000))
      nodes.push(await spawnServer(flags(1), 60_000))
      const [a, b] = nodes as [ChildServer, ChildServer]
      const owned = (n: ChildServer) => scrape(n.metricsUrl, 'vvm_partitions_owned')
      // Wait for the even split itself: on the way to it a node can briefly own 3 of 4 while the
      // other owns 1 (a CI run failed on asserting the split at that moment).
      for (const until = Date.now() + 20_000; (await owned(a)) !== PARTITIONS / 2 || (await owned(b)) !== PARTITIONS / 2;) {
        assert.ok(Date.now() < until, `the nodes did not share the partitions evenly: ${await owned(a)} and ${await owned(b)}`)
        await new Promise((r) => setTimeout(r, 200))
      }

      const accounts = new Map<number, number>()
      // A node learns the other's leases at its next round (TTL/3): until then it answers 503.
      for (const ws of WORKSPACES) {
        for (let attempt = 0; !accounts.has(ws); attempt++) {
          try {
            accounts.set(ws, await createAccount(`${a.url}/api/v2/apps/demo/bank/workspaces/${ws}`))
          } catch (err) {
            assert.ok(attempt < 50 && /503/.test((err as Error).message), (err as Error).message)
            await new Promise((r) => setTimeout(r, 100))
          }
        }
      }
      const expected = new Map<number, number>(WORKSPACES.map((ws) => [ws, 0]))
      let acks = 0
      let killedAt = 0
      let n = 0
      await Promise.all(Array.from({ length: 16 }, async (_, w) => {
        for (let i = 0; i < 60; i++) {
          const ws = WORKSPACES[(w + i) % WORKSPACES.length]!
          const amount = 1 + ((w * 13 + i) % 9)
          const key = `w${w}-${i}`
          // Alternate entry nodes; after the kill only the survivor answers (and redirects to
          // the dead one fail until it takes over): retry with the same key until acknowledged.
          for (let attempt = 0; ; attempt++) {
            const entry = killedAt > 0 ? b : nodes[(n++) % 2]!
            try {
              const r = await http('POST', `${entry.url}/api/v2/apps/demo/bank/workspaces/${ws}/commands/bank.Deposit`, { args: { account: accounts.get(ws), amount } }, { 'Idempotency-Key': key })
              if (r.status === 200) break
              assert.equal(r.status, 503, JSON.stringify(r.body))
            } catch (err) {
              if ((err as Error).name === 'AssertionError') throw err
            }
            assert.ok(attempt < 200, `deposit ${key} never acknowledged`)
            await new Promise((r) => setTimeout(r, 50))
          }
          expected.set(ws, expected.get(ws)! + amount)
          if (++acks === 300) {
            killedAt = Date.now()
            a.proc.kill('SIGKILL')
          }
        }
      }))
      assert.ok(killedAt > 0)
      for (const until = killedAt + (LEASE_TTL_S + 5) * 1000; (await owned(b)) !== PARTITIONS;) {
        assert.ok(Date.now() < until, 'the survivor did not take over every partition within the TTL')
        await new Promise((r) => setTimeout(r, 200))
      }
      for (const [ws, account] of accounts) {
        assert.equal(await balanceOf(`${b.url}/api/v2/apps/demo/bank/workspaces/${ws}`, account), expected.get(ws), `balance of workspace ${ws}`)
      }
    } finally {
      for (const node of nodes) node.proc.kill('SIGKILL')
    }
  })
})
