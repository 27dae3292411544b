// LevelDB backend (classic-level): one database at `<dataDir>/level` for all apps, and, for an
// app opened with a partition routing, one database per partition at
// `<dataDir>/level-partitions/<app>/<partition>` holding that partition's rows (the app's
// partition-independent rows stay in the first). A database has one log, and a synced write
// waits for the syncs queued before it: partitions with databases of their own sync in
// parallel. Opened with `multithreading: true`, so every worker thread of the process opens the
// same directories and shares one native handle each; another process is refused by LevelDB's
// LOCK file. This file opens the databases (and replays the partitions' commit logs); the
// storage of an app in one database is level-app-storage.ts, the patched binding's extras
// level-binding.ts.
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
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { StorageError, VvmError } from '../errors.js'
import { StripedCasLock } from './cas-lock.js'
import { PartitionedAppStorage } from './partitioned.js'
import { CHECKPOINT_KEY, COMMIT_LOG_BYTES_DEFAULT, COMMIT_LOG_BYTES_MIN, CommitLog, checkpointValue, readCheckpoint } from './commit-log.js'
import { concatBytes, u16be } from './keys.js'
import { LevelAppStorage, levelError, messageOf } from './level-app-storage.js'
import { NO_SYNC, SYNC, applyPacked, putPacked, type Db } from './level-binding.js'
import type { IAppStorage, IStorageProvider, PartitionRouting, StorageConfig, StorageKind } from './types.js'
import { LEVEL_WRITE_BUFFER_BYTES_DEFAULT, LEVEL_WRITE_BUFFER_BYTES_MAX, LEVEL_WRITE_BUFFER_BYTES_MIN } from './level-write-buffer.js'

export { READ_BATCH_ROWS_MAX } from './level-app-storage.js'
export { levelPutsPacked, levelWritesInline } from './level-binding.js'

const APP_QNAME_BYTES_MAX = 0xffff

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

  private constructor(
    private readonly dataDir: string, private readonly db: Db, private readonly lock: StripedCasLock,
    private readonly options: LevelOpenOptions, private readonly writeBufferBytes: number,
  ) {}

  static async open(config: StorageConfig, options: LevelOpenOptions = {}): Promise<LevelStorageProvider> {
    if (typeof config.dataDir !== 'string' || config.dataDir === '') {
      throw new VvmError('VALIDATION', `storage: dataDir ${JSON.stringify(config.dataDir)} must be a non-empty path for kind 'level'`)
    }
    try {
      await mkdir(config.dataDir, { recursive: true })
    } catch (err) {
      throw new StorageError(`level: cannot create data directory ${config.dataDir}: ${messageOf(err)}`, err)
    }
    const writeBufferBytes = config.levelWriteBufferBytes ?? LEVEL_WRITE_BUFFER_BYTES_DEFAULT
    if (!Number.isSafeInteger(writeBufferBytes) || writeBufferBytes < LEVEL_WRITE_BUFFER_BYTES_MIN || writeBufferBytes > LEVEL_WRITE_BUFFER_BYTES_MAX) {
      throw new VvmError('VALIDATION', `storage: levelWriteBufferBytes ${writeBufferBytes} must be ${LEVEL_WRITE_BUFFER_BYTES_MIN}..${LEVEL_WRITE_BUFFER_BYTES_MAX}`)
    }
    const db = await openDb(join(config.dataDir, 'level'), writeBufferBytes)
    const withConfig = options.commitLogBytes === undefined && config.levelCommitLogBytes !== undefined ? { ...options, commitLogBytes: config.levelCommitLogBytes } : options
    return new LevelStorageProvider(config.dataDir, db, new StripedCasLock(options.casLock), withConfig, writeBufferBytes)
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
      const db = await openDb(location, this.writeBufferBytes)
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

/** `writeBufferBytes`: level-write-buffer.ts. */
async function openDb(location: string, writeBufferBytes: number): Promise<Db> {
  const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view', multithreading: true, writeBufferSize: writeBufferBytes })
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

function isLockedError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === 'LEVEL_LOCKED') return true
  }
  return false
}
