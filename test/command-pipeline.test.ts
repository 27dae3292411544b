// The pipelined commit of the command processor: a batch executes on top of the batch being
// committed (its staged records, heads, idempotency entries and PLog offsets), is written only
// after it, and is abandoned — nothing written, every command BUSY — when that commit fails.
// Real mem storage; the one fault (a failing write) comes from a wrapper, as it cannot be
// caused otherwise.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { AppDef } from '../src/shared/appdef/types.js'
import { Op, ReplyFormat, type EngineRequest } from '../src/shared/engine-messages.js'
import { decodeStored, partitionHeadKey, plogKey, type StoredEvent } from '../src/shared/layout.js'
import { openStorageProvider } from '../src/shared/storage/index.js'
import type { BatchItem, IAppStorage, PutBatchOptions } from '../src/shared/storage/types.js'
import { CommandProcessor, type BatchStats } from '../src/workers/command/processor.js'
import { PartitionState } from '../src/workers/command/partition-state.js'
import { committerFor } from '../src/workers/command/commit.js'
import { BuiltinRunner } from '../src/workers/extensions.js'
import { SYSTEM_OWNER } from '../src/shared/authz.js'

const BANK_URL = new URL('../demo/bank/index.js', import.meta.url).href
const WSID = 1_000_001

/** Storage whose next `putBatch` calls fail while `failWrites` is set. */
class FailingWrites implements IAppStorage {
  failWrites = false
  constructor(private readonly base: IAppStorage) {}
  put(pk: Uint8Array, cc: Uint8Array, value: Uint8Array) { return this.base.put(pk, cc, value) }
  async putBatch(items: readonly BatchItem[], options?: PutBatchOptions): Promise<void> {
    if (this.failWrites) throw new Error('injected write failure')
    return this.base.putBatch(items, options)
  }
  get(pk: Uint8Array, cc: Uint8Array) { return this.base.get(pk, cc) }
  getBatch(pk: Uint8Array, ccs: readonly Uint8Array[]) { return this.base.getBatch(pk, ccs) }
  read(...a: Parameters<IAppStorage['read']>) { return this.base.read(...a) }
  insertIfNotExists(...a: Parameters<IAppStorage['insertIfNotExists']>) { return this.base.insertIfNotExists(...a) }
  compareAndSwap(...a: Parameters<IAppStorage['compareAndSwap']>) { return this.base.compareAndSwap(...a) }
  compareAndDelete(...a: Parameters<IAppStorage['compareAndDelete']>) { return this.base.compareAndDelete(...a) }
  ttlGet(...a: Parameters<IAppStorage['ttlGet']>) { return this.base.ttlGet(...a) }
  ttlRead(...a: Parameters<IAppStorage['ttlRead']>) { return this.base.ttlRead(...a) }
}

let reqIds = 0
function request(op: EngineRequest['op'], qname: string, body: unknown, idempotencyKey: string | null = null): EngineRequest {
  return {
    reqId: ++reqIds, op, format: ReplyFormat.JSON_V2, app: 'demo/bank', wsid: WSID, qname, id: 0,
    idempotencyKey, body: new TextEncoder().encode(JSON.stringify(body)), params: null, principal: SYSTEM_OWNER,
  }
}
const deposit = (account: number, amount: number, key: string | null = null) =>
  request(Op.COMMAND, 'bank.Deposit', { args: { account, amount } }, key)
const json = (body: Uint8Array | unknown) => JSON.parse(Buffer.from(body as Uint8Array).toString('utf8'))

async function setup() {
  const app = (await import(BANK_URL)).default as AppDef
  const provider = await openStorageProvider({ kind: 'mem' })
  const storage = new FailingWrites(await provider.appStorage(app.qname))
  const part = new PartitionState(storage, 0, { wsHeadsCachedMax: 100, recordsCachedMax: 100 })
  const errors: unknown[] = []
  const processor = new CommandProcessor(app, part, storage, {
    idempotencyTtlSeconds: 60, committer: committerFor(storage, 0, true), onInternalError: (_s, e) => errors.push(e),
  }, new BuiltinRunner())
  const stats: BatchStats = { commands: 0, committed: 0, commitMs: 0, executeMs: 0 }
  const [created] = await processor.processBatch([request(Op.DOC_CREATE, 'bank.Account', { name: 'a', balance: 0 })], stats)
  const account = json(created!.body).newIDs['1'] as number
  const balance = async () => (await part.record(WSID, account))!.f.balance
  const head = async () => {
    const h = partitionHeadKey(0)
    return decodeStored<{ po: number }>((await storage.get(h.pk, h.cc))!).po
  }
  const event = async (offset: number) => {
    const k = plogKey(0, offset)
    const bytes = await storage.get(k.pk, k.cc)
    return bytes === undefined ? undefined : decodeStored<StoredEvent>(bytes)
  }
  return { processor, storage, part, stats, account, balance, head, event, errors, close: () => provider.close() }
}

describe('pipelined commit', () => {
  it('a batch executes on top of the batch being committed and is written after it', async () => {
    const t = await setup()
    try {
      const a = await t.processor.execute([deposit(t.account, 10), deposit(t.account, 1)], undefined, t.stats)
      const committingA = t.processor.commit(a, t.stats)
      // B sees A's staged balance although A is not durable yet.
      const b = await t.processor.execute([deposit(t.account, 5)], a, t.stats)
      assert.deepEqual(a.replies.map((r) => json(r.body).result.balance), [10, 11])
      assert.equal(json(b.replies[0]!.body).result.balance, 16)
      assert.equal(await committingA, true)
      assert.equal(await t.balance(), 11)
      assert.equal(await t.processor.commit(b, t.stats), true)
      assert.equal(await t.balance(), 16)
      // PLog offsets continue across the two batches: 1 (the account), 2-3 (A), 4 (B).
      assert.equal(await t.head(), 4)
      assert.equal((await t.event(4))!.a.amount, 5)
      // Workspace offsets continue too: the account's creation was 1.
      assert.deepEqual([...a.replies, ...b.replies].map((r) => json(r.body).currentWLogOffset), [2, 3, 4])
      assert.equal((await t.event(4))!.wo, 4)
    } finally {
      await t.close()
    }
  })

  it('a retry of a command of the batch being committed gets its reply, not a second run', async () => {
    const t = await setup()
    try {
      const a = await t.processor.execute([deposit(t.account, 10, 'k1')], undefined, t.stats)
      const committingA = t.processor.commit(a, t.stats)
      const b = await t.processor.execute([deposit(t.account, 10, 'k1')], a, t.stats)
      assert.equal(await committingA, true)
      assert.equal(await t.processor.commit(b, t.stats), true)
      assert.deepEqual(json(b.replies[0]!.body), json(a.replies[0]!.body))
      assert.equal(await t.balance(), 10)
      assert.equal(await t.head(), 2)
    } finally {
      await t.close()
    }
  })

  it('when the commit under way fails, the batch staged on it is abandoned and nothing of either is written', async () => {
    const t = await setup()
    try {
      t.storage.failWrites = true
      const a = await t.processor.execute([deposit(t.account, 10)], undefined, t.stats)
      const committingA = t.processor.commit(a, t.stats)
      const b = await t.processor.execute([deposit(t.account, 5)], a, t.stats)
      assert.equal(await committingA, false)
      t.storage.failWrites = false
      t.processor.abandon(b)
      assert.equal(await t.processor.commit(b, t.stats), false)
      for (const r of [...a.replies, ...b.replies]) {
        assert.equal(r.status, 503)
        assert.equal(json(r.body).code, 'BUSY')
      }
      assert.equal(await t.balance(), 0)
      assert.equal(await t.head(), 1)
      assert.equal(await t.event(2), undefined)
      assert.ok(t.errors.length >= 1)
      // The next batch stages on the committed state and takes the next offset.
      const c = await t.processor.execute([deposit(t.account, 7)], undefined, t.stats)
      assert.equal(json(c.replies[0]!.body).result.balance, 7)
      assert.equal(await t.processor.commit(c, t.stats), true)
      assert.equal(await t.balance(), 7)
      assert.equal(await t.head(), 2)
      assert.equal((await t.event(2))!.a.amount, 7)
    } finally {
      await t.close()
    }
  })

  it('extend: requests that arrive during the commit join the next batch before its commit', async () => {
    const t = await setup()
    try {
      const a = await t.processor.execute([deposit(t.account, 1)], undefined, t.stats)
      const committingA = t.processor.commit(a, t.stats)
      const b = await t.processor.execute([deposit(t.account, 2)], a, t.stats)
      assert.equal(await committingA, true)
      await t.processor.extend(b, [deposit(t.account, 3), request(Op.COMMAND, 'bank.Deposit', { args: { account: t.account, amount: 0 } })], t.stats)
      assert.deepEqual(b.replies.map((r) => r.status), [200, 200, 400])
      assert.deepEqual(b.acked, [0, 1])
      assert.equal(await t.processor.commit(b, t.stats), true)
      assert.equal(await t.balance(), 6)
      assert.equal(await t.head(), 4)
    } finally {
      await t.close()
    }
  })
})
