// The storage interface every backend implements (Voedger `istorage`). Keys are two byte
// strings: a partition key `pk` (which row group; never empty) and clustering columns `cc`
// (order inside the group; may be empty). Values are opaque bytes.
//
// Above this interface nothing knows which backend runs. The TCK in `tck.ts` is the contract:
// every backend passes the same suite.
//
// Expiry: any value may carry a TTL (set by `insertIfNotExists`, `compareAndSwap` or a batch
// item's `ttlSeconds`). An expired value is invisible to every read and compare operation,
// as if it had never been written.

export type Bytes = Uint8Array

export interface BatchItem {
  readonly pk: Bytes
  readonly cc: Bytes
  readonly value: Bytes
  /** Optional time to live; absent or 0 means the value never expires. */
  readonly ttlSeconds?: number
}

export interface StorageRow {
  readonly cc: Bytes
  readonly value: Bytes
}

export interface ReadRange {
  /** Inclusive lower bound of `cc`; absent means from the first row of `pk`. */
  readonly ccFrom?: Bytes
  /** Exclusive upper bound of `cc`; absent means to the last row of `pk`. */
  readonly ccTo?: Bytes
  /** Stop after this many rows; absent means no limit. */
  readonly limit?: number
  /** Descending order of `cc`. */
  readonly reverse?: boolean
}

export interface TtlValue {
  readonly value: Bytes
  /** Absolute expiry (ms since epoch), or 0 when the value never expires. */
  readonly expiresAtMs: number
}

export interface PutBatchOptions {
  /**
   * False for data that can be rebuilt (async projections and their offsets): the batch reaches
   * the operating system but is not flushed to the disk on its own. It survives a crash of the
   * process; a power loss or an OS crash can lose it, whole (never half of it) — level: until
   * the database's next synced write (a commit log's checkpoint, or any durable write where the
   * partition has no commit log) flushes it too. Backends without a cheaper write (mem,
   * cassandra) ignore it. Default true.
   */
  readonly durable?: boolean
  /**
   * The caller has nothing else to do until the write is done: a backend that can write on the
   * calling thread does, blocking it, instead of handing the write to another thread and waking
   * the caller when it is done (level, where the patched binding is installed:
   * scripts/build-level.sh). Others ignore it. Default false.
   */
  readonly inline?: boolean
}

export interface IAppStorage {
  put(pk: Bytes, cc: Bytes, value: Bytes): Promise<void>
  /**
   * Atomic where the backend can make it so (mem, level); durable when it resolves, unless
   * `options.durable` is false (see `PutBatchOptions`).
   */
  putBatch(items: readonly BatchItem[], options?: PutBatchOptions): Promise<void>
  get(pk: Bytes, cc: Bytes): Promise<Bytes | undefined>
  /** Values in the order of `ccs`; `undefined` where absent. */
  getBatch(pk: Bytes, ccs: readonly Bytes[]): Promise<(Bytes | undefined)[]>
  /** Rows of `pk` with ccFrom <= cc < ccTo, in byte order of `cc`. */
  read(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow>

  /** Writes only when no live value exists. Returns whether it wrote. */
  insertIfNotExists(pk: Bytes, cc: Bytes, value: Bytes, ttlSeconds: number): Promise<boolean>
  /** Replaces the live value when it equals `oldValue` byte for byte. Returns whether it wrote. */
  compareAndSwap(pk: Bytes, cc: Bytes, oldValue: Bytes, newValue: Bytes, ttlSeconds: number): Promise<boolean>
  /** Deletes the live value when it equals `expected`. Returns whether it deleted. */
  compareAndDelete(pk: Bytes, cc: Bytes, expected: Bytes): Promise<boolean>
  /** Like `get`, with the value's expiry. */
  ttlGet(pk: Bytes, cc: Bytes): Promise<TtlValue | undefined>
  /** Like `read`, with each row's expiry. */
  ttlRead(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow & { readonly expiresAtMs: number }>
}

/** Opens per-application storages on one backend; one provider per thread. */
export interface IStorageProvider {
  readonly kind: StorageKind
  /** True when every thread of the process sees the same data (level, cassandra; not mem). */
  readonly sharedAcrossThreads: boolean
  /**
   * True when `putBatch` is all-or-nothing even across a crash of this process (mem, level).
   * Cassandra's batches are not isolated and a large one is refused, so the command processor
   * commits through an intent record there (docs/cassandra.md).
   */
  readonly atomicBatches: boolean
  /**
   * The app's storage. With `routing`, a backend that can keep each partition's rows apart
   * does (level: a database per partition, so that partitions write and sync in parallel);
   * every batch must then stay within one partition. Without it, one store for the app.
   */
  appStorage(appQName: string, routing?: PartitionRouting): Promise<IAppStorage>
  close(): Promise<void>
}

/** Which partition of an app a row belongs to (the engine's layout knows; backends do not). */
export interface PartitionRouting {
  readonly partitions: number
  /** The partition of the rows of `pk`, or undefined for the app's partition-independent rows. */
  partitionOf(pk: Bytes): number | undefined
  /**
   * Rows that exist once the app has committed anything: found in the app's single store, they
   * mean its data predates per-partition stores, which then keeps using that single store.
   */
  readonly committedProbes: readonly { readonly pk: Bytes; readonly cc: Bytes }[]
  /**
   * The partition whose durable writes this thread makes (its command processor), if any: a
   * backend may keep state for them that only one thread can own (level: the commit log).
   */
  readonly writer?: number
}

export type StorageKind = 'mem' | 'level' | 'cassandra'

export interface StorageConfig {
  readonly kind: StorageKind
  /** level: the data directory (LevelDB databases under it: docs/architecture.md). */
  readonly dataDir?: string
  /** level: size of each writer partition's commit log (storage/commit-log.ts); 0: none; default 8 MiB. */
  readonly levelCommitLogBytes?: number
  /** level: each database's memtable (LevelDB's write buffer); default 16 MiB (storage/level-write-buffer.ts). */
  readonly levelWriteBufferBytes?: number
  /** cassandra: contact points `host:port`. */
  readonly cassandraHosts?: readonly string[]
  readonly cassandraLocalDc?: string
  readonly cassandraKeyspacePrefix?: string
  readonly cassandraReplication?: string
}
