// The command path of one partition without the network: a CommandProcessor over LevelDB in a
// temp dir (sync on, as the server runs it), fed batches of bank.Deposit directly. It reports
// the CPU this process spends per command (all its threads: JS, LevelDB, libuv) and the wall
// time per command, so that a change to execution, encoding or the commit can be compared
// without the noise of sockets, rings and a load generator sharing two cores.
//
//   npx tsc -p . && node dist/bench/command-path.js [--batches 400] [--batch 32] [--workspaces 1000] [--rounds 3]

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { AppDef } from '../src/shared/appdef/types.js'
import { SYSTEM_OWNER } from '../src/shared/authz.js'
import { Op, ReplyFormat, type EngineRequest } from '../src/shared/engine-messages.js'
import { openStorageProvider } from '../src/shared/storage/index.js'
import { committerFor } from '../src/workers/command/commit.js'
import { PartitionState } from '../src/workers/command/partition-state.js'
import { CommandProcessor, type BatchStats } from '../src/workers/command/processor.js'
import { BuiltinRunner } from '../src/workers/extensions.js'

const BANK_URL = new URL('../demo/bank/index.js', import.meta.url).href
const WSID_BASE = 1_000_000

const { values: opts } = parseArgs({
  options: {
    batches: { type: 'string', default: '400' },
    batch: { type: 'string', default: '32' },
    workspaces: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    help: { type: 'boolean', default: false },
  },
})
if (opts.help) {
  console.log(`command-path: one partition's command path without the network, CPU and wall time per command

  node dist/bench/command-path.js [--batches N] [--batch N] [--workspaces N] [--rounds N]

  --batches     batches measured per round (default 400), after 50 batches of warm-up
  --batch       deposits per batch (default 32)
  --workspaces  workspaces, one account each, the deposits spread over (default 1000)
  --rounds      rounds, each on a fresh LevelDB in a temp dir (default 3)`)
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
  const provider = await openStorageProvider({ kind: 'level', dataDir: dir })
  try {
    const storage = await provider.appStorage(app.qname)
    const part = new PartitionState(storage, 0, { wsHeadsCachedMax: 100_000, recordsCachedMax: 100_000 })
    const processor = new CommandProcessor(app, part, storage, {
      idempotencyTtlSeconds: 86_400, committer: committerFor(storage, 0, true), onInternalError: (stage, err) => { throw new Error(`${stage}: ${String(err)}`) },
    }, new BuiltinRunner())
    const stats: BatchStats = { commands: 0, committed: 0, commitMs: 0, executeMs: 0 }
    const accounts: [number, number][] = []
    for (let w = 0; w < workspaces; w += batchSize) {
      const reqs: EngineRequest[] = []
      for (let i = w; i < Math.min(workspaces, w + batchSize); i++) reqs.push(request(Op.DOC_CREATE, WSID_BASE + i, 'bank.Account', { name: `a${i}`, balance: 0 }))
      const replies = await processor.processBatch(reqs, stats)
      replies.forEach((r, i) => accounts.push([reqs[i]!.wsid, JSON.parse(Buffer.from(r.body).toString()).newIDs['1']]))
    }
    const deposits = (n: number) => Array.from({ length: n }, (_, i) => {
      const [wsid, account] = accounts[(i * 7919 + reqId) % accounts.length]!
      return request(Op.COMMAND, wsid, 'bank.Deposit', { args: { account, amount: 1 } })
    })
    // Warm-up: the JIT, the caches.
    for (let b = 0; b < 50; b++) await processor.processBatch(deposits(batchSize), stats)
    const prepared = Array.from({ length: batches }, () => deposits(batchSize))
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    for (const reqs of prepared) {
      const replies = await processor.processBatch(reqs, stats)
      for (const r of replies) if (r.status !== 200) throw new Error(`status ${r.status}: ${Buffer.from(r.body).toString()}`)
    }
    const wallMs = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const n = batches * batchSize
    return { cpuUs: (cpu.user + cpu.system) / n, wallUs: (wallMs * 1000) / n }
  } finally {
    await provider.close()
    await rm(dir, { recursive: true, force: true })
  }
}

const app = (await import(BANK_URL)).default as AppDef
console.log(`command path: ${batches} batches of ${batchSize} bank.Deposit over ${workspaces} workspaces, LevelDB with sync, one partition, no network`)
for (let r = 0; r < Number(opts.rounds); r++) {
  const { cpuUs, wallUs } = await round(app)
  console.log(`round ${r + 1}: ${cpuUs.toFixed(1)} µs CPU per command (all threads), ${wallUs.toFixed(1)} µs wall per command`)
}
