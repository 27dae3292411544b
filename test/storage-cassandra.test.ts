// The storage TCK and Cassandra-specific checks against a real Cassandra server:
// `bash scripts/cassandra.sh start` runs one on 127.0.0.1:9042 (see docs/cassandra.md).
//
//   VVM_CASSANDRA_HOSTS   comma-separated host:port list [127.0.0.1:9042]
//   VVM_SKIP_CASSANDRA=1  skip (with a warning) when no server answers; without it, an
//                         unreachable server fails this file, so CI cannot pass by accident.
//
// Every run uses its own keyspace prefix, so reruns against a persistent server never see
// earlier data, and drops its keyspaces at the end.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { Client } from 'cassandra-driver'
import { StorageError } from '../src/shared/errors.js'
import { CassandraStorageProvider, KEYSPACE_NAME_CHARS_MAX, keyspaceNameOf } from '../src/shared/storage/cassandra.js'
import { openStorageProvider } from '../src/shared/storage/index.js'
import { u64be } from '../src/shared/storage/keys.js'
import { runStorageTck } from '../src/shared/storage/tck.js'
import type { StorageConfig } from '../src/shared/storage/types.js'

const HOSTS = (process.env['VVM_CASSANDRA_HOSTS'] ?? '127.0.0.1:9042').split(',').map((h) => h.trim()).filter((h) => h !== '')
const SKIP = process.env['VVM_SKIP_CASSANDRA'] === '1'
const KEYSPACE_PREFIX = `vvmt_${randomBytes(4).toString('hex')}_`
const CONFIG: StorageConfig = { kind: 'cassandra', cassandraHosts: HOSTS, cassandraKeyspacePrefix: KEYSPACE_PREFIX }
/** Longer than the TCK's expiry waits: Cassandra may expire a value up to 1 s early, never late. */
const TTL_WAIT_MS = 2_500

const b = (text: string): Uint8Array => new TextEncoder().encode(text)
const hex = (bytes: Uint8Array | undefined): string | undefined => (bytes === undefined ? undefined : Buffer.from(bytes).toString('hex'))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function probe(): Promise<string | undefined> {
  try {
    const provider = await CassandraStorageProvider.open(CONFIG)
    await provider.close()
    return undefined
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  }
}

const unreachable = await probe()

if (unreachable !== undefined && SKIP) {
  // '!' rather than '#': the test runner's TAP output escapes '#'.
  const banner = '!'.repeat(100)
  console.warn(`${banner}\n!! WARNING: VVM_SKIP_CASSANDRA=1 and no Cassandra at ${HOSTS.join(', ')}: the Cassandra storage TCK is SKIPPED.\n!! ${unreachable}\n${banner}`)
  it('storage TCK: cassandra', { skip: `VVM_SKIP_CASSANDRA=1 and no server at ${HOSTS.join(', ')}` }, () => {})
} else if (unreachable !== undefined) {
  it('storage TCK: cassandra needs a running server', () => {
    assert.fail(
      `No Cassandra server answers at ${HOSTS.join(', ')}: ${unreachable}\n` +
      'Start one with `bash scripts/cassandra.sh start` (or set VVM_CASSANDRA_HOSTS); ' +
      'set VVM_SKIP_CASSANDRA=1 only to skip these tests on purpose.')
  })
} else {
  after(dropTestKeyspaces)
  runStorageTck('cassandra', () => CassandraStorageProvider.open(CONFIG))
  describeCassandraSpecifics()
}

function describeCassandraSpecifics(): void {
  describe('storage cassandra: backend specifics', () => {
    it('openStorageProvider opens cassandra; it is shared across threads', async () => {
      const provider = await openStorageProvider(CONFIG)
      try {
        assert.equal(provider.kind, 'cassandra')
        assert.equal(provider.sharedAcrossThreads, true)
      } finally {
        await provider.close()
      }
    })

    it('creates the documented keyspace and table', async () => {
      const provider = await CassandraStorageProvider.open(CONFIG)
      const client = newClient()
      try {
        await provider.appStorage('schema/app')
        const keyspace = keyspaceNameOf(KEYSPACE_PREFIX, 'schema/app')
        const columns = await client.execute(
          'SELECT column_name, kind, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?', [keyspace, 'values'], { prepare: true })
        const shape = columns.rows.map((r) => `${r['column_name']}:${r['kind']}:${r['type']}`).sort()
        assert.deepEqual(shape, ['c:clustering:blob', 'p:partition_key:blob', 'value:regular:blob'])
        const ks = await client.execute('SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?', [keyspace], { prepare: true })
        assert.equal(ks.first()?.['replication']?.['replication_factor'], '1')
      } finally {
        await client.shutdown()
        await provider.close()
      }
    })

    it('keyspace names are deterministic, valid and distinct for qnames with the same slug', () => {
      const a = keyspaceNameOf('vvm_', 'untill/airs-bp')
      assert.equal(a, keyspaceNameOf('vvm_', 'untill/airs-bp'))
      assert.match(a, /^vvm_untill_airs_bp_[0-9a-f]{10}$/)
      assert.notEqual(keyspaceNameOf('vvm_', 'untill/airs_bp'), a)
      assert.notEqual(keyspaceNameOf('vvm_', 'Untill/airs-bp'), a)
      const long = keyspaceNameOf('vvm_', `${'x'.repeat(200)}/ÿ`)
      assert.ok(long.length <= KEYSPACE_NAME_CHARS_MAX, long)
      assert.match(keyspaceNameOf('vvm_', '///'), /^vvm_[0-9a-f]{10}$/)
    })

    it('rejects bad config, naming the field', async () => {
      await assert.rejects(CassandraStorageProvider.open({ ...CONFIG, cassandraKeyspacePrefix: 'Bad-Prefix' }), /cassandraKeyspacePrefix/)
      await assert.rejects(CassandraStorageProvider.open({ ...CONFIG, cassandraReplication: "{'class':'SimpleStrategy'}; DROP KEYSPACE x" }), /cassandraReplication/)
      await assert.rejects(CassandraStorageProvider.open({ ...CONFIG, cassandraHosts: [] }), /cassandraHosts/)
      await assert.rejects(CassandraStorageProvider.open({ ...CONFIG, cassandraLocalDc: '' }), /cassandraLocalDc/)
    })

    it('an unreachable server is a StorageError naming the host', async () => {
      await assert.rejects(CassandraStorageProvider.open({ ...CONFIG, cassandraHosts: ['127.0.0.1:1'] }), (err: unknown) => {
        assert.ok(err instanceof StorageError)
        assert.match(err.message, /cannot connect to 127\.0\.0\.1:1/)
        return true
      })
    })

    it('after close, operations fail with StorageError', async () => {
      const provider = await CassandraStorageProvider.open(CONFIG)
      const s = await provider.appStorage('tck/app-a')
      await provider.close()
      await assert.rejects(s.get(b('pk'), b('c')), StorageError)
      await assert.rejects(provider.appStorage('tck/app-a'), StorageError)
      await provider.close() // twice is fine
    })

    it('putBatch: the last write of a key wins, even when an earlier value sorts higher', async () => {
      // A batch shares one timestamp, and Cassandra settles ties by the larger value.
      const provider = await CassandraStorageProvider.open(CONFIG)
      try {
        const s = await provider.appStorage('tck/app-a')
        const pk = b(`dup/${randomBytes(6).toString('hex')}`)
        const other = b(`dup-other/${randomBytes(6).toString('hex')}`)
        await s.putBatch([
          { pk, cc: b('c'), value: b('zzz') },
          { pk: other, cc: b('c'), value: b('x') },
          { pk, cc: b('c'), value: b('aaa') },
        ])
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('aaa')))
        assert.equal(hex(await s.get(other, b('c'))), hex(b('x')))
      } finally {
        await provider.close()
      }
    })

    it('getBatch over several IN chunks keeps order and duplicates', async () => {
      const provider = await CassandraStorageProvider.open(CONFIG)
      try {
        const s = await provider.appStorage('tck/app-a')
        const pk = b(`getBatch-many/${randomBytes(6).toString('hex')}`)
        await s.putBatch(Array.from({ length: 300 }, (_, i) => ({ pk, cc: u64be(i * 2), value: u64be(i) })))
        const asked = Array.from({ length: 450 }, (_, i) => u64be((449 - i) % 400))
        const got = await s.getBatch(pk, asked)
        assert.deepEqual(got.map(hex), asked.map((cc) => {
          const n = Number(Buffer.from(cc).readBigUInt64BE())
          return n % 2 === 0 && n < 600 ? hex(u64be(n / 2)) : undefined
        }))
      } finally {
        await provider.close()
      }
    })

    it('a value expiring before its row was first written leaves no row behind: insertIfNotExists succeeds again', async () => {
      // Pins the reason for UPDATE-only writes: an INSERT's row marker would outlive the
      // value's shorter TTL and make the key look present (with a null value) forever.
      const provider = await CassandraStorageProvider.open(CONFIG)
      try {
        const s = await provider.appStorage('tck/app-a')
        const pk = b(`marker/${randomBytes(6).toString('hex')}`)
        assert.equal(await s.insertIfNotExists(pk, b('c'), b('forever'), 0), true)
        assert.equal(await s.compareAndSwap(pk, b('c'), b('forever'), b('short'), 1), true)
        await s.putBatch([{ pk, cc: b('d'), value: b('batch'), ttlSeconds: 1 }])
        await sleep(TTL_WAIT_MS)
        assert.deepEqual((await collect(s.read(pk))).length, 0)
        assert.equal(await s.insertIfNotExists(pk, b('c'), b('again'), 0), true)
        assert.equal(await s.insertIfNotExists(pk, b('d'), b('again'), 0), true)
      } finally {
        await provider.close()
      }
    })

    it('put clears an earlier TTL', async () => {
      const provider = await CassandraStorageProvider.open(CONFIG)
      try {
        const s = await provider.appStorage('tck/app-a')
        const pk = b(`put-ttl/${randomBytes(6).toString('hex')}`)
        await s.putBatch([{ pk, cc: b('c'), value: b('v'), ttlSeconds: 60 }])
        assert.ok(((await s.ttlGet(pk, b('c')))?.expiresAtMs ?? 0) > 0)
        await s.put(pk, b('c'), b('w'))
        assert.deepEqual(await s.ttlGet(pk, b('c')).then((t) => t && { value: hex(t.value), expiresAtMs: t.expiresAtMs }), { value: hex(b('w')), expiresAtMs: 0 })
      } finally {
        await provider.close()
      }
    })

    it('compare-and-swap from two clients loses no increment', async () => {
      // Two providers = two driver clients, as two VVM threads would have.
      const INCREMENTS_PER_CLIENT = 25
      const providers = await Promise.all([CassandraStorageProvider.open(CONFIG), CassandraStorageProvider.open(CONFIG)])
      try {
        const pk = b(`counter/${randomBytes(6).toString('hex')}`)
        const cc = new Uint8Array(0)
        const num = (v: Uint8Array): number => Number(Buffer.from(v).readBigUInt64BE())
        await Promise.all(providers.map(async (provider) => {
          const s = await provider.appStorage('tck/app-a')
          for (let done = 0; done < INCREMENTS_PER_CLIENT;) {
            const current = await s.get(pk, cc)
            const ok = current === undefined
              ? await s.insertIfNotExists(pk, cc, u64be(1), 0)
              : await s.compareAndSwap(pk, cc, current, u64be(num(current) + 1), 0)
            if (ok) done++
          }
        }))
        const s = await providers[0].appStorage('tck/app-a')
        assert.equal(num((await s.get(pk, cc))!), 2 * INCREMENTS_PER_CLIENT)
      } finally {
        await Promise.all(providers.map((p) => p.close()))
      }
    })

    it('a batch above the server limit fails as StorageError, and nothing of it is applied', async () => {
      const provider = await CassandraStorageProvider.open(CONFIG)
      try {
        const s = await provider.appStorage('tck/app-a')
        const run = randomBytes(6).toString('hex')
        // Two partitions, 2 MiB in all: above scripts/cassandra/cassandra.yaml's 1 MiB
        // batch_size_fail_threshold for multi-partition batches.
        const items = Array.from({ length: 4 }, (_, i) => ({ pk: b(`big-batch/${run}/${i % 2}`), cc: u64be(i), value: randomBytes(512 * 1024) }))
        await assert.rejects(s.putBatch(items), (err: unknown) => {
          assert.ok(err instanceof StorageError, String(err))
          assert.match(err.message, /cassandra putBatch on /)
          return true
        })
        assert.deepEqual(await s.getBatch(b(`big-batch/${run}/0`), [u64be(0), u64be(2)]), [undefined, undefined])
      } finally {
        await provider.close()
      }
    })
  })
}

async function collect<T>(rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const row of rows) out.push(row)
  return out
}

function newClient(): Client {
  return new Client({ contactPoints: [...HOSTS], localDataCenter: 'datacenter1' })
}

/** Drops this run's keyspaces (names start with the run's unique prefix). */
async function dropTestKeyspaces(): Promise<void> {
  const client = newClient()
  try {
    const keyspaces = await client.execute('SELECT keyspace_name FROM system_schema.keyspaces')
    for (const row of keyspaces.rows) {
      const name = row['keyspace_name'] as string
      if (name.startsWith(KEYSPACE_PREFIX)) await client.execute(`DROP KEYSPACE IF EXISTS ${name}`)
    }
  } finally {
    await client.shutdown()
  }
}
