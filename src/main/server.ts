// Assembles a serving vvm: apps, storage check, partition workers, query pool, HTTP routes on
// uWebSockets.js. `close()` stops accepting, lets workers drain their rings, and releases
// every thread, socket and handle it opened.

import { existsSync } from 'node:fs'
import { getHeapStatistics } from 'node:v8'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import uws from 'uWebSockets.js'
import { pino, type Logger } from 'pino'
import { loadApp, loadApps } from '../shared/app-loader.js'
import type { AppDef } from '../shared/appdef/types.js'
import { decodeStored, encodeStored, metaKey, type StoredMeta } from '../shared/layout.js'
import { openStorageProvider } from '../shared/storage/index.js'
import { levelWritesInline } from '../shared/storage/level.js'
import type { IStorageProvider, StorageConfig } from '../shared/storage/types.js'
import type { WasmOptions } from '../shared/partition-protocol.js'
import { ConfigError, type VvmConfig } from './config.js'
import { v8PoolSizeInForce } from './v8-pool.js'
import { Dispatcher } from './dispatcher.js'
import { registerHttpApi } from './http-api.js'
import { registerWsApi } from './ws-api.js'
import { PartitionSet } from './partitions.js'
import { SubscriptionHub } from './subscriptions.js'
import { sseStats } from './sse.js'
import { VvmError } from '../shared/errors.js'
import { QueryPool } from './query-pool.js'
import { RateLimiter } from './rate-limiter.js'
import { ServerMetrics } from './metrics.js'
import { registerAdmin, type AdminDashboard } from './admin.js'
import { LoginStore, openAuthenticator, registerAuthRoutes } from './auth/index.js'
import { perMinute } from '../shared/appdef/define.js'
import { startTls, type TlsFrontend } from './tls/index.js'
import { domainAppMap } from './domain-apps.js'
import { STAGE_BUCKETS_S } from '../shared/stage-histogram.js'

const SHIPPED_APPS: Record<string, string> = {
  'demo/bank': new URL('../../demo/bank/index.js', import.meta.url).href,
}

/** Why 200 ms: a few round trips on loopback or a LAN; idle clients need no more to notice. */
const SHUTDOWN_GRACE_MS = 200

export interface VvmServer {
  readonly port: number
  /** Partitions per app, as stored with the data. */
  readonly appPartitions: ReadonlyMap<string, number>
  readonly metricsPort: number
  readonly metrics: ServerMetrics
  readonly apps: ReadonlyMap<string, AppDef>
  readonly partitions: PartitionSet
  readonly queries: QueryPool | undefined
  readonly log: Logger
  /** The admin dashboard at /admin, when `adminToken` is configured (admin.ts). */
  readonly admin: AdminDashboard | undefined
  /** From now on every request gets 503 (leadership lost, or shutting down). */
  stopServing(): void
  /**
   * Deploys a new version of a deployed app (its module URL; the same file needs a new URL,
   * e.g. `?v=2`): its partitions cancel their actualizers and schedulers and start the new
   * version's. The query pool keeps the version it started with until restart.
   */
  redeployApp(appQName: string, moduleUrl: string): Promise<void>
  /** Stops an app's actualizers and schedulers; its requests get 404 until redeployed. */
  undeployApp(appQName: string): Promise<void>
  close(): Promise<void>
}

/** uWebSockets.js must be its native binary, never a silent JavaScript fallback. */
export function assertNativeUws(): void {
  const native = typeof uws.App === 'function' && String(uws.App).includes('[native code]') && typeof uws.us_listen_socket_close === 'function'
  if (!native) throw new Error('uWebSockets.js is not the native binary: vvm needs the native uWS build (npm:@based/uws)')
}

export function resolveAppUrl(spec: string): string {
  const shipped = SHIPPED_APPS[spec]
  if (shipped !== undefined) return shipped
  const path = resolve(spec)
  if (!existsSync(path)) throw new ConfigError(`app module '${spec}' not found (looked for ${path}); shipped apps: ${Object.keys(SHIPPED_APPS).join(', ')}`)
  return pathToFileURL(path).href
}

/** The engine pools' options; compiled modules are cached under the data directory. */
export function wasmOptionsOf(config: VvmConfig): WasmOptions {
  return { deadlineMs: config.wasmDeadlineMs, memoryBytesMax: config.wasmMemoryBytesMax, poolSize: config.wasmPoolSize, cacheDir: join(resolve(config.dataDir), 'wasm-cache') }
}

export function storageConfigOf(config: VvmConfig): StorageConfig {
  return { kind: config.storage, dataDir: resolve(config.dataDir), levelCommitLogBytes: config.commitLogBytes, levelWriteBufferBytes: config.levelWriteBufferBytes, cassandraHosts: config.cassandraHosts, cassandraKeyspacePrefix: config.cassandraKeyspacePrefix }
}

/**
 * Starts serving. With `provider` given (the VVM opens storage first to win leadership), the
 * server uses it and leaves closing it to the caller; otherwise it opens and closes its own.
 */
export interface ClusterHooks {
  /** Which node serves a partition this node does not (for redirects). */
  ownerOf: (app: string, partition: number) => { nodeId: string; advertise: string } | undefined
}

export async function startServer(config: VvmConfig, log: Logger = pino({ level: config.logLevel }), given?: IStorageProvider, cluster?: ClusterHooks): Promise<VvmServer> {
  assertNativeUws()
  const appUrls = config.apps.map(resolveAppUrl)
  const apps = await loadApps(appUrls)
  const auth = await openAuthenticator(config, apps, log)
  const storage = storageConfigOf(config)
  const provider = given ?? (await openStorageProvider(storage))
  const closeProvider = async (): Promise<void> => { if (given === undefined) await provider.close() }
  let partitions: PartitionSet | undefined
  let queries: QueryPool | undefined
  let tls: TlsFrontend | undefined
  try {
    const partitionCounts = new Map<string, number>()
    for (const app of apps.values()) partitionCounts.set(app.qname, await checkPartitionCount(provider, app, app.partitions ?? config.partitions))
    const logFn = (level: 'info' | 'warn' | 'error', msg: string): void => log[level](msg)
    const wasm = wasmOptionsOf(config)
    let serving = false
    const hub = new SubscriptionHub({
      subscriptionsMax: config.subscriptionsMax,
      submit: (app, partition, req, onReply) => partitions!.submitTo(app, partition, req, { reply: (status) => onReply(status) }),
      log: logFn,
    })
    partitions = await PartitionSet.start({
      apps: [...apps.values()].map((a, i) => ({ qname: a.qname, url: appUrls[i]!, partitions: partitionCounts.get(a.qname)! })),
      storage,
      ringBytes: config.ringBytes,
      inflightPerPartitionMax: config.inflightPerPartitionMax,
      partition: {
        wasm,
        actualizerBatchEventsMax: config.actualizerBatchEventsMax,
        actualizerFlushIntervalMs: config.actualizerFlushIntervalMs,
        actualizerRetryMaxMs: config.actualizerRetryMaxMs,
        idempotencyTtlSeconds: config.idempotencyRetentionS,
        batchCommandsMax: config.batchCommandsMax,
        spinUs: config.partitionSpinUs,
        // Off with Cassandra: there a worker's reads (its actualizers', its subscriptions') complete
        // through its event loop, which a blocking wait holds back.
        blockMs: storage.kind === 'cassandra' ? 0 : config.partitionBlockMs,
        gatherUs: storage.kind === 'cassandra' ? 0 : config.groupCommitWaitUs,
        wsHeadsCachedMax: config.wsHeadsCachedMax,
        recordsCachedMax: config.recordsCachedMax,
        subscriptions: {
          groupsMax: config.subscriptionGroupsMax, rowsMax: config.subscriptionRowsMax, historyDiffsMax: config.subscriptionHistoryDiffsMax,
          historyBytesMax: config.subscriptionHistoryBytesMax, graceMs: config.subscriptionGraceS * 1000,
        },
      },
      log: logFn,
      onProblem: (err) => { log.error({ err }, 'partition problem'); serving = false },
      onPush: (app, partition, push) => hub.onPush(app, partition, push),
      onStopped: (app, partition) => hub.partitionGone(app, partition, new VvmError('SHUTTING_DOWN', `partition ${partition} of ${app} stopped serving here: subscribe again`, { retryAfterS: 1 })),
    }, cluster === undefined)
    queries = provider.sharedAcrossThreads
      ? new QueryPool({ threads: config.queryThreads, queueMax: config.queryQueueMax, appUrls, appPartitions: partitionCounts, storage, wasm, log: logFn })
      : undefined
    const dispatcher = new Dispatcher(apps, partitions, queries, new RateLimiter(config.rateBucketsMax), config.rateOverrides, cluster?.ownerOf, auth.defaultPrincipal)
    // Fixed for the life of the process: node reads it at start-up.
    const v8PoolSize = v8PoolSizeInForce()
    const metrics = new ServerMetrics()
    registerEngineGauges(metrics, apps, partitions, queries, v8PoolSize)
    registerSubscriptionGauges(metrics, partitions, hub, () => wsApi.stats().subscriptionPendingOps + sseStats().pendingOps)
    // With TLS (src/main/tls) the routes are registered on its recorder and served over HTTPS on
    // --https-port by every certificate generation; --port answers ACME challenges and redirects.
    tls = await startTls(config, metrics, log)
    const app = tls?.app ?? uws.App()
    // Before the HTTP routes, whose catch-all `/*` would otherwise answer the upgrade.
    const wsApi = registerWsApi(app, {
      apps, dispatcher, serving: () => serving, frameBytesMax: config.wsFrameBytesMax, inflightMax: config.wsInflightMax,
      bufferedBytesMax: config.wsBufferedBytesMax, idleTimeoutS: config.wsIdleTimeoutS, idempotencyKeyBytesMax: config.idempotencyKeyBytesMax, auth, metrics, log,
      subscriptions: { hub, partitionOf: (a, wsid) => partitions!.partitionOf(a, wsid), perConnectionMax: config.subscriptionsPerConnectionMax, pendingOpsMax: config.subscriptionPendingOpsMax },
    })
    const http = {
      apps, dispatcher, bodyBytesMax: config.bodyBytesMax, idempotencyKeyBytesMax: config.idempotencyKeyBytesMax, serving: () => serving, metrics, auth,
      domainApps: domainAppMap(config.domainApps),
      subscriptions: { hub, partitionOf: (a: string, wsid: number) => partitions!.partitionOf(a, wsid), pendingOpsMax: config.subscriptionPendingOpsMax },
    }
    registerAuthRoutes(app, {
      http, auth, logins: new LoginStore((a) => provider.appStorage(a)), limiter: new RateLimiter(config.rateBucketsMax),
      perLogin: perMinute(config.authLoginAttemptsPerMinute), perAddress: perMinute(config.authAddressAttemptsPerMinute), log,
    })
    registerHttpApi(app, http)
    const admin = config.adminToken === '' ? undefined : registerAdmin(app, {
      config, apps, appPartitions: partitionCounts, partitions, queries, metrics, serving: () => serving, ownerOf: cluster?.ownerOf, log,
      enginePools: () => partitions!.stats().map((s) => ({ app: s.app, partition: s.partition, instances: s.engineInstances, borrows: s.engineBorrows, replaced: s.engineReplaced })),
    })
    const metricsApp = uws.App()
    metricsApp.get('/metrics', (res) => {
      const text = metrics.registry.render()
      res.cork(() => res.writeHeader('content-type', 'text/plain; version=0.0.4').end(text))
    })
    metricsApp.any('/*', (res) => { res.cork(() => res.writeStatus('404 Not Found').end('only /metrics here\n')) })
    const listenSocket = await new Promise<uws.us_listen_socket>((ok, fail) => {
      const port = tls === undefined ? config.port : config.httpsPort
      app.listen(config.host, port, (s) => (s ? ok(s) : fail(new Error(`cannot listen on ${config.host}:${port}`))))
    })
    const metricsSocket = await new Promise<uws.us_listen_socket>((ok, fail) => {
      metricsApp.listen(config.host, config.metricsPort, (s) => (s ? ok(s) : fail(new Error(`cannot listen for metrics on ${config.host}:${config.metricsPort}`))))
    }).catch((err: unknown) => { uws.us_listen_socket_close(listenSocket); app.close(); throw err })
    serving = true
    const port = uws.us_socket_local_port(listenSocket)
    const metricsPort = uws.us_socket_local_port(metricsSocket)
    const parts = partitions
    const pool = queries
    let closing: Promise<void> | undefined
    const close = async (): Promise<void> => {
      serving = false
      uws.us_listen_socket_close(listenSocket)
      admin?.close()
      await parts.stop()
      await pool?.close()
      wsApi.goingAway()
      // Replies since `serving = false` carried `Connection: close`; a short grace lets clients
      // see them before the remaining (idle) connections are closed.
      await new Promise((r) => setTimeout(r, SHUTDOWN_GRACE_MS))
      app.close()
      uws.us_listen_socket_close(metricsSocket)
      metricsApp.close()
      await closeProvider()
    }
    if (storage.kind === 'level' && !levelWritesInline) {
      log.warn('classic-level has no batch_write_now (scripts/build-level.sh did not run, or its build failed): every commit goes through the thread pool, which costs CPU per commit (docs/architecture.md, "Storage")')
    }
    log.info({ port, metricsPort, apps: [...apps.keys()], storage: storage.kind, partitions: Object.fromEntries(partitionCounts), v8PoolSize }, 'vvm serving')
    return {
      port, metricsPort, metrics, apps, partitions: parts, queries: pool, log, appPartitions: partitionCounts, admin,
      stopServing: () => { serving = false },
      redeployApp: async (qname, url) => {
        const next = await loadApp(url)
        if (next.qname !== qname) throw new ConfigError(`module ${url} defines app ${next.qname}, not ${qname}`)
        await parts.deploy(qname, url)
        apps.set(qname, next)
      },
      undeployApp: async (qname) => {
        await parts.deploy(qname, undefined)
        apps.delete(qname)
      },
      close: () => (closing ??= close()),
    }
  } catch (err) {
    await partitions?.stop()
    await queries?.close()
    tls?.close()
    await closeProvider()
    throw err
  }
}

/** Figures sampled from the partition workers' stats slots and the query pool at scrape time. */
function registerEngineGauges(m: ServerMetrics, apps: ReadonlyMap<string, AppDef>, partitions: PartitionSet, queries: QueryPool | undefined, v8PoolSize: number): void {
  const per = (pick: (s: ReturnType<PartitionSet['stats']>[number]) => number) => () =>
    partitions.stats().map((s) => ({ labels: { app: s.app, partition: s.partition }, value: pick(s) }))
  m.registry.gauge('vvm_v8_pool_size', "threads of V8's helper pool this process runs with (--v8-pool-size)", () => [{ labels: {}, value: v8PoolSize }])
  m.registry.gauge('vvm_partition_inflight', 'requests handed to the partition and not yet answered', per((s) => s.pending))
  m.registry.gauge('vvm_partition_ring_bytes_used', 'bytes waiting in the request ring', per((s) => s.ringBytesUsed))
  m.registry.gauge('vvm_partition_batches_total', 'batches processed (group commits or read batches)', per((s) => s.batches), 'counter')
  m.registry.gauge('vvm_partition_commands_total', 'commands processed', per((s) => s.commands), 'counter')
  m.registry.gauge('vvm_partition_commands_committed_total', 'commands acknowledged after a durable commit', per((s) => s.committed), 'counter')
  m.registry.gauge('vvm_partition_commit_seconds_total', 'time spent in group commits (overlaps execution: the commit is pipelined)', per((s) => s.commitMsTotal / 1000), 'counter')
  m.registry.gauge('vvm_partition_execute_seconds_total', 'time executing batches (every stage before the commit)', per((s) => s.executeMsTotal / 1000), 'counter')
  m.registry.gauge('vvm_partition_commit_wait_seconds_total', 'time the partition worker had nothing to do but wait for the commit under way', per((s) => s.commitWaitMsTotal / 1000), 'counter')
  m.registry.gauge('vvm_partition_commands_joined_total', 'commands that arrived during a commit and joined the next batch before its commit', per((s) => s.joined), 'counter')
  m.registry.gauge('vvm_partition_idle_spins_caught_total', 'idle spins (--partition-spin-us) that caught a request before the worker would have slept', per((s) => s.spinsCaught), 'counter')
  m.registry.gauge('vvm_partition_idle_spins_missed_total', 'idle spins (--partition-spin-us) that ended without a request; the worker slept after them', per((s) => s.spinsMissed), 'counter')
  m.registry.gauge('vvm_partition_idle_blocks_caught_total', 'blocking waits after a batch (--partition-block-ms) that a request ended: the worker woke by futex, not through its event loop', per((s) => s.blocksCaught), 'counter')
  m.registry.gauge('vvm_partition_idle_blocks_missed_total', 'blocking waits after a batch (--partition-block-ms) that timed out; the worker then waited through its event loop', per((s) => s.blocksMissed), 'counter')
  m.registry.gauge('vvm_partition_group_commit_waits_caught_total', 'group-commit waits (--group-commit-wait-us) after which more requests had come and joined the batch', per((s) => s.gathersCaught), 'counter')
  m.registry.gauge('vvm_partition_group_commit_waits_missed_total', 'group-commit waits (--group-commit-wait-us) that caught no request', per((s) => s.gathersMissed), 'counter')
  m.registry.sampledHistogram('vvm_partition_stage_seconds',
    'a command\'s time in its partition by stage: queued (ring write to drain), execute (drain to its commit\'s start), commit (to durable), reply (to the reply ring, counted before the reply is visible)',
    STAGE_BUCKETS_S, () => partitions.stageHistograms().flatMap((p) => p.stages.map((s) => ({
      labels: { app: p.app, partition: p.partition, stage: s.stage }, cumulative: s.cumulative, count: s.count, sum: s.sumS,
    }))))
  m.registry.gauge('vvm_partition_last_batch_size', 'requests in the last batch', per((s) => s.lastBatchSize))
  m.registry.gauge('vvm_partition_plog_offset', 'last committed PLog offset', per((s) => s.plogOffset))
  m.registry.gauge('vvm_engine_pool_instances', 'pre-instantiated WASM engines in the partition worker\'s pools', per((s) => s.engineInstances))
  m.registry.gauge('vvm_engine_pool_borrows_total', 'WASM engines borrowed for a call', per((s) => s.engineBorrows), 'counter')
  m.registry.gauge('vvm_engine_pool_replaced_total', 'WASM engines discarded after a trap and replaced', per((s) => s.engineReplaced), 'counter')
  // Memory: the process's resident set, and the V8 heap of the main thread and of each partition
  // worker (query threads are not counted); "flat under churn" is read from these.
  m.registry.gauge('vvm_process_resident_memory_bytes', 'resident set size of the server process', () => [{ labels: {}, value: process.memoryUsage.rss() }])
  m.registry.gauge('vvm_heap_used_bytes', 'V8 heap in use, by thread', () => [
    { labels: { thread: 'main' }, value: getHeapStatistics().used_heap_size },
    ...partitions.stats().map((s) => ({ labels: { thread: 'partition', app: s.app, partition: s.partition }, value: s.heapUsed })),
  ])
  m.registry.gauge('vvm_actualizer_lag_events', 'events an async projector is behind its partition PLog', () =>
    [...apps.values()].flatMap((a) => partitions.actualizerLags(a.qname, a.asyncProjectors.map((p) => p.qname))
      .map((l) => ({ labels: { app: a.qname, partition: l.partition, projector: l.projector }, value: l.lag }))))
  if (queries !== undefined) {
    m.registry.gauge('vvm_query_queue_size', 'queries waiting for a query processor', () => [{ labels: {}, value: queries.stats.queueSize }])
    m.registry.gauge('vvm_query_completed_total', 'queries completed', () => [{ labels: {}, value: queries.stats.completed }], 'counter')
    m.registry.gauge('vvm_query_tasks_total', 'query pool tasks (batches of queries) completed', () => [{ labels: {}, value: queries.stats.tasks }], 'counter')
    m.registry.gauge('vvm_query_run_seconds_p99', 'p99 run time of a query pool task (a batch of queries)', () => [{ labels: {}, value: queries.stats.runTimeP99Ms / 1000 }])
  }
}

function registerSubscriptionGauges(m: ServerMetrics, partitions: PartitionSet, hub: SubscriptionHub, pendingOps: () => number): void {
  const per = (pick: (s: ReturnType<PartitionSet['stats']>[number]) => number) => () =>
    partitions.stats().map((s) => ({ labels: { app: s.app, partition: s.partition }, value: pick(s) }))
  m.registry.gauge('vvm_subscriptions', 'subscribers (binary protocol and SSE) on this server', () => [{ labels: {}, value: hub.subscribers }])
  m.registry.gauge('vvm_subscription_pending_ops', 'changed rows held back (coalesced) for subscribers that do not read', () => [{ labels: {}, value: pendingOps() }])
  m.registry.gauge('vvm_subscription_pushes_total', 'diffs and ends delivered to subscribers (one per subscriber)', () => [{ labels: {}, value: hub.delivered }], 'counter')
  m.registry.gauge('vvm_subscription_groups', 'distinct subscribed reads kept by the partition', per((s) => s.subGroups))
  m.registry.gauge('vvm_subscription_evaluations_total', 'evaluations of subscribed reads (snapshots of new groups, re-evaluations after commits)', per((s) => s.subEvaluations), 'counter')
  m.registry.gauge('vvm_subscription_diffs_total', 'diffs produced by subscribed reads (each encoded once for all its subscribers)', per((s) => s.subDiffs), 'counter')
}

/** An app's partition count is stored with its data; another count later is refused. */
async function checkPartitionCount(provider: IStorageProvider, app: AppDef, wanted: number): Promise<number> {
  const storage = await provider.appStorage(app.qname)
  const bytes = await storage.get(metaKey.pk, metaKey.cc)
  if (bytes === undefined) {
    await storage.put(metaKey.pk, metaKey.cc, encodeStored({ partitions: wanted } satisfies StoredMeta))
    return wanted
  }
  const stored = decodeStored<StoredMeta>(bytes).partitions
  if (stored !== wanted) {
    throw new ConfigError(`app ${app.qname} was created with ${stored} partitions and cannot start with ${wanted}: a workspace's partition is wsid % partitions, so the data would be remapped; start with --partitions ${stored}`)
  }
  return stored
}

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
