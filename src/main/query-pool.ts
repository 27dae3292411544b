// Query processors: a piscina pool whose workers open the shared storage and run the query
// pipeline. Queries travel in batches: what arrives while the pool's task slots are taken (and
// what arrives in one turn of the event loop) goes to a thread as one task, so the cost of a
// message to a thread and back is paid per batch, not per query. The queue is bounded: past
// `queueMax` queries waiting for a slot, a new one gets 503 at once.

import { Piscina } from 'piscina'
import { decodeQueryOutcomes, encodeRequests, type EngineRequest } from '../shared/engine-messages.js'
import { BusyError, VvmError } from '../shared/errors.js'
import type { StorageConfig } from '../shared/storage/types.js'
import type { WasmOptions } from '../shared/partition-protocol.js'
import type { QueryWorkerData } from '../workers/query/pool-worker.js'
import type { ReplySink } from './partitions.js'

/**
 * Tasks a query thread runs at once. A task's queries run concurrently in the thread (they
 * mostly wait for storage), so a few tasks per thread keep it busy; the rest wait here, where
 * they join into larger batches.
 */
const QUERY_TASKS_PER_THREAD = 4
/** Queries in one task at most: bounds a task's message and the replies that wait on its slowest query. */
export const QUERY_BATCH_MAX = 64

interface Waiting {
  req: EngineRequest
  sink: ReplySink
}

export interface QueryPoolOptions {
  threads: number
  queueMax: number
  appUrls: string[]
  /** Each app's partition count (its storage is routed by partition). */
  appPartitions: ReadonlyMap<string, number>
  storage: StorageConfig
  wasm: WasmOptions
  log: (level: 'info' | 'warn' | 'error', msg: string) => void
}

export class QueryPool {
  private readonly pool: Piscina
  private readonly slots: number
  private waiting: Waiting[] = []
  private tasksRunning = 0
  private flushScheduled = false
  private completed = 0
  private tasks = 0
  private drained: (() => void) | undefined

  constructor(private readonly opts: QueryPoolOptions) {
    const workerData: QueryWorkerData = { appUrls: opts.appUrls, appPartitions: Object.fromEntries(opts.appPartitions), storage: opts.storage, wasm: opts.wasm }
    this.slots = opts.threads * QUERY_TASKS_PER_THREAD
    this.pool = new Piscina({
      // A CommonJS entry that imports the ES module: piscina's `require` never meets ESM.
      filename: new URL('../workers/query/pool-entry.cjs', import.meta.url).href,
      minThreads: opts.threads,
      maxThreads: opts.threads,
      // Tasks never wait in piscina: this class starts at most `slots` at once.
      maxQueue: this.slots,
      concurrentTasksPerWorker: QUERY_TASKS_PER_THREAD,
      // Queries are short; an idle thread stays so the next query does not pay a start-up.
      idleTimeout: 60_000,
      workerData,
    })
  }

  submit(req: EngineRequest, sink: ReplySink): void {
    if (this.waiting.length >= this.opts.queueMax) throw new BusyError(`the query queue holds ${this.opts.queueMax} queries`)
    this.waiting.push({ req, sink })
    // Everything that arrives in this turn of the event loop leaves together, after it.
    if (!this.flushScheduled && this.tasksRunning < this.slots) {
      this.flushScheduled = true
      setImmediate(() => {
        this.flushScheduled = false
        this.flush()
      })
    }
  }

  /** Starts tasks while slots are free: the waiting queries split over the threads, at most QUERY_BATCH_MAX per task. */
  private flush(): void {
    const perTask = Math.min(QUERY_BATCH_MAX, Math.max(1, Math.ceil(this.waiting.length / this.opts.threads)))
    while (this.waiting.length > 0 && this.tasksRunning < this.slots) {
      const batch = this.waiting.length <= perTask ? this.waiting : this.waiting.slice(0, perTask)
      this.waiting = batch === this.waiting ? [] : this.waiting.slice(perTask)
      this.start(batch)
    }
  }

  private start(batch: Waiting[]): void {
    this.tasksRunning++
    // Outcomes come back in the order of the batch: no request id is needed to match them.
    this.pool.run(encodeRequests(batch.map((w) => w.req))).then(
      (bytes: Uint8Array) => {
        const outcomes = decodeQueryOutcomes(bytes)
        for (let i = 0; i < batch.length; i++) {
          const o = outcomes[i]!
          if ('thrown' in o) this.fail(batch[i]!, o.thrown)
          else batch[i]!.sink.reply(o.status, o.body, o.retryAfterS)
        }
      },
      (err: unknown) => {
        const why = (err as Error)?.stack ?? String(err)
        for (const w of batch) this.fail(w, why)
      },
    ).finally(() => {
      this.completed += batch.length
      this.tasks++
      this.tasksRunning--
      if (this.waiting.length > 0) this.flush()
      else if (this.tasksRunning === 0) this.drained?.()
    })
  }

  private fail(w: Waiting, why: string): void {
    this.opts.log('error', `query ${w.req.app} ${w.req.qname}: ${why}`)
    const e = new VvmError('INTERNAL', `the query failed: ${why.split('\n', 1)[0]}`)
    w.sink.reply(e.status, new TextEncoder().encode(JSON.stringify({ status: e.status, message: e.message, code: e.code })), 0)
  }

  get stats(): { queueSize: number; completed: number; tasks: number; threads: number; runTimeP99Ms: number } {
    return { queueSize: this.waiting.length, completed: this.completed, tasks: this.tasks, threads: this.pool.threads.length, runTimeP99Ms: this.pool.histogram.runTime.p99 }
  }

  /** Answers every query submitted so far, then stops the threads. */
  async close(): Promise<void> {
    if (this.waiting.length > 0 || this.tasksRunning > 0) {
      const drained = new Promise<void>((resolve) => { this.drained = resolve })
      this.flush()
      await drained
    }
    await this.pool.close()
    await this.pool.destroy()
  }
}
