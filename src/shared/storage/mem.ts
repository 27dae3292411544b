// In-memory backend: tests, demos, single-thread runs. Data lives in the JS heap of the thread
// that opened the provider, so it is never shared across threads and is lost on exit.
//
// Per app: a Map from pk (as a latin1 string, one char per byte) to rows sorted by cc. A range
// read is two binary searches plus a slice. Every operation is synchronous inside its promise,
// so compare-and-set needs no lock: nothing interleaves between the compare and the write.

import { StorageError, VvmError } from '../errors.js'
import { BATCH_ITEMS_MAX, checkBatch, checkCc, checkKey, checkPk, checkTtlSeconds, checkValue, expiresAtMsFor, isLive, normalizeRange } from './contract.js'
import type { NormalizedRange } from './contract.js'
import { bytesEqual, compareBytes, copyBytes } from './keys.js'
import type { BatchItem, Bytes, IAppStorage, IStorageProvider, ReadRange, StorageKind, StorageRow, TtlValue } from './types.js'

interface MemRow {
  readonly cc: Bytes
  readonly value: Bytes
  readonly expiresAtMs: number
}

type TtlRow = StorageRow & { readonly expiresAtMs: number }

export class MemStorageProvider implements IStorageProvider {
  readonly kind: StorageKind = 'mem'
  readonly sharedAcrossThreads = false
  readonly atomicBatches = true
  private readonly apps = new Map<string, MemAppStorage>()
  private closed = false

  static async open(): Promise<MemStorageProvider> {
    return new MemStorageProvider()
  }

  async appStorage(appQName: string): Promise<IAppStorage> {
    if (this.closed) throw new StorageError('mem storage: provider is closed')
    let storage = this.apps.get(appQName)
    if (storage === undefined) {
      storage = new MemAppStorage(() => this.closed)
      this.apps.set(appQName, storage)
    }
    return storage
  }

  async close(): Promise<void> {
    this.closed = true
    this.apps.clear()
  }
}

class MemAppStorage implements IAppStorage {
  private readonly partitions = new Map<string, MemRow[]>()

  constructor(private readonly isClosed: () => boolean) {}

  async put(pk: Bytes, cc: Bytes, value: Bytes): Promise<void> {
    this.assertOpen()
    checkKey(pk, cc)
    checkValue(value)
    this.write(pk, cc, value, 0)
  }

  async putBatch(items: readonly BatchItem[]): Promise<void> {
    this.assertOpen()
    // Validate everything first: a batch is all or nothing.
    checkBatch(items)
    const nowMs = Date.now()
    for (const item of items) {
      this.write(item.pk, item.cc, item.value, expiresAtMsFor(checkTtlSeconds(item.ttlSeconds), nowMs))
    }
  }

  async get(pk: Bytes, cc: Bytes): Promise<Bytes | undefined> {
    this.assertOpen()
    checkKey(pk, cc)
    const row = this.liveRow(pk, cc, Date.now())
    return row === undefined ? undefined : copyBytes(row.value)
  }

  async getBatch(pk: Bytes, ccs: readonly Bytes[]): Promise<(Bytes | undefined)[]> {
    this.assertOpen()
    checkPk(pk)
    if (ccs.length > BATCH_ITEMS_MAX) throw new VvmError('TOO_LARGE', `storage: getBatch of ${ccs.length} keys, at most ${BATCH_ITEMS_MAX} allowed`)
    for (const cc of ccs) checkCc(cc)
    const nowMs = Date.now()
    return ccs.map((cc) => {
      const row = this.liveRow(pk, cc, nowMs)
      return row === undefined ? undefined : copyBytes(row.value)
    })
  }

  read(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow> {
    this.assertOpen()
    checkPk(pk)
    const rows = this.rangeRows(pk, normalizeRange(range))
    return (async function* () {
      for (const row of rows) yield { cc: row.cc, value: row.value }
    })()
  }

  ttlRead(pk: Bytes, range?: ReadRange): AsyncIterable<TtlRow> {
    this.assertOpen()
    checkPk(pk)
    const rows = this.rangeRows(pk, normalizeRange(range))
    return (async function* () {
      yield* rows
    })()
  }

  async insertIfNotExists(pk: Bytes, cc: Bytes, value: Bytes, ttlSeconds: number): Promise<boolean> {
    this.assertOpen()
    checkKey(pk, cc)
    checkValue(value)
    const nowMs = Date.now()
    const expiresAtMs = expiresAtMsFor(checkTtlSeconds(ttlSeconds), nowMs)
    if (this.liveRow(pk, cc, nowMs) !== undefined) return false
    this.write(pk, cc, value, expiresAtMs)
    return true
  }

  async compareAndSwap(pk: Bytes, cc: Bytes, oldValue: Bytes, newValue: Bytes, ttlSeconds: number): Promise<boolean> {
    this.assertOpen()
    checkKey(pk, cc)
    checkValue(newValue)
    const nowMs = Date.now()
    const expiresAtMs = expiresAtMsFor(checkTtlSeconds(ttlSeconds), nowMs)
    const row = this.liveRow(pk, cc, nowMs)
    if (row === undefined || !bytesEqual(row.value, oldValue)) return false
    this.write(pk, cc, newValue, expiresAtMs)
    return true
  }

  async compareAndDelete(pk: Bytes, cc: Bytes, expected: Bytes): Promise<boolean> {
    this.assertOpen()
    checkKey(pk, cc)
    const row = this.liveRow(pk, cc, Date.now())
    if (row === undefined || !bytesEqual(row.value, expected)) return false
    this.remove(pk, cc)
    return true
  }

  async ttlGet(pk: Bytes, cc: Bytes): Promise<TtlValue | undefined> {
    this.assertOpen()
    checkKey(pk, cc)
    const row = this.liveRow(pk, cc, Date.now())
    return row === undefined ? undefined : { value: copyBytes(row.value), expiresAtMs: row.expiresAtMs }
  }

  private assertOpen(): void {
    if (this.isClosed()) throw new StorageError('mem storage: provider is closed')
  }

  /** The live row at (pk, cc); an expired one is purged on the way (lazy expiry). */
  private liveRow(pk: Bytes, cc: Bytes, nowMs: number): MemRow | undefined {
    const pkKey = pkKeyOf(pk)
    const rows = this.partitions.get(pkKey)
    if (rows === undefined) return undefined
    const index = lowerBound(rows, cc)
    const row = rows[index]
    if (row === undefined || compareBytes(row.cc, cc) !== 0) return undefined
    if (isLive(row.expiresAtMs, nowMs)) return row
    rows.splice(index, 1)
    if (rows.length === 0) this.partitions.delete(pkKey)
    return undefined
  }

  /** Copies both key and value: the caller keeps ownership of what it passed. */
  private write(pk: Bytes, cc: Bytes, value: Bytes, expiresAtMs: number): void {
    const pkKey = pkKeyOf(pk)
    let rows = this.partitions.get(pkKey)
    if (rows === undefined) {
      rows = []
      this.partitions.set(pkKey, rows)
    }
    const row: MemRow = { cc: copyBytes(cc), value: copyBytes(value), expiresAtMs }
    const index = lowerBound(rows, cc)
    const existing = rows[index]
    if (existing !== undefined && compareBytes(existing.cc, cc) === 0) rows[index] = row
    else rows.splice(index, 0, row)
  }

  private remove(pk: Bytes, cc: Bytes): void {
    const pkKey = pkKeyOf(pk)
    const rows = this.partitions.get(pkKey)
    if (rows === undefined) return
    const index = lowerBound(rows, cc)
    const existing = rows[index]
    if (existing === undefined || compareBytes(existing.cc, cc) !== 0) return
    rows.splice(index, 1)
    if (rows.length === 0) this.partitions.delete(pkKey)
  }

  /**
   * Copies of the live rows in range, taken now: later writes do not disturb an iteration in
   * progress (like a LevelDB iterator's snapshot).
   */
  private rangeRows(pk: Bytes, range: NormalizedRange): TtlRow[] {
    const out: TtlRow[] = []
    const rows = this.partitions.get(pkKeyOf(pk))
    if (rows === undefined || range.limit === 0) return out
    const from = range.ccFrom === undefined ? 0 : lowerBound(rows, range.ccFrom)
    const to = range.ccTo === undefined ? rows.length : lowerBound(rows, range.ccTo)
    const nowMs = Date.now()
    const step = range.reverse ? -1 : 1
    for (let i = range.reverse ? to - 1 : from; i >= from && i < to && out.length < range.limit; i += step) {
      const row = rows[i]!
      if (!isLive(row.expiresAtMs, nowMs)) continue
      out.push({ cc: copyBytes(row.cc), value: copyBytes(row.value), expiresAtMs: row.expiresAtMs })
    }
    return out
  }
}

function pkKeyOf(pk: Bytes): string {
  return Buffer.from(pk.buffer, pk.byteOffset, pk.byteLength).toString('latin1')
}

/** First index whose cc is >= `cc`. */
function lowerBound(rows: readonly MemRow[], cc: Bytes): number {
  let lo = 0
  let hi = rows.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (compareBytes(rows[mid]!.cc, cc) < 0) lo = mid + 1
    else hi = mid
  }
  return lo
}
