// LevelDB backend (classic-level): one database at `<dataDir>/level` for all apps, and, for an
// app opened with a partition routing, one database per partition at
// `<dataDir>/level-partitions/<app>/<partition>` holding that partition's rows (the app's
// partition-independent rows stay in the first). A database has one log, and a synced write
// waits for the syncs queued before it: partitions with databases of their own sync in
// parallel. Opened with `multithreading: true`, so every worker thread of the process opens the
// same directories and shares one native handle each; another process is refused by LevelDB's
// LOCK file.
//
// Key:   u16 len(app) · app (utf8) · u16 len(pk) · pk · cc
//        The length prefixes keep (app, pk) groups contiguous and unambiguous (pk "a" + cc "b"
//        never meets pk "ab"), and inside a group keys sort by cc bytes.
// Value: 0x00 · value                     never expires
//        0x01 · u64 expiresAtMs · value   expires; skipped by reads once past (level-values.ts)
//
// Every durable write is synced before it is acknowledged: it survives kill -9 and power loss.
// In the database of a partition whose command processor runs on this thread (routing.writer),
// durable batches are synced in the partition's commit log (commit-log.ts) and then written to
// LevelDB without LevelDB's own sync; elsewhere LevelDB syncs its log (`sync: true`). Expired
// rows stay on disk until overwritten or deleted; deleting them on read
// would race with a concurrent write of the same key.
//
// Compare-and-set (insertIfNotExists, compareAndSwap, compareAndDelete) is read-then-write
// under `StripedCasLock`: atomic among all threads that share the lock's buffer (pass the same
// `casLock` to every thread's provider; see `createCasLockBuffer`). Threads given different
// buffers can race on the same key. Plain put/putBatch never take the lock, so mixing them
// with CAS on one key can lose the CAS write — the same rule Cassandra has for LWTs.

import { access, mkdir } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { StorageError, VvmError } from '../errors.js'
import { StripedCasLock } from './cas-lock.js'
import { PartitionedAppStorage } from './partitioned.js'
import { CHECKPOINT_KEY, COMMIT_LOG_BYTES_DEFAULT, COMMIT_LOG_BYTES_MIN, CommitLog, checkpointValue, readCheckpoint } from './commit-log.js'
import { TAG_EXPIRING, TAG_PLAIN, decodeStored, encodeStored, storedLength, storedView } from './level-values.js'
import { BATCH_ITEMS_MAX, checkBatch, checkCc, checkKey, checkPk, checkTtlSeconds, checkValue, expiresAtMsFor, isLive, normalizeRange } from './contract.js'
import { bytesEqual, concatBytes, copyBytes, keyWriter, prefixEnd, u16be, u64be, writeU32le } from './keys.js'
import type { BatchItem, Bytes, PutBatchOptions, IAppStorage, IStorageProvider, PartitionRouting, ReadRange, StorageConfig, StorageKind, StorageRow, TtlValue } from './types.js'

type Db = ClassicLevel<Uint8Array, Uint8Array>
type TtlRow = StorageRow & { readonly expiresAtMs: number }

/** Rows fetched per `nextv`: enough to amortize the native hop, small enough to bound memory. */
export const READ_BATCH_ROWS_MAX = 256
const APP_QNAME_BYTES_MAX = 0xffff
const SYNC = { sync: true } as const
// LevelDB appends to one log in order: a later synced write (a commit log's checkpoint too) flushes this one.
const NO_SYNC = { sync: false } as const

/**
 * classic-level's batch write on the calling thread, where scripts/build-level.sh installed
 * the binding that has it (`batch_write_now`); undefined with the stock binding, whose writes
 * all go through libuv's thread pool. A write there costs two thread hand-offs (the pool
 * thread's wake-up, the completion's), tens of µs of CPU each on a small VM
 * (docs/benchmarks.md, fifth session): a caller with nothing else to do saves them.
 */
type WriteNow = (batchContext: unknown, options: { sync: boolean }) => void
/**
 * A whole batch's puts in one call (`batch_put_packed`, scripts/build-level.sh): records of
 * [u32 LE key length][key][u32 LE value length][value] in the first `byteLength` bytes. A put
 * per item through abstract-level costs its option handling, two views, a native call and two
 * native copies (~1.5k instructions an item, bench/instructions.ts); this costs the bytes.
 */
type PutPacked = (batchContext: unknown, packed: Uint8Array, byteLength: number) => void
type BatchWrite = (batchContext: unknown, options: { sync: boolean }) => Promise<void>
const binding = createRequire(import.meta.url)('classic-level/binding.js') as { batch_write_now?: WriteNow; batch_put_packed?: PutPacked; batch_write: BatchWrite }
const writeNow: WriteNow | undefined = typeof binding.batch_write_now === 'function' ? binding.batch_write_now : undefined
const putPacked: PutPacked | undefined = typeof binding.batch_put_packed === 'function' ? binding.batch_put_packed : undefined
/** The private symbol under which classic-level's ChainedBatch keeps its native batch. */
let batchContextKey: symbol | undefined

function batchContextOf(batch: object): unknown {
  batchContextKey ??= Object.getOwnPropertySymbols(batch).find((k) => k.description === 'context')
  return batchContextKey === undefined ? undefined : (batch as Record<symbol, unknown>)[batchContextKey]
}

/** Whether this process's classic-level can write on the calling thread (`PutBatchOptions.inline`). */
export const levelWritesInline = writeNow !== undefined
/** Whether this process's classic-level takes a batch's puts packed in one call. */
export const levelPutsPacked = putPacked !== undefined

export interface LevelOpenOptions {
  /** Shared lock memory from `createCasLockBuffer()`, the same for every thread of the process. */
  readonly casLock?: SharedArrayBuffer
  /** Size of a writer partition's commit log file (commit-log.ts); 0: no commit log (LevelDB syncs). */
  readonly commitLogBytes?: number
  /**
   * Tests only: a logged batch is not written to LevelDB after its commit-log record, as if a
   * power loss had taken LevelDB's unsynced writes (which nothing else can cause here).
   */
  readonly dropLevelWritesAfterLog?: boolean
  /** Tests only: LevelDB refuses a logged batch after its commit-log record (a failing disk). */
  readonly failLevelWritesAfterLog?: boolean
}

export class LevelStorageProvider implements IStorageProvider {
  readonly kind: StorageKind = 'level'
  readonly sharedAcrossThreads = true
  readonly atomicBatches = true
  private readonly apps = new Map<string, LevelAppStorage>()
  private readonly routed = new Map<string, Promise<IAppStorage>>()
  /** The per-partition databases this thread opened (closed with the provider). */
  private readonly partitionDbs: Db[] = []

  /** The commit logs this thread owns, with their databases (checkpointed and closed with the provider). */
  private readonly logs: { log: CommitLog; db: Db }[] = []

  private constructor(private readonly dataDir: string, private readonly db: Db, private readonly lock: StripedCasLock, private readonly options: LevelOpenOptions) {}

  static async open(config: StorageConfig, options: LevelOpenOptions = {}): Promise<LevelStorageProvider> {
    if (typeof config.dataDir !== 'string' || config.dataDir === '') {
      throw new VvmError('VALIDATION', `storage: dataDir ${JSON.stringify(config.dataDir)} must be a non-empty path for kind 'level'`)
    }
    try {
      await mkdir(config.dataDir, { recursive: true })
    } catch (err) {
      throw new StorageError(`level: cannot create data directory ${config.dataDir}: ${messageOf(err)}`, err)
    }
    const db = await openDb(join(config.dataDir, 'level'))
    const withConfig = options.commitLogBytes === undefined && config.levelCommitLogBytes !== undefined ? { ...options, commitLogBytes: config.levelCommitLogBytes } : options
    return new LevelStorageProvider(config.dataDir, db, new StripedCasLock(options.casLock), withConfig)
  }

  async appStorage(appQName: string, routing?: PartitionRouting): Promise<IAppStorage> {
    if (this.db.status !== 'open') throw new StorageError(`level: provider is ${this.db.status}`)
    let storage = this.apps.get(appQName)
    if (storage === undefined) {
      const name = Buffer.from(appQName, 'utf8')
      if (name.length === 0 || name.length > APP_QNAME_BYTES_MAX) {
        throw new VvmError('VALIDATION', `storage: app qname ${JSON.stringify(appQName)} must have 1..${APP_QNAME_BYTES_MAX} bytes`)
      }
      storage = new LevelAppStorage(this.db, this.lock, concatBytes(u16be(name.length), name))
      this.apps.set(appQName, storage)
    }
    if (routing === undefined) return storage
    let opened = this.routed.get(appQName)
    if (opened === undefined) {
      opened = this.openPartitioned(appQName, storage, routing)
      this.routed.set(appQName, opened)
    }
    return opened
  }

  /**
   * The app's partitions' databases, made on the app's first start; an app whose rows are
   * already in the shared database (written before databases per partition existed) keeps them
   * there. Threads decide alike: the directory exists, or the shared database holds committed
   * rows of the app, or neither (a new app: the directory is made).
   */
  private async openPartitioned(appQName: string, shared: LevelAppStorage, routing: PartitionRouting): Promise<IAppStorage> {
    if (!Number.isSafeInteger(routing.partitions) || routing.partitions < 1 || routing.partitions > PARTITIONS_MAX) {
      throw new VvmError('VALIDATION', `storage: ${routing.partitions} partitions for ${appQName}: 1..${PARTITIONS_MAX}`)
    }
    const dir = join(this.dataDir, 'level-partitions', encodeURIComponent(appQName))
    if (!(await exists(dir))) {
      for (const probe of routing.committedProbes) {
        if ((await shared.get(probe.pk, probe.cc)) !== undefined) return shared
      }
    }
    const parts: LevelAppStorage[] = []
    for (let p = 0; p < routing.partitions; p++) {
      const location = join(dir, String(p))
      try {
        await mkdir(location, { recursive: true })
      } catch (err) {
        throw new StorageError(`level: cannot create ${location}: ${messageOf(err)}`, err)
      }
      const db = await openDb(location)
      this.partitionDbs.push(db)
      const logBytes = this.options.commitLogBytes ?? COMMIT_LOG_BYTES_DEFAULT
      const logPath = `${location}.commit-log`
      let log: CommitLog | undefined
      if (p === routing.writer && putPacked !== undefined) {
        if (logBytes > 0) log = await this.openLog(db, logPath, logBytes)
        // Turned off: what a log left from an earlier start holds is applied all the same.
        else if (await exists(logPath)) (await this.openLog(db, logPath, COMMIT_LOG_BYTES_MIN)).close()
        if (log !== undefined) this.logs.push({ log, db })
      }
      parts.push(new LevelAppStorage(db, this.lock, shared.appPrefix, log, { drop: this.options.dropLevelWritesAfterLog === true, fail: this.options.failLevelWritesAfterLog === true }))
    }
    return new PartitionedAppStorage(shared, parts, routing, 'level')
  }

  /**
   * The partition's commit log, its records after the database's checkpoint applied to the
   * database (they may have been lost with LevelDB's unsynced writes) and checkpointed.
   */
  private async openLog(db: Db, path: string, bytes: number): Promise<CommitLog> {
    let checkpoint: number
    try {
      checkpoint = readCheckpoint(db.getSync(CHECKPOINT_KEY))
    } catch (err) {
      throw levelError('commit log checkpoint read', err)
    }
    const { log, pending } = CommitLog.open(path, checkpoint, bytes)
    try {
      for (const r of pending) await applyPacked(db, r.payload, r.payload.byteLength, NO_SYNC)
      if (pending.length > 0) await db.put(CHECKPOINT_KEY, checkpointValue(log.lastSeq), SYNC)
    } catch (err) {
      log.close()
      throw levelError(`commit log replay of ${path}`, err)
    }
    log.restart()
    return log
  }

  /** Closes this thread's handles; a native database closes when the last thread closes it. */
  async close(): Promise<void> {
    this.apps.clear()
    this.routed.clear()
    // A clean stop leaves nothing to replay: LevelDB's unsynced writes made durable, checkpointed.
    const checkpointFailures: unknown[] = []
    for (const { log, db } of this.logs.splice(0)) {
      try {
        // (The test fault stands for a power loss, which checkpoints nothing.)
        // Nor does a log whose last record LevelDB refused: the next start must apply it.
        if (db.status === 'open' && log.failed === undefined && this.options.dropLevelWritesAfterLog !== true) await db.put(CHECKPOINT_KEY, checkpointValue(log.lastSeq), SYNC)
      } catch (err) {
        checkpointFailures.push(err)
      }
      log.close()
    }
    const dbs = [...this.partitionDbs.splice(0), this.db]
    const failed: unknown[] = []
    for (const db of dbs) {
      try {
        await db.close()
      } catch (err) {
        failed.push(err)
      }
    }
    failed.unshift(...checkpointFailures)
    if (failed.length > 0) throw new StorageError(`level: close failed: ${messageOf(failed[0])}`, failed[0])
  }
}

/** Partitions of one app at most with databases of their own (the layout's u16 partition). */
const PARTITIONS_MAX = 0xffff

async function openDb(location: string): Promise<Db> {
  const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view', multithreading: true })
  try {
    await db.open()
  } catch (err) {
    if (isLockedError(err)) {
      throw new StorageError(`level: data directory ${location} is in use by another process (its LevelDB LOCK is held); stop that process or choose another dataDir`, err)
    }
    throw new StorageError(`level: cannot open ${location}: ${messageOf(err)}`, err)
  }
  return db
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

/** Writes packed puts (`batch_put_packed`'s format) as one LevelDB batch, on this thread where it can. */
async function applyPacked(db: Db, packed: Uint8Array, length: number, sync: { sync: boolean }): Promise<void> {
  const batch = db.batch()
  try {
    const context = batchContextOf(batch)
    putPacked!(context, packed, length)
    if (writeNow !== undefined) writeNow(context, sync)
    else await binding.batch_write(context, sync)
  } finally {
    await batch.close()
  }
}

class LevelAppStorage implements IAppStorage {
  /** One durable write at a time through the commit log: its records and LevelDB's writes in one order. */
  private logBusy = false
  private readonly logWaiters: (() => void)[] = []

  constructor(private readonly db: Db, private readonly lock: StripedCasLock, readonly appPrefix: Uint8Array,
    private readonly log?: CommitLog, private readonly faults: { readonly drop: boolean; readonly fail: boolean } = { drop: false, fail: false }) {}

  async put(pk: Bytes, cc: Bytes, value: Bytes): Promise<void> {
    checkKey(pk, cc)
    checkValue(value)
    await this.putRaw(this.rowKey(pk, cc), encodeStored(value, 0), 'put')
  }

  async putBatch(items: readonly BatchItem[], options?: PutBatchOptions): Promise<void> {
    checkBatch(items)
    if (items.length === 0) return
    const nowMs = Date.now()
    if (this.log !== undefined && options?.durable !== false) return this.putLogged(items, nowMs, options?.inline === true)
    const sync = options?.durable === false ? NO_SYNC : SYNC
    // The chained form: abstract-level's array form clones every operation with the options
    // spread into it, which measured ~5x slower for a 320-item group commit (1.7 ms vs 0.36 ms).
    const batch = this.db.batch()
    const context = putPacked !== undefined || writeNow !== undefined ? batchContextOf(batch) : undefined
    const packed = putPacked !== undefined && context !== undefined ? this.packBatch(items, nowMs) : undefined
    if (packed === undefined) this.putEach(batch, items, nowMs)
    const inline = options?.inline === true && writeNow !== undefined && context !== undefined
    try {
      if (packed === undefined && !inline) {
        await batch.write(sync)
        return
      }
      // Packed puts sit in the native batch while abstract-level's own count stays 0, so its
      // write() would skip them: the write goes to the binding, as abstract-level's _write does.
      try {
        if (packed !== undefined) putPacked!(context, packed.bytes, packed.length)
        if (inline) writeNow!(context, sync)
        else await binding.batch_write(context, sync)
      } finally {
        await batch.close()
      }
    } catch (err) {
      throw levelError('putBatch', err)
    }
  }

  /**
   * A durable batch through the commit log: its record synced there (on this thread when
   * `inline`), then the batch written to LevelDB unsynced. A batch too large for the log is
   * written with LevelDB's sync instead, carrying the checkpoint. If LevelDB's write fails after
   * the record was synced, the batch is reported failed and still applied at the next start.
   */
  private async putLogged(items: readonly BatchItem[], nowMs: number, inline: boolean): Promise<void> {
    const log = this.log!
    const turn = this.takeLog()
    if (turn !== undefined) await turn
    try {
      if (this.log!.failed !== undefined) throw this.log!.failed
      const packed = this.packBatch(items, nowMs)
      if (packed === undefined || !log.fits(packed.length)) {
        await this.syncedBatch((batch) => this.putEach(batch, items, nowMs), 'putBatch')
        return
      }
      // Staged (copied out of the shared scratch) before anything awaits: meanwhile another
      // write of this thread (an actualizer's) packs its own batch into the same scratch.
      const payload = log.stage(packed.bytes, packed.length)
      if (!log.fitsNow(packed.length)) await this.checkpoint()
      if (inline) log.writeStagedNow()
      else await log.writeStaged()
      if (this.faults.drop) return
      try {
        if (this.faults.fail) throw new Error('injected failure (failLevelWritesAfterLog)')
        await applyPacked(this.db, payload, payload.byteLength, NO_SYNC)
      } catch (err) {
        log.failed = new StorageError(`level: a batch synced in the commit log ${log.path} could not be written to LevelDB (${messageOf(err)}); it is applied at the next start, and until then this partition takes no writes`, err)
        throw log.failed
      }
    } finally {
      this.releaseLog()
    }
  }

  /**
   * The items put one by one into a chained batch. Keys and values are built in scratch buffers:
   * a batch's put copies them into LevelDB's write batch before it returns (classic-level's
   * batch_put), so no item needs its own.
   */
  private putEach(batch: ReturnType<Db['batch']>, items: readonly BatchItem[], nowMs: number): void {
    for (const item of items) {
      batch.put(this.rowKeyView(item.pk, item.cc), storedView(item.value, expiresAtMsFor(checkTtlSeconds(item.ttlSeconds), nowMs)))
    }
  }

  /** The log's turn: undefined when taken at once, else a promise of it (handed over by releaseLog). */
  private takeLog(): Promise<void> | undefined {
    if (!this.logBusy) {
      this.logBusy = true
      return undefined
    }
    return new Promise<void>((resolve) => this.logWaiters.push(resolve))
  }

  private releaseLog(): void {
    const next = this.logWaiters.shift()
    if (next !== undefined) next()
    else this.logBusy = false
  }

  /** Every earlier LevelDB write made durable, so the log may begin again. */
  private async checkpoint(): Promise<void> {
    try {
      await this.db.put(CHECKPOINT_KEY, checkpointValue(this.log!.lastSeq), SYNC)
    } catch (err) {
      throw levelError('commit log checkpoint', err)
    }
    this.log!.restart()
  }

  /**
   * A synced LevelDB write; in a logged database it carries the checkpoint (under the log's
   * turn), so that no replay of an earlier record can undo it.
   */
  private async syncedBatch(fill: (batch: ReturnType<Db['batch']>) => void, op: string): Promise<void> {
    const log = this.log
    const batch = this.db.batch()
    try {
      fill(batch)
      if (log !== undefined) batch.put(CHECKPOINT_KEY, checkpointValue(log.lastSeq))
      await batch.write(SYNC)
    } catch (err) {
      await batch.close()
      throw levelError(op, err)
    }
    log?.restart()
  }

  /** A synced write of this database outside putBatch: through the log's turn where there is one. */
  private async syncedOutsideLog(fill: (batch: ReturnType<Db['batch']>) => void, op: string): Promise<void> {
    if (this.log === undefined) return this.syncedBatch(fill, op)
    const turn = this.takeLog()
    if (turn !== undefined) await turn
    try {
      if (this.log!.failed !== undefined) throw this.log!.failed
      await this.syncedBatch(fill, op)
    } finally {
      this.releaseLog()
    }
  }

  /**
   * The batch's rows packed for `batch_put_packed` in the shared scratch (valid until the next
   * call: the native put copies before it returns); undefined when they exceed PACKED_BYTES_MAX,
   * which the put-per-item path takes instead.
   */
  private packBatch(items: readonly BatchItem[], nowMs: number): { bytes: Uint8Array; length: number } | undefined {
    const prefix = this.appPrefix
    let total = 0
    for (const item of items) {
      const expiresAtMs = expiresAtMsFor(checkTtlSeconds(item.ttlSeconds), nowMs)
      total += 8 + prefix.length + 2 + item.pk.length + item.cc.length + storedLength(item.value, expiresAtMs)
    }
    if (total > PACKED_BYTES_MAX) return undefined
    if (total > packedScratch.length) packedScratch = new Uint8Array(Math.max(total, Math.min(packedScratch.length * 2, PACKED_BYTES_MAX)))
    const out = packedScratch
    let at = 0
    for (const item of items) {
      const { pk, cc, value } = item
      const keyLength = prefix.length + 2 + pk.length + cc.length
      at = writeU32le(out, at, keyLength)
      out.set(prefix, at)
      at += prefix.length
      out[at++] = pk.length >>> 8
      out[at++] = pk.length & 0xff
      out.set(pk, at)
      at += pk.length
      out.set(cc, at)
      at += cc.length
      const expiresAtMs = expiresAtMsFor(checkTtlSeconds(item.ttlSeconds), nowMs)
      at = writeU32le(out, at, storedLength(value, expiresAtMs))
      if (expiresAtMs === 0) {
        out[at++] = TAG_PLAIN
      } else {
        out[at++] = TAG_EXPIRING
        out.set(u64be(expiresAtMs), at)
        at += 8
      }
      out.set(value, at)
      at += value.length
    }
    if (packedScratch.length > PACKED_SCRATCH_KEPT_MAX) packedScratch = new Uint8Array(PACKED_SCRATCH_INITIAL)
    return { bytes: out, length: at }
  }

  // get and ttlGet answer with a settled promise and no async frame: the read itself is
  // synchronous (getSync), and each async function around it cost an await per read.
  get(pk: Bytes, cc: Bytes): Promise<Bytes | undefined> {
    try {
      checkKey(pk, cc)
      return Promise.resolve(this.liveValue(pk, cc)?.value)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  async getBatch(pk: Bytes, ccs: readonly Bytes[]): Promise<(Bytes | undefined)[]> {
    checkPk(pk)
    if (ccs.length > BATCH_ITEMS_MAX) throw new VvmError('TOO_LARGE', `storage: getBatch of ${ccs.length} keys, at most ${BATCH_ITEMS_MAX} allowed`)
    for (const cc of ccs) checkCc(cc)
    if (ccs.length === 0) return []
    const pkPrefix = this.pkPrefix(pk)
    let stored: (Uint8Array | undefined)[]
    try {
      stored = await this.db.getMany(ccs.map((cc) => concatBytes(pkPrefix, cc)))
    } catch (err) {
      throw levelError('getBatch', err)
    }
    const nowMs = Date.now()
    return stored.map((bytes) => {
      if (bytes === undefined) return undefined
      const decoded = decodeStored(bytes)
      return isLive(decoded.expiresAtMs, nowMs) ? decoded.value : undefined
    })
  }

  read(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow> {
    const rows = this.rows(pk, range)
    return (async function* () {
      for await (const row of rows) yield { cc: row.cc, value: row.value }
    })()
  }

  ttlRead(pk: Bytes, range?: ReadRange): AsyncIterable<TtlRow> {
    return this.rows(pk, range)
  }

  async insertIfNotExists(pk: Bytes, cc: Bytes, value: Bytes, ttlSeconds: number): Promise<boolean> {
    checkKey(pk, cc)
    checkValue(value)
    const ttl = checkTtlSeconds(ttlSeconds)
    const key = this.rowKey(pk, cc)
    return this.lock.withLock(key, async () => {
      if (this.liveValue(pk, cc) !== undefined) return false
      await this.putRaw(key, encodeStored(value, expiresAtMsFor(ttl, Date.now())), 'insertIfNotExists')
      return true
    })
  }

  async compareAndSwap(pk: Bytes, cc: Bytes, oldValue: Bytes, newValue: Bytes, ttlSeconds: number): Promise<boolean> {
    checkKey(pk, cc)
    checkValue(newValue)
    const ttl = checkTtlSeconds(ttlSeconds)
    const key = this.rowKey(pk, cc)
    return this.lock.withLock(key, async () => {
      const current = this.liveValue(pk, cc)
      if (current === undefined || !bytesEqual(current.value, oldValue)) return false
      await this.putRaw(key, encodeStored(newValue, expiresAtMsFor(ttl, Date.now())), 'compareAndSwap')
      return true
    })
  }

  async compareAndDelete(pk: Bytes, cc: Bytes, expected: Bytes): Promise<boolean> {
    checkKey(pk, cc)
    const key = this.rowKey(pk, cc)
    return this.lock.withLock(key, async () => {
      const current = this.liveValue(pk, cc)
      if (current === undefined || !bytesEqual(current.value, expected)) return false
      await this.syncedOutsideLog((batch) => batch.del(key), 'compareAndDelete')
      return true
    })
  }

  ttlGet(pk: Bytes, cc: Bytes): Promise<TtlValue | undefined> {
    try {
      checkKey(pk, cc)
      return Promise.resolve(this.liveValue(pk, cc))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  private pkPrefix(pk: Bytes): Uint8Array {
    return keyWriter.begin().bytes(this.appPrefix).u16(pk.length).bytes(pk).end()
  }

  private rowKey(pk: Bytes, cc: Bytes): Uint8Array {
    return copyBytes(this.rowKeyView(pk, cc))
  }

  /** The row's key in the shared key writer: valid until its next use (see KeyWriter.inPlace). */
  private rowKeyView(pk: Bytes, cc: Bytes): Uint8Array {
    return keyWriter.begin().bytes(this.appPrefix).u16(pk.length).bytes(pk).bytes(cc).inPlace()
  }

  private async putRaw(key: Uint8Array, stored: Uint8Array, op: string): Promise<void> {
    if (this.log !== undefined) return this.syncedOutsideLog((batch) => batch.put(key, stored), op)
    try {
      await this.db.put(key, stored, SYNC)
    } catch (err) {
      throw levelError(op, err)
    }
  }

  private liveValue(pk: Bytes, cc: Bytes): TtlValue | undefined {
    let stored: Uint8Array | undefined
    try {
      // Synchronous: a point read is a few µs from LevelDB's caches, while a hop through libuv's
      // thread pool costs 20-50 µs of this thread's time on a VM (and a context switch).
      stored = this.db.getSync(this.rowKeyView(pk, cc))
    } catch (err) {
      throw levelError('get', err)
    }
    if (stored === undefined) return undefined
    const decoded = decodeStored(stored)
    return isLive(decoded.expiresAtMs, Date.now()) ? decoded : undefined
  }

  /** Validates eagerly (errors surface at the call), then streams rows via `nextv`. */
  private rows(pk: Bytes, range: ReadRange | undefined): AsyncIterable<TtlRow> {
    checkPk(pk)
    const r = normalizeRange(range)
    const prefix = this.pkPrefix(pk)
    const gte = r.ccFrom === undefined ? prefix : concatBytes(prefix, r.ccFrom)
    // The prefix starts with a small u16 length, so it is never all 0xff and has an end.
    const lt = r.ccTo === undefined ? prefixEnd(prefix)! : concatBytes(prefix, r.ccTo)
    const db = this.db
    return (async function* () {
      if (r.limit === 0) return
      // No `limit` for LevelDB itself: expired rows are skipped here and must not count.
      const iterator = db.iterator({ gte, lt, reverse: r.reverse })
      try {
        let remaining = r.limit
        while (remaining > 0) {
          let entries: [Uint8Array, Uint8Array][]
          try {
            entries = await iterator.nextv(Math.min(remaining, READ_BATCH_ROWS_MAX))
          } catch (err) {
            throw levelError('read', err)
          }
          if (entries.length === 0) return
          const nowMs = Date.now()
          for (const [key, stored] of entries) {
            const decoded = decodeStored(stored)
            if (!isLive(decoded.expiresAtMs, nowMs)) continue
            yield { cc: key.subarray(prefix.length), value: decoded.value, expiresAtMs: decoded.expiresAtMs }
            if (--remaining === 0) return
          }
        }
      } finally {
        await iterator.close()
      }
    })()
  }
}

/**
 * Why 256 MiB: far above any commit (a batch of 512 commands is a few hundred KiB), below the
 * u32 lengths of the packed form; a batch beyond it is put item by item.
 */
const PACKED_BYTES_MAX = 256 * 1024 * 1024
const PACKED_SCRATCH_INITIAL = 64 * 1024
/** A scratch grown past this for one large batch is dropped after it, so it cannot stay large. */
const PACKED_SCRATCH_KEPT_MAX = 4 * 1024 * 1024
let packedScratch = new Uint8Array(PACKED_SCRATCH_INITIAL)

function isLockedError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === 'LEVEL_LOCKED') return true
  }
  return false
}

function levelError(op: string, err: unknown): VvmError {
  if (err instanceof VvmError) return err
  return new StorageError(`level: ${op} failed: ${messageOf(err)}`, err)
}

function messageOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : ''
  return `${err.message}${cause}`
}
