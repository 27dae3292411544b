// The commit log of a partition's database (src/shared/storage/commit-log.ts): the TCK through
// it, and recovery from what only a power loss or a failing disk causes, simulated by the
// provider's test faults (dropLevelWritesAfterLog, failLevelWritesAfterLog).

import assert from 'node:assert/strict'
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ClassicLevel } from 'classic-level'
import { StorageError } from '../src/shared/errors.js'
import { u64be } from '../src/shared/storage/keys.js'
import { LevelStorageProvider, levelPutsPacked } from '../src/shared/storage/level.js'
import { CHECKPOINT_KEY, COMMIT_LOG_BYTES_MIN, readCheckpoint } from '../src/shared/storage/commit-log.js'
import { runStorageTck } from '../src/shared/storage/tck.js'
import type { PartitionRouting } from '../src/shared/storage/types.js'
import { partitionRouting, recordCc, recordsPk } from '../src/shared/layout.js'

const tempDirs: string[] = []
async function newDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vvm-commit-log-'))
  tempDirs.push(dir)
  return dir
}
after(async () => {
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true })
})

/** Every row in partition 0's database, this thread its writer: the TCK's own keys through the log. */
const allInPartitionZero: PartitionRouting = { partitions: 1, partitionOf: () => 0, committedProbes: [] }

runStorageTck('level, routed to one partition database written through its commit log', async () => {
  // The smallest log: the TCK's writes wrap it many times (checkpoints), its largest batches exceed it.
  const provider = await LevelStorageProvider.open({ kind: 'level', dataDir: await newDataDir() }, { commitLogBytes: COMMIT_LOG_BYTES_MIN })
  return {
    kind: provider.kind, sharedAcrossThreads: provider.sharedAcrossThreads, atomicBatches: provider.atomicBatches,
    appStorage: (app: string) => provider.appStorage(app, { ...allInPartitionZero, writer: 0 }),
    close: () => provider.close(),
  }
})

describe('storage level: a partition\'s commit log', { skip: levelPutsPacked ? false : 'needs the binding of scripts/build-level.sh (batch_put_packed): run npm install' }, () => {
  const APP = 'logged/app'
  const put = (wsid: number, id: number, v: number) => ({ pk: recordsPk(wsid), cc: recordCc(id), value: u64be(v) })
  const read = async (s: Awaited<ReturnType<LevelStorageProvider['appStorage']>>, wsid: number, id: number): Promise<number | undefined> => {
    const b = await s.get(recordsPk(wsid), recordCc(id))
    return b === undefined ? undefined : Number(Buffer.from(b).readBigUInt64BE(0))
  }
  const hexOf = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString('hex'))
  const logPath = (dataDir: string, p: number) => join(dataDir, 'level-partitions', encodeURIComponent(APP), `${p}.commit-log`)
  /** A provider whose logged batches never reach LevelDB: what a power loss leaves of unsynced writes. */
  const lossy = (dataDir: string) => LevelStorageProvider.open({ kind: 'level', dataDir }, { dropLevelWritesAfterLog: true, commitLogBytes: COMMIT_LOG_BYTES_MIN })
  const normal = (dataDir: string) => LevelStorageProvider.open({ kind: 'level', dataDir }, { commitLogBytes: COMMIT_LOG_BYTES_MIN })

  it('replays the batches LevelDB lost at the next open, in order; readers and later opens see them', async () => {
    const dataDir = await newDataDir()
    const p1 = await lossy(dataDir)
    const s1 = await p1.appStorage(APP, partitionRouting(2, 0))
    await s1.putBatch([put(4, 1, 41), put(4, 2, 42)], { inline: true })
    await s1.putBatch([put(6, 1, 61), put(4, 1, 411)])
    assert.equal(await read(s1, 4, 1), undefined, 'the fault: LevelDB did not get the batches')
    await p1.close()
    const p2 = await normal(dataDir)
    const s2 = await p2.appStorage(APP, partitionRouting(2, 0))
    assert.equal(await read(s2, 4, 1), 411, 'the later batch wins: records replayed in order')
    assert.equal(await read(s2, 4, 2), 42)
    assert.equal(await read(s2, 6, 1), 61)
    await s2.putBatch([put(4, 3, 43)])
    await p2.close()
    // A thread that does not write the partition (no log of its own) reads what was replayed.
    const p3 = await LevelStorageProvider.open({ kind: 'level', dataDir })
    const s3 = await p3.appStorage(APP, partitionRouting(2))
    assert.deepEqual([await read(s3, 4, 1), await read(s3, 4, 2), await read(s3, 6, 1), await read(s3, 4, 3)], [411, 42, 61, 43])
    await p3.close()
  })

  it('after the log wrapped many times, replays only the records after the last checkpoint, never an older cycle\'s', async () => {
    const dataDir = await newDataDir()
    const p1 = await normal(dataDir)
    const s1 = await p1.appStorage(APP, partitionRouting(2, 0))
    // ~600 KiB through a 64 KiB log: each key rewritten in many cycles, the last value highest.
    const filler = new Uint8Array(1000)
    for (let i = 1; i <= 600; i++) await s1.putBatch([put(2, i % 10, i), { pk: recordsPk(8), cc: recordCc(i % 7), value: filler }], { inline: i % 2 === 0 })
    await p1.close()
    const p2 = await lossy(dataDir)
    const s2 = await p2.appStorage(APP, partitionRouting(2, 0))
    await s2.putBatch([put(2, 3, 1003)])
    await s2.putBatch([put(2, 4, 1004)])
    await p2.close()
    const p3 = await normal(dataDir)
    const s3 = await p3.appStorage(APP, partitionRouting(2, 0))
    const want = Array.from({ length: 10 }, (_, k) => (k === 3 ? 1003 : k === 4 ? 1004 : 590 + (k === 0 ? 10 : k)))
    assert.deepEqual(await Promise.all(want.map((_, k) => read(s3, 2, k))), want)
    await p3.close()
  })

  it('keeps each batch whole while unsynced writes of the same thread run during its checkpoints', async () => {
    const dataDir = await newDataDir()
    const p1 = await normal(dataDir)
    const s1 = await p1.appStorage(APP, partitionRouting(2, 0))
    // An actualizer's writes (unsynced, packed in the same scratch) while durable batches wrap the log.
    const filler = new Uint8Array(3000).fill(7)
    for (let i = 1; i <= 100; i++) {
      const durable = s1.putBatch([put(16, i % 5, i), { pk: recordsPk(16), cc: recordCc(100 + (i % 3)), value: filler }])
      const unsynced = s1.putBatch([put(18, i % 4, 10_000 + i), put(18, 9, i)], { durable: false, inline: true })
      await Promise.all([durable, unsynced])
    }
    assert.deepEqual(await Promise.all([0, 1, 2, 3, 4].map((k) => read(s1, 16, k))), [100, 96, 97, 98, 99])
    assert.deepEqual(await Promise.all([0, 1, 2, 3, 9].map((k) => read(s1, 18, k))), [10_100, 10_097, 10_098, 10_099, 100])
    await p1.close()
  })

  it('replays a log larger than the scan window, records across its edges and one larger than it', async () => {
    const dataDir = await newDataDir()
    const bytes = 4 * 1024 * 1024
    const p1 = await LevelStorageProvider.open({ kind: 'level', dataDir }, { dropLevelWritesAfterLog: true, commitLogBytes: bytes })
    const s1 = await p1.appStorage(APP, partitionRouting(2, 0))
    const chunk = (i: number, n: number) => new Uint8Array(n).fill(i & 0xff)
    for (let i = 1; i <= 300; i++) await s1.putBatch([put(20, i, i), { pk: recordsPk(22), cc: recordCc(i), value: chunk(i, 4999) }])
    await s1.putBatch([{ pk: recordsPk(24), cc: recordCc(1), value: chunk(7, 1_500_000) }])
    await s1.putBatch([put(20, 0, 99)])
    await p1.close()
    const p2 = await LevelStorageProvider.open({ kind: 'level', dataDir }, { commitLogBytes: bytes })
    const s2 = await p2.appStorage(APP, partitionRouting(2, 0))
    assert.equal(await read(s2, 20, 0), 99, 'the record after the large one')
    for (const i of [1, 150, 210, 300]) {
      assert.equal(await read(s2, 20, i), i)
      assert.equal(hexOf(await s2.get(recordsPk(22), recordCc(i))), hexOf(chunk(i, 4999)))
    }
    assert.equal((await s2.get(recordsPk(24), recordCc(1)))?.length, 1_500_000)
    await p2.close()
  })

  it('after LevelDB refused a batch already in the log, refuses every write until the next start, which applies it', async () => {
    const dataDir = await newDataDir()
    const p1 = await LevelStorageProvider.open({ kind: 'level', dataDir }, { failLevelWritesAfterLog: true, commitLogBytes: COMMIT_LOG_BYTES_MIN })
    const s1 = await p1.appStorage(APP, partitionRouting(2, 0))
    const refused = (e: unknown) => e instanceof StorageError && /applied at the next start/.test(e.message) && /injected failure/.test(e.message)
    await assert.rejects(s1.putBatch([put(26, 1, 261)]), refused)
    await assert.rejects(s1.putBatch([put(26, 2, 262)], { inline: true }), refused)
    await assert.rejects(s1.insertIfNotExists(recordsPk(26), recordCc(4), u64be(264), 0), refused)
    await assert.rejects(s1.put(recordsPk(26), recordCc(3), u64be(263)), refused)
    await p1.close()
    const p2 = await normal(dataDir)
    const s2 = await p2.appStorage(APP, partitionRouting(2, 0))
    assert.deepEqual([await read(s2, 26, 1), await read(s2, 26, 2), await read(s2, 26, 3), await read(s2, 26, 4)], [261, undefined, undefined, undefined])
    await p2.close()
  })

  it('stops the replay at a torn record: the batches before it are applied, it and any after are not', async () => {
    const dataDir = await newDataDir()
    const p1 = await lossy(dataDir)
    const s1 = await p1.appStorage(APP, partitionRouting(2, 0))
    for (let i = 1; i <= 3; i++) await s1.putBatch([put(10, i, 100 + i)])
    await p1.close()
    // The last record's last byte flipped: a write cut short by the power loss.
    const file = await readFile(logPath(dataDir, 0))
    let end = file.length
    while (end > 0 && file[end - 1] === 0) end--
    file[end - 1] ^= 0xff
    await writeFile(logPath(dataDir, 0), file)
    const p2 = await normal(dataDir)
    const s2 = await p2.appStorage(APP, partitionRouting(2, 0))
    assert.deepEqual([await read(s2, 10, 1), await read(s2, 10, 2), await read(s2, 10, 3)], [101, 102, undefined])
    await p2.close()
  })

  it('a durable write outside the log (compare-and-set) is not undone by a replay of an earlier record', async () => {
    const dataDir = await newDataDir()
    const p1 = await normal(dataDir)
    const s1 = await p1.appStorage(APP, partitionRouting(2, 0))
    await s1.putBatch([put(12, 1, 1)])
    assert.equal(await s1.compareAndSwap(recordsPk(12), recordCc(1), u64be(1), u64be(2), 0), true)
    await s1.put(recordsPk(12), recordCc(2), u64be(7))
    await p1.close()
    const p2 = await normal(dataDir)
    const s2 = await p2.appStorage(APP, partitionRouting(2, 0))
    assert.equal(await read(s2, 12, 1), 2)
    assert.equal(await read(s2, 12, 2), 7)
    await p2.close()
  })

  it('turned off after a stop that left records, still applies them; a clean stop checkpoints all it wrote', async () => {
    const dataDir = await newDataDir()
    const p1 = await lossy(dataDir)
    await (await p1.appStorage(APP, partitionRouting(2, 0))).putBatch([put(14, 1, 141)])
    await p1.close()
    const p2 = await LevelStorageProvider.open({ kind: 'level', dataDir }, { commitLogBytes: 0 })
    const s2 = await p2.appStorage(APP, partitionRouting(2, 0))
    assert.equal(await read(s2, 14, 1), 141)
    await p2.close()
    const p3 = await normal(dataDir)
    const s3 = await p3.appStorage(APP, partitionRouting(2, 0))
    for (let i = 0; i < 5; i++) await s3.putBatch([put(14, 2, i)])
    await p3.close()
    const db = new ClassicLevel<Uint8Array, Uint8Array>(join(dataDir, 'level-partitions', encodeURIComponent(APP), '0'), { keyEncoding: 'view', valueEncoding: 'view' })
    await db.open()
    const checkpoint = readCheckpoint(await db.get(CHECKPOINT_KEY))
    await db.close()
    assert.equal(checkpoint, 6, 'the replayed record and five batches')
  })

  it('is made once, full size, beside the partition\'s database, for the writer\'s partition only', async () => {
    const dataDir = await newDataDir()
    const p1 = await normal(dataDir)
    await (await p1.appStorage(APP, partitionRouting(2, 1))).putBatch([put(5, 1, 51)])
    await p1.close()
    assert.equal((await readFile(logPath(dataDir, 1))).length, COMMIT_LOG_BYTES_MIN)
    await assert.rejects(access(logPath(dataDir, 0)), 'no log for a partition this thread does not write')
  })
})
