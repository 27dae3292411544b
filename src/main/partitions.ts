// The main thread's side of the partition workers: one worker per app partition, a request
// ring into it and a reply ring out of it. `submit` never blocks: a full ring or too many
// unanswered requests is an immediate BusyError (503). Replies are drained in bursts and handed
// to the sink registered with each request.

import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { decodeReplyFrame, encodeRequest, isPush, type EnginePush, type EngineRequest } from '../shared/engine-messages.js'
import { BusyError, VvmError } from '../shared/errors.js'
import { Control, Stat, type PartitionOptions, type PartitionWorkerData, type WorkerCommand, type WorkerEvent } from '../shared/partition-protocol.js'
import { RingConsumer, RingProducer, createRing } from '../shared/ring/spsc-ring.js'
import { monotonicMs, readStages, type StageSnapshot } from '../shared/stage-histogram.js'
import type { StorageConfig } from '../shared/storage/types.js'

export interface ReplySink {
  /** `groupId`: a SUBSCRIBE's subscription group (its pushes name it). */
  reply(status: number, body: Uint8Array, retryAfterS: number, groupId?: number): void
}

export interface PartitionSetOptions {
  apps: readonly { qname: string; url: string; partitions: number }[]
  storage: StorageConfig
  ringBytes: number
  inflightPerPartitionMax: number
  partition: PartitionOptions
  log: (level: 'info' | 'warn' | 'error', msg: string) => void
  /** A worker died or failed to start: the VVM has a problem (seed 003). */
  onProblem: (err: Error) => void
  /** A subscription group's push (src/main/subscriptions.ts). */
  onPush?: (app: string, partition: number, push: EnginePush) => void
  /** A partition stopped being served here (its subscription groups are gone). */
  onStopped?: (app: string, partition: number) => void
}

const REPLY_DRAIN_FRAMES_MAX = 4096
const PUMP_WAIT_MS = 1000

class Partition {
  readonly pending = new Map<number, ReplySink>()
  private nextReqId = 1
  private closed = false
  readonly control = new Int32Array(new SharedArrayBuffer(Control.WORDS * 4))
  readonly stats = new Float64Array(new SharedArrayBuffer(Stat.SLOTS * 8))
  readonly producer: RingProducer
  readonly consumer: RingConsumer
  readonly worker: Worker
  readonly ready: Promise<void>
  readonly exited: Promise<void>
  private pump: Promise<void> | undefined
  private deploySeq = 0
  private readonly deploying = new Map<number, { resolve: () => void; reject: (e: Error) => void }>()

  private readonly onPush: ((app: string, partition: number, push: EnginePush) => void) | undefined

  constructor(readonly app: string, readonly index: number, readonly count: number, url: string, opts: PartitionSetOptions) {
    this.onPush = opts.onPush
    const requestRing = createRing(opts.ringBytes)
    const replyRing = createRing(opts.ringBytes)
    this.producer = new RingProducer(requestRing)
    this.consumer = new RingConsumer(replyRing)
    const data: PartitionWorkerData = {
      appUrl: url, appQName: app, partition: index, partitionsCount: count, requestRing, replyRing,
      control: this.control.buffer as SharedArrayBuffer, stats: this.stats.buffer as SharedArrayBuffer,
      storage: opts.storage, options: opts.partition,
    }
    this.worker = new Worker(new URL('../workers/partition-worker.js', import.meta.url), { workerData: data, name: `vvm ${app} p${index}` })
    let exitedCleanly = false
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (e: WorkerEvent) => {
        if (e.type === 'ready') resolve()
        else if (e.type === 'log') opts.log(e.level, `${app}: ${e.msg}`)
        else if (e.type === 'exited') exitedCleanly = true
        else if (e.type === 'deployed') {
          const d = this.deploying.get(e.seq)
          this.deploying.delete(e.seq)
          if (e.error === undefined) d?.resolve()
          else d?.reject(new Error(`partition ${index} of ${app}: ${e.error}`))
        }
        else if (e.type === 'fatal') {
          const err = new Error(`partition worker ${app} p${index} failed: ${e.msg}`)
          reject(err)
          opts.onProblem(err)
        }
      })
      this.worker.on('error', (err) => {
        reject(err)
        opts.onProblem(new Error(`partition worker ${app} p${index} crashed: ${err.stack ?? err.message}`))
      })
    })
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        this.drainReplies()
        opts.onStopped?.(app, index)
        this.failPending(new VvmError('SHUTTING_DOWN', `partition ${index} of ${app} stopped`, { retryAfterS: 1 }))
        if (!this.closed || !exitedCleanly) opts.onProblem(new Error(`partition worker ${app} p${index} exited unexpectedly (code ${code})`))
        this.closed = true
        this.consumer.interruptWait()
        resolve()
      })
    })
    this.ready.then(() => { this.pump = this.runPump() }, () => {})
  }

  submit(req: EngineRequest, sink: ReplySink, inflightMax: number): void {
    if (this.closed) throw new VvmError('SHUTTING_DOWN', 'the server is shutting down', { retryAfterS: 1 })
    if (this.pending.size >= inflightMax) throw new BusyError(`partition ${this.index} of ${this.app} has ${inflightMax} requests in flight`)
    const reqId = this.nextReqId
    this.nextReqId = this.nextReqId >= 0x7fffffff ? 1 : this.nextReqId + 1
    req.reqId = reqId
    req.enqueuedMs = monotonicMs()
    const bytes = encodeRequest(req)
    if (bytes.byteLength > this.producer.frameBytesMax) throw new VvmError('TOO_LARGE', `request of ${bytes.byteLength} bytes exceeds the ring frame limit`)
    if (!this.producer.tryWrite(bytes)) throw new BusyError(`partition ${this.index} of ${this.app} is busy`)
    assert.ok(!this.pending.has(reqId), 'request id reused while in flight')
    this.pending.set(reqId, sink)
    this.producer.publish()
  }

  private async runPump(): Promise<void> {
    while (!this.closed) {
      if (this.drainReplies() === 0) await this.consumer.waitForData(PUMP_WAIT_MS)
    }
  }

  private drainReplies(): number {
    return this.consumer.drain((frame) => {
      const r = decodeReplyFrame(frame)
      if (isPush(r)) return this.onPush?.(this.app, this.index, r)
      const sink = this.pending.get(r.reqId)
      assert.ok(sink !== undefined, `reply for unknown request ${r.reqId}`)
      this.pending.delete(r.reqId)
      sink.reply(r.status, r.body, r.retryAfterS, r.groupId)
    }, REPLY_DRAIN_FRAMES_MAX)
  }

  private failPending(e: VvmError): void {
    for (const [id, sink] of this.pending) {
      this.pending.delete(id)
      sink.reply(e.status, new TextEncoder().encode(JSON.stringify({ status: e.status, message: e.message, code: e.code })), e.retryAfterS ?? 1)
    }
  }

  /** Redeploys (a module URL) or undeploys the app in this worker; resolves when done. */
  command(cmd: { type: 'deploy'; appUrl: string } | { type: 'undeploy' }): Promise<void> {
    const seq = ++this.deploySeq
    return new Promise((resolve, reject) => {
      this.deploying.set(seq, { resolve, reject })
      this.worker.postMessage({ ...cmd, seq } satisfies WorkerCommand)
    })
  }

  /** Asks the worker to finish its ring and exit; resolves when it has. */
  async stop(): Promise<void> {
    Atomics.store(this.control, Control.SHUTDOWN, 1)
    this.producer.wakeConsumer()
    this.closed = true
    await this.exited
    await this.pump
  }
}

/** The partition of a request is not served by this node (cluster mode): the dispatcher redirects. */
export class PartitionNotHereError extends VvmError {
  constructor(readonly app: string, readonly partition: number) {
    super('BUSY', `partition ${partition} of ${app} is not served by this node`, { retryAfterS: 1 })
  }
}

export class PartitionSet {
  /** Per app, a slot per partition: the running worker, or undefined where this node does not serve it. */
  private readonly byApp = new Map<string, (Partition | undefined)[]>()
  private readonly urls = new Map<string, string>()

  private constructor(private readonly opts: PartitionSetOptions) {
    for (const a of opts.apps) {
      this.byApp.set(a.qname, new Array<Partition | undefined>(a.partitions).fill(undefined))
      this.urls.set(a.qname, a.url)
    }
  }

  /** Starts every partition (one node owns all), or none (cluster mode: ownership starts them). */
  static async start(opts: PartitionSetOptions, startAll = true): Promise<PartitionSet> {
    const set = new PartitionSet(opts)
    if (!startAll) return set
    try {
      await Promise.all(opts.apps.flatMap((a) => Array.from({ length: a.partitions }, (_, i) => set.startPartition(a.qname, i))))
    } catch (err) {
      await set.stop()
      throw err
    }
    return set
  }

  /** Starts the worker of one partition (it recovers, then serves); resolves when it is ready. */
  async startPartition(app: string, index: number): Promise<void> {
    const slots = this.byApp.get(app)!
    if (slots[index] !== undefined) return
    const p = new Partition(app, index, slots.length, this.urls.get(app)!, this.opts)
    slots[index] = p
    try {
      await p.ready
    } catch (err) {
      slots[index] = undefined
      await p.stop()
      throw err
    }
  }

  /** Stops serving one partition: new requests are not taken, the worker drains and exits. */
  async stopPartition(app: string, index: number): Promise<void> {
    const slots = this.byApp.get(app)!
    const p = slots[index]
    if (p === undefined) return
    slots[index] = undefined
    await p.stop()
  }

  serves(app: string, index: number): boolean {
    return this.byApp.get(app)?.[index] !== undefined
  }

  partitionOf(app: string, wsid: number): number {
    return wsid % this.byApp.get(app)!.length
  }

  /** Hands a request to its workspace's partition; throws BusyError (503) when it cannot. */
  submit(req: EngineRequest, sink: ReplySink): void {
    const slots = this.byApp.get(req.app)
    if (slots === undefined) throw new VvmError('NOT_FOUND', `app ${req.app} is not deployed`)
    this.submitTo(req.app, req.wsid % slots.length, req, sink)
  }

  /** Hands a request to one partition (subscription releases name their partition, not a workspace). */
  submitTo(app: string, index: number, req: EngineRequest, sink: ReplySink): void {
    const p = this.byApp.get(app)?.[index]
    if (p === undefined) throw new PartitionNotHereError(app, index)
    p.submit(req, sink, this.opts.inflightPerPartitionMax)
  }

  private running(app?: string): Partition[] {
    const lists = app === undefined ? [...this.byApp.values()] : [this.byApp.get(app) ?? []]
    return lists.flat().filter((p): p is Partition => p !== undefined)
  }

  /** Redeploys an app version (a module URL) on all its running partitions, or undeploys it. */
  async deploy(app: string, appUrl: string | undefined): Promise<void> {
    if (!this.byApp.has(app)) throw new VvmError('NOT_FOUND', `app ${app} is not deployed`)
    if (appUrl !== undefined) this.urls.set(app, appUrl)
    await Promise.all(this.running(app).map((p) => p.command(appUrl === undefined ? { type: 'undeploy' } : { type: 'deploy', appUrl })))
  }

  /** Events behind the PLog per async projector, by app and partition. */
  actualizerLags(app: string, projectors: readonly string[]): { partition: number; projector: string; lag: number }[] {
    const out: { partition: number; projector: string; lag: number }[] = []
    for (const p of this.running(app)) {
      projectors.slice(0, Stat.ACTUALIZERS_MAX).forEach((projector, i) => out.push({ partition: p.index, projector, lag: p.stats[Stat.ACTUALIZER_LAG_BASE + i]! }))
    }
    return out
  }

  /** Per-partition figures for metrics and the admin view (partitions this node serves). */
  stats(): { app: string; partition: number; pending: number; ringBytesUsed: number; batches: number; commands: number; committed: number; commitMsTotal: number; executeMsTotal: number; commitWaitMsTotal: number; joined: number; spinsCaught: number; spinsMissed: number; blocksCaught: number; blocksMissed: number; gathersCaught: number; gathersMissed: number; lastBatchSize: number; plogOffset: number; engineInstances: number; engineBorrows: number; engineReplaced: number; subGroups: number; subEvaluations: number; subDiffs: number; heapUsed: number }[] {
    return this.running().map((p) => ({
      app: p.app, partition: p.index, pending: p.pending.size, ringBytesUsed: p.producer.usedBytes(),
      batches: p.stats[Stat.BATCHES]!, commands: p.stats[Stat.COMMANDS]!, committed: p.stats[Stat.COMMITTED]!,
      commitMsTotal: p.stats[Stat.COMMIT_MS_TOTAL]!, executeMsTotal: p.stats[Stat.EXECUTE_MS_TOTAL]!, commitWaitMsTotal: p.stats[Stat.COMMIT_WAIT_MS_TOTAL]!,
      joined: p.stats[Stat.JOINED]!, spinsCaught: p.stats[Stat.SPINS_CAUGHT]!, spinsMissed: p.stats[Stat.SPINS_MISSED]!, blocksCaught: p.stats[Stat.BLOCKS_CAUGHT]!, blocksMissed: p.stats[Stat.BLOCKS_MISSED]!, gathersCaught: p.stats[Stat.GATHERS_CAUGHT]!, gathersMissed: p.stats[Stat.GATHERS_MISSED]!, lastBatchSize: p.stats[Stat.LAST_BATCH_SIZE]!, plogOffset: p.stats[Stat.PLOG_OFFSET]!,
      engineInstances: p.stats[Stat.ENGINE_INSTANCES]!, engineBorrows: p.stats[Stat.ENGINE_BORROWS]!, engineReplaced: p.stats[Stat.ENGINE_REPLACED]!,
      subGroups: p.stats[Stat.SUB_GROUPS]!, subEvaluations: p.stats[Stat.SUB_EVALUATIONS]!, subDiffs: p.stats[Stat.SUB_DIFFS]!,
      heapUsed: p.stats[Stat.HEAP_USED]!,
    }))
  }

  /** Each served partition's stage histograms (src/shared/stage-histogram.ts). */
  stageHistograms(): { app: string; partition: number; stages: StageSnapshot[] }[] {
    return this.running().map((p) => ({ app: p.app, partition: p.index, stages: readStages(p.stats, Stat.STAGES_BASE) }))
  }

  async stop(): Promise<void> {
    const all = this.running()
    for (const slots of this.byApp.values()) slots.fill(undefined)
    await Promise.all(all.map((p) => p.stop()))
  }
}
