// A query worker of the piscina pool (loaded through pool-entry.cts). Each worker opens the
// shared storage once (read-only use) and imports every deployed app; a task is a batch of
// encoded EngineRequests (src/main/query-pool.ts), run concurrently, and its result their
// outcomes in the same order.

import { workerData } from 'node:worker_threads'
import { loadApps } from '../../shared/app-loader.js'
import { decodeRequests, encodeQueryOutcomes, type QueryOutcome } from '../../shared/engine-messages.js'
import { openStorageProvider } from '../../shared/storage/index.js'
import type { IAppStorage } from '../../shared/storage/types.js'
import type { StorageConfig } from '../../shared/storage/types.js'
import type { WasmOptions } from '../../shared/partition-protocol.js'
import { QueryProcessor } from './query-processor.js'
import { partitionRouting } from '../../shared/layout.js'
import { WasmRunner } from '../wasm/wasm-runner.js'

export interface QueryWorkerData {
  appUrls: string[]
  /** Each app's partition count, by qname: its storage is routed by partition (level). */
  appPartitions: Record<string, number>
  storage: StorageConfig
  wasm: WasmOptions
}

const data = workerData as QueryWorkerData

const ready: Promise<QueryProcessor> = (async () => {
  const apps = await loadApps(data.appUrls)
  const provider = await openStorageProvider(data.storage)
  const storages = new Map<string, IAppStorage>()
  for (const qname of apps.keys()) {
    const partitions = data.appPartitions[qname]
    storages.set(qname, await provider.appStorage(qname, partitions === undefined ? undefined : partitionRouting(partitions)))
  }
  // apps preserves the order of appUrls (loadApps inserts in order).
  const runner = await WasmRunner.start([...apps.values()].map((app, i) => ({ app, url: data.appUrls[i]! })), ['query'], data.wasm)
  return new QueryProcessor(apps, (app) => storages.get(app)!, runner)
})()

/** A query thread's task: a batch of encoded EngineRequests in, their encoded outcomes out. */
export type QueryTask = (task: Uint8Array) => Promise<Uint8Array>

export default async function runQueries(task: Uint8Array): Promise<Uint8Array> {
  const processor = await ready
  const outcomes = await Promise.all(decodeRequests(task).map((req) => processor.run(req).then(
    (reply): QueryOutcome => reply,
    // One query that throws (a bug: run() answers every VvmError itself) fails alone, not its batch.
    (err: unknown): QueryOutcome => ({ thrown: (err as Error)?.stack ?? String(err) }),
  )))
  return encodeQueryOutcomes(outcomes)
}
