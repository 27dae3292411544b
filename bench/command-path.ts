// The command path of one partition without the network: a CommandProcessor over LevelDB in a
// temp dir (durable, as the server runs it: each batch synced in the partition's commit log and
// written to LevelDB unsynced; with --no-commit-log, LevelDB syncs its own log), fed batches of bank.Deposit directly. It reports
// the CPU this process spends per command (all its threads: JS, LevelDB, libuv) and the wall
// time per command, so that a change to execution, encoding or the commit can be compared
// without the noise of sockets, rings and a load generator sharing two cores.
//
// With --actualizers the app's async projectors run too, as a partition worker runs them: after
// each batch's commit they project its events (from memory) and write their views, and the
// next batch waits until they have (bank.DailyTotals reads and writes a view row per deposit).
//
//   npx tsc -p . && node dist/bench/command-path.js [--batches 400] [--batch 32] [--workspaces 1000] [--rounds 3] [--actualizers] [--no-commit-log]

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { AppDef } from '../src/shared/appdef/types.js'
import { SYSTEM_OWNER } from '../src/shared/authz.js'
import { Op, ReplyFormat, type EngineRequest } from '../src/shared/engine-messages.js'
import { openStorageProvider } from '../src/shared/storage/index.js'
import { partitionRouting } from '../src/shared/layout.js'
import { committerFor } from '../src/workers/command/commit.js'
import { PartitionState } from '../src/workers/command/partition-state.js'
import { CommandProcessor, type BatchStats } from '../src/workers/command/processor.js'
import { BuiltinRunner } from '../src/workers/extensions.js'
import { PartitionDeployment } from '../src/workers/actualizer/deployment.js'
import type { IAppStorage } from '../src/shared/storage/types.js'

const BANK_URL = new URL('../demo/bank/index.js', import.meta.url).href
const WSID_BASE = 1_000_000

const { values: opts } = parseArgs({
  options: {
    batches: { type: 'string', default: '400' },
    batch: { type: 'string', default: '32' },
    workspaces: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    actualizers: { type: 'boolean', default: false },
    'no-commit-log': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (opts.help) {
  console.log(`command-path: one partition's command path without the network, CPU and wall time per command

  node dist/bench/command-path.js [--batches N] [--batch N] [--workspaces N] [--rounds N] [--actualizers] [--no-commit-log]

  --batches     batches measured per round (default 400), after 50 batches of warm-up
  --batch       deposits per batch (default 32)
  --workspaces  workspaces, one account each, the deposits spread over (default 1000)
  --rounds      rounds, each on a fresh LevelDB in a temp dir (default 3)
  --actualizers the async projectors too: each batch's events projected after its commit
  --no-commit-log  LevelDB syncs its own log (the server's --commit-log-bytes 0)`)
  process.exit(0)
}
const batches = Number(opts.batches)
const batchSize = Number(opts.batch)
const workspaces = Number(opts.workspaces)

let reqId = 0
const encoder = new TextEncoder()
function request(op: EngineRequest['op'], wsid: number, qname: string, body: unknown): EngineRequest {
  return {
    reqId: ++reqId, op, format: ReplyFormat.JSON_V2, app: 'demo/bank', wsid, qname, id: 0,
    idempotencyKey: null, body: encoder.encode(JSON.stringify(body)), params: null, principal: SYSTEM_OWNER,
  }
}

async function round(app: AppDef): Promise<{ cpuUs: number; wallUs: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'vvm-command-path-'))
  const provider = await openStorageProvider({ kind: 'level', dataDir: dir, levelCommitLogBytes: opts['no-commit-log'] ? 0 : undefined })
  let deployment: PartitionDeployment | undefined
  try {
    // As a partition worker opens it: routed, this thread the partition's writer (its commit log).
    const storage = await provider.appStorage(app.qname, partitionRouting(1, 0))
    const part = new PartitionState(storage, 0, { wsHeadsCachedMax: 100_000, recordsCachedMax: 100_000 })
    const processor = new CommandProcessor(app, part, storage, {
      idempotencyTtlSeconds: 86_400, committer: committerFor(storage, 0, true), onInternalError: (stage, err) => { throw new Error(`${stage}: ${String(err)}`) },
    }, new BuiltinRunner())
    const stats: BatchStats = { commands: 0, committed: 0, commitMs: 0, executeMs: 0 }
    deployment = opts.actualizers ? await deployActualizers(app, storage, part.plogOffset) : undefined
    /** One batch executed and committed; with --actualizers, also projected. */
    const processBatch = async (reqs: EngineRequest[]) => {
      const b = await processor.execute(reqs, undefined, stats)
      if (!(await processor.commit(b, stats))) throw new Error('the commit failed')
      if (deployment !== undefined) {
        deployment.notifyCommitted(part.plogOffset, b.staging.events)
        await caughtUp(deployment)
      }
      return b.replies
    }
    const accounts: [number, number][] = []
    for (let w = 0; w < workspaces; w += batchSize) {
      const reqs: EngineRequest[] = []
      for (let i = w; i < Math.min(workspaces, w + batchSize); i++) reqs.push(request(Op.DOC_CREATE, WSID_BASE + i, 'bank.Account', { name: `a${i}`, balance: 0 }))
      const replies = await processBatch(reqs)
      replies.forEach((r, i) => accounts.push([reqs[i]!.wsid, JSON.parse(Buffer.from(r.body).toString()).newIDs['1']]))
    }
    const deposits = (n: number) => Array.from({ length: n }, (_, i) => {
      const [wsid, account] = accounts[(i * 7919 + reqId) % accounts.length]!
      return request(Op.COMMAND, wsid, 'bank.Deposit', { args: { account, amount: 1 } })
    })
    // Warm-up: the JIT, the caches.
    for (let b = 0; b < 50; b++) await processBatch(deposits(batchSize))
    const prepared = Array.from({ length: batches }, () => deposits(batchSize))
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    for (const reqs of prepared) {
      const replies = await processBatch(reqs)
      for (const r of replies) if (r.status !== 200) throw new Error(`status ${r.status}: ${Buffer.from(r.body).toString()}`)
    }
    const wallMs = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const n = batches * batchSize
    return { cpuUs: (cpu.user + cpu.system) / n, wallUs: (wallMs * 1000) / n }
  } finally {
    await deployment?.undeploy()
    await provider.close()
    await rm(dir, { recursive: true, force: true })
  }
}

/** The app's async projectors on this partition, as a partition worker deploys them (no jobs run here). */
async function deployActualizers(app: AppDef, storage: IAppStorage, committed: number): Promise<PartitionDeployment> {
  const d = new PartitionDeployment(storage, 0, new BuiltinRunner(), {
    batchEventsMax: 4096, flushIntervalMs: 0, retryDelayMinMs: 10, retryDelayMaxMs: 1000,
    log: (level, msg) => { if (level === 'error') throw new Error(msg) },
    runJob: () => {},
  })
  await d.deploy({ ...app, jobs: new Map() }, committed)
  return d
}

/** Until every actualizer has projected what is committed (they run on this thread's event loop). */
async function caughtUp(d: PartitionDeployment): Promise<void> {
  while (d.lags().some((lag) => lag > 0)) await new Promise((r) => setImmediate(r))
}

const app = (await import(BANK_URL)).default as AppDef
console.log(`command path: ${batches} batches of ${batchSize} bank.Deposit over ${workspaces} workspaces, ${opts['no-commit-log'] ? 'LevelDB with sync' : 'synced in the commit log'}, one partition, no network${opts.actualizers ? ', async projectors after each commit' : ''}`)
for (let r = 0; r < Number(opts.rounds); r++) {
  const { cpuUs, wallUs } = await round(app)
  console.log(`round ${r + 1}: ${cpuUs.toFixed(1)} µs CPU per command (all threads), ${wallUs.toFixed(1)} µs wall per command`)
}
