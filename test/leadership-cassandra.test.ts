// Leadership on a storage two processes share (Cassandra): only one vvm serves; when it dies
// (kill -9) the other takes over within the lease TTL and serves the same data; a lease stolen
// under a running leader makes it stop serving and exit by itself.
//
// Needs a Cassandra server (`bash scripts/cassandra.sh start`); without one this file fails,
// unless VVM_SKIP_CASSANDRA=1, which skips it loudly.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { LEASE_KEY, SYS_APP } from '../src/main/leadership.js'
import { openStorageProvider } from '../src/shared/storage/index.js'
import type { StorageConfig } from '../src/shared/storage/types.js'
import { balanceOf, createAccount, http, spawnServer, type ChildServer } from './helpers/server.js'
import { CASSANDRA_HOSTS, cassandraSkip, cassandraUnreachable } from './helpers/cassandra.js'

const HOSTS = CASSANDRA_HOSTS.split(',')
const PREFIX = `vvml_${randomBytes(4).toString('hex')}_`
const STORAGE: StorageConfig = { kind: 'cassandra', cassandraHosts: HOSTS, cassandraKeyspacePrefix: PREFIX }
const LEASE_TTL_S = 3
const FLAGS = ['--storage', 'cassandra', '--cassandra-hosts', HOSTS.join(','), '--cassandra-keyspace-prefix', PREFIX, '--lease-ttl-s', String(LEASE_TTL_S), '--partitions', '2']

const unreachable = await cassandraUnreachable()

describe('leadership on Cassandra', () => {
  if (unreachable !== undefined) {
    it('needs a Cassandra server', { skip: cassandraSkip(unreachable, 'the leadership tests') }, () => {
      assert.fail(`no Cassandra at ${HOSTS.join(',')}: ${unreachable}; start one with \`bash scripts/cassandra.sh start\``)
    })
    return
  }

  it('one serves, the other waits; kill -9 the leader, the other serves within the TTL; a stolen lease stops the leader', async () => {
    const children: ChildServer[] = []
    try {
      const a = await spawnServer([...FLAGS, '--node-id', 'node-a'], 60_000)
      children.push(a)
      const baseA = `${a.url}/api/v2/apps/demo/bank/workspaces/31`
      const acc = await createAccount(baseA)
      assert.equal((await http('POST', `${baseA}/commands/bank.Deposit`, { args: { account: acc, amount: 40 } })).status, 200)

      // B waits for leadership: it does not listen while A holds the lease.
      const bStarting = spawnServer([...FLAGS, '--node-id', 'node-b'], 60_000)
      await new Promise((r) => setTimeout(r, LEASE_TTL_S * 1000 + 1000))
      const bEarly = await Promise.race([bStarting.then(() => 'serving'), new Promise((r) => setTimeout(() => r('waiting'), 10))])
      assert.equal(bEarly, 'waiting', 'B must not serve while A holds the lease')

      const killedAt = Date.now()
      a.proc.kill('SIGKILL')
      const b = await bStarting
      children.push(b)
      const takeoverMs = Date.now() - killedAt
      assert.ok(takeoverMs < (LEASE_TTL_S + 3) * 1000, `takeover took ${takeoverMs} ms`)
      const baseB = `${b.url}/api/v2/apps/demo/bank/workspaces/31`
      assert.equal(await balanceOf(baseB, acc), 40, 'the acknowledged deposit survives the takeover')
      assert.equal((await http('POST', `${baseB}/commands/bank.Deposit`, { args: { account: acc, amount: 2 } })).status, 200)
      assert.equal(await balanceOf(baseB, acc), 42)

      // Steal the lease under B: B must notice at its next renewal, stop serving and exit.
      const provider = await openStorageProvider(STORAGE)
      const sys = await provider.appStorage(SYS_APP)
      await sys.put(LEASE_KEY.pk, LEASE_KEY.cc, new TextEncoder().encode(JSON.stringify({ nodeId: 'thief' })))
      await provider.close()
      const code = await Promise.race([b.exited, new Promise((r) => setTimeout(() => r('still running'), (LEASE_TTL_S + 10) * 1000))])
      assert.equal(code, 1, `B exit: ${String(code)}; output:\n${b.output()}`)
      assert.match(b.output(), /leadership lost/)
    } finally {
      for (const c of children) c.proc.kill('SIGKILL')
    }
  })
})
