// Entry point of a partition worker: the command processor of one app partition. It knows the
// main thread only through its rings (requests in, replies out), a control word (shutdown) and
// a stats array; `postMessage` is used only for start-up and rare log lines.

import { parentPort, workerData } from 'node:worker_threads'
import { getHeapStatistics } from 'node:v8'
import { loadApp } from '../shared/app-loader.js'
import { Op, ReplyFormat, decodeRequest, encodePush, encodeReply, isWriteOp, type EnginePush, type EngineReply, type EngineRequest } from '../shared/engine-messages.js'
import { appWorkspaceOf, partitionRouting } from '../shared/layout.js'
import { PartitionDeployment } from './actualizer/deployment.js'
import { VvmError } from '../shared/errors.js'
import { renderError } from '../shared/reply.js'
import { RingConsumer, RingProducer } from '../shared/ring/spsc-ring.js'
import { IdleBlock, IdleSpin, eventLoopTurn } from './idle-spin.js'
import { GroupCommitGather } from './group-commit.js'
import { openStorageProvider } from '../shared/storage/index.js'
import { Control, Stat, type PartitionWorkerData, type WorkerCommand, type WorkerEvent } from '../shared/partition-protocol.js'
import { CommandProcessor, type BatchStats, type ExecutedBatch } from './command/processor.js'
import { PartitionState } from './command/partition-state.js'
import { committerFor } from './command/commit.js'
import { QueryProcessor } from './query/query-processor.js'
import { WasmRunner } from './wasm/wasm-runner.js'
import { SubscriptionGroups } from './subscriptions/groups.js'
import { ObservedStorage } from './subscriptions/read-set.js'
import { Stage, StageRecorder, monotonicMs } from '../shared/stage-histogram.js'

const data = workerData as PartitionWorkerData
const post = (e: WorkerEvent): void => parentPort!.postMessage(e)
/** How long one wait lasts before the loop looks at the shutdown word again. */
const IDLE_WAIT_MS = 1000
/** Request bytes in one batch at most: bounds a commit's size (Cassandra refuses huge writes). */
const BATCH_BYTES_MAX = 4 * 1024 * 1024
const ACTUALIZER_RETRY_MIN_MS = 100
/** Lags are also published after each batch; the timer covers actualizers catching up while idle. */
const LAG_PUBLISH_MS = 500
const REPLY_SPACE_WAIT_MS = 100

async function main(): Promise<void> {
  const control = new Int32Array(data.control)
  const stats = new Float64Array(data.stats)
  const stages = new StageRecorder(stats, Stat.STAGES_BASE)
  const requests = new RingConsumer(data.requestRing)
  const replies = new RingProducer(data.replyRing)
  const provider = await openStorageProvider(data.storage)
  // Every write of this worker (commits, actualizers) is reported to the subscription groups.
  let subs: SubscriptionGroups | undefined
  const storage = new ObservedStorage(await provider.appStorage(data.appQName, partitionRouting(data.partitionsCount, data.partition)), (items) => {
    if (subs === undefined) return
    subs.noteWrites(items)
    if (subs.hasDirty) requests.interruptWait()
  })
  const app = await loadApp(data.appUrl)
  const part = new PartitionState(storage, data.partition, data.options)
  // A commit interrupted by a crash is completed before anything else reads the partition.
  const committer = committerFor(storage, data.partition, provider.atomicBatches)
  await committer.recover()
  await part.load()
  const logError = (stage: string, err: unknown): void => {
    post({ type: 'log', level: 'error', msg: `partition ${data.partition}: ${stage}: ${(err as Error)?.stack ?? String(err)}` })
  }
  // Engine pools for the kinds this worker runs: queries too, for subscriptions (and, with mem, all reads).
  const extensions = await WasmRunner.start([{ app, url: data.appUrl }], ['command', 'projector', 'query'], data.options.wasm)
  const processor = new CommandProcessor(app, part, storage, {
    idempotencyTtlSeconds: data.options.idempotencyTtlSeconds,
    committer,
    onInternalError: logError,
  }, extensions)
  // With a storage that is not shared across threads (mem), this worker also serves the reads
  // of its workspaces; otherwise reads go to the query pool and never arrive here.
  const apps = new Map([[app.qname, app]])
  const reads = new QueryProcessor(apps, () => storage, extensions)
  const queries = provider.sharedAcrossThreads ? undefined : reads
  subs = new SubscriptionGroups(part, reads, (qname) => (qname === processor.app?.qname ? processor.app : undefined), data.options.subscriptions)
  // Jobs due are queued here and run through the command path; at most one pending run per job.
  const jobsDue: EngineRequest[] = []
  const jobsPending = new Set<string>()
  const appWorkspace = appWorkspaceOf(data.partition, data.partitionsCount)
  const deployment = new PartitionDeployment(storage, data.partition, extensions, {
    batchEventsMax: data.options.actualizerBatchEventsMax,
    flushIntervalMs: data.options.actualizerFlushIntervalMs,
    retryDelayMinMs: ACTUALIZER_RETRY_MIN_MS,
    retryDelayMaxMs: data.options.actualizerRetryMaxMs,
    log: (level, msg) => post({ type: 'log', level, msg: `partition ${data.partition}: ${msg}` }),
    runJob: (jobApp, job) => {
      if (jobsPending.has(job.qname)) {
        post({ type: 'log', level: 'warn', msg: `partition ${data.partition}: job ${job.qname} is still pending; this run is skipped` })
        return
      }
      jobsPending.add(job.qname)
      jobsDue.push({ reqId: 0, op: Op.JOB, format: ReplyFormat.JSON_V2, app: jobApp.qname, wsid: appWorkspace, qname: job.qname, id: 0, idempotencyKey: null, body: undefined, params: null })
      requests.interruptWait()
    },
  })
  await deployment.deploy(app, part.plogOffset)
  const onCommand = async (m: WorkerCommand): Promise<void> => {
    try {
      if (m.type === 'deploy') {
        const next = await loadApp(m.appUrl)
        if (next.qname !== data.appQName) throw new Error(`module ${m.appUrl} defines ${next.qname}, not ${data.appQName}`)
        await extensions.deploy({ app: next, url: m.appUrl })
        await deployment.deploy(next, part.plogOffset)
        processor.app = next
        apps.set(next.qname, next)
      } else {
        await deployment.undeploy()
        processor.app = undefined
        apps.delete(data.appQName)
        endedGroups.push(...subs!.endAll(new VvmError('NOT_FOUND', `app ${data.appQName} was undeployed`)))
        requests.interruptWait()
      }
      post({ type: 'deployed', seq: m.seq })
    } catch (err) {
      post({ type: 'deployed', seq: m.seq, error: (err as Error).message })
    }
  }
  const onMessage = (m: WorkerCommand): void => void onCommand(m)
  parentPort!.on('message', onMessage)

  const batchStats: BatchStats = { commands: 0, committed: 0, commitMs: 0, executeMs: 0 }
  /** Idle time while a commit was under way, and commands that joined a batch during one. */
  let commitWaitMs = 0
  let joined = 0
  let batch: EngineRequest[] = []
  const endedGroups: EnginePush[] = []
  const publishSubStats = (): void => {
    const ss = subs!.stats()
    stats[Stat.SUB_GROUPS] = ss.groups
    stats[Stat.SUB_EVALUATIONS] = ss.evaluations
    stats[Stat.SUB_DIFFS] = ss.diffs
  }
  const tooLarge = (bytes: number): VvmError =>
    new VvmError('TOO_LARGE', `a subscription message of ${bytes} bytes exceeds the ring frame limit of ${replies.frameBytesMax} bytes: narrow the subscription`)
  // A snapshot too large for the ring: the reference it took is given back, the subscriber gets 413.
  const fitSubscribeReply = (r: EngineReply, req: EngineRequest): EngineReply => {
    const bytes = encodeReply(r).byteLength
    if (bytes <= replies.frameBytesMax || r.groupId === undefined) return r
    subs!.releaseOne(r.groupId, Date.now())
    const e = tooLarge(bytes)
    return { reqId: r.reqId, status: e.status, body: renderError(req.format, e), retryAfterS: 0 }
  }
  let batchBytes = 0
  /** When the current drain began: a request's queued stage ends there. */
  let drainedMs = 0
  const onFrame = (f: Uint8Array): void => {
    batchBytes += f.byteLength
    const r = decodeRequest(f)
    if (r.enqueuedMs !== undefined) {
      stages.observe(Stage.QUEUED, drainedMs - r.enqueuedMs)
      gather.arrived(r.enqueuedMs)
    }
    batch.push(r)
  }
  const publishLags = (): void => {
    const u = extensions.usage()
    stats[Stat.ENGINE_INSTANCES] = u.instances
    stats[Stat.ENGINE_BORROWS] = u.borrows
    stats[Stat.ENGINE_REPLACED] = u.replaced
    stats[Stat.HEAP_USED] = getHeapStatistics().used_heap_size
    const lags = deployment.lags()
    for (let i = 0; i < Math.min(lags.length, Stat.ACTUALIZERS_MAX); i++) stats[Stat.ACTUALIZER_LAG_BASE + i] = lags[i]!
  }
  publishLags()
  const lagTimer = setInterval(publishLags, LAG_PUBLISH_MS)
  stats[Stat.PLOG_OFFSET] = part.plogOffset
  post({ type: 'ready', plogOffset: part.plogOffset })
  // The commit is pipelined: batch N+1 executes while batch N is being written, and is
  // committed (and answered) only after N. At most one commit is under way.
  let inflight: InFlight | undefined
  let justWorked = false
  const spin = new IdleSpin(data.options.spinUs)
  const block = new IdleBlock(data.options.blockMs)
  const gather = new GroupCommitGather(data.options.gatherUs)
  /** Nothing to do but wait: no request, job, subscription change or ended group. */
  const idle = (): boolean => !requests.hasData() && jobsDue.length === 0 && !subs.hasDirty && endedGroups.length === 0
  // A commit started while idle is written inline, on this thread (where the storage can):
  // nothing would execute during it anyway (below), and it saves the two hand-offs of a write
  // through the thread pool. With work waiting, the write goes to the pool and the next batch
  // executes meanwhile.
  const startCommit = (reqs: EngineRequest[], executed: ExecutedBatch, drained: number): InFlight => {
    const started = monotonicMs()
    stages.observe(Stage.EXECUTE, started - drained, reqs.length)
    return { reqs, executed, abandoned: executed.abandoned, started, durable: processor.commit(executed, batchStats, idle()) }
  }
  for (;;) {
    if (idle()) {
      // Idle with a commit under way: sleep until it is durable, not until the next request.
      // Waking for a request to execute it during the commit cost a thread wake-up per batch
      // (tens of µs of CPU here, docs/benchmarks.md) to start work that the commit's end starts
      // anyway; under load there is always data and the next batch executes during the commit.
      if (inflight !== undefined) {
        await finish(inflight)
        inflight = undefined
        continue
      }
      if (Atomics.load(control, Control.SHUTDOWN) !== 0) break
      // Subscription groups past their grace go while the partition is idle too.
      subs.dropIdle(Date.now())
      publishSubStats()
      // Right after a batch, the next request often follows within a round trip: polling for
      // it a little while saves the thread wake-up that sleeping would cost (option spinUs),
      // and so does a short blocking wait, without the busy core (option blockMs).
      const afterBatch = justWorked
      justWorked = false
      const spun = afterBatch && spin.shouldSpin()
      if (spun) {
        const caught = spin.spin(requests)
        stats[caught ? Stat.SPINS_CAUGHT : Stat.SPINS_MISSED] += 1
        if (caught) continue
      }
      const asleep = afterBatch && !spun ? performance.now() : -1
      if (afterBatch && block.enabled) {
        if (block.turnDue()) {
          await eventLoopTurn()
          block.turned()
          if (!idle()) continue
        }
        const caught = block.wait(requests)
        stats[caught ? Stat.BLOCKS_CAUGHT : Stat.BLOCKS_MISSED] += 1
        if (caught) {
          if (asleep >= 0) spin.slept(performance.now() - asleep, true)
          continue
        }
        // A wake-up without a request may have been the shutdown's.
        if (Atomics.load(control, Control.SHUTDOWN) !== 0) break
      }
      await requests.waitForData(IDLE_WAIT_MS)
      block.turned()
      if (asleep >= 0) spin.slept(performance.now() - asleep, requests.hasData())
      continue
    }
    justWorked = true
    batch = []
    batchBytes = 0
    drainedMs = monotonicMs()
    const batchDrainedMs = drainedMs
    requests.drain(onFrame, data.options.batchCommandsMax, BATCH_BYTES_MAX)
    for (const j of jobsDue.splice(0)) batch.push(j)
    // An abandoned batch is never written: the next one stages on the committed state instead.
    const parent = inflight !== undefined && !inflight.abandoned ? inflight.executed : undefined
    // A batch that waited for a commit under way gathered what came meanwhile already.
    const fresh = inflight === undefined
    const executed = await processor.execute(batch.filter((r) => isWriteOp(r.op)), parent, batchStats)
    // A failed commit voids what executed meanwhile (the partition was recovering under it).
    if (inflight !== undefined && !(await finish(inflight)) && !inflight.abandoned) processor.abandon(executed)
    // A small batch while requests come often: wait a little for more (src/workers/group-commit.ts).
    const waitMs = fresh && !executed.abandoned ? gather.waitMs(batch.length) : 0
    if (waitMs > 0) {
      gather.sleep(waitMs)
      const caught = requests.hasData()
      gather.waited(caught)
      stats[caught ? Stat.GATHERS_CAUGHT : Stat.GATHERS_MISSED] += 1
    }
    // Requests that came while the previous batch was committed (or during the wait) join this
    // one: one commit fewer, within the same bounds.
    if (!executed.abandoned && requests.hasData() && batch.length < data.options.batchCommandsMax && batchBytes < BATCH_BYTES_MAX) {
      const first = batch.length
      drainedMs = monotonicMs()
      requests.drain(onFrame, data.options.batchCommandsMax - batch.length, BATCH_BYTES_MAX - batchBytes)
      const more = batch.slice(first).filter((r) => isWriteOp(r.op))
      joined += more.length
      await processor.extend(executed, more, batchStats)
    }
    inflight = startCommit(batch, executed, batchDrainedMs)
  }
  if (inflight !== undefined) await finish(inflight)

  /**
   * After a batch's commit: the subscriptions it changed are evaluated, the batch's reads run,
   * and diffs and replies go out (a client sees its command's effect before its reply).
   * False when the commit failed.
   */
  async function finish(f: InFlight): Promise<boolean> {
    const t0 = performance.now()
    const durable = await f.durable
    commitWaitMs += performance.now() - t0
    const durableMs = monotonicMs()
    stages.observe(Stage.COMMIT, durableMs - f.started, f.reqs.length)
    const batch = f.reqs
    const writes = f.executed.reqs
    const out = f.executed.replies
    if (durable) deployment.notifyCommitted(part.plogOffset, f.executed.staging.events)
    const pushes = endedGroups.splice(0)
    pushes.push(...(await subs!.settle(Date.now())))
    for (const r of batch) {
      if (isWriteOp(r.op)) continue
      if (r.op === Op.SUBSCRIBE) out.push(fitSubscribeReply(await subs!.subscribe(r, Date.now()), r))
      else if (r.op === Op.UNSUBSCRIBE) out.push(subs!.release(r, Date.now()))
      else out.push(queries !== undefined ? await queries.run(r) : misrouted(r))
    }
    publishSubStats()
    await sendFrames(replies, pushes.map((p) => {
      const bytes = encodePush(p)
      return bytes.byteLength <= replies.frameBytesMax ? bytes : encodePush(subs!.endGroup(p.groupId, tooLarge(bytes.byteLength)))
    }))
    stats[Stat.BATCHES] += 1
    stats[Stat.LAST_BATCH_SIZE] = batch.length
    stats[Stat.COMMANDS] = batchStats.commands
    stats[Stat.COMMITTED] = batchStats.committed
    stats[Stat.COMMIT_MS_TOTAL] = batchStats.commitMs
    stats[Stat.EXECUTE_MS_TOTAL] = batchStats.executeMs
    stats[Stat.COMMIT_WAIT_MS_TOTAL] = commitWaitMs
    stats[Stat.JOINED] = joined
    stats[Stat.PLOG_OFFSET] = part.plogOffset
    publishLags()
    // Observed before the replies go out: a client that has its reply sees its stages counted.
    stages.observe(Stage.REPLY, monotonicMs() - durableMs, batch.length)
    await sendReplies(replies, out.filter((r, i) => {
      if (r.reqId !== 0) return true
      // A job's run: nobody waits for its reply; it is logged.
      const job = writes[i]!
      jobsPending.delete(job.qname)
      post({ type: 'log', level: r.status < 300 ? 'info' : 'error', msg: `partition ${data.partition}: job ${job.qname} ${r.status < 300 ? 'ran' : `failed (${r.status}): ${Buffer.from(r.body).toString('utf8').slice(0, 300)}`}` })
      return false
    }))
    return durable
  }
  clearInterval(lagTimer)
  parentPort!.off('message', onMessage)
  await deployment.undeploy()
  await extensions.close()
  await provider.close()
  post({ type: 'exited' })
}

async function sendReplies(ring: RingProducer, out: readonly EngineReply[]): Promise<void> {
  await sendFrames(ring, out.map((r) => {
    const bytes = encodeReply(r)
    if (bytes.byteLength <= ring.frameBytesMax) return bytes
    const e = new VvmError('TOO_LARGE', `the reply of ${bytes.byteLength} bytes exceeds the ring frame limit of ${ring.frameBytesMax} bytes: read fewer rows`)
    return encodeReply({ reqId: r.reqId, status: e.status, body: renderError(0, e), retryAfterS: 0 })
  }))
}

async function sendFrames(ring: RingProducer, frames: readonly Uint8Array[]): Promise<void> {
  for (const bytes of frames) {
    // Acknowledged commands are never dropped: wait for the main thread to drain.
    while (!ring.tryWrite(bytes)) {
      ring.publish()
      await ring.waitForSpace(REPLY_SPACE_WAIT_MS)
    }
  }
  ring.publish()
}

/** A batch executed and being committed, with the reads that came in the same drain. */
interface InFlight {
  readonly reqs: readonly EngineRequest[]
  readonly executed: ExecutedBatch
  /** Abandoned before its commit started: nothing of it is written, nothing builds on it. */
  readonly abandoned: boolean
  /** When its commit began (`monotonicMs`). */
  readonly started: number
  readonly durable: Promise<boolean>
}

function misrouted(r: EngineRequest): EngineReply {
  const e = new VvmError('INTERNAL', 'a read reached a partition worker although storage is shared')
  return { reqId: r.reqId, status: e.status, body: renderError(r.format, e), retryAfterS: 0 }
}

main().catch((err: unknown) => {
  post({ type: 'fatal', msg: (err as Error)?.stack ?? String(err) })
  process.exitCode = 1
})
