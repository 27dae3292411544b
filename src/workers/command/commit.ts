// Group commit onto storage. Where `putBatch` is atomic (mem, level) the batch is one write.
// Where it is not (Cassandra: a multi-partition batch is not isolated, and a large one is
// refused), the batch's full write set is first written as one row — the commit intent, the
// commit point — then applied in chunks, then the partition head last. A crash anywhere leaves
// either no intent for the batch (nothing was acknowledged, nothing is applied) or an intent
// newer than the head, which `recover()` re-applies before the partition serves again: every
// write is a put of a known value, so applying twice is the same as once.

import { decodeStored, encodeStored, commitIntentKey, partitionHeadKey, type StoredIntent, type StoredPartitionHead } from '../../shared/layout.js'
import type { BatchItem, IAppStorage } from '../../shared/storage/types.js'

/** Why 200 items / 512 KiB: well under Cassandra's batch_size_fail_threshold as we configure it. */
const CHUNK_ITEMS_MAX = 200
const CHUNK_BYTES_MAX = 512 * 1024
const CHUNKS_IN_FLIGHT_MAX = 4

export interface Committer {
  /**
   * Durable when it resolves. `items` ends with the partition head. `inline`: the caller has
   * nothing else to do meanwhile, so the write may block its thread (`PutBatchOptions.inline`).
   */
  commit(items: BatchItem[], lastOffset: number, inline?: boolean): Promise<void>
  /** Completes a commit interrupted by a crash or a failure; a no-op when there is none. */
  recover(): Promise<void>
}

export function committerFor(storage: IAppStorage, partition: number, atomicBatches: boolean): Committer {
  return atomicBatches ? new AtomicCommitter(storage) : new IntentCommitter(storage, partition)
}

const INLINE = { inline: true } as const

class AtomicCommitter implements Committer {
  constructor(private readonly storage: IAppStorage) {}
  commit(items: BatchItem[], _lastOffset: number, inline = false): Promise<void> {
    return this.storage.putBatch(items, inline ? INLINE : undefined)
  }
  async recover(): Promise<void> {}
}

class IntentCommitter implements Committer {
  constructor(private readonly storage: IAppStorage, private readonly partition: number) {}

  async commit(items: BatchItem[], lastOffset: number): Promise<void> {
    const intent = commitIntentKey(this.partition)
    const plain = items.map((i) => (i.ttlSeconds ? { pk: i.pk, cc: i.cc, value: i.value, ttlSeconds: i.ttlSeconds } : { pk: i.pk, cc: i.cc, value: i.value }))
    await this.storage.put(intent.pk, intent.cc, encodeStored({ po: lastOffset, items: plain } satisfies StoredIntent))
    await this.apply(items)
  }

  async recover(): Promise<void> {
    const intentKey = commitIntentKey(this.partition)
    const bytes = await this.storage.get(intentKey.pk, intentKey.cc)
    if (bytes === undefined) return
    const intent = decodeStored<StoredIntent>(bytes)
    const h = partitionHeadKey(this.partition)
    const head = await this.storage.get(h.pk, h.cc)
    const applied = head === undefined ? 0 : decodeStored<StoredPartitionHead>(head).po
    if (intent.po > applied) await this.apply(intent.items)
  }

  /** Everything but the head in bounded parallel chunks, then the head: it says "applied". */
  private async apply(items: readonly BatchItem[]): Promise<void> {
    const head = items[items.length - 1]!
    const chunks: BatchItem[][] = []
    let chunk: BatchItem[] = []
    let bytes = 0
    for (const item of items.slice(0, -1)) {
      const size = item.pk.byteLength + item.cc.byteLength + item.value.byteLength
      if (chunk.length > 0 && (chunk.length >= CHUNK_ITEMS_MAX || bytes + size > CHUNK_BYTES_MAX)) {
        chunks.push(chunk)
        chunk = []
        bytes = 0
      }
      chunk.push(item)
      bytes += size
    }
    if (chunk.length > 0) chunks.push(chunk)
    let next = 0
    await Promise.all(Array.from({ length: Math.min(CHUNKS_IN_FLIGHT_MAX, chunks.length) }, async () => {
      while (next < chunks.length) await this.storage.putBatch(chunks[next++]!)
    }))
    await this.storage.put(head.pk, head.cc, head.value)
  }
}
