// A client that stops reading is bounded (docs/protocol.md, "Slow readers"): past half of
// bufferedBytesMax its new requests get 503 BUSY; past bufferedBytesMax the connection is
// closed (4008). The server's buffer for it never holds much more than the bound, and other
// clients are served meanwhile.

import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { connect, type VvmClient } from '../src/client/index.js'
import { loadConfig } from '../src/main/config.js'
import { startServer, type VvmServer } from '../src/main/server.js'
import { CloseCode, FrameType, WireOp } from '../src/shared/protocol/index.js'
import { http, tempDir } from './helpers/server.js'
import { RawWs, wsMetrics } from './helpers/ws-raw.js'

const BUFFERED_BYTES_MAX = 256 * 1024
const SLOW_WS = 5150
const NAME_CHARS = 1000
const ACCOUNTS = 200
/** Rows of the throttle test's reads: replies of about 40 KB, a sixth of the bound. */
const THROTTLED_REPLY_ROWS = 40

function pause(raw: RawWs): Socket {
  const socket = (raw.ws as unknown as { _socket: Socket })._socket
  socket.pause()
  return socket
}

describe('binary protocol: slow readers', () => {
  let server: VvmServer
  let removeDir: () => Promise<void>
  let base: string
  const logs: Record<string, unknown>[] = []
  let other: VvmClient
  let otherAccount: number

  before(async () => {
    const dir = await tempDir('vvm-slow-reader-')
    removeDir = dir.remove
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line)); done() } })
    server = await startServer(loadConfig([
      '--port', '0', '--metrics-port', '0', '--host', '127.0.0.1', '--storage', 'level', '--data-dir', dir.path,
      '--ws-buffered-bytes-max', String(BUFFERED_BYTES_MAX), '--auth', 'off',
    ], {}), pino({ level: 'warn' }, sink))
    base = `http://127.0.0.1:${server.port}/api/v2/apps/demo/bank/workspaces/${SLOW_WS}`
    // Accounts with long names: one cdocs read of them all is a reply of about 200 KB.
    for (let i = 0; i < ACCOUNTS; i++) {
      const r = await http('POST', `${base}/docs/bank.Account`, { name: `${i}:`.padEnd(NAME_CHARS, 'x'), balance: i })
      assert.equal(r.status, 201)
    }
    other = await connect(`ws://127.0.0.1:${server.port}/api/ws`, { app: 'demo/bank', wsid: 6160 })
    otherAccount = (await other.docs.create('bank.Account', { name: 'other', balance: 0 })).newIDs['1']!
  })
  after(async () => {
    await other.close()
    await server.close()
    await removeDir()
  })

  /** Deposits and reads on another connection; resolves with how many round trips were made. */
  async function serveOtherWhile(done: () => boolean): Promise<number> {
    let rounds = 0
    while (!done()) {
      const r = await other.command<{ balance: number }>('bank.Deposit', { account: otherAccount, amount: 1 }, { timeoutMs: 5000 })
      const q = await other.query<{ balance: number }>('bank.Balance', { account: otherAccount }, { timeoutMs: 5000 })
      assert.equal(q.results[0]!.balance, r.result.balance)
      rounds++
    }
    return rounds
  }

  const metrics = async () => wsMetrics(await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text())

  it('closes (4008) a reader that stops reading while replies pile up, others unaffected', async () => {
    const { raw } = await RawWs.hello(server.port)
    const socket = pause(raw)
    const requests = 400 // about 80 MB of replies if nothing bounded them
    for (let i = 1; i <= requests; i++) raw.request({ reqId: i, wsid: SLOW_WS, op: WireOp.CDOCS, qname: 'bank.Account', params: { limit: ACCOUNTS } })
    const rssStart = process.memoryUsage().rss
    let rssMax = rssStart
    const deadline = Date.now() + 30_000
    const rounds = await serveOtherWhile(() => {
      rssMax = Math.max(rssMax, process.memoryUsage().rss)
      assert.ok(Date.now() < deadline, 'the slow reader was not closed within 30 s')
      return logs.some((l) => l.msg === 'ws: slow reader closed')
    })
    const closeLog = logs.find((l) => l.msg === 'ws: slow reader closed')!
    const replyBytes = 220 * 1024 // one cdocs reply of 200 accounts of 1000 characters, with room
    console.log(`# slow reader closed with ${closeLog.bufferedBytes} bytes buffered (bound ${BUFFERED_BYTES_MAX}); rss +${((rssMax - rssStart) / 2 ** 20).toFixed(0)} MiB; other client ${rounds} rounds meanwhile`)
    assert.ok((closeLog.bufferedBytes as number) <= BUFFERED_BYTES_MAX + replyBytes, 'the server buffered more than the bound and one reply')
    assert.ok(rounds >= 1)
    assert.equal((await metrics()).closed[String(CloseCode.SLOW_READER)], 1)
    // When it reads again it finds the replies that were sent, then the end of the connection:
    // the 4008 close frame if it fit behind them, else an abnormal closure (1006).
    socket.resume()
    const c = await raw.closed
    assert.ok(c.code === CloseCode.SLOW_READER || c.code === 1006, `close code ${c.code}`)
    const got = raw.frames.filter((f) => f.type === FrameType.REPLY).length
    assert.ok(got < requests, `all ${requests} replies were buffered for a reader that did not read`)
    // Requests already with the processors finish, and their replies are dropped.
    const drainDeadline = Date.now() + 30_000
    while ((await metrics()).inflight > 0) {
      assert.ok(Date.now() < drainDeadline, 'requests of the closed connection stay in flight')
      await new Promise((r) => setTimeout(r, 50))
    }
  })

  it('throttles (503 BUSY) the requests of a reader that is behind, without closing it', async () => {
    const { raw } = await RawWs.hello(server.port)
    const socket = pause(raw)
    let sent = 0
    const closedBefore = (await metrics()).closed[String(CloseCode.SLOW_READER)] ?? 0
    // Replies of ~40 KB, a request every 5 ms: until half the bound waits unread every reply is
    // written. Small against the bound, so that the replies admitted before the throttle (one or
    // two in flight) cannot carry the buffer past the bound itself: with replies of 200 KB the
    // amount admitted under half the bound decided between throttle and close, by timing.
    const sender = setInterval(() => {
      sent++
      raw.request({ reqId: sent, wsid: SLOW_WS, op: WireOp.CDOCS, qname: 'bank.Account', params: { limit: THROTTLED_REPLY_ROWS } })
    }, 5)
    const until = Date.now() + 3000
    const rounds = await serveOtherWhile(() => Date.now() > until)
    clearInterval(sender)
    socket.resume()
    const replies = await raw.replies(sent, 30_000)
    const busy = replies.filter((r) => r.status === 503)
    const ok = replies.filter((r) => r.status === 200)
    console.log(`# behind reader: ${ok.length} replies, then ${busy.length} BUSY of ${sent} requests; other client ${rounds} rounds meanwhile`)
    assert.ok(ok.length > 0)
    assert.ok(busy.length > 0, 'a reader with half the bound unread was not throttled')
    for (const r of busy) assert.match((r.body as { message: string }).message, /wait to be read/)
    assert.equal(raw.closeInfo, undefined, 'a throttled reader was closed')
    assert.equal((await metrics()).closed[String(CloseCode.SLOW_READER)] ?? 0, closedBefore)
    await raw.close()
  })
})
