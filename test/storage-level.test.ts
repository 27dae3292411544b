import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { access, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { ClassicLevel } from 'classic-level'
import { StorageError } from '../src/shared/errors.js'
import { createCasLockBuffer, openStorageProvider } from '../src/shared/storage/index.js'
import { u64be } from '../src/shared/storage/keys.js'
import { LevelStorageProvider, levelPutsPacked, levelWritesInline } from '../src/shared/storage/level.js'
import { runStorageTck } from '../src/shared/storage/tck.js'
import type { PartitionRouting } from '../src/shared/storage/types.js'
import { actualizerOffsetKey, loginKey, metaKey, partitionHeadKey, partitionRouting, plogKey, recordCc, recordsPk, viewPk, wlogKey, wsHeadKey } from '../src/shared/layout.js'

const LEVEL_URL = new URL('../src/shared/storage/level.js', import.meta.url).href
const CHILD_TIMEOUT_MS = 20_000

const tempDirs: string[] = []
async function newDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vvm-storage-level-'))
  tempDirs.push(dir)
  return dir
}
after(async () => {
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true })
})

runStorageTck('level', async () => LevelStorageProvider.open({ kind: 'level', dataDir: await newDataDir() }))

/** Every row in partition 0's database: the TCK's own keys, through the routed storage's delegation. */
const allInPartitionZero: PartitionRouting = { partitions: 1, partitionOf: () => 0, committedProbes: [] }
runStorageTck('level, routed to one partition database', async () => {
  const provider = await LevelStorageProvider.open({ kind: 'level', dataDir: await newDataDir() })
  return {
    kind: provider.kind, sharedAcrossThreads: provider.sharedAcrossThreads, atomicBatches: provider.atomicBatches,
    appStorage: (app: string) => provider.appStorage(app, allInPartitionZero),
    close: () => provider.close(),
  }
})

describe('storage level: a database per partition (routed app storage)', () => {
  const APP = 'routed/app'
  const record = (wsid: number, id: number) => ({ pk: recordsPk(wsid), cc: recordCc(id), value: u64be(wsid * 1000 + id) })
  const hex = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('hex'))

  it('the layout routes workspaces by wsid % partitions, logs and heads by their partition, the rest to the shared store', () => {
    const r = partitionRouting(3)
    assert.equal(r.partitionOf(recordsPk(7)), 1)
    assert.equal(r.partitionOf(wsHeadKey(2 ** 40 + 2).pk), (2 ** 40 + 2) % 3)
    assert.equal(r.partitionOf(wlogKey(5, 9000).pk), 2)
    assert.equal(r.partitionOf(plogKey(2, 123_456).pk), 2)
    assert.equal(r.partitionOf(partitionHeadKey(1).pk), 1)
    assert.equal(r.partitionOf(actualizerOffsetKey(0, 'a.P').pk), 0)
    assert.equal(r.partitionOf(viewPk(4, 'a.V', new Uint8Array([1, 2]))), 1)
    assert.equal(r.partitionOf(metaKey.pk), undefined)
    assert.equal(r.partitionOf(loginKey('alice').pk), undefined)
    assert.equal(r.partitionOf(partitionHeadKey(5).pk), undefined, 'a partition past the count is not routed')
    assert.equal(r.partitionOf(new Uint8Array([0x05, 1])), undefined, 'a cut-short key is not routed')
    assert.deepEqual(r.committedProbes.map((k) => hex(k.pk)), [0, 1, 2].map((p) => hex(partitionHeadKey(p).pk)))
  })

  it('keeps the rows of each partition in its own database, partition-independent rows in the shared one; all survive a reopen', async () => {
    const dataDir = await newDataDir()
    const p1 = await LevelStorageProvider.open({ kind: 'level', dataDir })
    const routed = await p1.appStorage(APP, partitionRouting(2))
    await routed.putBatch([record(4, 1), record(6, 2)]) // partition 0
    await routed.putBatch([record(5, 1)]) // partition 1
    await routed.put(metaKey.pk, metaKey.cc, u64be(2))
    const shared = await p1.appStorage(APP)
    assert.equal(await shared.get(recordsPk(4), recordCc(1)), undefined, 'a workspace row is not in the shared database')
    assert.equal(hex(await shared.get(metaKey.pk, metaKey.cc)), hex(u64be(2)))
    await p1.close()
    // Each partition's database alone holds its rows.
    const dir = join(dataDir, 'level-partitions', encodeURIComponent(APP))
    for (const [p, wsids] of [[0, [4, 6]], [1, [5]]] as const) {
      const db = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, String(p)), { keyEncoding: 'view', valueEncoding: 'view' })
      await db.open()
      const keys = await db.keys().all()
      await db.close()
      assert.equal(keys.length, wsids.length, `partition ${p}'s database`)
    }
    const p2 = await LevelStorageProvider.open({ kind: 'level', dataDir })
    const again = await p2.appStorage(APP, partitionRouting(2))
    assert.equal(hex(await again.get(recordsPk(5), recordCc(1))), hex(u64be(5001)))
    assert.equal(hex(await again.get(recordsPk(6), recordCc(2))), hex(u64be(6002)))
    assert.equal(hex(await again.get(metaKey.pk, metaKey.cc)), hex(u64be(2)))
    await p2.close()
  })

  it('refuses a batch whose rows belong to more than one partition, writing none of it', async () => {
    const p = await LevelStorageProvider.open({ kind: 'level', dataDir: await newDataDir() })
    const routed = await p.appStorage(APP, partitionRouting(2))
    await assert.rejects(routed.putBatch([record(4, 1), record(5, 1)]), (e: unknown) => e instanceof StorageError && /more than one partition/.test(e.message))
    await assert.rejects(routed.putBatch([record(4, 1), { pk: metaKey.pk, cc: metaKey.cc, value: u64be(1) }]), StorageError)
    assert.equal(await routed.get(recordsPk(4), recordCc(1)), undefined)
    assert.equal(await routed.get(metaKey.pk, metaKey.cc), undefined)
    await p.close()
  })

  it('an app whose rows are already in the shared database (written before databases per partition) keeps using it', async () => {
    const dataDir = await newDataDir()
    const p1 = await LevelStorageProvider.open({ kind: 'level', dataDir })
    const old = await p1.appStorage(APP)
    await old.putBatch([record(5, 1), { ...partitionHeadKey(1), value: u64be(9) }])
    await p1.close()
    const p2 = await LevelStorageProvider.open({ kind: 'level', dataDir })
    const routed = await p2.appStorage(APP, partitionRouting(2))
    assert.equal(hex(await routed.get(recordsPk(5), recordCc(1))), hex(u64be(5001)))
    await routed.putBatch([record(4, 1), record(5, 2)], {}) // one database: any batch is atomic
    assert.equal(hex(await (await p2.appStorage(APP)).get(recordsPk(4), recordCc(1))), hex(u64be(4001)))
    await p2.close()
    await assert.rejects(access(join(dataDir, 'level-partitions', encodeURIComponent(APP))), 'no databases per partition were made')
  })
})

/** Runs an ES module snippet in a child node process; resolves with its stdout and exit code. */
function runChild(code: string, args: readonly string[], onLine?: (line: string, kill: () => void) => void): Promise<{ stdout: string; stderr: string; exitCode: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let pending = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      pending += chunk
      let newline: number
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline)
        pending = pending.slice(newline + 1)
        onLine?.(line, () => child.kill('SIGKILL'))
      }
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    child.on('error', reject)
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer)
      resolve({ stdout, stderr, exitCode, signal })
    })
  })
}

describe('storage level: process and thread behaviour', () => {
  let dataDir: string
  before(async () => { dataDir = await newDataDir() })

  it('openStorageProvider opens level; data survives close and reopen', async () => {
    const pk = new Uint8Array([1, 2, 3])
    const p1 = await openStorageProvider({ kind: 'level', dataDir })
    assert.equal(p1.kind, 'level')
    assert.equal(p1.sharedAcrossThreads, true)
    await (await p1.appStorage('persist/app')).putBatch([{ pk, cc: u64be(1), value: u64be(11) }, { pk, cc: u64be(2), value: u64be(22), ttlSeconds: 600 }])
    await p1.close()
    const p2 = await openStorageProvider({ kind: 'level', dataDir })
    const s2 = await p2.appStorage('persist/app')
    assert.deepEqual((await s2.getBatch(pk, [u64be(1), u64be(2)])).map((v) => Buffer.from(v!).toString('hex')), [u64be(11), u64be(22)].map((v) => Buffer.from(v).toString('hex')))
    assert.ok(((await s2.ttlGet(pk, u64be(2)))?.expiresAtMs ?? 0) > Date.now() + 500_000)
    await p2.close()
  })

  it('rejects a missing dataDir, naming the field', async () => {
    await assert.rejects(openStorageProvider({ kind: 'level' }), /dataDir/)
  })

  it('sizes every database\'s memtable by levelWriteBufferBytes: a small one becomes tables as rows come, the default keeps 6 MiB in its log', async () => {
    const APP = 'membuf/app'
    const value = new Uint8Array(512).fill(7)
    /** Writes ~6 MiB into the shared database and ~6 MiB into partition 0's (more than LevelDB's own 4 MiB), then counts each one's tables before closing. */
    const tablesAfterWrites = async (levelWriteBufferBytes: number | undefined): Promise<{ shared: number; partition: number }> => {
      const dir = await newDataDir()
      const provider = await LevelStorageProvider.open({ kind: 'level', dataDir: dir, levelWriteBufferBytes })
      try {
        const routed = await provider.appStorage(APP, partitionRouting(1, 0))
        const shared = await provider.appStorage(APP)
        for (let b = 0; b < 768; b++) {
          const rows = Array.from({ length: 16 }, (_, i) => ({ pk: recordsPk(b), cc: recordCc(i), value }))
          await routed.putBatch(rows)
          await shared.putBatch(rows.map((r) => ({ ...r, pk: new Uint8Array([0x70, b >> 8, b & 0xff]) })))
        }
        const tables = async (d: string) => (await readdir(d)).filter((f) => f.endsWith('.ldb')).length
        return { shared: await tables(join(dir, 'level')), partition: await tables(join(dir, 'level-partitions', encodeURIComponent(APP), '0')) }
      } finally {
        await provider.close()
      }
    }
    const small = await tablesAfterWrites(64 * 1024)
    assert.ok(small.shared > 0 && small.partition > 0, `64 KiB memtables: both databases flushed tables (${JSON.stringify(small)})`)
    assert.deepEqual(await tablesAfterWrites(undefined), { shared: 0, partition: 0 }, 'the 16 MiB default holds 6 MiB in the memtable')
    await assert.rejects(LevelStorageProvider.open({ kind: 'level', dataDir: await newDataDir(), levelWriteBufferBytes: 1000 }), /levelWriteBufferBytes 1000 must be 65536\.\.1073741824/)
  })

  it('a second process gets a clear "in use by another process" error', async () => {
    const provider = await LevelStorageProvider.open({ kind: 'level', dataDir })
    try {
      const code = `
        const { LevelStorageProvider } = await import(process.argv[1])
        try {
          const p = await LevelStorageProvider.open({ kind: 'level', dataDir: process.argv[2] })
          await p.close()
          console.log(JSON.stringify({ opened: true }))
        } catch (err) {
          console.log(JSON.stringify({ opened: false, name: err.name, code: err.code, message: err.message }))
        }`
      const result = await runChild(code, [LEVEL_URL, dataDir])
      assert.equal(result.exitCode, 0, result.stderr)
      const answer = JSON.parse(result.stdout.trim()) as { opened: boolean; name?: string; message?: string }
      assert.equal(answer.opened, false)
      assert.equal(answer.name, 'VvmError')
      assert.match(answer.message ?? '', /in use by another process/)
    } finally {
      await provider.close()
    }
  })

  it('an open error in this process is a StorageError with the cause', async () => {
    // A regular file where the database directory should be: LevelDB cannot create it.
    const dir = await newDataDir()
    const { writeFile } = await import('node:fs/promises')
    await writeFile(join(dir, 'level'), 'not a directory')
    await assert.rejects(LevelStorageProvider.open({ kind: 'level', dataDir: dir }), (err: unknown) => {
      assert.ok(err instanceof StorageError)
      assert.match(err.message, /cannot open/)
      return true
    })
  })

  for (const inline of [false, true]) it(`acknowledged writes survive kill -9${inline ? ' (written inline)' : ''}`, async () => {
    const dir = await newDataDir()
    const code = `
      const { LevelStorageProvider } = await import(process.argv[1])
      const p = await LevelStorageProvider.open({ kind: 'level', dataDir: process.argv[2] })
      const s = await p.appStorage('durable/app')
      const pk = new Uint8Array([7])
      for (let i = 0; ; i++) {
        const cc = new Uint8Array(8); new DataView(cc.buffer).setUint32(4, i)
        await s.putBatch([{ pk, cc, value: cc }, { pk: new Uint8Array([8]), cc, value: cc }], { inline: ${inline} })
        process.stdout.write(i + '\\n')
      }`
    let acked = -1
    const result = await runChild(code, [LEVEL_URL, dir], (line, kill) => {
      acked = Number(line)
      if (acked >= 30) kill()
    })
    assert.equal(result.signal, 'SIGKILL', result.stderr)
    assert.ok(acked >= 30)
    const provider = await LevelStorageProvider.open({ kind: 'level', dataDir: dir })
    const s = await provider.appStorage('durable/app')
    for (let i = 0; i <= acked; i++) {
      assert.notEqual(await s.get(new Uint8Array([7]), u64be(i)), undefined, `row ${i}`)
      assert.notEqual(await s.get(new Uint8Array([8]), u64be(i)), undefined, `row ${i} of the second pk`)
    }
    await provider.close()
  })

  it('inline putBatch writes on the calling thread (the binding scripts/build-level.sh installs)', async () => {
    assert.equal(levelWritesInline, true, 'classic-level has no batch_write_now: run scripts/build-level.sh (npm install runs it)')
    const provider = await LevelStorageProvider.open({ kind: 'level', dataDir: await newDataDir() })
    try {
      const s = await provider.appStorage('inline/app')
      const pk = new Uint8Array([1])
      for (const durable of [true, false]) {
        const cc = new Uint8Array([durable ? 1 : 2])
        // Not awaited: written before putBatch returns its promise, so a read started right
        // after sees it. Through the thread pool the read would run long before the write.
        const writing = s.putBatch([{ pk, cc, value: new Uint8Array([9]) }], { durable, inline: true })
        const reading = s.get(pk, cc)
        await writing
        const read = await reading
        assert.deepEqual(read === undefined ? undefined : [...read], [9], `durable ${durable}`)
      }
      // Same checks as any batch, and a refused batch writes nothing.
      await assert.rejects(s.putBatch([{ pk, cc: new Uint8Array([3]), value: new Uint8Array([1]) }, { pk: new Uint8Array(0), cc: new Uint8Array([4]), value: new Uint8Array([1]) }], { inline: true }))
      assert.equal(await s.get(pk, new Uint8Array([3])), undefined)
    } finally {
      await provider.close()
    }
  })

  it('putBatch hands a batch over packed, in one native call (batch_put_packed)', async () => {
    assert.equal(levelPutsPacked, true, 'classic-level has no batch_put_packed: run scripts/build-level.sh (npm install runs it)')
    const provider = await LevelStorageProvider.open({ kind: 'level', dataDir: await newDataDir() })
    try {
      const s = await provider.appStorage('packed/app')
      // Keys that differ only where pk ends and cc begins, an empty value, an expiring one, a
      // large one, through the thread pool and inline.
      const big = new Uint8Array(200_000).map((_, i) => i % 251)
      for (const inline of [false, true]) {
        const tag = inline ? 2 : 1
        await s.putBatch([
          { pk: new Uint8Array([tag, 1]), cc: new Uint8Array([2]), value: new Uint8Array([1]) },
          { pk: new Uint8Array([tag]), cc: new Uint8Array([1, 2]), value: new Uint8Array(0) },
          { pk: new Uint8Array([tag]), cc: new Uint8Array([3]), value: new Uint8Array([3, 3]), ttlSeconds: 60 },
          { pk: new Uint8Array([tag]), cc: new Uint8Array([4]), value: big },
        ], { inline })
        assert.deepEqual([...(await s.get(new Uint8Array([tag, 1]), new Uint8Array([2])))!], [1])
        assert.deepEqual([...(await s.get(new Uint8Array([tag]), new Uint8Array([1, 2])))!], [])
        assert.deepEqual([...(await s.get(new Uint8Array([tag]), new Uint8Array([3])))!], [3, 3])
        assert.ok((await s.ttlGet(new Uint8Array([tag]), new Uint8Array([3])))!.expiresAtMs > Date.now())
        assert.ok(Buffer.from((await s.get(new Uint8Array([tag]), new Uint8Array([4])))!).equals(big), 'the large value, whole')
        assert.equal(await s.get(new Uint8Array([tag]), new Uint8Array([1])), undefined)
      }
    } finally {
      await provider.close()
    }
  })

  it('batch_put_packed refuses a malformed buffer and adds nothing of it', async () => {
    const binding = createRequire(import.meta.url)('classic-level/binding.js') as {
      batch_put_packed: (context: unknown, packed: Uint8Array, length: number) => void
      batch_write: (context: unknown, options: { sync: boolean }) => Promise<void>
    }
    const db = new ClassicLevel<Uint8Array, Uint8Array>(join(await newDataDir(), 'raw'), { keyEncoding: 'view', valueEncoding: 'view' })
    await db.open()
    try {
      const record = (key: number[], value: number[]) => [key.length, 0, 0, 0, ...key, value.length, 0, 0, 0, ...value]
      const whole = record([1], [10])
      const contextOf = (batch: object) => (batch as Record<symbol, unknown>)[Object.getOwnPropertySymbols(batch).find((k) => k.description === 'context')!]
      for (const bad of [
        [...whole, ...record([2], [20]).slice(0, 7)], // the second record's value is cut short
        [...whole, 9, 0, 0], // a length cut short
        [...whole, 255, 255, 255, 255, 1], // a key longer than what is left
      ]) {
        const batch = db.batch()
        const context = contextOf(batch)
        assert.throws(() => binding.batch_put_packed(context, Uint8Array.from(bad), bad.length), RangeError)
        await binding.batch_write(context, { sync: true })
        await batch.close()
        assert.equal(await db.get(Uint8Array.of(1)), undefined, 'the valid record before the fault was not added either')
      }
      const batch = db.batch()
      assert.throws(() => binding.batch_put_packed(contextOf(batch), Uint8Array.from(whole), whole.length + 1), RangeError, 'a length past the buffer')
      assert.throws(() => binding.batch_put_packed(contextOf(batch), new Uint16Array(4) as unknown as Uint8Array, 2), TypeError)
      binding.batch_put_packed(contextOf(batch), Uint8Array.from([...whole, 0xee]), whole.length) // bytes past the length are ignored
      await binding.batch_write(contextOf(batch), { sync: true })
      await batch.close()
      assert.deepEqual([...(await db.get(Uint8Array.of(1)))!], [10])
    } finally {
      await db.close()
    }
  })

  it('two worker threads share one database; CAS with a shared lock loses no increment', async () => {
    const INCREMENTS_PER_WORKER = 100
    const ROWS_PER_WORKER = 200
    const casLock = createCasLockBuffer()
    // The main thread keeps its own handle open too, as the main thread of a VVM would.
    const mainProvider = await LevelStorageProvider.open({ kind: 'level', dataDir }, { casLock })
    const workerCode = `
      const { parentPort, workerData } = require('node:worker_threads')
      const u64 = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setUint32(4, n); return b }
      const num = (b) => new DataView(b.buffer, b.byteOffset, 8).getUint32(4)
      ;(async () => {
        const { LevelStorageProvider } = await import(workerData.levelUrl)
        const p = await LevelStorageProvider.open({ kind: 'level', dataDir: workerData.dataDir }, { casLock: workerData.casLock })
        const s = await p.appStorage('mt/app')
        const own = new TextEncoder().encode('rows-' + workerData.id)
        const items = []
        for (let i = 0; i < workerData.rows; i++) items.push({ pk: own, cc: u64(i), value: u64(i * 3) })
        await s.putBatch(items)
        const counterPk = new TextEncoder().encode('counter')
        const cc = new Uint8Array(0)
        for (let done = 0; done < workerData.increments;) {
          const current = await s.get(counterPk, cc)
          const ok = current === undefined
            ? await s.insertIfNotExists(counterPk, cc, u64(1), 0)
            : await s.compareAndSwap(counterPk, cc, current, u64(num(current) + 1), 0)
          if (ok) done++
        }
        parentPort.postMessage({ type: 'written' })
        parentPort.once('message', async () => {
          const other = new TextEncoder().encode('rows-' + (1 - workerData.id))
          let count = 0
          for await (const row of s.read(other)) if (num(row.value) === num(row.cc) * 3) count++
          await p.close()
          parentPort.postMessage({ type: 'read', count })
        })
      })().catch((err) => parentPort.postMessage({ type: 'error', message: String(err && err.stack || err) }))`
    const workers = [0, 1].map((id) => new Worker(workerCode, {
      eval: true,
      workerData: { id, levelUrl: LEVEL_URL, dataDir, casLock, rows: ROWS_PER_WORKER, increments: INCREMENTS_PER_WORKER },
    }))
    const nextMessage = (worker: Worker): Promise<{ type: string; count?: number; message?: string }> =>
      new Promise((resolve, reject) => {
        worker.once('message', (msg: { type: string; count?: number; message?: string }) => {
          if (msg.type === 'error') reject(new Error(msg.message))
          else resolve(msg)
        })
        worker.once('error', reject)
        worker.once('exit', (exitCode) => reject(new Error(`worker exited (${exitCode}) before answering`)))
      })
    try {
      const written = await Promise.all(workers.map(nextMessage))
      assert.deepEqual(written.map((m) => m.type), ['written', 'written'])
      const replies = workers.map(nextMessage)
      for (const worker of workers) worker.postMessage('read')
      const counts = (await Promise.all(replies)).map((m) => m.count)
      assert.deepEqual(counts, [ROWS_PER_WORKER, ROWS_PER_WORKER])
      const s = await mainProvider.appStorage('mt/app')
      const counter = await s.get(new TextEncoder().encode('counter'), new Uint8Array(0))
      assert.equal(new DataView(counter!.buffer, counter!.byteOffset, 8).getUint32(4), 2 * INCREMENTS_PER_WORKER)
    } finally {
      await Promise.all(workers.map((w) => w.terminate()))
      await mainProvider.close()
    }
  })
})
