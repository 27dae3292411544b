// Query processors: a piscina pool whose workers open the shared storage and run the query
// pipeline. The queue is bounded: past `queueMax` waiting queries a new one gets 503 at once.

import { Piscina } from 'piscina'
import { decodeReply, encodeRequest, type EngineRequest } from '../shared/engine-messages.js'
import { BusyError, VvmError } from '../shared/errors.js'
import type { StorageConfig } from '../shared/storage/types.js'
import type { WasmOptions } from '../shared/partition-protocol.js'
import type { QueryWorkerData } from '../workers/query/pool-worker.js'
import type { ReplySink } from './partitions.js'

const QUERY_TASKS_PER_THREAD = 16

export interface QueryPoolOptions {
  threads: number
  queueMax: number
  appUrls: string[]
  storage: StorageConfig
  wasm: WasmOptions
  log: (level: 'info' | 'warn' | 'error', msg: string) => void
}

export class QueryPool {
  private readonly pool: Piscina
  private nextReqId = 1

  constructor(private readonly opts: QueryPoolOptions) {
    const workerData: QueryWorkerData = { appUrls: opts.appUrls, storage: opts.storage, wasm: opts.wasm }
    this.pool = new Piscina({
      // A CommonJS entry that imports the ES module: piscina's `require` never meets ESM.
      filename: new URL('../workers/query/pool-entry.cjs', import.meta.url).href,
      minThreads: opts.threads,
      maxThreads: opts.threads,
      maxQueue: opts.queueMax,
      // A query mostly waits for storage: one worker runs many at once. With the default of 1,
      // point queries were pool-bound at 11.4k/s; 16 reached 23.7k/s (bench, same machine).
      concurrentTasksPerWorker: QUERY_TASKS_PER_THREAD,
      // Queries are short; an idle thread stays so the next query does not pay a start-up.
      idleTimeout: 60_000,
      workerData,
    })
  }

  submit(req: EngineRequest, sink: ReplySink): void {
    if (this.pool.queueSize >= this.opts.queueMax) throw new BusyError(`the query queue holds ${this.opts.queueMax} queries`)
    req.reqId = this.nextReqId++
    this.pool.run(encodeRequest(req)).then(
      (bytes: Uint8Array) => {
        const r = decodeReply(bytes)
        sink.reply(r.status, r.body, r.retryAfterS)
      },
      (err: unknown) => {
        this.opts.log('error', `query ${req.app} ${req.qname}: ${(err as Error)?.stack ?? String(err)}`)
        const e = new VvmError('INTERNAL', `the query failed: ${(err as Error)?.message ?? String(err)}`)
        sink.reply(e.status, new TextEncoder().encode(JSON.stringify({ status: e.status, message: e.message, code: e.code })), 0)
      },
    )
  }

  get stats(): { queueSize: number; completed: number; threads: number; runTimeP99Ms: number } {
    return { queueSize: this.pool.queueSize, completed: this.pool.completed, threads: this.pool.threads.length, runTimeP99Ms: this.pool.histogram.runTime.p99 }
  }

  async close(): Promise<void> {
    await this.pool.close()
    await this.pool.destroy()
  }
}
