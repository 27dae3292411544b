// Entry point of a partition worker: the command processor of one app partition. It knows the
// main thread only through its rings (requests in, replies out), a control word (shutdown) and
// a stats array; `postMessage` is used only for start-up and rare log lines.

import { parentPort, workerData } from 'node:worker_threads'
import { loadApp } from '../shared/app-loader.js'
import { decodeRequest, encodeReply, isWriteOp, type EngineReply, type EngineRequest } from '../shared/engine-messages.js'
import { VvmError } from '../shared/errors.js'
import { renderError } from '../shared/reply.js'
import { RingConsumer, RingProducer } from '../shared/ring/spsc-ring.js'
import { openStorageProvider } from '../shared/storage/index.js'
import { Control, Stat, type PartitionWorkerData, type WorkerEvent } from '../shared/partition-protocol.js'
import { CommandProcessor, type BatchStats } from './command/processor.js'
import { PartitionState } from './command/partition-state.js'
import { QueryProcessor } from './query/query-processor.js'
import { BuiltinRunner } from './extensions.js'

const data = workerData as PartitionWorkerData
const post = (e: WorkerEvent): void => parentPort!.postMessage(e)
/** How long one wait lasts before the loop looks at the shutdown word again. */
const IDLE_WAIT_MS = 1000
const REPLY_SPACE_WAIT_MS = 100

async function main(): Promise<void> {
  const control = new Int32Array(data.control)
  const stats = new Float64Array(data.stats)
  const requests = new RingConsumer(data.requestRing)
  const replies = new RingProducer(data.replyRing)
  const provider = await openStorageProvider(data.storage)
  const storage = await provider.appStorage(data.appQName)
  const app = await loadApp(data.appUrl)
  const part = new PartitionState(storage, data.partition, data.options)
  await part.load()
  const logError = (stage: string, err: unknown): void => {
    post({ type: 'log', level: 'error', msg: `partition ${data.partition}: ${stage}: ${(err as Error)?.stack ?? String(err)}` })
  }
  const extensions = new BuiltinRunner()
  const processor = new CommandProcessor(app, part, storage, {
    idempotencyTtlSeconds: data.options.idempotencyTtlSeconds,
    onInternalError: logError,
  }, extensions)
  // With a storage that is not shared across threads (mem), this worker also serves the reads
  // of its workspaces; otherwise reads go to the query pool and never arrive here.
  const queries = provider.sharedAcrossThreads ? undefined : new QueryProcessor(new Map([[app.qname, app]]), () => storage, extensions)
  stats[Stat.PLOG_OFFSET] = part.plogOffset
  post({ type: 'ready', plogOffset: part.plogOffset })

  const batchStats: BatchStats = { commands: 0, committed: 0, commitMs: 0 }
  const batch: EngineRequest[] = []
  const onFrame = (f: Uint8Array): void => { batch.push(decodeRequest(f)) }
  for (;;) {
    if (!requests.hasData()) {
      if (Atomics.load(control, Control.SHUTDOWN) !== 0) break
      await requests.waitForData(IDLE_WAIT_MS)
      continue
    }
    batch.length = 0
    requests.drain(onFrame, data.options.batchCommandsMax)
    const writes = batch.filter((r) => isWriteOp(r.op))
    const out = await processor.processBatch(writes, batchStats)
    for (const r of batch) {
      if (isWriteOp(r.op)) continue
      out.push(queries !== undefined ? await queries.run(r) : misrouted(r))
    }
    stats[Stat.BATCHES] += 1
    stats[Stat.LAST_BATCH_SIZE] = batch.length
    stats[Stat.COMMANDS] = batchStats.commands
    stats[Stat.COMMITTED] = batchStats.committed
    stats[Stat.COMMIT_MS_TOTAL] = batchStats.commitMs
    stats[Stat.PLOG_OFFSET] = part.plogOffset
    await sendReplies(replies, out)
  }
  await extensions.close()
  await provider.close()
  post({ type: 'exited' })
}

async function sendReplies(ring: RingProducer, out: readonly EngineReply[]): Promise<void> {
  for (const r of out) {
    let bytes = encodeReply(r)
    if (bytes.byteLength > ring.frameBytesMax) {
      const e = new VvmError('TOO_LARGE', `the reply of ${bytes.byteLength} bytes exceeds the ring frame limit of ${ring.frameBytesMax} bytes: read fewer rows`)
      bytes = encodeReply({ reqId: r.reqId, status: e.status, body: renderError(0, e), retryAfterS: 0 })
    }
    // Acknowledged commands are never dropped: wait for the main thread to drain.
    while (!ring.tryWrite(bytes)) {
      ring.publish()
      await ring.waitForSpace(REPLY_SPACE_WAIT_MS)
    }
  }
  ring.publish()
}

function misrouted(r: EngineRequest): EngineReply {
  const e = new VvmError('INTERNAL', 'a read reached a partition worker although storage is shared')
  return { reqId: r.reqId, status: e.status, body: renderError(r.format, e), retryAfterS: 0 }
}

main().catch((err: unknown) => {
  post({ type: 'fatal', msg: (err as Error)?.stack ?? String(err) })
  process.exitCode = 1
})
