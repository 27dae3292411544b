// What one cross-thread hand-off costs on this machine: two threads pass a token back and forth
// through a SharedArrayBuffer (Atomics.wait / Atomics.notify, the primitive under vvm's rings),
// first back to back (both threads stay hot), then with a pause between round trips, as a
// server sees it under light load (the threads go to sleep, the CPUs idle); each way blocking
// (Atomics.wait) and through the threads' event loops (Atomics.waitAsync, as the rings wait). Reported per round
// trip (two hand-offs): the wall time and the CPU the process spent, all threads, user + system.
// A durable command crosses threads at least four times (main → partition worker → LevelDB's
// thread pool → partition worker → main), so this is the floor the thread design puts under
// one-at-a-time latency and under the CPU a lightly loaded server spends per batch.
//
//   npx tsc -p . && node dist/bench/wake-cost.js [--round-trips 2000] [--pause-us 1000]

import { parseArgs } from 'node:util'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { waitAsyncHeld } from '../src/shared/ring/spsc-ring.js'

interface Probe {
  sab: SharedArrayBuffer
  /** Wait as the rings do (Atomics.waitAsync: the thread's event loop wakes), or block (Atomics.wait). */
  async: boolean
}

/** Slot 0: whose turn (0 main, 1 peer); slot 1: stop. */
const TURN = 0
const STOP = 1
const PEER_WAIT_MS = 10_000

export interface WakeCost {
  async: boolean
  pauseUs: number
  roundTrips: number
  /** Wall time of one round trip (two hand-offs), µs: mean and p50/p99. */
  meanUs: number
  p50Us: number
  p99Us: number
  /** CPU of the whole process per round trip, µs (user + system, all threads). */
  cpuUs: number
}

async function peer(p: Probe): Promise<void> {
  const s = new Int32Array(p.sab)
  for (;;) {
    while (Atomics.load(s, TURN) !== 1) {
      if (Atomics.load(s, STOP) !== 0) return
      await waitTurn(s, 0, p.async)
    }
    Atomics.store(s, TURN, 0)
    Atomics.notify(s, TURN)
  }
}

/** Until TURN is no longer `value` (or a timeout): blocking, or through the event loop. */
async function waitTurn(s: Int32Array, value: number, async: boolean): Promise<void> {
  if (!async) {
    Atomics.wait(s, TURN, value, PEER_WAIT_MS)
    return
  }
  // As the rings wait (spsc-ring.ts).
  await waitAsyncHeld(s, TURN, value, PEER_WAIT_MS)
}

function pauseFor(us: number): void {
  if (us <= 0) return
  // A real sleep (the thread and its CPU go idle), not a spin.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, us / 1000)
}

export async function measureWakeCost(roundTrips: number, pauseUs: number, async: boolean): Promise<WakeCost> {
  const sab = new SharedArrayBuffer(8)
  const s = new Int32Array(sab)
  const w = new Worker(new URL(import.meta.url), { workerData: { sab, async } satisfies Probe })
  const exited = new Promise<void>((resolve, reject) => { w.once('exit', () => resolve()); w.once('error', reject) })
  await new Promise<void>((resolve) => w.once('online', () => resolve()))
  const times = new Float64Array(roundTrips)
  let cpuUs = 0
  let wallUs = 0
  for (let i = -Math.min(200, roundTrips); i < roundTrips; i++) {
    pauseFor(pauseUs)
    const c0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    Atomics.store(s, TURN, 1)
    Atomics.notify(s, TURN)
    while (Atomics.load(s, TURN) !== 0) {
      if (Number(process.hrtime.bigint() - t0) > PEER_WAIT_MS * 1e6) {
        await w.terminate()
        throw new Error(`wake-cost: the peer thread did not answer within ${PEER_WAIT_MS} ms`)
      }
      await waitTurn(s, 1, async)
    }
    const dt = Number(process.hrtime.bigint() - t0) / 1000
    const c = process.cpuUsage(c0)
    if (i < 0) continue // warm-up
    times[i] = dt
    wallUs += dt
    cpuUs += c.user + c.system
  }
  Atomics.store(s, STOP, 1)
  Atomics.notify(s, TURN)
  await exited
  times.sort()
  return {
    async, pauseUs, roundTrips,
    meanUs: wallUs / roundTrips,
    p50Us: times[Math.floor(roundTrips * 0.5)]!,
    p99Us: times[Math.min(roundTrips - 1, Math.floor(roundTrips * 0.99))]!,
    cpuUs: cpuUs / roundTrips,
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'round-trips': { type: 'string', default: '2000' }, 'pause-us': { type: 'string', default: '1000' } } })
  const n = Number(values['round-trips'])
  const pause = Number(values['pause-us'])
  if (!Number.isSafeInteger(n) || n < 1 || !(pause >= 0)) throw new Error('usage: wake-cost [--round-trips N>=1] [--pause-us US>=0]')
  console.log(`wake cost: a token passed between two threads (Atomics.wait/notify), ${n} round trips each`)
  for (const async of [false, true]) {
    for (const p of [0, pause]) {
      const r = await measureWakeCost(n, p, async)
      const how = async ? 'Atomics.waitAsync (event loops)' : 'Atomics.wait (blocking)        '
      console.log(`${how}, ${p === 0 ? 'back to back    ' : `${p} µs pause`}: round trip mean ${r.meanUs.toFixed(1)} µs, p50 ${r.p50Us.toFixed(1)}, p99 ${r.p99Us.toFixed(1)}; process CPU ${r.cpuUs.toFixed(1)} µs per round trip`)
    }
  }
}

if (!isMainThread) void peer(workerData as Probe)
else if (process.argv[1] !== undefined && new URL(import.meta.url).pathname === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error((err as Error).message)
    process.exitCode = 1
  })
}
