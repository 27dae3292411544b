// Subscriptions (docs/subscriptions.md) against the real server: a materialized copy that equals
// a fresh read after every random command, one evaluation per change however many subscribers,
// resume after reconnect without gaps or duplicates, SSE, refusals, Cassandra, async projectors
// (bounds, authorization and lifetimes: subscriptions-limits.test.ts).

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ReplyError, connect, type Live, type SubscribeTarget, type SubscriptionEvent, type VvmClient } from '../src/client/index.js'
import { FrameType, WireOp, encodeHello } from '../src/shared/protocol/index.js'
import { createAccount, http, startTestServer, type TestServer } from './helpers/server.js'
import { CASSANDRA_HOSTS, cassandraSkip, cassandraUnreachable } from './helpers/cassandra.js'
import { randomBytes } from 'node:crypto'
import { RawWs } from './helpers/ws-raw.js'
import { metric, until, type Push, type Row } from './helpers/subscriptions.js'


/** A deterministic random sequence (mulberry32), so that a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const evaluations = (t: TestServer): number => t.server.partitions.stats().reduce((n, s) => n + s.subEvaluations, 0)
const diffsProduced = (t: TestServer): number => t.server.partitions.stats().reduce((n, s) => n + s.subDiffs, 0)


describe('subscriptions: the materialized copy equals a fresh read', () => {
  const WSID = 4100
  let t: TestServer
  let c: VvmClient
  before(async () => {
    t = await startTestServer(['--storage', 'level'])
    c = await connect(`ws://127.0.0.1:${t.server.port}/api/ws`, { app: 'demo/bank', wsid: WSID })
  })
  after(async () => {
    await c.close()
    await t.close()
  })

  it('after each of 300 random commands, every live copy equals the same read done fresh', async () => {
    const random = rng(20261123)
    const accounts: number[] = []
    for (let i = 0; i < 3; i++) accounts.push((await c.docs.create('bank.Account', { name: `acc${i}`, balance: 100 })).newIDs['1']!)
    const [a0, a1] = accounts as [number, number]
    const reads: { target: SubscribeTarget; fresh: () => Promise<Row[]> }[] = [
      { target: { cdocs: 'bank.Account' }, fresh: async () => (await c.docs.list('bank.Account')).results },
      {
        target: { cdocs: 'bank.Account', where: { balance: { $gte: 100 } }, order: '-balance,name', limit: 4 },
        fresh: async () => (await c.docs.list('bank.Account', { where: { balance: { $gte: 100 } }, order: '-balance,name', limit: 4 })).results,
      },
      { target: { view: 'bank.Movements', where: { account: a0 } }, fresh: async () => (await c.view('bank.Movements', { where: { account: a0 } })).results },
      {
        target: { view: 'bank.Movements', where: { account: a1 }, order: '-amount', limit: 3 },
        fresh: async () => (await c.view('bank.Movements', { where: { account: a1 }, order: '-amount', limit: 3 })).results,
      },
      { target: { query: 'bank.Balance', args: { account: a0 } }, fresh: async () => (await c.query('bank.Balance', { account: a0 })).results },
      { target: { doc: 'bank.Account', id: a1 }, fresh: async () => [await c.docs.get('bank.Account', a1)] },
    ]
    const lives: Live[] = []
    const events: SubscriptionEvent[][] = []
    for (const r of reads) {
      const l = await c.live(r.target)
      const seen: SubscriptionEvent[] = []
      let lastOffset = l.rows.offset
      l.onChange((rows, e) => {
        seen.push(e)
        if (e.type === 'diff') {
          // In order, without gaps: each diff starts at or before the copy's offset and moves it on.
          assert.ok(e.fromOffset <= lastOffset, `diff from ${e.fromOffset} after offset ${lastOffset}`)
          assert.ok(e.toOffset > lastOffset, `diff to ${e.toOffset} not after offset ${lastOffset}`)
          assert.ok(e.ops.length > 0 || e.order !== undefined, 'an empty diff was sent')
        }
        lastOffset = rows.offset
      })
      lives.push(l)
      events.push(seen)
      assert.deepEqual(l.rows.rows, await r.fresh())
    }
    const pick = (): number => accounts[Math.floor(random() * accounts.length)]!
    let changes = 0
    for (let step = 0; step < 300; step++) {
      const before = await Promise.all(reads.map((r) => r.fresh()))
      const counts = events.map((e) => e.length)
      let offset: number | undefined
      const x = random()
      try {
        if (x < 0.1) {
          const r = await c.docs.create('bank.Account', { name: `n${step}`, balance: Math.floor(random() * 200) })
          accounts.push(r.newIDs['1']!)
          offset = r.currentWLogOffset
        } else if (x < 0.5) {
          offset = (await c.command('bank.Deposit', { account: pick(), amount: 1 + Math.floor(random() * 50) })).currentWLogOffset
        } else if (x < 0.8) {
          offset = (await c.command('bank.Transfer', { from: pick(), to: pick(), amount: 1 + Math.floor(random() * 80) })).currentWLogOffset
        } else if (x < 0.95) {
          offset = (await c.docs.update('bank.Account', pick(), { name: `r${step}` })).currentWLogOffset
        } else {
          const id = pick()
          if (id !== a0 && id !== a1) offset = (await c.docs.deactivate('bank.Account', id)).currentWLogOffset
        }
      } catch (err) {
        // Refused commands (insufficient funds, same account, closed account) change nothing.
        assert.ok(err instanceof ReplyError && err.status >= 400 && err.status < 500, String(err))
      }
      const after = await Promise.all(reads.map((r) => r.fresh()))
      reads.forEach((_, i) => {
        assert.deepEqual(lives[i]!.rows.rows, after[i], `step ${step}: live copy ${i} differs from a fresh read`)
        const changed = JSON.stringify(before[i]) !== JSON.stringify(after[i])
        if (!changed) {
          assert.equal(events[i]!.length, counts[i], `step ${step}: read ${i} did not change, yet a diff came`)
          return
        }
        changes++
        // The diff came before the command's reply, at the command's offset.
        assert.equal(events[i]!.length, counts[i]! + 1, `step ${step}: read ${i} changed: exactly one diff expected`)
        assert.equal(lives[i]!.rows.offset, offset, `step ${step}: the copy is not at the command's offset`)
      })
    }
    assert.ok(changes > 300, `only ${changes} changes: the random commands did not exercise the reads`)
    for (const l of lives) await l.close()
    await until(async () => (await metric(t, 'vvm_subscriptions')) === 0, 'the subscriptions to be released')
  })
})

describe('subscriptions: grouping, resume, SSE, bounds', () => {
  const WSID = 4200
  let t: TestServer
  let url: string
  before(async () => {
    t = await startTestServer(['--storage', 'mem', '--subscription-history-diffs-max', '4', '--subscriptions-per-connection-max', '1000'])
    url = `ws://127.0.0.1:${t.server.port}/api/ws`
  })
  after(() => t.close())

  it('10,000 subscribers to one query: one evaluation and one diff per change, delivered to all', async () => {
    const account = await createAccount(t.ws(WSID), 'fan', 0)
    const CONNECTIONS = 10
    const PER = 1000
    const received: number[] = new Array(CONNECTIONS).fill(0)
    const balances = new Map<string, number>()
    const clients = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => connect(url, {
      app: 'demo/bank', wsid: WSID,
      onPush: (sub, _seq, body) => {
        received[i]!++
        const d = body as { ops: { row: { balance: number } }[] }
        balances.set(`${i}/${sub}`, d.ops[0]!.row.balance)
      },
    })))
    const e0 = evaluations(t)
    await Promise.all(clients.map((cl) => Promise.all(Array.from({ length: PER }, () => cl.subscribe({ query: 'bank.Balance', args: { account } })))))
    assert.equal(evaluations(t) - e0, 1, 'identical subscriptions were evaluated more than once')
    assert.equal(await metric(t, 'vvm_subscriptions'), CONNECTIONS * PER)
    const writer = clients[0]!
    for (let k = 1; k <= 3; k++) {
      const e1 = evaluations(t)
      const d1 = diffsProduced(t)
      await writer.command('bank.Deposit', { account, amount: 10 })
      await until(() => received.every((n) => n === k * PER), `all ${CONNECTIONS * PER} subscribers to get diff ${k}`)
      assert.equal(evaluations(t) - e1, 1, `change ${k}: evaluated more than once`)
      assert.equal(diffsProduced(t) - d1, 1, `change ${k}: more than one diff`)
      assert.equal(balances.size, CONNECTIONS * PER)
      assert.ok([...balances.values()].every((b) => b === 10 * k))
    }
    await Promise.all(clients.map((cl) => cl.close()))
    await until(async () => (await metric(t, 'vvm_subscriptions')) === 0, 'the subscriptions to be released')
  })

  it('resumes from the last offset seen with the missed diffs, or a fresh snapshot when that is too old', async () => {
    const base = t.ws(WSID + 1)
    const account = await createAccount(base, 'r', 0)
    const subscribe = async (raw: RawWs, reqId: number, resumeFrom?: number): Promise<Row> => {
      raw.request({ reqId, op: WireOp.SUBSCRIBE, wsid: WSID + 1, qname: 'bank.Movements', params: { where: { account } }, body: resumeFrom === undefined ? null : { resumeFrom } })
      const r = await raw.reply(reqId)
      assert.equal(r.status, 200, JSON.stringify(r.body))
      return r.body as Row
    }
    const deposit = async (n: number): Promise<number> => {
      let offset = 0
      for (let i = 0; i < n; i++) offset = (await http('POST', `${base}/commands/bank.Deposit`, { args: { account, amount: 1 + i } })).body.currentWLogOffset
      return offset
    }
    const { raw } = await RawWs.hello(t.server.port)
    const first = await subscribe(raw, 1)
    assert.equal(first.resumed, false)
    assert.deepEqual(first.rows, [])
    const seen = first.offset as number
    await raw.close()
    // Within the history (4 diffs) and the grace period: the diffs since `seen`, in order.
    const now = await deposit(3)
    const { raw: again } = await RawWs.hello(t.server.port)
    const resumed = await subscribe(again, 2, seen)
    assert.equal(resumed.resumed, true)
    assert.equal(resumed.offset, now)
    const diffs = resumed.diffs as { fromOffset: number; toOffset: number; ops: { op: string; key: string; row: Row }[] }[]
    assert.equal(diffs.length, 3)
    assert.ok(diffs[0]!.fromOffset <= seen && diffs.at(-1)!.toOffset === now)
    for (let i = 1; i < diffs.length; i++) assert.equal(diffs[i]!.fromOffset, diffs[i - 1]!.toOffset)
    const rows = diffs.flatMap((d) => d.ops.map((o) => o.row))
    assert.deepEqual(rows, (await http('GET', `${base}/views/bank.Movements?where=${encodeURIComponent(JSON.stringify({ account }))}`)).body.results)
    // Resuming from the present: nothing missed, nothing sent twice.
    const current = await subscribe(again, 3, now)
    assert.equal(current.resumed, true)
    assert.deepEqual(current.diffs, [])
    // Older than the history: a fresh snapshot, and the reply says so.
    await deposit(5)
    const old = await subscribe(again, 4, seen)
    assert.equal(old.resumed, false)
    assert.equal((old.rows as unknown[]).length, 8)
    // A resume offset from the future is no resume either.
    assert.equal((await subscribe(again, 5, 1_000_000)).resumed, false)
    await again.close()
  })

  it('the SDK resumes by itself after a lost connection: no snapshot, no gap, no duplicate', async () => {
    const c = await connect(url, { app: 'demo/bank', wsid: WSID + 2, reconnect: { delayMinMs: 10, delayMaxMs: 50 } })
    const account = (await c.docs.create('bank.Account', { name: 'x', balance: 0 })).newIDs['1']!
    const live = await c.live({ view: 'bank.Movements', where: { account } })
    const events: SubscriptionEvent[] = []
    live.onChange((_, e) => events.push(e))
    await c.command('bank.Deposit', { account, amount: 1 })
    // Cut the connection; another client writes meanwhile.
    const other = await connect(url, { app: 'demo/bank', wsid: WSID + 2 })
    ;(c as unknown as { socket: { terminate(): void } }).socket.terminate()
    for (let i = 2; i <= 3; i++) await other.command('bank.Deposit', { account, amount: i })
    await until(() => live.rows.rows.length === 3, 'the resumed diffs')
    assert.deepEqual(live.rows.rows, (await other.view('bank.Movements', { where: { account } })).results)
    assert.ok(events.every((e) => e.type === 'diff'), 'a snapshot was sent where a resume was possible')
    assert.deepEqual(events.flatMap((e) => (e.type === 'diff' ? e.ops.map((o) => o.op) : [])), ['put', 'put', 'put'])
    await other.close()
    await c.close()
  })

  it('serves Server-Sent Events: snapshot, diffs, resume with Last-Event-ID', async () => {
    const base = t.ws(WSID + 3)
    const account = await createAccount(base, 'sse', 0)
    const open = async (headers: Record<string, string> = {}) => {
      const ctrl = new AbortController()
      const res = await fetch(`${base}/views/bank.Movements?where=${encodeURIComponent(JSON.stringify({ account }))}`, { headers: { accept: 'text/event-stream', ...headers }, signal: ctrl.signal })
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-type'), 'text/event-stream')
      const reader = res.body!.getReader()
      let buffer = ''
      const next = async (): Promise<{ event: string; id: string | undefined; data: Row }> => {
        for (;;) {
          const end = buffer.indexOf('\n\n')
          if (end >= 0) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            if (block.startsWith(':')) continue
            const field = (n: string): string | undefined => block.split('\n').find((l) => l.startsWith(`${n}: `))?.slice(n.length + 2)
            return { event: field('event')!, id: field('id'), data: JSON.parse(field('data')!) as Row }
          }
          const { value, done } = await reader.read()
          if (done) throw new Error('the stream ended')
          buffer += new TextDecoder().decode(value)
        }
      }
      return { next, close: () => ctrl.abort() }
    }
    const s = await open()
    const snap = await s.next()
    assert.equal(snap.event, 'snapshot')
    assert.deepEqual(snap.data.rows, [])
    const deposit = async (amount: number) => (await http('POST', `${base}/commands/bank.Deposit`, { args: { account, amount } })).body.currentWLogOffset as number
    const o1 = await deposit(5)
    const d1 = await s.next()
    assert.equal(d1.event, 'diff')
    assert.equal(d1.id, String(o1))
    assert.deepEqual((d1.data.ops as Row[]).map((o) => o.op), ['put'])
    s.close()
    const o2 = await deposit(6)
    // EventSource's reconnect: Last-Event-ID is the last offset seen.
    const r = await open({ 'last-event-id': String(o1) })
    const resumed = await r.next()
    assert.equal(resumed.event, 'resume')
    assert.equal(resumed.id, String(o2))
    assert.deepEqual((resumed.data.diffs as { ops: { row: Row }[] }[]).map((d) => d.ops[0]!.row.amount), [6])
    r.close()
    // A refused subscription is a plain JSON error.
    const bad = await http('GET', `${base}/views/bank.Movements`, undefined, { accept: 'text/event-stream' })
    assert.equal(bad.status, 400)
    assert.match(bad.body.message, /partition key/)
    await until(async () => (await metric(t, 'vvm_subscriptions')) === 0, 'SSE subscriptions to be released')
  })

  it('refuses bad subscriptions with a coded error and changes nothing', async () => {
    const { raw } = await RawWs.hello(t.server.port)
    const ask = async (reqId: number, r: Partial<Parameters<RawWs['request']>[0]>) => {
      raw.request({ reqId, op: WireOp.SUBSCRIBE, wsid: WSID + 4, qname: 'bank.Account', ...r })
      return raw.reply(reqId)
    }
    const before = t.server.partitions.stats().map((s) => s.plogOffset)
    assert.equal((await ask(1, { qname: 'bank.Deposit' })).status, 404)
    assert.equal((await ask(2, { qname: 'bank.Movements' })).status, 400) // no partition key
    assert.equal((await ask(3, { body: { resumeFrom: -1 } })).status, 400)
    assert.equal((await ask(4, { qname: 'bank.Movements', docId: 5 })).status, 400)
    raw.request({ reqId: 5, op: WireOp.UNSUBSCRIBE, wsid: WSID + 4, qname: 'bank.Account', docId: 777 })
    const un = await raw.reply(5)
    assert.equal(un.status, 404)
    assert.equal((un.body as Row).code, 'NOT_FOUND')
    assert.deepEqual(t.server.partitions.stats().map((s) => s.plogOffset), before)
    await raw.close()
    // A version-1 connection: subscriptions are not served there.
    const v1 = await RawWs.open(t.server.port)
    v1.send(encodeHello([1], null, {}))
    assert.equal((await v1.next()).type, FrameType.WELCOME)
    v1.request({ reqId: 1, op: WireOp.SUBSCRIBE, wsid: WSID + 4, qname: 'bank.Account' })
    const r = await v1.reply(1)
    assert.equal(r.status, 400)
    assert.match((r.body as Row).message as string, /version 2/)
    await v1.close()
  })

  it('unsubscribe stops the pushes at once; closing a connection releases its subscriptions', async () => {
    const { raw } = await RawWs.hello(t.server.port)
    const base = t.ws(WSID + 5)
    const account = await createAccount(base, 'u', 0)
    raw.request({ reqId: 1, op: WireOp.SUBSCRIBE, wsid: WSID + 5, qname: 'bank.Balance', params: { args: { account } } })
    const sub = (await raw.reply(1)).body as { subscription: number; rows: { row: Row }[] }
    assert.deepEqual(sub.rows.map((r) => r.row), [{ balance: 0 }])
    await http('POST', `${base}/commands/bank.Deposit`, { args: { account, amount: 3 } })
    const push = (await raw.next()) as Push
    assert.equal(push.type, FrameType.PUSH)
    assert.equal(push.subscriptionId, sub.subscription)
    assert.equal(push.seq, 1)
    assert.deepEqual((push.body as { ops: Row[] }).ops, [{ op: 'update', key: 0, row: { balance: 3 } }])
    raw.request({ reqId: 2, op: WireOp.UNSUBSCRIBE, wsid: WSID + 5, qname: 'bank.Balance', docId: sub.subscription })
    assert.equal((await raw.reply(2)).status, 200)
    await http('POST', `${base}/commands/bank.Deposit`, { args: { account, amount: 4 } })
    raw.request({ reqId: 3, op: WireOp.SUBSCRIBE, wsid: WSID + 5, qname: 'bank.Balance', params: { args: { account } } })
    assert.equal((await raw.reply(3)).status, 200)
    assert.ok(!raw.frames.some((f) => f.type === FrameType.PUSH), 'a push after unsubscribe')
    assert.equal(await metric(t, 'vvm_subscriptions'), 1)
    await raw.close()
    await until(async () => (await metric(t, 'vvm_subscriptions')) === 0, 'the closed connection to release its subscription')
  })
})

describe('subscriptions on Cassandra', async () => {
  const unreachable = await cassandraUnreachable()
  const skip = cassandraSkip(unreachable, 'subscriptions on Cassandra')
  it('diffs follow commits made through the commit intent (non-atomic batches)', { skip }, async () => {
    assert.equal(unreachable, undefined, `no Cassandra at ${CASSANDRA_HOSTS}: start one with \`bash scripts/cassandra.sh start\``)
    const prefix = `vvms_${randomBytes(4).toString('hex')}_`
    const t = await startTestServer(['--storage', 'cassandra', '--cassandra-hosts', CASSANDRA_HOSTS, '--cassandra-keyspace-prefix', prefix, '--partitions', '1'])
    try {
      const c = await connect(`ws://127.0.0.1:${t.server.port}/api/ws`, { app: 'demo/bank', wsid: 4800 })
      const a = (await c.docs.create('bank.Account', { name: 'a', balance: 50 })).newIDs['1']!
      const b = (await c.docs.create('bank.Account', { name: 'b', balance: 0 })).newIDs['1']!
      const accounts = await c.live({ cdocs: 'bank.Account' })
      const moves = await c.live({ view: 'bank.Movements', where: { account: b } })
      for (let i = 1; i <= 5; i++) {
        const r = await c.command('bank.Transfer', { from: a, to: b, amount: i })
        assert.equal(accounts.rows.offset, r.currentWLogOffset)
        assert.deepEqual(accounts.rows.rows, (await c.docs.list('bank.Account')).results)
        assert.deepEqual(moves.rows.rows, (await c.view('bank.Movements', { where: { account: b } })).results)
      }
      assert.deepEqual(accounts.rows.rows.map((r) => r.balance), [35, 15])
      await c.close()
      // The partition worker's blocking wait after a batch is off with Cassandra (its reads need the event loop).
      assert.equal(await metric(t, 'vvm_partition_idle_blocks_caught_total') + await metric(t, 'vvm_partition_idle_blocks_missed_total'), 0)
    } finally {
      await t.close()
    }
  })
})

describe('subscriptions: views kept by async projectors', () => {
  it('follow the projector: its writes, made after the commit, reach the subscribers', async () => {
    const t = await startTestServer(['--storage', 'level'])
    try {
      const c = await connect(`ws://127.0.0.1:${t.server.port}/api/ws`, { app: 'demo/bank', wsid: 4900 })
      const account = (await c.docs.create('bank.Account', { name: 'd', balance: 0 })).newIDs['1']!
      const totals = await c.live({ view: 'bank.DailyTotals', where: { account } })
      assert.deepEqual(totals.rows.rows, [])
      let sum = 0
      for (let i = 1; i <= 5; i++) {
        await c.command('bank.Deposit', { account, amount: i })
        sum += i
      }
      // The projector runs after the commits, in its own batches: the diffs come when it writes.
      await until(() => totals.rows.rows[0]?.total === sum, 'the async view to reach the sum of the deposits')
      assert.equal((totals.rows.rows as Row[])[0]!.movements, 5)
      assert.deepEqual(totals.rows.rows, (await c.view('bank.DailyTotals', { where: { account } })).results)
      await c.close()
    } finally {
      await t.close()
    }
  })
})
