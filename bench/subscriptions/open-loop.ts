// The writer's open loop of bench/subscriptions.ts: operation k is due at a fixed time whatever
// the replies do (wrk2's correction for coordinated omission), and the send times are shared
// with the subscriber threads so that they can measure each diff from its deposit's send.

import type { Histogram } from 'hdr-histogram-js'
import { newHistogram } from '../load/histogram.js'
import { nowUs, sleep, toUs } from './clock.js'
import { coresBetween, cpuMark, type Cores } from './engine.js'
import { Errors } from './errors.js'

/** Why 256: open loop at tens per second never has more in flight unless the server stalls; the cap keeps a stall from queueing without bound. */
const WRITER_INFLIGHT_MAX = 256
/** Open loop wakes every millisecond to send what is due (timers have 1 ms resolution). */
const OPEN_TICK_MS = 1

/**
 * Send times of the writer's operations, shared with the subscriber threads: µs of `nowUs()`,
 * intended (open-loop schedule) at [2k], actual at [2k+1]; `published[0]` is the last k whose
 * times are written (stored after them, so a reader that sees k sees its times).
 */
export interface SharedTimes {
  times: Float64Array
  published: Int32Array
}

export function newSharedTimes(ops: number): SharedTimes {
  return {
    times: new Float64Array(new SharedArrayBuffer(8 * 2 * (ops + 1))),
    published: new Int32Array(new SharedArrayBuffer(4)),
  }
}

export interface OpenLoopResult {
  sent: number
  corrected: Histogram
  uncorrected: Histogram
  errors: Errors
  cores: Cores
  /** Start and end of the measured window, µs. */
  windowUs: [number, number]
}

export interface Pace {
  ratePerS: number
  warmupS: number
  durationS: number
}

/**
 * Open loop: operation k (1…total) is due at t0 + (k-1)/rate; what is due is sent at once (up
 * to WRITER_INFLIGHT_MAX in flight). Latency of a reply from the intended and from the actual
 * send; operations due in [warm-up, warm-up + duration) are measured. `send` resolves with an
 * error kind or undefined for a right reply.
 */
export async function openLoop(
  opts: Pace, times: SharedTimes, server: { cpuSeconds(): number | undefined },
  send: (k: number) => Promise<string | undefined>,
): Promise<OpenLoopResult> {
  const { total, measureFrom, measureTo } = schedule(opts)
  const periodUs = 1e6 / opts.ratePerS
  const corrected = newHistogram()
  const uncorrected = newHistogram()
  const errors = new Errors()
  const inflight = new Set<Promise<void>>()
  const t0 = nowUs() + 20_000 // a little ahead, so the first sends are on time
  const windowUs: [number, number] = [t0 + (measureFrom - 1) * periodUs, t0 + measureTo * periodUs]
  let mark0: ReturnType<typeof cpuMark> | undefined
  let k = 1
  while (k <= total) {
    const now = nowUs()
    if (mark0 === undefined && now >= windowUs[0]) mark0 = cpuMark(server)
    while (k <= total && t0 + (k - 1) * periodUs <= now && inflight.size < WRITER_INFLIGHT_MAX) {
      const kk = k++
      const intended = t0 + (kk - 1) * periodUs
      const actual = nowUs()
      times.times[2 * kk] = intended
      times.times[2 * kk + 1] = actual
      Atomics.store(times.published, 0, kk)
      const p = send(kk).then((e) => [e, `op ${kk}`], (err: unknown) => [`transport: ${(err as Error).message.split(':')[0]}`, `op ${kk}: ${(err as Error).message}`]).then(([e, sample]) => {
        const at = nowUs()
        inflight.delete(p)
        if (e !== undefined) return errors.add(e, sample!)
        if (kk < measureFrom || kk > measureTo) return
        corrected.recordValue(toUs(at - intended))
        uncorrected.recordValue(toUs(at - actual))
      })
      inflight.add(p)
    }
    if (k > total) break
    await sleep(OPEN_TICK_MS)
  }
  while (nowUs() < windowUs[1]) await sleep(OPEN_TICK_MS)
  const mark1 = cpuMark(server)
  await Promise.all(inflight)
  return { sent: total, corrected, uncorrected, errors, cores: coresBetween(mark0 ?? mark1, mark1), windowUs }
}

export function schedule(opts: Pace): { total: number; measureFrom: number; measureTo: number } {
  const warm = Math.round(opts.ratePerS * opts.warmupS)
  const measured = Math.max(1, Math.round(opts.ratePerS * opts.durationS))
  return { total: warm + measured, measureFrom: warm + 1, measureTo: warm + measured }
}
