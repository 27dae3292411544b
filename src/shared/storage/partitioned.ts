// An app's storage over one store per partition (level: a LevelDB database each, level.ts):
// each row goes to the store of its partition (`routing.partitionOf(pk)`), the app's
// partition-independent rows to the shared one.

import { StorageError } from '../errors.js'
import type { BatchItem, Bytes, IAppStorage, PartitionRouting, PutBatchOptions, ReadRange, StorageRow, TtlValue } from './types.js'

/**
 * A batch is atomic within one store only, so a batch whose rows belong to more than one is
 * refused before anything is written.
 */
export class PartitionedAppStorage implements IAppStorage {
  constructor(
    private readonly shared: IAppStorage,
    private readonly parts: readonly IAppStorage[],
    private readonly routing: PartitionRouting,
    /** The backend's name, for errors. */
    private readonly backend: string,
  ) {}

  private of(pk: Bytes): IAppStorage {
    const p = this.routing.partitionOf(pk)
    return p === undefined ? this.shared : this.parts[p]!
  }

  put(pk: Bytes, cc: Bytes, value: Bytes): Promise<void> {
    return this.of(pk).put(pk, cc, value)
  }

  async putBatch(items: readonly BatchItem[], options?: PutBatchOptions): Promise<void> {
    if (items.length === 0) return this.shared.putBatch(items, options)
    const target = this.of(items[0]!.pk)
    for (let i = 1; i < items.length; i++) {
      if (this.of(items[i]!.pk) !== target) {
        throw new StorageError(`${this.backend}: a batch's rows belong to more than one partition (items 0 and ${i}); a batch is atomic within one partition's database only`)
      }
    }
    return target.putBatch(items, options)
  }

  get(pk: Bytes, cc: Bytes): Promise<Bytes | undefined> {
    return this.of(pk).get(pk, cc)
  }

  getBatch(pk: Bytes, ccs: readonly Bytes[]): Promise<(Bytes | undefined)[]> {
    return this.of(pk).getBatch(pk, ccs)
  }

  read(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow> {
    return this.of(pk).read(pk, range)
  }

  insertIfNotExists(pk: Bytes, cc: Bytes, value: Bytes, ttlSeconds: number): Promise<boolean> {
    return this.of(pk).insertIfNotExists(pk, cc, value, ttlSeconds)
  }

  compareAndSwap(pk: Bytes, cc: Bytes, oldValue: Bytes, newValue: Bytes, ttlSeconds: number): Promise<boolean> {
    return this.of(pk).compareAndSwap(pk, cc, oldValue, newValue, ttlSeconds)
  }

  compareAndDelete(pk: Bytes, cc: Bytes, expected: Bytes): Promise<boolean> {
    return this.of(pk).compareAndDelete(pk, cc, expected)
  }

  ttlGet(pk: Bytes, cc: Bytes): Promise<TtlValue | undefined> {
    return this.of(pk).ttlGet(pk, cc)
  }

  ttlRead(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow & { readonly expiresAtMs: number }> {
    return this.of(pk).ttlRead(pk, range)
  }
}
