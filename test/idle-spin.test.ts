// The partition worker's idle spin (--partition-spin-us): polling catches a frame another thread
// publishes, gives up after its length, turns itself off when requests come later than that and
// back on when they come sooner; a server with the option answers commands right and counts
// the spins, one without never spins. The blocking wait after a batch (--partition-block-ms):
// it catches requests that come one at a time, and the worker's timers still run while a
// stream of them keeps it blocking (the async projection follows the stream).

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { RingConsumer, createRing } from '../src/shared/ring/spsc-ring.js'
import { IdleBlock, IdleSpin } from '../src/workers/idle-spin.js'
import { balanceOf, createAccount, http, startTestServer, type TestServer } from './helpers/server.js'
import { metric, until } from './helpers/subscriptions.js'

describe('IdleSpin', () => {
  it('is off with a length of 0', () => {
    assert.equal(new IdleSpin(0).shouldSpin(), false)
  })

  it('catches a frame published by another thread while it polls', async () => {
    const shape = createRing(1024)
    const ringUrl = new URL('../src/shared/ring/spsc-ring.js', import.meta.url).href
    const src = `
      const { workerData } = require('node:worker_threads')
      import(workerData.ringUrl).then(({ RingProducer }) => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
        const p = new RingProducer(workerData.shape)
        p.tryWrite(new Uint8Array([7]))
        p.publish()
      })`
    const w = new Worker(src, { eval: true, workerData: { shape, ringUrl } })
    await new Promise((resolve) => w.once('online', resolve))
    const c = new RingConsumer(shape)
    const spin = new IdleSpin(10_000_000)
    const t0 = performance.now()
    assert.equal(spin.spin(c), true)
    assert.ok(performance.now() - t0 < 10_000, 'the spin returned when the frame came, not at its end')
    let got: number[] = []
    c.drain((f) => { got = [...f] }, 1)
    assert.deepEqual(got, [7])
    await w.terminate()
  })

  it('gives up after its length on an empty ring', () => {
    const c = new RingConsumer(createRing(1024))
    const t0 = performance.now()
    assert.equal(new IdleSpin(3000).spin(c), false)
    assert.ok(performance.now() - t0 >= 3, 'polled for its whole length')
  })

  it('stops spinning when requests come later than its length, and starts again when they come sooner', () => {
    const c = new RingConsumer(createRing(1024))
    const spin = new IdleSpin(200)
    assert.equal(spin.shouldSpin(), true, 'undecided at first: it tries')
    spin.spin(c) // a miss: nothing comes
    assert.equal(spin.shouldSpin(), false)
    // Sleeps after batches: requests 5 ms later (longer than the spin) keep it off...
    for (let i = 0; i < 50; i++) spin.slept(5, true)
    assert.equal(spin.shouldSpin(), false)
    // ...as do wake-ups without a request; requests 0.1 ms later turn it on.
    for (let i = 0; i < 50; i++) spin.slept(0.01, false)
    assert.equal(spin.shouldSpin(), false)
    for (let i = 0; i < 20; i++) spin.slept(0.1, true)
    assert.equal(spin.shouldSpin(), true)
  })
})

describe('a server with --partition-spin-us', () => {
  let spinning: TestServer
  let plain: TestServer
  before(async () => {
    // A spin far longer than the test's round trip, so that it catches requests on a busy machine.
    spinning = await startTestServer(['--partitions', '1', '--partition-spin-us', '10000'])
    plain = await startTestServer(['--partitions', '1'])
  })
  after(async () => {
    await spinning?.close()
    await plain?.close()
  })

  const depositOneAtATime = async (t: TestServer, n: number): Promise<number> => {
    const account = await createAccount(t.ws(1), 'spin')
    for (let i = 0; i < n; i++) {
      const r = await http('POST', `${t.ws(1)}/commands/bank.Deposit`, { args: { account, amount: 1 } })
      assert.equal(r.status, 200, JSON.stringify(r.body))
    }
    return account
  }

  it('answers commands one at a time and counts the spins that caught them', async () => {
    const account = await depositOneAtATime(spinning, 40)
    assert.equal(await balanceOf(spinning.ws(1), account), 40)
    const caught = await metric(spinning, 'vvm_partition_idle_spins_caught_total')
    assert.ok(caught >= 10, `spins caught ${caught} of 40 requests`)
  })

  it('never spins without the option', async () => {
    const account = await depositOneAtATime(plain, 40)
    assert.equal(await balanceOf(plain.ws(1), account), 40)
    assert.equal(await metric(plain, 'vvm_partition_idle_spins_caught_total') + await metric(plain, 'vvm_partition_idle_spins_missed_total'), 0)
  })
})

describe('IdleBlock', () => {
  it('is off with a length of 0', () => {
    assert.equal(new IdleBlock(0).enabled, false)
  })

  it('asks for a turn of the event loop once it had none for the length of a wait', () => {
    const b = new IdleBlock(20)
    assert.equal(b.turnDue(), false)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25)
    assert.equal(b.turnDue(), true)
    b.turned()
    assert.equal(b.turnDue(), false)
  })
})

describe('a server with --partition-block-ms', () => {
  let blocking: TestServer
  let plain: TestServer
  before(async () => {
    // A wait far longer than the test's round trip, so that it catches requests on a busy machine.
    blocking = await startTestServer(['--partitions', '1', '--partition-block-ms', '20'])
    plain = await startTestServer(['--partitions', '1', '--partition-block-ms', '0'])
  })
  after(async () => {
    await blocking?.close()
    await plain?.close()
  })

  const deposit = async (t: TestServer, account: number): Promise<void> => {
    const r = await http('POST', `${t.ws(1)}/commands/bank.Deposit`, { args: { account, amount: 1 } })
    assert.equal(r.status, 200, JSON.stringify(r.body))
  }
  const movements = async (t: TestServer, account: number): Promise<number> => {
    const r = await http('GET', `${t.ws(1)}/views/bank.DailyTotals?where=${encodeURIComponent(JSON.stringify({ account }))}`)
    assert.equal(r.status, 200, JSON.stringify(r.body))
    return (r.body.results as { movements: number }[]).reduce((n, row) => n + row.movements, 0)
  }

  it('answers commands one at a time, most of them caught by the blocking wait', async () => {
    const account = await createAccount(blocking.ws(1), 'block')
    const before = await metric(blocking, 'vvm_partition_idle_blocks_caught_total')
    for (let i = 0; i < 40; i++) await deposit(blocking, account)
    assert.equal(await balanceOf(blocking.ws(1), account), 40)
    const caught = await metric(blocking, 'vvm_partition_idle_blocks_caught_total') - before
    assert.ok(caught >= 20, `blocking waits caught ${caught} of 40 requests`)
  })

  it('runs the worker timers while a stream of commands keeps it blocking: the async projection follows', async () => {
    const account = await createAccount(blocking.ws(1), 'stream')
    const caught0 = await metric(blocking, 'vvm_partition_idle_blocks_caught_total')
    let sent = 0
    let streaming = true
    const stream = (async () => {
      while (streaming) {
        await deposit(blocking, account)
        sent++
      }
    })()
    try {
      // The projector runs from the actualizer's flush timer (5 ms after a commit): it must
      // catch up with the stream while the stream goes on, not only once it stops.
      await until(async () => sent >= 50, 'the stream to start')
      const target = sent
      await until(async () => (await movements(blocking, account)) >= target, `the projection to reach ${target} deposits during the stream`, 5_000)
      assert.ok(streaming)
    } finally {
      streaming = false
      await stream
    }
    const caught = await metric(blocking, 'vvm_partition_idle_blocks_caught_total') - caught0
    assert.ok(caught >= sent / 2, `the stream kept the worker blocking: ${caught} of ${sent} requests caught`)
    await until(async () => (await movements(blocking, account)) === sent, 'the projection of every deposit')
  })

  it('never blocks with 0', async () => {
    const account = await createAccount(plain.ws(1), 'plain')
    for (let i = 0; i < 20; i++) await deposit(plain, account)
    assert.equal(await balanceOf(plain.ws(1), account), 20)
    assert.equal(await metric(plain, 'vvm_partition_idle_blocks_caught_total') + await metric(plain, 'vvm_partition_idle_blocks_missed_total'), 0)
  })
})
