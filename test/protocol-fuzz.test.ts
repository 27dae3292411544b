// Fuzzing the binary protocol: 100,000+ random and mutated frames over real sockets. The server
// must stay up, answer every binary frame within the limit with exactly one REPLY or PONG (never
// a 500), close only where docs/protocol.md says (text frame 1003, frame over the limit 1009),
// keep its memory bounded, change no data outside the workspaces the frames address, and keep
// serving a well-formed SDK client on another connection throughout.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Packr } from 'msgpackr'
import { connect, type VvmClient } from '../src/client/index.js'
import { CloseCode, FrameType, WireOp, encodePing, encodeRequest, type ServerFrame } from '../src/shared/protocol/index.js'
import { createAccount, http, startTestServer, type TestServer } from './helpers/server.js'
import { RawWs, wsMetrics } from './helpers/ws-raw.js'

const FRAMES_TOTAL = 100_000
const FUZZERS = 4
const BURST = 256
const FRAME_BYTES_MAX = 16 * 1024
const FUZZ_WS = 31337
const SENTINEL_WS = 777_777
const GOOD_WS = 424_242
/** Documented statuses; 500 would be a server bug. */
const STATUSES = new Set([200, 201, 400, 404, 405, 409, 410, 413, 429, 503])

const pushesIn = (frames: readonly ServerFrame[]): number => frames.reduce((n, f) => n + (f.type === FrameType.PUSH ? 1 : 0), 0)

/** xorshift32: a seeded generator, so a failing run can be repeated with FUZZ_SEED. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    return x / 0x1_0000_0000
  }
}

class FrameGen {
  private readonly packr = new Packr({ useRecords: false })
  constructor(private readonly r: () => number, private readonly accounts: number[]) {}

  int(n: number): number { return Math.floor(this.r() * n) }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]! }

  /** Random MessagePack bytes, written directly so that any type and extension can appear. */
  value(depth = 0): number[] {
    const out: number[] = []
    const u8 = (n: number): void => { out.push(n & 0xff) }
    const be = (n: number, bytes: number): void => { for (let i = bytes - 1; i >= 0; i--) u8(Math.floor(n / 2 ** (8 * i))) }
    const str = (len: number): void => {
      if (len < 32) u8(0xa0 | len); else if (len < 256) { u8(0xd9); u8(len) } else { u8(0xda); be(len, 2) }
      for (let i = 0; i < len; i++) u8(this.pick([0x61, 0x2e, 0x5f, 0x31, 0xc3, 0xa9, 0xff, 0x00, 0x7b]))
    }
    const kind = depth > 4 ? this.int(8) : this.int(14)
    switch (kind) {
      case 0: u8(0xc0); break
      case 1: u8(this.pick([0xc2, 0xc3])); break
      case 2: u8(this.int(256)); break // fixints, and any other single byte
      case 3: { const t = this.pick([0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3]); u8(t); be(this.int(2 ** 31), { 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8 }[t]!); break }
      case 4: u8(0xcb); for (let i = 0; i < 8; i++) u8(this.int(256)); break
      case 5: str(this.int(40)); break
      case 6: { const n = this.int(20); u8(0xc4); u8(n); for (let i = 0; i < n; i++) u8(this.int(256)); break }
      case 7: { // extensions, msgpackr's own included (records, sets, regexps, errors, bigints, clones)
        const type = this.pick([0x00, 0x42, 0x62, 0x65, 0x69, 0x70, 0x72, 0x73, 0x74, 0x78, 0xff, this.int(256)])
        const n = this.pick([1, 2, 4, 8, 16, this.int(12)])
        if ([1, 2, 4, 8, 16].includes(n)) u8({ 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n]!)
        else { u8(0xc7); u8(n) }
        u8(type)
        for (let i = 0; i < n; i++) u8(this.int(256))
        if (this.r() < 0.5) out.push(...this.value(depth + 1))
        break
      }
      case 8: case 9: case 10: { const n = this.int(6); u8(0x90 | n); for (let i = 0; i < n; i++) out.push(...this.value(depth + 1)); break }
      case 11: case 12: {
        const n = this.int(5); u8(0x80 | n)
        for (let i = 0; i < n; i++) {
          if (this.r() < 0.8) str(this.int(8)); else out.push(...this.value(depth + 1))
          out.push(...this.value(depth + 1))
        }
        break
      }
      default: { // a header that promises more than follows
        u8(this.pick([0xdc, 0xdd, 0xde, 0xdf, 0xdb, 0xc6, 0xc9])); for (let i = 0; i < 4; i++) u8(this.int(256))
      }
    }
    return out
  }

  /** A well-formed frame of any kind (the seeds of the mutations). */
  valid(): unknown[] {
    const account = this.pick(this.accounts)
    const id = this.int(50) + 1 // small ids: duplicates in flight happen
    const reqs: unknown[][] = [
      [3, id, WireOp.COMMAND, 'demo/bank', FUZZ_WS, 'bank.Deposit', null, { args: { account, amount: 1 + this.int(5) } }],
      [3, id, WireOp.COMMAND, 'demo/bank', FUZZ_WS, 'bank.Transfer', null, { args: { from: account, to: this.pick(this.accounts), amount: 1 } }, null, `k${this.int(100)}`],
      [3, id, WireOp.QUERY, 'demo/bank', FUZZ_WS, 'bank.Balance', null, { account }],
      [3, id, WireOp.DOC_GET, 'demo/bank', FUZZ_WS, 'bank.Account', account],
      [3, id, WireOp.DOC_UPDATE, 'demo/bank', FUZZ_WS, 'bank.Account', account, { name: 'f' }],
      [3, id, WireOp.DOC_CREATE, 'demo/bank', FUZZ_WS, 'bank.Account', null, { name: 'n', balance: 0 }],
      [3, id, WireOp.CDOCS, 'demo/bank', FUZZ_WS, 'bank.Account', null, null, { where: { balance: { $gte: 0 } }, limit: 5, order: '-balance' }],
      [3, id, WireOp.VIEW, 'demo/bank', FUZZ_WS, 'bank.Movements', null, null, { where: { account }, limit: 3 }],
      [5, id],
      [1, [1], null, {}],
    ]
    return this.pick(reqs)
  }

  /** One frame to send, and whether it must close the connection (and with which code). */
  next(): { frame: Uint8Array | string; closes?: number } {
    const p = this.r()
    if (p < 0.0005) return { frame: 'text', closes: CloseCode.UNSUPPORTED_DATA }
    if (p < 0.001) return { frame: new Uint8Array(FRAME_BYTES_MAX + 1 + this.int(FRAME_BYTES_MAX - 1)), closes: CloseCode.TOO_BIG }
    if (p < 0.2) { // random bytes
      const n = this.r() < 0.9 ? this.int(48) : this.int(4000)
      return { frame: Uint8Array.from({ length: n }, () => this.int(256)) }
    }
    if (p < 0.4) { // a random value, often shaped like a request
      const head = this.r() < 0.6 ? [0x90 | (2 + this.int(9)), this.pick([1, 3, 3, 3, 5, this.int(256)])] : []
      const tail: number[] = []
      for (let i = 0; i < 1 + this.int(9); i++) tail.push(...this.value())
      return { frame: Uint8Array.from([...head, ...tail]) }
    }
    const seed = this.valid()
    if (p < 0.65) { // byte mutations of a valid frame
      const b = [...this.packr.pack(seed)]
      for (let m = 1 + this.int(3); m > 0; m--) {
        const at = this.int(b.length + 1)
        switch (this.int(5)) {
          case 0: if (at < b.length) b[at] = this.int(256); break
          case 1: if (at < b.length) b[at]! ^= 1 << this.int(8); break
          case 2: b.splice(at, 0, ...this.value()); break
          case 3: b.splice(at, 1 + this.int(4)); break
          default: b.length = Math.min(b.length, at)
        }
      }
      return { frame: Uint8Array.from(b) }
    }
    if (p < 0.95) { // value mutations: one element replaced, dropped or added
      const a = [...seed]
      const at = this.int(a.length + 1)
      const bytes: number[] = [0x90 | Math.min(15, a.length + 1)]
      const packed = a.map((v) => [...this.packr.pack(v)])
      const action = this.int(3)
      if (action === 0 && at < a.length) packed[at] = this.value()
      else if (action === 1 && at < a.length) packed.splice(at, 1)
      else packed.splice(at, 0, this.value())
      bytes[0] = 0x90 | Math.min(15, packed.length)
      for (const p2 of packed) bytes.push(...p2)
      return { frame: Uint8Array.from(bytes) }
    }
    return { frame: this.packr.pack(seed) } // well-formed
  }
}

describe('binary protocol fuzzing', () => {
  let t: TestServer
  let accounts: number[]
  let sentinel: number
  const snapshot = async (): Promise<string> => JSON.stringify([
    (await http('GET', `${t.ws(SENTINEL_WS)}/cdocs/bank.Account`)).body,
    (await http('GET', `${t.ws(SENTINEL_WS)}/views/bank.Movements?where=${encodeURIComponent(JSON.stringify({ account: sentinel }))}`)).body,
  ])

  before(async () => {
    t = await startTestServer(['--partitions', '2', '--ws-frame-bytes-max', String(FRAME_BYTES_MAX), '--ws-inflight-max', '1024'])
    accounts = []
    for (let i = 0; i < 4; i++) accounts.push(await createAccount(t.ws(FUZZ_WS), `f${i}`, 100))
    sentinel = await createAccount(t.ws(SENTINEL_WS), 'sentinel', 1000)
    await http('POST', `${t.ws(SENTINEL_WS)}/commands/bank.Deposit`, { args: { account: sentinel, amount: 5 } })
  })
  after(() => t.close())

  it(`survives ${FRAMES_TOTAL} random and mutated frames, answering or closing as documented`, { timeout: 120_000 }, async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000)
    console.log(`# fuzz seed ${seed} (FUZZ_SEED=${seed} repeats this run)`)
    const before = await snapshot()
    const rssStart = process.memoryUsage().rss
    let rssMax = rssStart

    // The well-formed client on its own connection, served all along.
    const good: VvmClient = await connect(`ws://127.0.0.1:${t.server.port}/api/ws`, { app: 'demo/bank', wsid: GOOD_WS, timeoutMs: 10_000 })
    const goodAccount = (await good.docs.create('bank.Account', { name: 'good', balance: 0 })).newIDs['1']!
    let goodDeposits = 0
    let goodErrors = 0
    let goodLatencyMaxMs = 0
    let fuzzing = true
    const goodLoop = (async () => {
      while (fuzzing) {
        const t0 = performance.now()
        try {
          const r = await good.command<{ balance: number }>('bank.Deposit', { account: goodAccount, amount: 1 })
          goodDeposits++
          assert.equal(r.result.balance, goodDeposits)
          const q = await good.query<{ balance: number }>('bank.Balance', { account: goodAccount })
          assert.equal(q.results[0]!.balance, goodDeposits)
        } catch (err) {
          goodErrors++
          console.log(`# good client error: ${(err as Error).message}`)
        }
        goodLatencyMaxMs = Math.max(goodLatencyMaxMs, performance.now() - t0)
      }
    })()

    let sent = 0
    let answered = 0
    let closes = 0
    let pushes = 0
    const statuses = new Map<number, number>()
    const codes = new Map<string, number>()
    const memTimer = setInterval(() => { rssMax = Math.max(rssMax, process.memoryUsage().rss) }, 100)

    const fuzzer = async (n: number): Promise<void> => {
      const gen = new FrameGen(rng(seed * 31 + n), accounts)
      let conn = (await RawWs.hello(t.server.port)).raw
      /** Subscription ids this connection's SUBSCRIBE replies gave (fuzzed frames can subscribe). */
      let subscriptions = new Set<number>()
      while (sent < FRAMES_TOTAL) {
        let burstSent = 0
        let closes_: number | undefined
        for (let i = 0; i < BURST && sent < FRAMES_TOTAL; i++) {
          const f = gen.next()
          conn.send(f.frame)
          sent++
          if (f.closes !== undefined) {
            closes_ = f.closes
            break
          }
          burstSent++
        }
        if (closes_ !== undefined) {
          const c = await conn.closed
          assert.equal(c.code, closes_, `expected close ${closes_}, got ${c.code} ${c.reason}`)
          closes++
          conn = (await RawWs.hello(t.server.port)).raw
          subscriptions = new Set()
          continue
        }
        // Exactly one answer per frame: REPLY (request or error) or PONG. A mutated frame can be a
        // valid SUBSCRIBE: the PUSH frames of its subscription come besides, and are no answers.
        const deadline = Date.now() + 30_000
        const answers = (): number => conn.frames.length - pushesIn(conn.frames)
        while (answers() < burstSent) {
          assert.equal(conn.closeInfo, undefined, `closed unexpectedly: ${JSON.stringify(conn.closeInfo)}`)
          assert.ok(Date.now() < deadline, `${answers()} answers to ${burstSent} frames after 30 s`)
          await new Promise((r) => setTimeout(r, 2))
        }
        await new Promise((r) => setTimeout(r, 0))
        assert.equal(answers(), burstSent, 'more answers than frames')
        for (const f of conn.frames.splice(0)) {
          if (f.type === FrameType.PUSH) {
            assert.ok(subscriptions.has(f.subscriptionId), `PUSH of subscription ${f.subscriptionId}, which no SUBSCRIBE reply gave`)
            pushes++
            continue
          }
          answered++
          if (f.type === FrameType.PONG) continue
          assert.equal(f.type, FrameType.REPLY, `unexpected frame ${JSON.stringify(f)}`)
          if (f.type !== FrameType.REPLY) continue
          assert.ok(STATUSES.has(f.status), `status ${f.status}: ${JSON.stringify(f.body)}`)
          statuses.set(f.status, (statuses.get(f.status) ?? 0) + 1)
          if (f.status >= 400) {
            const b = f.body as { status: number; code: string; message: string }
            assert.equal(b.status, f.status)
            assert.equal(typeof b.message, 'string')
            codes.set(b.code, (codes.get(b.code) ?? 0) + 1)
          } else {
            const id = (f.body as { subscription?: unknown } | null)?.subscription
            if (typeof id === 'number') subscriptions.add(id)
          }
        }
      }
      await conn.close()
    }
    const t0 = performance.now()
    try {
      await Promise.all(Array.from({ length: FUZZERS }, (_, i) => fuzzer(i)))
    } finally {
      fuzzing = false // a failing fuzzer must not leave the good client looping against a closed server
      await goodLoop
    }
    const ms = performance.now() - t0
    clearInterval(memTimer)

    console.log(`# fuzz: ${sent} frames in ${(ms / 1000).toFixed(1)} s (${Math.round(sent / (ms / 1000))}/s), ${answered} answered, ${closes} documented closes, ${pushes} pushes of fuzzed subscriptions`)
    console.log(`# fuzz statuses ${JSON.stringify(Object.fromEntries(statuses))} codes ${JSON.stringify(Object.fromEntries(codes))}`)
    console.log(`# fuzz: rss ${(rssStart / 2 ** 20).toFixed(0)} → max ${(rssMax / 2 ** 20).toFixed(0)} MiB; good client ${goodDeposits} deposits, ${goodErrors} errors, slowest round ${goodLatencyMaxMs.toFixed(0)} ms`)

    assert.ok(sent >= FRAMES_TOTAL)
    assert.equal(goodErrors, 0, 'the well-formed client got errors')
    assert.ok(goodDeposits > 50, `the well-formed client was barely served: ${goodDeposits} deposits`)
    const balance = await http('GET', `${t.ws(GOOD_WS)}/docs/bank.Account/${goodAccount}`)
    assert.equal(balance.body.balance, goodDeposits)
    assert.ok(rssMax - rssStart < 512 * 2 ** 20, `memory grew by ${((rssMax - rssStart) / 2 ** 20).toFixed(0)} MiB`)
    assert.equal(await snapshot(), before, 'data outside the fuzzed workspace changed')
    assert.equal((await http('GET', `${t.url}/healthz`)).status, 200)

    // A fresh connection is served as usual; nothing is left in flight.
    const { raw } = await RawWs.hello(t.server.port)
    raw.send(encodeRequest({ reqId: 1, op: WireOp.QUERY, app: 'demo/bank', wsid: SENTINEL_WS, qname: 'bank.Balance', docId: 0, body: { account: sentinel }, params: null, idempotencyKey: null }))
    raw.send(encodePing(2))
    assert.deepEqual((await raw.reply(1)).body, { results: [{ balance: 1005 }] })
    await good.close()
    await raw.close()
    const m = wsMetrics(await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text())
    assert.equal(m.inflight, 0)
    assert.equal((m.closed['1003'] ?? 0) + (m.closed['1009'] ?? 0), closes, 'the server closed connections it should not have')
  })
})
