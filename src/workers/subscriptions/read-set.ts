// What a read touched, learned by running it over a tracking storage: per partition key, the
// clustering ranges it got or scanned. A write (pk, cc) affects a read when its cc falls in one
// of the ranges of its pk. That is how a commit finds the subscriptions it changes (by their
// read keys), with no knowledge of views, records or queries above the storage interface.

import { compareBytes, hexOf } from '../../shared/storage/keys.js'
import type { BatchItem, Bytes, IAppStorage, PutBatchOptions, ReadRange, StorageRow, TtlValue } from '../../shared/storage/types.js'

/** [from, to): an undefined bound is open. */
export interface CcRange {
  from: Bytes | undefined
  to: Bytes | undefined
}

/** Read ranges by hex partition key. */
export type ReadSet = Map<string, CcRange[]>

/** The range of exactly one clustering key: [cc, cc + 0x00). */
function pointRange(cc: Bytes): CcRange {
  const to = new Uint8Array(cc.byteLength + 1)
  to.set(cc)
  return { from: cc, to }
}

export function inRange(r: CcRange, cc: Bytes): boolean {
  return (r.from === undefined || compareBytes(cc, r.from) >= 0) && (r.to === undefined || compareBytes(cc, r.to) < 0)
}

/** Why 4096: a read set larger than this is a scan; past it the pk is watched whole (still exact, a little eager). */
const RANGES_PER_PK_MAX = 4096

/**
 * Reads go through to `base`, and each is added to `reads`. Writes are refused: an evaluation
 * only reads. The whole range of a read is recorded, whatever its limit: a write anywhere in it
 * may change what the read returns.
 */
export class TrackingStorage implements IAppStorage {
  reads: ReadSet = new Map()

  constructor(readonly base: IAppStorage) {}

  private note(pk: Bytes, r: CcRange): void {
    const k = hexOf(pk)
    let list = this.reads.get(k)
    if (list === undefined) this.reads.set(k, (list = []))
    if (list.length >= RANGES_PER_PK_MAX) {
      list.length = 0
      list.push({ from: undefined, to: undefined })
    }
    if (list.length === 1 && list[0]!.from === undefined && list[0]!.to === undefined) return
    list.push(r)
  }

  get(pk: Bytes, cc: Bytes): Promise<Bytes | undefined> {
    this.note(pk, pointRange(cc))
    return this.base.get(pk, cc)
  }

  getBatch(pk: Bytes, ccs: readonly Bytes[]): Promise<(Bytes | undefined)[]> {
    for (const cc of ccs) this.note(pk, pointRange(cc))
    return this.base.getBatch(pk, ccs)
  }

  read(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow> {
    this.note(pk, { from: range?.ccFrom, to: range?.ccTo })
    return this.base.read(pk, range)
  }

  ttlGet(pk: Bytes, cc: Bytes): Promise<TtlValue | undefined> {
    this.note(pk, pointRange(cc))
    return this.base.ttlGet(pk, cc)
  }

  ttlRead(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow & { readonly expiresAtMs: number }> {
    this.note(pk, { from: range?.ccFrom, to: range?.ccTo })
    return this.base.ttlRead(pk, range)
  }

  put(): Promise<void> { return refused() }
  putBatch(): Promise<void> { return refused() }
  insertIfNotExists(): Promise<boolean> { return refused() }
  compareAndSwap(): Promise<boolean> { return refused() }
  compareAndDelete(): Promise<boolean> { return refused() }
}

function refused(): Promise<never> {
  return Promise.reject(new Error('a subscription evaluation only reads'))
}

/**
 * Storage whose successful writes are reported (after they are durable) to `onWrites`. The
 * partition worker's processor, committer and actualizers write through it.
 */
export class ObservedStorage implements IAppStorage {
  constructor(readonly base: IAppStorage, private readonly onWrites: (items: readonly { pk: Bytes; cc: Bytes }[]) => void) {}

  async put(pk: Bytes, cc: Bytes, value: Bytes): Promise<void> {
    await this.base.put(pk, cc, value)
    this.onWrites([{ pk, cc }])
  }

  async putBatch(items: readonly BatchItem[], options?: PutBatchOptions): Promise<void> {
    await this.base.putBatch(items, options)
    this.onWrites(items)
  }

  async insertIfNotExists(pk: Bytes, cc: Bytes, value: Bytes, ttlSeconds: number): Promise<boolean> {
    const ok = await this.base.insertIfNotExists(pk, cc, value, ttlSeconds)
    if (ok) this.onWrites([{ pk, cc }])
    return ok
  }

  async compareAndSwap(pk: Bytes, cc: Bytes, oldValue: Bytes, newValue: Bytes, ttlSeconds: number): Promise<boolean> {
    const ok = await this.base.compareAndSwap(pk, cc, oldValue, newValue, ttlSeconds)
    if (ok) this.onWrites([{ pk, cc }])
    return ok
  }

  async compareAndDelete(pk: Bytes, cc: Bytes, expected: Bytes): Promise<boolean> {
    const ok = await this.base.compareAndDelete(pk, cc, expected)
    if (ok) this.onWrites([{ pk, cc }])
    return ok
  }

  get(pk: Bytes, cc: Bytes): Promise<Bytes | undefined> { return this.base.get(pk, cc) }
  getBatch(pk: Bytes, ccs: readonly Bytes[]): Promise<(Bytes | undefined)[]> { return this.base.getBatch(pk, ccs) }
  read(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow> { return this.base.read(pk, range) }
  ttlGet(pk: Bytes, cc: Bytes): Promise<TtlValue | undefined> { return this.base.ttlGet(pk, cc) }
  ttlRead(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow & { readonly expiresAtMs: number }> { return this.base.ttlRead(pk, range) }
}
