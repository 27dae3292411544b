// One validated configuration object (seed 001's VVMConfig). Sources, later wins: defaults,
// the config file (`--config file.json`), environment variables (`VVM_<NAME>`), flags. Every
// option is declared once in OPTIONS below; help text, parsing and validation come from it.

import { readFileSync } from 'node:fs'
import type { StorageKind } from '../shared/storage/types.js'
import { tlsConfigProblem } from './tls/config.js'
import { COMMIT_LOG_BYTES_DEFAULT, COMMIT_LOG_BYTES_MAX, COMMIT_LOG_BYTES_MIN } from '../shared/storage/commit-log.js'
import { LEVEL_WRITE_BUFFER_BYTES_DEFAULT, LEVEL_WRITE_BUFFER_BYTES_MAX, LEVEL_WRITE_BUFFER_BYTES_MIN } from '../shared/storage/level-write-buffer.js'
import { V8_POOL_SIZE_AUTO, V8_POOL_SIZE_MAX } from './v8-pool.js'

export interface VvmConfig {
  port: number
  metricsPort: number
  host: string
  dataDir: string
  storage: StorageKind
  partitions: number
  apps: string[]
  bodyBytesMax: number
  ringBytes: number
  batchCommandsMax: number
  queryThreads: number
  queryQueueMax: number
  inflightPerPartitionMax: number
  idempotencyRetentionS: number
  actualizerBatchEventsMax: number
  actualizerFlushIntervalMs: number
  partitionSpinUs: number
  partitionBlockMs: number
  groupCommitWaitUs: number
  /** V8's helper threads (src/main/v8-pool.ts): -1 sized to the machine, 0 Node's default. */
  v8PoolSize: number
  commitLogBytes: number
  levelWriteBufferBytes: number
  actualizerRetryMaxMs: number
  rateOverrides: Record<string, { count: number; perSeconds: number; scope?: 'workspace' | 'partition' | 'address' }>
  idempotencyKeyBytesMax: number
  wsHeadsCachedMax: number
  recordsCachedMax: number
  rateBucketsMax: number
  cassandraHosts: string[]
  cassandraKeyspacePrefix: string
  nodeId: string
  advertise: string
  leaseTtlS: number
  killAfterS: number
  shutdownTimeoutS: number
  httpsPort: number
  domains: string[]
  acmeDirectory: string
  acmeEmail: string
  acmeDirectoryCaFile: string
  acmeRenewBeforeDays: number
  acmeRetryMinS: number
  acmeRetryMaxS: number
  tlsCert: string
  tlsKey: string
  domainApps: string[]
  wsFrameBytesMax: number
  wsInflightMax: number
  wsBufferedBytesMax: number
  wsIdleTimeoutS: number
  subscriptionsMax: number
  subscriptionsPerConnectionMax: number
  subscriptionGroupsMax: number
  subscriptionRowsMax: number
  subscriptionHistoryDiffsMax: number
  subscriptionHistoryBytesMax: number
  subscriptionGraceS: number
  subscriptionPendingOpsMax: number
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  wasmDeadlineMs: number
  wasmMemoryBytesMax: number
  wasmPoolSize: number
  adminToken: string
  auth: 'on' | 'off'
  authKeysFile: string
  authTokenTtlS: number
  authLoginAttemptsPerMinute: number
  authAddressAttemptsPerMinute: number
}

type Kind = 'int' | 'string' | 'list' | 'enum' | 'json'

interface OptionSpec<K extends keyof VvmConfig = keyof VvmConfig> {
  key: K
  flag: string
  kind: Kind
  default: VvmConfig[K]
  help: string
  min?: number
  max?: number
  values?: readonly string[]
  /** Repeatable flag (`--app a --app b`) for lists. */
  repeat?: boolean
}

const MiB = 1024 * 1024
/** A spin longer than this is a core given away, not a wake-up saved. */
const PARTITION_SPIN_US_MAX = 10_000
/** A blocking wait longer than this holds the worker's timers and messages back too long. */
const PARTITION_BLOCK_MS_MAX = 50
/** Why 5 ms: a group-commit wait is latency every command of the batch pays; longer buys nothing a 2-core machine showed. */
const GROUP_COMMIT_WAIT_US_MAX = 5000

export const OPTIONS: readonly OptionSpec[] = [
  { key: 'port', flag: 'port', kind: 'int', default: 8822, min: 0, max: 65535, help: 'HTTP and WebSocket port (0 picks a free one)' },
  { key: 'metricsPort', flag: 'metrics-port', kind: 'int', default: 8000, min: 0, max: 65535, help: 'Prometheus /metrics port (0 picks a free one)' },
  { key: 'host', flag: 'host', kind: 'string', default: '0.0.0.0', help: 'address to listen on' },
  { key: 'dataDir', flag: 'data-dir', kind: 'string', default: './data', help: 'data directory (level storage)' },
  { key: 'storage', flag: 'storage', kind: 'enum', default: 'level', values: ['mem', 'level', 'cassandra'], help: 'storage backend: level (embedded LevelDB), mem (tests; not durable), cassandra' },
  { key: 'partitions', flag: 'partitions', kind: 'int', default: 2, min: 1, max: 1024, help: 'partitions per app (fixed once data exists) unless the app declares its own' },
  { key: 'apps', flag: 'app', kind: 'list', default: ['demo/bank'], repeat: true, help: 'app module to deploy: a path to a module whose default export is defineApp(...), or a shipped app (demo/bank); repeatable' },
  { key: 'bodyBytesMax', flag: 'body-bytes-max', kind: 'int', default: 1 * MiB, min: 1024, max: 64 * MiB, help: 'largest request body; larger ones get 413' },
  { key: 'ringBytes', flag: 'ring-bytes', kind: 'int', default: 8 * MiB, min: 64 * 1024, max: 1024 * MiB, help: 'bytes of each partition ring (power of two); a full ring answers 503' },
  { key: 'batchCommandsMax', flag: 'batch-commands-max', kind: 'int', default: 1024, min: 1, max: 65536, help: 'commands in one group commit at most' },
  { key: 'partitionSpinUs', flag: 'partition-spin-us', kind: 'int', default: 0, min: 0, max: PARTITION_SPIN_US_MAX, help: 'after a batch, a partition worker polls its ring up to this long before it sleeps, while most recent requests came that soon: saves a thread wake-up per request, costs a busy core meanwhile (for machines with cores to spare; 0: off)' },
  { key: 'partitionBlockMs', flag: 'partition-block-ms', kind: 'int', default: 2, min: 0, max: PARTITION_BLOCK_MS_MAX, help: 'after a batch, a partition worker waits for the next request this long blocking its thread (a futex wake-up, cheaper than one through its event loop), then through the event loop; its timers and messages get a turn at least this often (0: off; off with cassandra storage, whose reads complete through the event loop)' },
  { key: 'v8PoolSize', flag: 'v8-pool-size', kind: 'int', default: V8_POOL_SIZE_AUTO, min: V8_POOL_SIZE_AUTO, max: V8_POOL_SIZE_MAX, help: "threads of V8's helper pool (the garbage collector's concurrent and parallel work, background compilation) for all of the server's threads; Node reads it only at start-up, so the server restarts itself in place (same pid) with node --v8-pool-size when node runs with another size (with -1: when node was started without one; not under --inspect); on a small machine fewer helpers leave the cores to the threads requests wait for (measured on 2 cores at half the maximum rate: p99 6.1 ms with 1 against 8.0 ms with Node's 4); -1: one per core beyond the first, 1 to 4; 0: Node's default (4), no restart" },
  { key: 'groupCommitWaitUs', flag: 'group-commit-wait-us', kind: 'int', default: 0, min: 0, max: GROUP_COMMIT_WAIT_US_MAX, help: 'a partition worker that executed a batch of fewer than 8 commands, while requests come at least this often, waits for more before committing it: up to this long, or as long as the missing ones take to come at the recent rate; one commit for several costs less CPU per command at moderate load, and each command of the batch this much latency at most; it stops while its waits catch nothing (a closed loop of few clients); measured here: 11 % less server CPU per command in an open loop at 7,000/s, p50 +0.4 ms, and 1–9 % fewer commands/s in a closed loop of 64 connections (500 is a good value; 0: off; off with cassandra storage)' },
  { key: 'commitLogBytes', flag: 'commit-log-bytes', kind: 'int', default: COMMIT_LOG_BYTES_DEFAULT, min: 0, max: COMMIT_LOG_BYTES_MAX, help: `level storage: each partition's durable batches are synced in a commit log of this size, made once in full, then written to LevelDB unsynced (a sync into existing space needs no journal commit); 0: LevelDB syncs its own log (at least ${COMMIT_LOG_BYTES_MIN} otherwise)` },
  { key: 'levelWriteBufferBytes', flag: 'level-write-buffer-bytes', kind: 'int', default: LEVEL_WRITE_BUFFER_BYTES_DEFAULT, min: LEVEL_WRITE_BUFFER_BYTES_MIN, max: LEVEL_WRITE_BUFFER_BYTES_MAX, help: "level storage: each database's memtable (LevelDB's write buffer), flushed into a table when full; larger means fewer, cheaper compactions (with 16 MiB against LevelDB's 4 MiB: 3–5× fewer bytes compacted at 15,000 deposits/s, the tail at that rate lower) for up to twice this much memory per database under writes" },
  { key: 'queryThreads', flag: 'query-threads', kind: 'int', default: 2, min: 1, max: 256, help: 'query processor threads (piscina pool)' },
  { key: 'queryQueueMax', flag: 'query-queue-max', kind: 'int', default: 4096, min: 1, max: 1_000_000, help: 'queued queries at most; more get 503' },
  { key: 'inflightPerPartitionMax', flag: 'inflight-per-partition-max', kind: 'int', default: 16384, min: 1, max: 1_000_000, help: 'unanswered requests per partition at most; more get 503' },
  { key: 'idempotencyRetentionS', flag: 'idempotency-retention-s', kind: 'int', default: 86400, min: 1, max: 30 * 86400, help: 'how long an Idempotency-Key is remembered' },
  { key: 'actualizerBatchEventsMax', flag: 'actualizer-batch-events-max', kind: 'int', default: 1000, min: 1, max: 100_000, help: 'events an async projector processes per storage batch at most' },
  { key: 'actualizerFlushIntervalMs', flag: 'actualizer-flush-interval-ms', kind: 'int', default: 5, min: 0, max: 60_000, help: 'after new events, an actualizer waits this long to project a burst in one batch' },
  { key: 'actualizerRetryMaxMs', flag: 'actualizer-retry-max-ms', kind: 'int', default: 30_000, min: 100, max: 3_600_000, help: 'longest backoff between retries of a failing async projector (from 100 ms, doubling)' },
  { key: 'rateOverrides', flag: 'rate-overrides', kind: 'json', default: {}, help: 'JSON {"owner/app:pkg.Func": {"count": n, "perSeconds": s, "scope": "workspace|partition|address"}} replacing declared rates' },
  { key: 'idempotencyKeyBytesMax', flag: 'idempotency-key-bytes-max', kind: 'int', default: 128, min: 8, max: 1024, help: 'longest Idempotency-Key' },
  { key: 'wsHeadsCachedMax', flag: 'ws-heads-cached-max', kind: 'int', default: 100_000, min: 1, max: 10_000_000, help: 'workspace heads cached per partition' },
  { key: 'recordsCachedMax', flag: 'records-cached-max', kind: 'int', default: 100_000, min: 0, max: 10_000_000, help: 'records cached per partition' },
  { key: 'rateBucketsMax', flag: 'rate-buckets-max', kind: 'int', default: 100_000, min: 1, max: 10_000_000, help: 'rate-limit buckets kept; the least recently used are forgotten' },
  { key: 'cassandraHosts', flag: 'cassandra-hosts', kind: 'list', default: ['127.0.0.1:9042'], help: 'Cassandra contact points host:port, comma-separated' },
  { key: 'cassandraKeyspacePrefix', flag: 'cassandra-keyspace-prefix', kind: 'string', default: 'vvm_', help: 'prefix of the keyspace of each app (one keyspace per app)' },
  { key: 'nodeId', flag: 'node-id', kind: 'string', default: '', help: "this node's name in leases (default host:pid)" },
  { key: 'advertise', flag: 'advertise', kind: 'string', default: '', help: 'cluster mode (cassandra): the URL other nodes and clients reach this node at; nodes share the partitions through leases' },
  { key: 'leaseTtlS', flag: 'lease-ttl-s', kind: 'int', default: 15, min: 1, max: 3600, help: 'leadership lease time to live; renewed every third of it' },
  { key: 'killAfterS', flag: 'kill-after-s', kind: 'int', default: 30, min: 1, max: 3600, help: 'after leadership is lost, the process is ended this long later if it has not stopped' },
  { key: 'wsFrameBytesMax', flag: 'ws-frame-bytes-max', kind: 'int', default: 1 * MiB, min: 1024, max: 64 * MiB, help: 'largest binary-protocol frame; larger ones close the connection with 1009' },
  { key: 'wsInflightMax', flag: 'ws-inflight-max', kind: 'int', default: 16384, min: 1, max: 1_000_000, help: 'requests in flight per WebSocket connection at most; more get 503' },
  { key: 'wsBufferedBytesMax', flag: 'ws-buffered-bytes-max', kind: 'int', default: 16 * MiB, min: 64 * 1024, max: 1024 * MiB, help: 'reply bytes buffered for a WebSocket client that does not read; past half of it requests get 503, past it the connection is closed (4008)' },
  { key: 'wsIdleTimeoutS', flag: 'ws-idle-timeout-s', kind: 'int', default: 120, min: 0, max: 86400, help: 'a WebSocket connection with nothing in flight and no frame for this long is closed (4010); 0: never' },
  // Subscriptions (docs/subscriptions.md).
  { key: 'subscriptionsMax', flag: 'subscriptions-max', kind: 'int', default: 100_000, min: 1, max: 10_000_000, help: 'subscriptions on this server at most (binary protocol and SSE); more get 503' },
  { key: 'subscriptionsPerConnectionMax', flag: 'subscriptions-per-connection-max', kind: 'int', default: 1000, min: 1, max: 1_000_000, help: 'subscriptions of one WebSocket connection at most; more get 429 SUBSCRIPTIONS_LIMIT' },
  { key: 'subscriptionGroupsMax', flag: 'subscription-groups-max', kind: 'int', default: 100_000, min: 1, max: 10_000_000, help: 'distinct subscribed reads a partition keeps (with subscribers, or in their grace period); past it the longest idle goes, or 503' },
  { key: 'subscriptionRowsMax', flag: 'subscription-rows-max', kind: 'int', default: 10_000, min: 1, max: 100_000, help: "rows of one subscription's result at most; a larger result is refused (413) or ends the subscription" },
  { key: 'subscriptionHistoryDiffsMax', flag: 'subscription-history-diffs-max', kind: 'int', default: 64, min: 0, max: 100_000, help: 'diffs a subscribed read keeps so that subscribers can resume; older resume offsets get a fresh snapshot' },
  { key: 'subscriptionHistoryBytesMax', flag: 'subscription-history-bytes-max', kind: 'int', default: 256 * 1024, min: 0, max: 1024 * MiB, help: 'bytes of diffs a subscribed read keeps for resuming subscribers' },
  { key: 'subscriptionGraceS', flag: 'subscription-grace-s', kind: 'int', default: 30, min: 0, max: 86400, help: 'a subscribed read without subscribers is kept this long (for resume after reconnect)' },
  { key: 'subscriptionPendingOpsMax', flag: 'subscription-pending-ops-max', kind: 'int', default: 10_000, min: 1, max: 10_000_000, help: 'changed rows held for a subscriber that does not read (coalesced); past it the subscription ends with RESYNC' },
  { key: 'shutdownTimeoutS', flag: 'shutdown-timeout-s', kind: 'int', default: 30, min: 1, max: 3600, help: 'a shutdown that takes longer ends the process (exit code 1)' },
  // HTTPS (docs/operations.md#https, src/main/tls): on with --domain or --tls-cert.
  { key: 'httpsPort', flag: 'https-port', kind: 'int', default: 8443, min: 0, max: 65535, help: 'HTTPS port when TLS is on (--domain or --tls-cert); --port then answers ACME challenges and redirects to HTTPS (0 picks a free one)' },
  { key: 'domains', flag: 'domain', kind: 'list', default: [], repeat: true, help: 'domain served over HTTPS with a certificate from the ACME CA (HTTP-01 challenges on --port, which must be reachable as port 80 of the domain); repeatable' },
  { key: 'acmeDirectory', flag: 'acme-directory', kind: 'string', default: 'https://acme-v02.api.letsencrypt.org/directory', help: "ACME directory URL of the certificate authority (its terms of service are agreed to)" },
  { key: 'acmeEmail', flag: 'acme-email', kind: 'string', default: '', help: 'contact e-mail of the ACME account; empty: none' },
  { key: 'acmeDirectoryCaFile', flag: 'acme-directory-ca-file', kind: 'string', default: '', help: "PEM file of CA certificates trusted for the ACME directory's HTTPS (a private CA, Pebble); empty: the system's" },
  { key: 'acmeRenewBeforeDays', flag: 'acme-renew-before-days', kind: 'int', default: 30, min: 1, max: 365, help: 'renew a certificate when less validity remains (a third of its lifetime if it lives no longer than this)' },
  { key: 'acmeRetryMinS', flag: 'acme-retry-min-s', kind: 'int', default: 60, min: 1, max: 86400, help: 'wait after a failed certificate order; doubles with each further failure' },
  { key: 'acmeRetryMaxS', flag: 'acme-retry-max-s', kind: 'int', default: 21600, min: 1, max: 7 * 86400, help: 'longest wait between failed certificate orders' },
  { key: 'tlsCert', flag: 'tls-cert', kind: 'string', default: '', help: 'PEM certificate (chain) file served over HTTPS, with --tls-key; besides --domain it is the certificate for other names; read at start' },
  { key: 'tlsKey', flag: 'tls-key', kind: 'string', default: '', help: 'PEM private key file of --tls-cert' },
  { key: 'domainApps', flag: 'domain-app', kind: 'list', default: [], repeat: true, help: 'host=owner/app: on that host /api/v2/workspaces/... stands for /api/v2/apps/owner/app/workspaces/...; repeatable' },  { key: 'auth', flag: 'auth', kind: 'enum', default: 'on', values: ['on', 'off'], help: 'on: requests need a token unless the app grants them to public, roles and grants are enforced (docs/security.md); off: every request acts as the workspace owner (tests, local experiments)' },
  { key: 'authKeysFile', flag: 'auth-keys-file', kind: 'string', default: '', help: 'token signing keys (JSON, mode 0600), created on first start if absent; cluster nodes share one; empty: <data-dir>/auth-keys.json' },
  { key: 'authTokenTtlS', flag: 'auth-token-ttl-s', kind: 'int', default: 3600, min: 60, max: 30 * 86400, help: 'lifetime of the tokens that login and refresh issue' },
  { key: 'authLoginAttemptsPerMinute', flag: 'auth-login-attempts-per-minute', kind: 'int', default: 10, min: 1, max: 100_000, help: 'login attempts per login (token bucket); more get 429' },
  { key: 'authAddressAttemptsPerMinute', flag: 'auth-address-attempts-per-minute', kind: 'int', default: 60, min: 1, max: 100_000, help: 'login and sign-up attempts per client address (token bucket); more get 429' },
  { key: 'adminToken', flag: 'admin-token', kind: 'string', default: '', help: 'serves the admin dashboard at /admin to holders of this token (docs/admin.md); empty: no dashboard (404)' },
  { key: 'wasmDeadlineMs', flag: 'wasm-deadline-ms', kind: 'int', default: 50, min: 1, max: 60_000, help: 'wall-clock budget of one WASM extension call; past it the call fails (500 EXTENSION_TIMEOUT) and writes nothing' },
  { key: 'wasmMemoryBytesMax', flag: 'wasm-memory-bytes-max', kind: 'int', default: 16 * MiB, min: 64 * 1024, max: 1024 * MiB, help: 'linear memory of one WASM extension instance; growing past it fails the call (500 EXTENSION_MEMORY)' },
  { key: 'wasmPoolSize', flag: 'wasm-pool-size', kind: 'int', default: 2, min: 1, max: 64, help: 'WASM instances each worker makes at start per module and processor kind; none free answers 503' },
  { key: 'logLevel', flag: 'log-level', kind: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], help: 'log level' },
]

export class ConfigError extends Error {
  readonly code = 'VVM_CONFIG'
}

export function defaultConfig(): VvmConfig {
  const c = {} as Record<string, unknown>
  for (const o of OPTIONS) c[o.key] = Array.isArray(o.default) ? [...o.default] : typeof o.default === 'object' ? { ...o.default } : o.default
  return c as unknown as VvmConfig
}

const envName = (o: OptionSpec): string => 'VVM_' + o.flag.toUpperCase().replace(/-/g, '_')

/**
 * Builds the config from flags (`argv` after the command name), the environment and an
 * optional config file. Unknown flags and bad values throw a ConfigError naming them.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): VvmConfig {
  const flags = parseFlags(argv)
  const raw: Record<string, unknown> = {}
  const file = flags.get('config')?.at(-1) ?? env.VVM_CONFIG
  if (file !== undefined) {
    for (const [key, value] of Object.entries(readConfigFile(file))) {
      const o = OPTIONS.find((x) => x.key === key)
      if (o === undefined) throw new ConfigError(`config file ${file}: unknown field '${key}'`)
      raw[key] = check(o, value, `config file ${file}: field '${key}'`)
    }
  }
  for (const o of OPTIONS) {
    const v = env[envName(o)]
    if (v !== undefined && v !== '') raw[o.key] = check(o, fromText(o, [v], `environment ${envName(o)}`), `environment ${envName(o)}`)
  }
  for (const [flag, values] of flags) {
    if (flag === 'config') continue
    const o = OPTIONS.find((x) => x.flag === flag)
    if (o === undefined) throw new ConfigError(`unknown option --${flag} (see vvm --help)`)
    raw[o.key] = check(o, fromText(o, values, `--${flag}`), `--${flag}`)
  }
  return validateConfig(raw)
}

/** Checks every field of a partial config against OPTIONS and fills defaults. */
export function validateConfig(raw: Record<string, unknown>): VvmConfig {
  const c = defaultConfig() as unknown as Record<string, unknown>
  for (const [key, value] of Object.entries(raw)) {
    const o = OPTIONS.find((x) => x.key === key)
    if (o === undefined) throw new ConfigError(`unknown config field '${key}'`)
    c[key] = check(o, value, `config field '${key}'`)
  }
  const cfg = c as unknown as VvmConfig
  if ((cfg.ringBytes & (cfg.ringBytes - 1)) !== 0) throw new ConfigError(`ringBytes ${cfg.ringBytes} must be a power of two`)
  // A request frame carries the body plus a small header; it must fit a quarter of the ring.
  if (cfg.bodyBytesMax + 4096 > cfg.ringBytes / 4) throw new ConfigError(`bodyBytesMax ${cfg.bodyBytesMax} must be at most ringBytes/4 - 4096 (${cfg.ringBytes / 4 - 4096})`)
  if (cfg.commitLogBytes !== 0 && cfg.commitLogBytes < COMMIT_LOG_BYTES_MIN) throw new ConfigError(`commitLogBytes ${cfg.commitLogBytes} must be 0 (off) or at least ${COMMIT_LOG_BYTES_MIN}`)
  if (cfg.apps.length === 0) throw new ConfigError('at least one app must be deployed (--app)')
  if (cfg.advertise !== '') {
    if (cfg.storage !== 'cassandra') throw new ConfigError(`--advertise (cluster mode) needs --storage cassandra, not ${cfg.storage}`)
    if (!/^https?:\/\/[^/]+$/.test(cfg.advertise)) throw new ConfigError(`--advertise '${cfg.advertise}' must be a base URL like http://10.0.0.5:8822`)
  }
  const tlsProblem = tlsConfigProblem(cfg)
  if (tlsProblem !== undefined) throw new ConfigError(tlsProblem)
  return cfg
}

function check(o: OptionSpec, v: unknown, where: string): unknown {
  const bad = (what: string): never => { throw new ConfigError(`${where}: ${JSON.stringify(v)} is invalid: expected ${what}`) }
  switch (o.kind) {
    case 'int':
      if (!Number.isInteger(v) || (v as number) < (o.min ?? -Infinity) || (v as number) > (o.max ?? Infinity)) bad(`an integer ${o.min}..${o.max}`)
      return v
    case 'string':
      if (typeof v !== 'string' || v.length === 0) bad('a non-empty string')
      return v
    case 'enum':
      if (!o.values!.includes(v as string)) bad(`one of ${o.values!.join(', ')}`)
      return v
    case 'list':
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.length === 0)) bad('a list of non-empty strings')
      return v
    case 'json':
      return checkRateOverrides(v, bad)
  }
}

function checkRateOverrides(v: unknown, bad: (what: string) => never): unknown {
  const shape = 'an object {"owner/app:pkg.Func": {"count": positive integer, "perSeconds": positive number, "scope"?: "workspace"|"partition"|"address"}}'
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(shape)
  for (const [k, r] of Object.entries(v as Record<string, unknown>)) {
    const rate = r as { count?: unknown; perSeconds?: unknown; scope?: unknown }
    const ok = /^[^:]+\/[^:]+:[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$/.test(k) && typeof r === 'object' && r !== null
      && Number.isInteger(rate.count) && (rate.count as number) >= 1 && typeof rate.perSeconds === 'number' && rate.perSeconds > 0
      && (rate.scope === undefined || ['workspace', 'partition', 'address'].includes(rate.scope as string))
    if (!ok) bad(shape)
  }
  return v
}

function fromText(o: OptionSpec, values: readonly string[], where: string): unknown {
  const last = values.at(-1)!
  switch (o.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(last)) throw new ConfigError(`${where}: '${last}' is invalid: expected an integer ${o.min}..${o.max}`)
      return Number(last)
    }
    case 'list':
      return values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s.length > 0)
    case 'json':
      try {
        return JSON.parse(last)
      } catch {
        throw new ConfigError(`${where}: '${last}' is not valid JSON`)
      }
    default:
      return last
  }
}

function parseFlags(argv: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (!a.startsWith('--')) throw new ConfigError(`unexpected argument '${a}' (options look like --name value)`)
    const eq = a.indexOf('=')
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2)
    let value: string
    if (eq > 0) value = a.slice(eq + 1)
    else {
      const next = argv[i + 1]
      if (next === undefined || next.startsWith('--')) throw new ConfigError(`option --${name} needs a value`)
      value = next
      i++
    }
    out.set(name, [...(out.get(name) ?? []), value])
  }
  return out
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`)
  }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`config file ${path} must hold a JSON object`)
  return v as Record<string, unknown>
}

export function optionsHelp(): string {
  return OPTIONS.map((o) => {
    const def = Array.isArray(o.default) ? o.default.join(',') : typeof o.default === 'object' ? JSON.stringify(o.default) : String(o.default)
    const values = o.values ? ` (${o.values.join('|')})` : ''
    return `  --${o.flag.padEnd(28)} ${o.help}${values}; default ${def}; env ${envName(o)}`
  }).join('\n')
}
