// The LevelDB backend's storage of one app in one database (level.ts opens the databases and
// hands these out): keys, stored values, batches — packed and through a partition's commit log —,
// reads and compare-and-set. The layout of keys and values, and the durability rules, are in
// level.ts's header.

import { StorageError, VvmError } from '../errors.js'
import type { StripedCasLock } from './cas-lock.js'
import { CHECKPOINT_KEY, CommitLog, checkpointValue } from './commit-log.js'
import { TAG_EXPIRING, TAG_PLAIN, decodeStored, encodeStored, storedLength, storedView } from './level-values.js'
import { BATCH_ITEMS_MAX, checkBatch, checkCc, checkKey, checkPk, checkTtlSeconds, checkValue, expiresAtMsFor, isLive, normalizeRange } from './contract.js'
import { bytesEqual, concatBytes, copyBytes, keyWriter, prefixEnd, u64be, writeU32le } from './keys.js'
import { NO_SYNC, SYNC, applyPacked, batchContextOf, batchWrite, putPacked, writeNow, type Db } from './level-binding.js'
import type { BatchItem, Bytes, PutBatchOptions, IAppStorage, ReadRange, StorageRow, TtlValue } from './types.js'

type TtlRow = StorageRow & { readonly expiresAtMs: number }

/** Rows fetched per `nextv`: enough to amortize the native hop, small enough to bound memory. */
export const READ_BATCH_ROWS_MAX = 256

export class LevelAppStorage implements IAppStorage {
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
        else await batchWrite(context, sync)
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

export function levelError(op: string, err: unknown): VvmError {
  if (err instanceof VvmError) return err
  return new StorageError(`level: ${op} failed: ${messageOf(err)}`, err)
}

export function messageOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : ''
  return `${err.message}${cause}`
}
