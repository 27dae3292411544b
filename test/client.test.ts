// The client SDK against the real server (calls, typed errors, idempotency, close) and against
// a scripted WebSocket server for the faults a real server does not cause on demand: a reply
// that never comes, a connection dropped with calls in flight, tiny limits. The scripted
// server speaks the real frame codec; it stands in only for the timing of faults.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import {
  ConnectionError, ReplyError, TimeoutError, VvmClientError, connect, type ClientState, type VvmClient,
} from '../src/client/index.js'
import {
  FrameType, decodeClientFrame, encodePong, encodeReply, encodeWelcome, packValue, type ClientFrame, type ServerLimits,
} from '../src/shared/protocol/index.js'
import { balanceOf, createAccount, startTestServer, type TestServer } from './helpers/server.js'
import { randomIdempotencyKey } from '../src/client/idempotency-keys.js'

const WSID = 3030

describe('client SDK against the server', () => {
  let t: TestServer
  let client: VvmClient
  let url: string
  before(async () => {
    t = await startTestServer(['--storage', 'mem'])
    url = `ws://127.0.0.1:${t.server.port}/api/ws`
    client = await connect(url, { app: 'demo/bank', wsid: WSID })
  })
  after(async () => {
    await client.close()
    await t.close()
  })

  it('connects, reports the server limits and pings', async () => {
    assert.equal(client.state, 'open')
    assert.equal(client.protocolVersion, 2)
    assert.equal(client.limits?.inflightMax, 16384)
    const rtt = await client.ping()
    assert.ok(rtt >= 0 && rtt < 5000)
  })

  it('runs commands, queries and document operations', async () => {
    const { newIDs } = await client.docs.create('bank.Account', { name: 'a', balance: 1 })
    const id = newIDs['1']!
    const dep = await client.command<{ balance: number }>('bank.Deposit', { account: id, amount: 9 })
    assert.equal(dep.result.balance, 10)
    assert.ok(dep.currentWLogOffset >= 2)
    assert.deepEqual((await client.query('bank.Balance', { account: id })).results, [{ balance: 10 }])
    await client.docs.update('bank.Account', id, { name: 'b' })
    const rec = await client.docs.get<{ name: string; balance: number }>('bank.Account', id)
    assert.equal(rec.name, 'b')
    assert.equal((await client.docs.list('bank.Account', { where: { name: 'b' } })).results.length, 1)
    assert.deepEqual((await client.view('bank.Movements', { where: { account: id }, keys: 'amount' })).results, [{ amount: 9 }])
    await client.docs.deactivate('bank.Account', id)
    // Another workspace and app per call.
    const other = await client.docs.create('bank.Account', { name: 'o', balance: 0 }, { wsid: WSID + 1, app: 'demo/bank' })
    assert.equal(other.newIDs['1'], 65536)
  })

  it('rejects with typed errors carrying status, code, qname and data', async () => {
    const id = await createAccount(t.ws(WSID), 'poor', 1)
    await assert.rejects(client.command('bank.Transfer', { from: id, to: id + 1000, amount: 1 }), (e: unknown) => {
      assert.ok(e instanceof ReplyError && e instanceof VvmClientError)
      assert.equal(e.status, 404)
      assert.equal(e.code, 'EXTENSION')
      return true
    })
    const other = await createAccount(t.ws(WSID), 'rich', 0)
    await assert.rejects(client.command('bank.Transfer', { from: id, to: other, amount: 5 }), (e: ReplyError) => {
      assert.equal(e.status, 409)
      assert.deepEqual(e.data, { balance: 1 })
      assert.match(e.message, /insufficient funds/)
      return true
    })
    await assert.rejects(client.command('bank.Deposit', { account: id }), (e: ReplyError) => e.status === 400 && e.code === 'VALIDATION')
    await assert.rejects(client.command('bank.Nope'), (e: ReplyError) => e.status === 404 && e.code === 'NOT_FOUND' && e.qname === 'bank.Nope')
    await assert.rejects(client.docs.get('bank.Account', 424242), (e: ReplyError) => e.status === 404 && e.qname === 'bank.Account')
    await assert.rejects(client.request({ op: 1, qname: 'bank.Deposit', wsid: 0 }), /wsid/)
  })

  it('applies a command once per idempotency key, and adds keys by default', async () => {
    const id = await createAccount(t.ws(WSID), 'idem', 0)
    const first = await client.command('bank.Deposit', { account: id, amount: 5 }, { idempotencyKey: 'order-17' })
    const again = await client.command('bank.Deposit', { account: id, amount: 5 }, { idempotencyKey: 'order-17' })
    assert.deepEqual(again, first)
    await client.command('bank.Deposit', { account: id, amount: 1 })
    await client.command('bank.Deposit', { account: id, amount: 1 })
    assert.equal(await balanceOf(t.ws(WSID), id), 7)
  })

  it('writes the frames sent in one turn of the event loop in one socket write', async () => {
    const c = await connect(url, { app: 'demo/bank', wsid: WSID })
    const id = await createAccount(t.ws(WSID), 'burst', 0)
    // The Node socket under the `ws` WebSocket: count the stream writes it is asked for.
    const raw = (c as unknown as { socket: { _socket: { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void } } }).socket._socket
    const counts = { write: 0, writev: 0, chunks: 0 }
    const write = raw._write.bind(raw)
    const writev = raw._writev.bind(raw)
    raw._write = (...a: unknown[]) => { counts.write++; counts.chunks++; write(...a) }
    raw._writev = (...a: unknown[]) => { counts.writev++; counts.chunks += (a[0] as unknown[]).length; writev(...a) }
    const replies = await Promise.all(Array.from({ length: 50 }, () => c.command<{ balance: number }>('bank.Deposit', { account: id, amount: 1 })))
    assert.equal(Math.max(...replies.map((r) => r.result.balance)), 50)
    assert.deepEqual(counts, { write: 0, writev: 1, chunks: 50 })
    await c.close()
  })

  it('refuses locally a request larger than the server frame limit', async () => {
    const small = await startTestServer(['--storage', 'mem', '--ws-frame-bytes-max', '2048'])
    const c = await connect(`ws://127.0.0.1:${small.server.port}/api/ws`, { app: 'demo/bank', wsid: 1 })
    await assert.rejects(c.command('bank.Deposit', { account: 1, amount: 1, pad: 'x'.repeat(3000) }), (e: VvmClientError) => e.code === 'TOO_LARGE' && e.status === 413)
    assert.equal(c.state, 'open')
    await c.close()
    await small.close()
  })

  it('close() waits for the calls under way, then refuses new ones', async () => {
    const c = await connect(url, { app: 'demo/bank', wsid: WSID })
    const id = await createAccount(t.ws(WSID), 'closing', 0)
    const calls = Array.from({ length: 200 }, () => c.command('bank.Deposit', { account: id, amount: 1 }))
    const closed = c.close()
    assert.equal(c.state, 'closing')
    await assert.rejects(c.query('bank.Balance', { account: id }), (e: ConnectionError) => e.code === 'CONNECTION_CLOSED')
    await Promise.all(calls)
    await closed
    assert.equal(c.state, 'closed')
    assert.equal(await balanceOf(t.ws(WSID), id), 200)
  })

  it('fails connect() with CONNECT_FAILED when nothing listens', async () => {
    await assert.rejects(connect('ws://127.0.0.1:1/api/ws', { connectTimeoutMs: 2000 }), (e: ConnectionError) => e.code === 'CONNECT_FAILED')
  })

  it('uses the WebSocket implementation it is given (as a browser would give its own)', async () => {
    let made = 0
    class Counting extends WebSocket {
      constructor(u: string) { super(u); made++ }
    }
    const c = await connect(url, { app: 'demo/bank', wsid: WSID, WebSocket: Counting as never })
    await c.ping()
    await c.close()
    assert.equal(made, 1)
  })

  it('takes messages as Buffers from ws, and as ArrayBuffers from an implementation that only knows those', async () => {
    const socketOf = (c: VvmClient) => (c as unknown as { socket: { binaryType: string } }).socket
    const plain = await connect(url, { app: 'demo/bank', wsid: WSID })
    assert.equal(socketOf(plain).binaryType, 'nodebuffer')
    await plain.close()
    // As browsers do: binaryType is 'blob' or 'arraybuffer', another value is ignored.
    const wsBinaryType = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'binaryType')!
    class BrowserLike extends WebSocket {
      constructor(u: string) {
        super(u)
        let kind = 'blob'
        Object.defineProperty(this, 'binaryType', {
          get: () => kind,
          set: (v: string) => {
            if (v !== 'blob' && v !== 'arraybuffer') return
            kind = v
            wsBinaryType.set!.call(this, v === 'arraybuffer' ? 'arraybuffer' : 'nodebuffer')
          },
        })
      }
    }
    const c = await connect(url, { app: 'demo/bank', wsid: WSID, WebSocket: BrowserLike as never })
    assert.equal(socketOf(c).binaryType, 'arraybuffer')
    const id = await createAccount(t.ws(WSID), 'browser', 0)
    const dep = await c.command<{ balance: number }>('bank.Deposit', { account: id, amount: 3 })
    assert.equal(dep.result.balance, 3)
    await c.close()
  })
})

describe('client SDK idempotency keys', () => {
  it('are 22 base64url characters of 16 random bytes, all different across many pool refills', () => {
    const keys = new Set<string>()
    for (let i = 0; i < 20_000; i++) {
      const k = randomIdempotencyKey()
      assert.match(k, /^[A-Za-z0-9_-]{22}$/)
      assert.equal(Buffer.from(k, 'base64url').length, 16)
      assert.equal(Buffer.from(k, 'base64url').toString('base64url'), k)
      keys.add(k)
    }
    assert.equal(keys.size, 20_000)
    // Every character position varies (no byte of the pool is reused or left zero).
    for (let pos = 0; pos < 21; pos++) assert.ok(new Set([...keys].slice(0, 200).map((k) => k[pos])).size > 20, `position ${pos}`)
  })
})

/** A scripted server: real frames, replies decided by the test. */
class ScriptedServer {
  readonly wss: WebSocketServer
  readonly received: ClientFrame[] = []
  readonly sockets: WebSocket[] = []
  connections = 0
  onRequest: (ws: WebSocket, f: Extract<ClientFrame, { type: 3 }>) => void = () => {}

  readonly listening: Promise<void>

  constructor(readonly limits: ServerLimits) {
    this.wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    this.listening = new Promise((r) => this.wss.once('listening', () => r()))
    this.wss.on('connection', (ws) => {
      this.connections++
      this.sockets.push(ws)
      ws.on('message', (data: Buffer) => {
        const f = decodeClientFrame(new Uint8Array(data))
        this.received.push(f)
        if (f.type === FrameType.HELLO) ws.send(encodeWelcome(1, this.limits))
        else if (f.type === FrameType.PING) ws.send(encodePong(f.pingId, Date.now()))
        else if (f.type === FrameType.AUTH) ScriptedServer.reply(ws, f.reqId, 200, {})
        else this.onRequest(ws, f)
      })
    })
  }

  get url(): string { return `ws://127.0.0.1:${(this.wss.address() as { port: number }).port}` }
  requests(): Extract<ClientFrame, { type: 3 }>[] { return this.received.filter((f) => f.type === FrameType.REQUEST) as Extract<ClientFrame, { type: 3 }>[] }
  static reply(ws: WebSocket, reqId: number, status: number, body: unknown, retryAfterS = 0): void {
    ws.send(encodeReply(reqId, status, retryAfterS, packValue(body)))
  }
  close(): Promise<void> {
    for (const s of this.sockets) s.terminate()
    return new Promise((r) => this.wss.close(() => r()))
  }
}

const LIMITS: ServerLimits = { frameBytesMax: 65536, inflightMax: 100, bufferedBytesMax: 1 << 20, idleTimeoutS: 0, idempotencyKeyBytesMax: 128 }

describe('client SDK faults (scripted server)', () => {
  let s: ScriptedServer
  before(async () => {
    s = new ScriptedServer(LIMITS)
    await s.listening
  })
  after(() => s.close())

  it('times a call out, and keeps its id reserved until the late reply comes', async () => {
    s.onRequest = () => {}
    const c = await connect(s.url, { app: 'a/b', wsid: 1 })
    await assert.rejects(c.query('p.Q', {}, { timeoutMs: 100 }), (e: TimeoutError) => e instanceof TimeoutError && e.code === 'CLIENT_TIMEOUT' && e.status === 0)
    await assert.rejects(c.command('p.C', {}, { timeoutMs: 100 }), /may have been applied/)
    const [q, cmd] = s.requests().slice(-2)
    assert.equal(c.pending, 2, 'timed-out calls on the wire keep their ids')
    ScriptedServer.reply(s.sockets.at(-1)!, q!.reqId, 200, { results: [] })
    ScriptedServer.reply(s.sockets.at(-1)!, cmd!.reqId, 200, {})
    await c.ping()
    assert.equal(c.pending, 0)
    await c.close()
  })

  it('sends retry-safe calls again after a lost connection (same id and key); fails the others with CONNECTION_LOST', async () => {
    const states: ClientState[] = []
    let drop = true
    s.onRequest = (ws, f) => {
      if (drop) return // held until the connection drops
      ScriptedServer.reply(ws, f.reqId, 200, { echo: f.qname })
    }
    const c = await connect(s.url, { app: 'a/b', wsid: 1, reconnect: { delayMinMs: 10, delayMaxMs: 50 }, onStateChange: (st) => states.push(st) })
    const before = s.requests().length
    const read = c.query('p.Read')
    const write = c.command('p.Write', { x: 1 })
    const unkeyed = c.command('p.Unkeyed', { x: 1 }, { idempotencyKey: false }).then(() => undefined, (e: unknown) => e)
    while (s.requests().length < before + 3) await new Promise((r) => setTimeout(r, 5))
    drop = false
    s.sockets.at(-1)!.terminate()
    assert.deepEqual(await read, { echo: 'p.Read' })
    assert.deepEqual(await write, { echo: 'p.Write' })
    const lost = (await unkeyed) as ConnectionError
    assert.ok(lost instanceof ConnectionError)
    assert.equal(lost.code, 'CONNECTION_LOST')
    assert.match(lost.message, /may or may not have been applied/)
    const sentWrites = s.requests().filter((f) => f.qname === 'p.Write')
    assert.equal(sentWrites.length, 2)
    assert.equal(sentWrites[0]!.reqId, sentWrites[1]!.reqId)
    assert.ok(sentWrites[0]!.idempotencyKey !== null && sentWrites[0]!.idempotencyKey.length >= 16)
    assert.equal(sentWrites[0]!.idempotencyKey, sentWrites[1]!.idempotencyKey)
    assert.equal(s.requests().filter((f) => f.qname === 'p.Unkeyed').length, 1)
    assert.deepEqual(states, ['open', 'reconnecting', 'open'])
    await c.close()
  })

  it('retries a 503 after Retry-After, and gives up after retriesMax', async () => {
    let n = 0
    s.onRequest = (ws, f) => {
      n++
      if (f.qname === 'p.Busy' || n === 1) ScriptedServer.reply(ws, f.reqId, 503, { status: 503, code: 'BUSY', message: 'busy' }, 0)
      else ScriptedServer.reply(ws, f.reqId, 200, { results: [{ n }] })
    }
    const c = await connect(s.url, { app: 'a/b', wsid: 1, retriesMax: 2, reconnect: { delayMinMs: 10, delayMaxMs: 20 } })
    assert.deepEqual(await c.query('p.Q'), { results: [{ n: 2 }] })
    await assert.rejects(c.query('p.Busy'), (e: ReplyError) => e.status === 503 && e.code === 'BUSY')
    assert.equal(s.requests().filter((f) => f.qname === 'p.Busy').length, 3)
    await c.close()
  })

  it('keeps at most inflightMax calls on the wire and refuses more than pendingMax waiting', async () => {
    const tiny = new ScriptedServer({ ...LIMITS, inflightMax: 2 })
    await tiny.listening
    const held: [WebSocket, number][] = []
    tiny.onRequest = (ws, f) => { held.push([ws, f.reqId]) }
    const c = await connect(tiny.url, { app: 'a/b', wsid: 1, pendingMax: 3 })
    const calls = Array.from({ length: 5 }, (_, i) => c.query(`p.Q${i}`))
    await assert.rejects(c.query('p.Extra'), (e: VvmClientError) => e.code === 'BUSY' && e.status === 503)
    while (held.length < 2) await new Promise((r) => setTimeout(r, 5))
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(held.length, 2, 'more than inflightMax on the wire')
    while (held.length > 0) {
      const [ws, id] = held.shift()!
      ScriptedServer.reply(ws, id, 200, { results: [] })
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.equal((await Promise.all(calls)).length, 5)
    await c.close()
    await tiny.close()
  })

  it('takes a silent connection for dead (keep-alive) and reconnects', async () => {
    const mute = new ScriptedServer(LIMITS)
    await mute.listening
    let pongs = true
    mute.wss.on('connection', (ws) => {
      // After the first connection, stop answering pings on it.
      const orig = ws.send.bind(ws)
      ws.send = ((data: Uint8Array) => { if (pongs || decodeFrameType(data) !== FrameType.PONG) orig(data) }) as typeof ws.send
    })
    const c = await connect(mute.url, { app: 'a/b', wsid: 1, keepAliveMs: 100, reconnect: { delayMinMs: 10, delayMaxMs: 20 } })
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(mute.connections, 1)
    pongs = false
    const deadline = Date.now() + 5000
    while (mute.connections < 2) {
      assert.ok(Date.now() < deadline, 'a dead connection was not noticed')
      await new Promise((r) => setTimeout(r, 20))
    }
    pongs = true
    await c.close()
    await mute.close()
  })
})

function decodeFrameType(data: Uint8Array): number {
  // [type, …]: a fixarray header, then the type as a positive fixint.
  return data[1]!
}
