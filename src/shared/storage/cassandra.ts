// Cassandra backend (cassandra-driver 4, CQL native protocol). One keyspace per application,
// one table in it; schema and the reasoning behind each statement are in docs/cassandra.md.
//
//   values (p blob, c blob, value blob, PRIMARY KEY ((p), c))
//
// `p` is the partition key, `c` the clustering key. Blobs sort as unsigned bytes, which is
// the order the interface promises, and Cassandra accepts an empty blob as a clustering value,
// so `cc` is stored as it is (the empty `cc` sorts first).
//
// Every write is an UPDATE, never an INSERT: an INSERT also writes a row marker, which keeps
// the row alive after a shorter-lived `value` expires (a later TTL'd compareAndSwap on an
// INSERTed row leaves a row whose value is null, and `INSERT ... IF NOT EXISTS` then still sees
// the row). With UPDATEs only, a row lives exactly as long as its value, so "expired" and
// "absent" are the same thing for reads and for conditions (`IF value = null`).
//
// Timestamps come from the server (no client-side generator): on one coordinator, plain writes
// and LWT ballots then share one monotonic clock, so a put that follows a compareAndDelete is
// never shadowed by the delete's tombstone. Across coordinators, node clocks must be in sync,
// as Cassandra requires anyway.

import { createHash } from 'node:crypto'
import { Client, errors, types } from 'cassandra-driver'
import type { policies } from 'cassandra-driver'
import { StorageError, VvmError } from '../errors.js'
import { BATCH_ITEMS_MAX, checkBatch, checkCc, checkKey, checkPk, checkTtlSeconds, checkValue, normalizeRange } from './contract.js'
import type { NormalizedRange } from './contract.js'
import { copyBytes, hexOf } from './keys.js'
import type { BatchItem, Bytes, IAppStorage, IStorageProvider, ReadRange, StorageConfig, StorageKind, StorageRow, TtlValue } from './types.js'

type TtlRow = StorageRow & { readonly expiresAtMs: number }

export const CASSANDRA_HOSTS_DEFAULT: readonly string[] = ['127.0.0.1:9042']
export const CASSANDRA_LOCAL_DC_DEFAULT = 'datacenter1'
export const CASSANDRA_KEYSPACE_PREFIX_DEFAULT = 'vvm_'
export const CASSANDRA_REPLICATION_DEFAULT = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
/** Cassandra's limit on keyspace names. */
export const KEYSPACE_NAME_CHARS_MAX = 48
/** Leaves room for a readable part of the app name before the hash. */
const KEYSPACE_PREFIX_CHARS_MAX = 24
/** 40 bits of SHA-256: a collision among one installation's apps is out of reach. */
const KEYSPACE_HASH_HEX_CHARS = 10

/** Rows per page of a range read: memory per open iterator is one page. */
export const READ_PAGE_ROWS_MAX = 1000
/** Keys per `c IN (...)` query of getBatch; larger lists are split into several queries. */
export const GET_BATCH_IN_KEYS_MAX = 100
/** getBatch queries in flight at once for one call. */
const GET_BATCH_QUERIES_IN_FLIGHT_MAX = 4
/** The native protocol counts a batch's statements in an unsigned 16-bit field. */
export const CQL_BATCH_STATEMENTS_MAX = 65_535
const CONNECT_TIMEOUT_MS = 5_000
/** Above Cassandra's own write_request_timeout (2 s) and cas_contention_timeout (1 s) defaults. */
const REQUEST_TIMEOUT_MS = 12_000

// One place for consistency levels. QUORUM: with RF = 3 two replicas acknowledge each write and
// each read asks two, so every read overlaps the last acknowledged write. SERIAL for the Paxos
// phase of LWTs; their commit is written at QUORUM too.
const WRITE_CONSISTENCY = types.consistencies.quorum
const READ_CONSISTENCY = types.consistencies.quorum
const SERIAL_CONSISTENCY = types.consistencies.serial

const WRITE = { prepare: true, consistency: WRITE_CONSISTENCY } as const
const READ = { prepare: true, consistency: READ_CONSISTENCY } as const
const LWT = { prepare: true, consistency: WRITE_CONSISTENCY, serialConsistency: SERIAL_CONSISTENCY } as const

const EMPTY = Buffer.alloc(0)

export class CassandraStorageProvider implements IStorageProvider {
  readonly kind: StorageKind = 'cassandra'
  readonly sharedAcrossThreads = true
  readonly atomicBatches = false
  private readonly apps = new Map<string, Promise<CassandraAppStorage>>()
  private closed = false

  private constructor(private readonly client: Client, private readonly keyspacePrefix: string, private readonly replication: string) {}

  static async open(config: StorageConfig): Promise<CassandraStorageProvider> {
    const hosts = checkHosts(config.cassandraHosts ?? CASSANDRA_HOSTS_DEFAULT)
    const localDc = checkLocalDc(config.cassandraLocalDc ?? CASSANDRA_LOCAL_DC_DEFAULT)
    const prefix = checkKeyspacePrefix(config.cassandraKeyspacePrefix ?? CASSANDRA_KEYSPACE_PREFIX_DEFAULT)
    const replication = checkReplication(config.cassandraReplication ?? CASSANDRA_REPLICATION_DEFAULT)
    const client = new Client({
      contactPoints: [...hosts],
      localDataCenter: localDc,
      socketOptions: { connectTimeout: CONNECT_TIMEOUT_MS, readTimeout: REQUEST_TIMEOUT_MS },
      // null = server-side timestamps (see the header). The typings lack the null the driver
      // accepts (client-options.js checks `timestampGeneration !== null`).
      policies: { timestampGeneration: null as unknown as policies.timestampGeneration.TimestampGenerator },
      queryOptions: { prepare: true, consistency: READ_CONSISTENCY, serialConsistency: SERIAL_CONSISTENCY },
    })
    try {
      await client.connect()
    } catch (err) {
      await client.shutdown().catch(() => undefined) // the connect error is the one to report
      throw new StorageError(`cassandra: cannot connect to ${hosts.join(', ')} (local data center ${JSON.stringify(localDc)}): ${messageOf(err)}`, err)
    }
    return new CassandraStorageProvider(client, prefix, replication)
  }

  appStorage(appQName: string): Promise<IAppStorage> {
    if (this.closed) return Promise.reject(new StorageError('cassandra: provider is closed'))
    if (typeof appQName !== 'string' || appQName === '') {
      return Promise.reject(new VvmError('VALIDATION', `storage: app qname ${JSON.stringify(appQName)} must be a non-empty string`))
    }
    let storage = this.apps.get(appQName)
    if (storage === undefined) {
      storage = this.openApp(appQName)
      this.apps.set(appQName, storage)
      // A failed schema step is retried by the next call instead of being cached forever.
      const pending = storage
      pending.catch(() => {
        if (this.apps.get(appQName) === pending) this.apps.delete(appQName)
      })
    }
    return storage
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.apps.clear()
    try {
      await this.client.shutdown()
    } catch (err) {
      throw new StorageError(`cassandra: shutdown failed: ${messageOf(err)}`, err)
    }
  }

  private async openApp(appQName: string): Promise<CassandraAppStorage> {
    const keyspace = keyspaceNameOf(this.keyspacePrefix, appQName)
    try {
      await this.ensureSchema(keyspace)
    } catch (err) {
      throw new StorageError(`cassandra: cannot create keyspace ${keyspace} for app ${JSON.stringify(appQName)}: ${messageOf(err)}`, err)
    }
    return new CassandraAppStorage(this.client, keyspace, () => this.closed)
  }

  /**
   * Looks before it creates: DDL is slow (a schema change agreed by every node) and racy
   * between coordinators, so a process that finds the table issues none.
   */
  private async ensureSchema(keyspace: string): Promise<void> {
    const found = await this.client.execute(
      'SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?',
      [keyspace, 'values'], { prepare: true, consistency: types.consistencies.localOne })
    if (found.rowLength > 0) return
    // DDL is not prepared: it runs once per keyspace, and the identifiers are checked above.
    await this.client.execute(`CREATE KEYSPACE IF NOT EXISTS ${keyspace} WITH replication = ${this.replication} AND durable_writes = true`)
    await this.client.execute(`CREATE TABLE IF NOT EXISTS ${keyspace}.values (p blob, c blob, value blob, PRIMARY KEY ((p), c))`)
  }
}

class CassandraAppStorage implements IAppStorage {
  private readonly putCql: string
  private readonly getCql: string
  private readonly getInCql: string
  private readonly ttlGetCql: string
  private readonly insertIfAbsentCql: string
  private readonly compareAndSwapCql: string
  private readonly compareAndDeleteCql: string
  private readonly readCqls = new Map<number, string>()

  constructor(private readonly client: Client, private readonly keyspace: string, private readonly isClosed: () => boolean) {
    const table = `${keyspace}.values`
    // TTL 0 = no expiry, and a write without TTL also clears an earlier value's TTL.
    this.putCql = `UPDATE ${table} USING TTL ? SET value = ? WHERE p = ? AND c = ?`
    this.getCql = `SELECT value FROM ${table} WHERE p = ? AND c = ?`
    this.getInCql = `SELECT c, value FROM ${table} WHERE p = ? AND c IN ?`
    this.ttlGetCql = `SELECT value, TTL(value) AS ttl FROM ${table} WHERE p = ? AND c = ?`
    // `IF value = null` holds for an absent row and for an expired value alike.
    this.insertIfAbsentCql = `UPDATE ${table} USING TTL ? SET value = ? WHERE p = ? AND c = ? IF value = null`
    this.compareAndSwapCql = `UPDATE ${table} USING TTL ? SET value = ? WHERE p = ? AND c = ? IF value = ?`
    this.compareAndDeleteCql = `DELETE FROM ${table} WHERE p = ? AND c = ? IF value = ?`
  }

  async put(pk: Bytes, cc: Bytes, value: Bytes): Promise<void> {
    this.assertOpen()
    checkKey(pk, cc)
    checkValue(value)
    await this.run('put', () => this.client.execute(this.putCql, [0, buf(value), buf(pk), buf(cc)], WRITE))
  }

  /**
   * One LOGGED batch: Cassandra writes it to the batchlog first, so once any of it is applied
   * all of it will be (replayed after a coordinator crash). Readers can see a multi-partition
   * batch half-applied meanwhile; a single-partition batch is applied in isolation.
   */
  async putBatch(items: readonly BatchItem[]): Promise<void> {
    this.assertOpen()
    checkBatch(items)
    const queries = lastWritePerKey(items).map((item) => ({
      query: this.putCql,
      params: [checkTtlSeconds(item.ttlSeconds), buf(item.value), buf(item.pk), buf(item.cc)],
    }))
    if (queries.length === 0) return
    if (queries.length > CQL_BATCH_STATEMENTS_MAX) {
      throw new VvmError('TOO_LARGE', `storage: a Cassandra batch holds at most ${CQL_BATCH_STATEMENTS_MAX} distinct keys, got ${queries.length}`)
    }
    if (queries.length === 1) {
      const only = queries[0]!
      await this.run('putBatch', () => this.client.execute(only.query, only.params, WRITE))
      return
    }
    await this.run('putBatch', () => this.client.batch(queries, { ...WRITE, logged: true }))
  }

  async get(pk: Bytes, cc: Bytes): Promise<Bytes | undefined> {
    this.assertOpen()
    checkKey(pk, cc)
    const result = await this.run('get', () => this.client.execute(this.getCql, [buf(pk), buf(cc)], READ))
    return valueOf(result.first())
  }

  async getBatch(pk: Bytes, ccs: readonly Bytes[]): Promise<(Bytes | undefined)[]> {
    this.assertOpen()
    checkPk(pk)
    if (ccs.length > BATCH_ITEMS_MAX) throw new VvmError('TOO_LARGE', `storage: getBatch of ${ccs.length} keys, at most ${BATCH_ITEMS_MAX} allowed`)
    for (const cc of ccs) checkCc(cc)
    if (ccs.length === 0) return []
    // Distinct keys, in chunks of IN lists; the answer is matched back by key, so duplicates
    // and any order the server returns rows in are fine.
    const distinct = [...new Map(ccs.map((cc) => [hexOf(cc), buf(cc)])).values()]
    const chunks: Buffer[][] = []
    for (let i = 0; i < distinct.length; i += GET_BATCH_IN_KEYS_MAX) chunks.push(distinct.slice(i, i + GET_BATCH_IN_KEYS_MAX))
    const found = new Map<string, Bytes>()
    const pkBuf = buf(pk)
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const chunk = chunks[next++]!
        const result = await this.run('getBatch', () => this.client.execute(this.getInCql, [pkBuf, chunk], READ))
        for (const row of result.rows) {
          const value = valueOf(row)
          if (value !== undefined) found.set(hexOf(row['c'] as Buffer), value)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(GET_BATCH_QUERIES_IN_FLIGHT_MAX, chunks.length) }, worker))
    return ccs.map((cc) => {
      const value = found.get(hexOf(cc))
      return value === undefined ? undefined : copyBytes(value)
    })
  }

  read(pk: Bytes, range?: ReadRange): AsyncIterable<StorageRow> {
    this.assertOpen()
    checkPk(pk)
    const rows = this.rows(pk, normalizeRange(range), false)
    return (async function* () {
      for await (const row of rows) yield { cc: row.cc, value: row.value }
    })()
  }

  ttlRead(pk: Bytes, range?: ReadRange): AsyncIterable<TtlRow> {
    this.assertOpen()
    checkPk(pk)
    return this.rows(pk, normalizeRange(range), true)
  }

  async insertIfNotExists(pk: Bytes, cc: Bytes, value: Bytes, ttlSeconds: number): Promise<boolean> {
    this.assertOpen()
    checkKey(pk, cc)
    checkValue(value)
    const ttl = checkTtlSeconds(ttlSeconds)
    return this.applied('insertIfNotExists', this.insertIfAbsentCql, [ttl, buf(value), buf(pk), buf(cc)])
  }

  async compareAndSwap(pk: Bytes, cc: Bytes, oldValue: Bytes, newValue: Bytes, ttlSeconds: number): Promise<boolean> {
    this.assertOpen()
    checkKey(pk, cc)
    checkValue(newValue)
    const ttl = checkTtlSeconds(ttlSeconds)
    return this.applied('compareAndSwap', this.compareAndSwapCql, [ttl, buf(newValue), buf(pk), buf(cc), buf(oldValue)])
  }

  async compareAndDelete(pk: Bytes, cc: Bytes, expected: Bytes): Promise<boolean> {
    this.assertOpen()
    checkKey(pk, cc)
    return this.applied('compareAndDelete', this.compareAndDeleteCql, [buf(pk), buf(cc), buf(expected)])
  }

  async ttlGet(pk: Bytes, cc: Bytes): Promise<TtlValue | undefined> {
    this.assertOpen()
    checkKey(pk, cc)
    const result = await this.run('ttlGet', () => this.client.execute(this.ttlGetCql, [buf(pk), buf(cc)], READ))
    const row = result.first()
    const value = valueOf(row)
    return value === undefined ? undefined : { value, expiresAtMs: expiresAtMsOf(row!['ttl'], Date.now()) }
  }

  private assertOpen(): void {
    if (this.isClosed()) throw new StorageError('cassandra: provider is closed')
  }

  /** An LWT's answer: `[applied]` is true when the condition held and the write happened. */
  private async applied(op: string, cql: string, params: unknown[]): Promise<boolean> {
    const result = await this.run(op, () => this.client.execute(cql, params, LWT))
    const applied: unknown = result.first()?.['[applied]']
    if (typeof applied !== 'boolean') throw new StorageError(`cassandra ${op} on ${this.keyspace}: the answer has no [applied] column`)
    return applied
  }

  /**
   * Pages through the range `READ_PAGE_ROWS_MAX` rows at a time, so a big partition is never
   * held whole. Each page is read when the consumer gets to it: rows written meanwhile may or
   * may not show up (no snapshot, unlike LevelDB).
   */
  private async *rows(pk: Bytes, range: NormalizedRange, withTtl: boolean): AsyncGenerator<TtlRow> {
    if (range.limit === 0) return
    const hasTo = range.ccTo !== undefined
    const hasLimit = range.limit !== Infinity
    const cql = this.readCql(withTtl, hasTo, range.reverse, hasLimit)
    // The empty blob is the smallest clustering value, so "no lower bound" is `c >= 0x`.
    const params: unknown[] = [buf(pk), range.ccFrom === undefined ? EMPTY : buf(range.ccFrom)]
    if (hasTo) params.push(buf(range.ccTo!))
    if (hasLimit) params.push(range.limit)
    let left = range.limit
    let pageState: string | undefined
    do {
      const options = { ...READ, fetchSize: Math.min(READ_PAGE_ROWS_MAX, left), autoPage: false, ...(pageState === undefined ? {} : { pageState }) }
      const result = await this.run('read', () => this.client.execute(cql, params, options))
      const nowMs = Date.now()
      for (const row of result.rows) {
        const value = valueOf(row)
        if (value === undefined) continue
        yield { cc: bytesOf(row['c'] as Buffer), value, expiresAtMs: withTtl ? expiresAtMsOf(row['ttl'], nowMs) : 0 }
        if (--left <= 0) return
      }
      pageState = result.pageState ?? undefined
    } while (pageState !== undefined && pageState !== null)
  }

  private readCql(withTtl: boolean, hasTo: boolean, reverse: boolean, hasLimit: boolean): string {
    const key = (withTtl ? 1 : 0) | (hasTo ? 2 : 0) | (reverse ? 4 : 0) | (hasLimit ? 8 : 0)
    let cql = this.readCqls.get(key)
    if (cql === undefined) {
      cql = `SELECT c, value${withTtl ? ', TTL(value) AS ttl' : ''} FROM ${this.keyspace}.values WHERE p = ? AND c >= ?` +
        `${hasTo ? ' AND c < ?' : ''}${reverse ? ' ORDER BY c DESC' : ''}${hasLimit ? ' LIMIT ?' : ''}`
      this.readCqls.set(key, cql)
    }
    return cql
  }

  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw this.storageError(op, err)
    }
  }

  private storageError(op: string, err: unknown): StorageError {
    if (this.isClosed()) return new StorageError(`cassandra ${op} on ${this.keyspace}: provider is closed`, err)
    let message = messageOf(err)
    if (err instanceof errors.ResponseError && err.code === types.responseErrorCodes.writeTimeout) {
      // A write timeout is not a failure: the write may still be applied.
      const writeType = (err as { writeType?: unknown }).writeType
      message += writeType === 'BATCH'
        ? ' (the batch is in the batchlog: it will be applied in full)'
        : ' (outcome unknown: the write may or may not have been applied)'
    } else if (err instanceof errors.OperationTimedOutError) {
      message += ' (no answer within the client timeout; a write may or may not have been applied)'
    }
    return new StorageError(`cassandra ${op} on ${this.keyspace}: ${message}`, err)
  }
}

/**
 * The keyspace of an app: prefix, a readable slug of the qname, and a hash of the exact qname,
 * so different qnames never share a keyspace even when their slugs agree ("a/b" and "a-b"),
 * and the name fits Cassandra's 48 characters of [a-z0-9_].
 */
export function keyspaceNameOf(prefix: string, appQName: string): string {
  const hash = createHash('sha256').update(appQName, 'utf8').digest('hex').slice(0, KEYSPACE_HASH_HEX_CHARS)
  const slugCharsMax = KEYSPACE_NAME_CHARS_MAX - prefix.length - KEYSPACE_HASH_HEX_CHARS - 1
  const slug = appQName.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, slugCharsMax).replace(/_+$/, '')
  const name = slug === '' ? `${prefix}${hash}` : `${prefix}${slug}_${hash}`
  if (!/^[a-z][a-z0-9_]*$/.test(name) || name.length > KEYSPACE_NAME_CHARS_MAX) {
    throw new Error(`keyspaceNameOf: built an invalid keyspace name ${name}`) // a bug, not bad input
  }
  return name
}

/**
 * Puts in one batch share one timestamp, and Cassandra settles equal timestamps by the larger
 * value, not by position. The interface (and mem, level) let the last item win, so only the
 * last write per key is sent.
 */
function lastWritePerKey(items: readonly BatchItem[]): BatchItem[] {
  const byKey = new Map<string, BatchItem>()
  for (const item of items) {
    const key = `${hexOf(item.pk)}/${hexOf(item.cc)}`
    byKey.delete(key) // re-insert so the map keeps the order of last writes
    byKey.set(key, item)
  }
  return [...byKey.values()]
}

/**
 * Cassandra stores expiry as whole seconds (local expiration time); TTL() answers the seconds
 * left, counted from the server's current second. The value turns invisible at the start of
 * that second, so that is the expiry reported. Assumes client and server clocks agree.
 */
function expiresAtMsOf(ttl: unknown, nowMs: number): number {
  if (ttl === null || ttl === undefined) return 0
  if (typeof ttl !== 'number') throw new StorageError(`cassandra: TTL() answered ${String(ttl)}, expected seconds`)
  return (Math.floor(nowMs / 1000) + ttl) * 1000
}

/** A row's value as a plain Uint8Array copy; undefined for an absent row or a null value. */
function valueOf(row: types.Row | null | undefined): Bytes | undefined {
  const value: unknown = row?.['value']
  if (value === null || value === undefined) return undefined
  return bytesOf(value as Buffer)
}

/** Copies: the driver's buffers are slices of whole response frames, which they would pin. */
function bytesOf(buffer: Buffer): Bytes {
  return new Uint8Array(buffer)
}

function buf(bytes: Bytes): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function messageOf(err: unknown): string {
  if (err instanceof errors.NoHostAvailableError) {
    const inner = Object.entries((err.innerErrors ?? {}) as Record<string, unknown>).map(([host, e]) => `${host}: ${messageOf(e)}`)
    return inner.length === 0 ? err.message : `no host available (${inner.join('; ')})`
  }
  return err instanceof Error ? err.message : String(err)
}

function checkHosts(hosts: readonly string[]): readonly string[] {
  if (!Array.isArray(hosts) || hosts.length === 0) {
    throw new VvmError('VALIDATION', `storage: cassandraHosts ${JSON.stringify(hosts)} must be a non-empty list of "host:port"`)
  }
  for (const host of hosts) {
    if (typeof host !== 'string' || !/^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)) {
      throw new VvmError('VALIDATION', `storage: cassandraHosts entry ${JSON.stringify(host)} must be "host" or "host:port"`)
    }
  }
  return hosts
}

function checkLocalDc(localDc: string): string {
  if (typeof localDc !== 'string' || localDc === '') {
    throw new VvmError('VALIDATION', `storage: cassandraLocalDc ${JSON.stringify(localDc)} must be a non-empty data center name`)
  }
  return localDc
}

function checkKeyspacePrefix(prefix: string): string {
  if (typeof prefix !== 'string' || !/^[a-z][a-z0-9_]*$/.test(prefix) || prefix.length > KEYSPACE_PREFIX_CHARS_MAX) {
    throw new VvmError('VALIDATION',
      `storage: cassandraKeyspacePrefix ${JSON.stringify(prefix)} must match [a-z][a-z0-9_]* with at most ${KEYSPACE_PREFIX_CHARS_MAX} characters`)
  }
  return prefix
}

/** A CQL map literal; it is pasted into CREATE KEYSPACE, so nothing that could end the statement. */
function checkReplication(replication: string): string {
  if (typeof replication !== 'string' || !/^\{[^;{}]*\}$/.test(replication.trim()) || !/'class'/.test(replication)) {
    throw new VvmError('VALIDATION',
      `storage: cassandraReplication ${JSON.stringify(replication)} must be a CQL map such as ${CASSANDRA_REPLICATION_DEFAULT}`)
  }
  return replication.trim()
}
