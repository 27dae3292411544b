// The admin dashboard (issue 14): /admin and /admin/stream refuse requests without the admin
// token (401), serve the built page and one JSON snapshot a second with it, end their streams
// when the server closes; and in headless Chromium the page shows the partitions and its
// figures move while `vvm bench` runs against demo/bank. Screenshots: test-artifacts/admin*.png.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { chromium, type Browser, type Page } from 'playwright-core'
import uws from 'uWebSockets.js'
import { registerAdmin } from '../src/main/admin.js'
import type { AdminSnapshot } from '../src/main/admin-wire.js'
import { OPTIONS, loadConfig } from '../src/main/config.js'
import { REPO_ROOT, VVM_BIN, createAccount, http, startTestServer, tempDir, type TestServer } from './helpers/server.js'

const TOKEN = 'test-admin-token-0123456789'
const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts')
const PAGE_BUILT = existsSync(join(REPO_ROOT, 'dist', 'admin', 'index.html'))
/** The load is bounded in requests and time; it only has to move the figures. */
const LOAD_REQUESTS_MAX = 20_000
const LOAD_MS = 6000
const LOAD_CONCURRENCY = 8
/** Deposits act as the workspace owner: with request authentication in this build, it is off here. */
const AUTH_OFF = OPTIONS.some((o) => o.flag === 'auth') ? ['--auth', 'off'] : []

const bearer = { authorization: `Bearer ${TOKEN}` }

/** Reads SSE events from /admin/stream until `count` snapshots arrived. */
async function readSnapshots(url: string, headers: Record<string, string>, count: number): Promise<AdminSnapshot[]> {
  const abort = new AbortController()
  const res = await fetch(`${url}/admin/stream`, { headers, signal: abort.signal })
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'text/event-stream')
  const out: AdminSnapshot[] = []
  const decoder = new TextDecoder()
  let text = ''
  for await (const chunk of res.body!) {
    text += decoder.decode(chunk as Uint8Array, { stream: true })
    let end: number
    while ((end = text.indexOf('\n\n')) >= 0) {
      const event = text.slice(0, end)
      text = text.slice(end + 2)
      const data = event.split('\n').find((l) => l.startsWith('data: '))
      if (data !== undefined) out.push(JSON.parse(data.slice(6)) as AdminSnapshot)
    }
    if (out.length >= count) break
  }
  abort.abort()
  return out
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Deposits from LOAD_CONCURRENCY loops over two workspaces (so both partitions work). */
async function runDeposits(t: TestServer, accounts: readonly { wsid: number; id: number }[]): Promise<number> {
  const until = Date.now() + LOAD_MS
  let sent = 0
  let ok = 0
  await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, async (_, i) => {
    const a = accounts[i % accounts.length]!
    while (Date.now() < until && sent < LOAD_REQUESTS_MAX) {
      sent++
      const r = await http('POST', `${t.ws(a.wsid)}/commands/bank.Deposit`, { args: { account: a.id, amount: 1 } })
      if (r.status === 200) ok++
    }
  }))
  return ok
}

/** A real `vvm bench` run against the server (its own process): the dashboard must follow it. */
async function runBench(t: TestServer): Promise<number> {
  const out = await tempDir('vvm-admin-bench-')
  const proc = spawn(process.execPath, [VVM_BIN, 'bench', 'deposit', '--target', t.url, '--duration-s', '4', '--warmup-s', '0',
    '--no-ceiling', '--workspaces', '10', '--connections', '8', '--out', out.path], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  proc.stdout!.on('data', (d: Buffer) => { output += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { output += d.toString() })
  const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve))
  await out.remove()
  assert.equal(code, 0, `vvm bench failed:\n${output}`)
  return code
}

const figure = (page: Page, id: string): Promise<string> => page.locator(`[data-figure="${id}"] .value`).innerText()

describe('admin dashboard', () => {
  let t: TestServer

  before(async () => {
    t = await startTestServer(['--admin-token', TOKEN, '--partitions', '2', ...AUTH_OFF])
  })
  after(async () => {
    await t.close()
  })

  it('is off unless an admin token is configured: /admin is 404', async () => {
    const plain = await startTestServer(['--storage', 'mem', '--partitions', '1', ...AUTH_OFF])
    try {
      assert.equal(plain.server.admin, undefined)
      assert.equal((await fetch(`${plain.url}/admin/`, { headers: bearer })).status, 404)
      assert.equal((await fetch(`${plain.url}/admin/stream`, { headers: bearer })).status, 404)
    } finally {
      await plain.close()
    }
  })

  it('refuses the page, its files and the stream without the right token (401)', async () => {
    const asset = PAGE_BUILT ? /src="\/admin\/(assets\/[^"]+\.js)"/.exec(await (await fetch(`${t.url}/admin/`, { headers: bearer })).text())![1] : 'assets/x.js'
    for (const path of ['/admin', '/admin/', '/admin/stream', `/admin/${asset}`]) {
      const wrong: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }, { cookie: 'vvm_admin=forged' }]
      for (const headers of wrong) {
        const r = await fetch(`${t.url}${path}`, { headers, redirect: 'manual' })
        assert.equal(r.status, 401, `${path} with ${JSON.stringify(headers)}`)
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/)
      }
      assert.equal((await fetch(`${t.url}${path}?token=wrong`, { redirect: 'manual' })).status, 401, `${path}?token=wrong`)
    }
    assert.equal(t.server.admin!.streamsCount, 0)
  })

  it('serves the built page with its token: bearer, or ?token= once and then a session cookie', { skip: !PAGE_BUILT && 'the admin page is not built (npm run build:admin)' }, async () => {
    const page = await fetch(`${t.url}/admin/`, { headers: bearer })
    assert.equal(page.status, 200)
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/)
    const html = await page.text()
    const js = /src="\/admin\/(assets\/[^"]+\.js)"/.exec(html)![1]!
    const asset = await fetch(`${t.url}/admin/${js}`, { headers: bearer })
    assert.equal(asset.status, 200)
    assert.equal(asset.headers.get('content-type'), 'text/javascript; charset=utf-8')
    assert.match(asset.headers.get('cache-control')!, /immutable/)
    const etag = asset.headers.get('etag')!
    assert.equal((await fetch(`${t.url}/admin/${js}`, { headers: { ...bearer, 'if-none-match': etag } })).status, 304)
    assert.equal((await fetch(`${t.url}/admin/assets/none.js`, { headers: bearer })).status, 404)

    const login = await fetch(`${t.url}/admin?token=${TOKEN}`, { redirect: 'manual' })
    assert.equal(login.status, 303)
    assert.equal(login.headers.get('location'), '/admin/')
    const cookie = login.headers.get('set-cookie')!
    assert.match(cookie, /HttpOnly; SameSite=Strict/)
    assert.ok(!cookie.includes(TOKEN), 'the cookie carries a derived session, not the token')
    const session = cookie.split(';')[0]!
    assert.equal((await fetch(`${t.url}/admin/`, { headers: { cookie: session } })).status, 200)
    assert.equal((await fetch(`${t.url}/admin/${js}`, { headers: { cookie: session } })).status, 200)
  })

  it('streams a snapshot a second: apps, partitions with their owner, rates after the first', async () => {
    const account = await createAccount(t.ws(5))
    await http('POST', `${t.ws(5)}/commands/bank.Deposit`, { args: { account, amount: 1 } })
    const [first, second] = await readSnapshots(t.url, bearer, 2)
    assert.ok(first !== undefined && second !== undefined)
    assert.deepEqual(first.apps.map((a) => a.qname), ['demo/bank'])
    assert.ok(first.apps[0]!.version.length > 0)
    assert.deepEqual(first.partitions.map((p) => [p.app, p.partition, p.here]), [['demo/bank', 0, true], ['demo/bank', 1, true]])
    assert.equal(first.partitions[0]!.owner, `${(await import('node:os')).hostname()}:${process.pid}`)
    assert.equal(first.node.serving, true)
    assert.equal(first.node.leadership, 'unmanaged')
    assert.equal(first.node.problem, null)
    assert.ok(first.partitions[1]!.committed >= 2, 'wsid 5 lives in partition 1')
    assert.ok(first.queries !== null && first.queries.threads > 0)
    // demo/bank's bank.TransferWasm: every partition worker holds pre-instantiated engines.
    assert.deepEqual(first.enginePools!.map((e) => [e.app, e.partition]), [['demo/bank', 0], ['demo/bank', 1]])
    assert.ok(first.enginePools!.every((e) => e.instances > 0 && e.replaced === 0))
    assert.ok(first.apps[0]!.asyncProjectors.length > 0)
    assert.equal(first.actualizers.length, first.apps[0]!.asyncProjectors.length * 2, 'a lag per async projector and partition')
    assert.ok(second.timeMs - first.timeMs >= 500, 'a second apart')
    assert.notEqual(second.totals.commandsPerS, null)
    // onAborted: the stream is gone once the client disconnects, and the timer with it.
    await waitFor('the aborted stream to be dropped', () => t.server.admin!.streamsCount === 0)
  })

  it('in headless Chromium: shows the partitions, its figures move under load, loads nothing from elsewhere', { skip: (!PAGE_BUILT && 'the admin page is not built (npm run build:admin)') || (!existsSync(CHROMIUM) && !process.env.CI && `no ${CHROMIUM} (apt-get install chromium)`), timeout: 90_000 }, async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    const accounts = [
      { wsid: 11, id: await createAccount(t.ws(11), 'a') },
      { wsid: 12, id: await createAccount(t.ws(12), 'b') },
    ]
    // One refused deposit, so that the errors panel has a code to show.
    assert.equal((await http('POST', `${t.ws(11)}/commands/bank.Deposit`, { args: { account: accounts[0]!.id, amount: -1 } })).status, 400)
    let browser: Browser | undefined
    try {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
      const refused = await (await browser.newContext()).newPage()
      assert.equal((await refused.goto(`${t.url}/admin/`))!.status(), 401, 'no token, no page')

      const laptop = await browser.newContext({ viewport: { width: 1280, height: 900 } })
      const page = await laptop.newPage()
      const foreign: string[] = []
      page.on('request', (r) => { if (!r.url().startsWith(t.url + '/') && !r.url().startsWith('data:')) foreign.push(r.url()) })
      const pageErrors: string[] = []
      page.on('pageerror', (e) => pageErrors.push(e.message))
      assert.equal((await page.goto(`${t.url}/admin/?token=${TOKEN}`))!.status(), 200)
      assert.equal(new URL(page.url()).search, '', 'the token left the address bar')
      await page.locator('#partitions tbody tr').nth(1).waitFor({ timeout: 10_000 })
      assert.equal(await page.locator('#partitions tbody tr').count(), 2)
      assert.match(await page.locator('#conn').innerText(), /^live/)
      const committedBefore = await page.locator('[data-figure="commandsPerS"] .note').innerText()

      const load = runBench(t)
      // Polled from here: the page's CSP (script-src 'self') forbids Playwright's string evaluation.
      await waitFor('commands/s and p99 latency on the page', async () =>
        Number.parseFloat(await figure(page, 'commandsPerS')) > 0 && Number.parseFloat(await figure(page, 'latencyMsP99')) > 0, 10_000)
      await page.waitForTimeout(2000)
      await page.screenshot({ path: join(ARTIFACTS, 'admin.png'), fullPage: true })
      await load
      // The next snapshot after the load shows everything committed (exact below 10k, where
      // the page starts to abbreviate).
      const committed = t.server.partitions.stats().reduce((a, p) => a + p.committed, 0)
      const expected = committed < 10_000 ? `${committed} committed` : undefined
      const note = (): Promise<string> => page.locator('[data-figure="commandsPerS"] .note').innerText()
      await waitFor(`the page to show ${expected ?? 'a new committed count'}`, async () => {
        const now = await note()
        return expected === undefined ? now !== committedBefore : now === expected
      }, 5000)
      assert.notEqual(await note(), committedBefore)
      assert.ok(await page.locator('#errors code', { hasText: 'VALIDATION' }).count() === 1)
      assert.ok(await page.locator('.u-over').count() === 4, 'four charts')
      assert.ok(Number(await page.locator('#chart-throughput').getAttribute('data-points')) >= 3, 'the chart keeps its points')

      const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true })
      const small = await phone.newPage()
      await small.goto(`${t.url}/admin/?token=${TOKEN}`)
      await small.locator('#partitions tbody tr').nth(1).waitFor({ timeout: 10_000 })
      const smallLoad = runDeposits(t, accounts)
      await small.waitForTimeout(4000)
      const overflowPx = await small.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth')
      assert.ok(overflowPx <= 0, `the page scrolls sideways by ${overflowPx} px at a phone's width`)
      await small.screenshot({ path: join(ARTIFACTS, 'admin-phone.png'), fullPage: true })
      await small.screenshot({ path: join(ARTIFACTS, 'admin-phone-screen.png') })
      await smallLoad

      assert.deepEqual(foreign, [], 'requests outside the server')
      assert.deepEqual(pageErrors, [])
    } finally {
      await browser?.close()
    }
    await waitFor('the browser streams to be dropped', () => t.server.admin!.streamsCount === 0)
  })

  it('closes a stream whose client stops reading (backpressure: bounded, never an unbounded buffer)', async () => {
    // The dashboard of the running test server, on a listener of its own with a 1 ms tick, so
    // that a client that does not read fills the socket buffers (some MiB) in seconds.
    const app = uws.App()
    const admin = registerAdmin(app, {
      config: loadConfig(['--admin-token', TOKEN], {}), apps: t.server.apps, appPartitions: t.server.appPartitions, partitions: t.server.partitions,
      queries: t.server.queries, metrics: t.server.metrics, serving: () => true, log: pino({ level: 'silent' }), snapshotIntervalMs: 1,
    })
    const listen = await new Promise<uws.us_listen_socket>((ok, fail) => app.listen('127.0.0.1', 0, (s) => (s ? ok(s) : fail(new Error('listen')))))
    const socket = connect(uws.us_socket_local_port(listen), '127.0.0.1')
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    try {
      socket.write(`GET /admin/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\n\r\n`)
      socket.pause()
      await waitFor('the stream to open', () => admin.streamsCount === 1)
      await waitFor('the stalled stream to be closed', () => admin.streamsCount === 0, 60_000)
      socket.resume()
      await closed
    } finally {
      socket.destroy()
      admin.close()
      uws.us_listen_socket_close(listen)
      app.close()
    }
  })

  it('ends the open streams when the server closes', async () => {
    const s = await startTestServer(['--storage', 'mem', '--partitions', '1', '--admin-token', TOKEN, ...AUTH_OFF])
    const res = await fetch(`${s.url}/admin/stream?token=${TOKEN}`)
    assert.equal(res.status, 200)
    const reader = res.body!.getReader()
    assert.equal((await reader.read()).done, false)
    assert.equal(s.server.admin!.streamsCount, 1)
    const closed = s.close()
    // Each read returns a buffered snapshot or the end; the end comes within the close.
    for (let i = 0; i < 10 && !(await reader.read().catch(() => ({ done: true }))).done; i++) { /* drain */ }
    await closed
    assert.equal(s.server.admin!.streamsCount, 0)
  })
})
