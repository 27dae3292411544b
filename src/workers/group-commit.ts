// The group commit's wait (option gatherUs): a partition worker that executed a small batch,
// while requests keep coming, waits a little for more before committing it. A commit has a
// fixed cost whatever its size — the sync, the storage write, the thread's wake-ups around them —
// and at moderate load, where requests come one or two per commit, that cost is most of a
// command's CPU (docs/benchmarks.md, eleventh session). The wait is a plain sleep of the thread:
// a request that comes meanwhile does not wake it (the main thread notifies only a worker
// waiting for requests), so the requests gathered cost no wake-up each.

import { MovingShare } from './idle-spin.js'

/** Batches of this many commands or more commit at once: their commit's cost is spread already. */
export const GATHER_BATCH_TARGET = 8
/** Weight of the latest gap between two requests' arrivals in the moving average of gaps. */
const GAP_WEIGHT = 1 / 16
/**
 * A gap counts at most this many times the longest wait: an idle spell is one long gap, which
 * stops the waits at once (the average passes the longest wait), and two or three short gaps
 * bring them back, whether the spell lasted 10 ms or an hour.
 */
const GAP_CAP_WAITS = 16
/** Waits go on while at least this share of recent ones caught a request... */
const HIT_RATE_MIN = 0.5
const HIT_RATE_WEIGHT = 1 / 8
/** ...and while they miss, one eligible batch in this many waits anyway, to notice that they would catch again. */
const PROBE_EVERY = 16

export class GroupCommitGather {
  /** Moving average of the gaps between requests' arrivals, ms (Infinity: none seen yet). */
  private gapMs = Infinity
  private lastArrivalMs = -1
  /** Share of recent waits after which requests were there; starts undecided. */
  private readonly hits = new MovingShare(HIT_RATE_WEIGHT, HIT_RATE_MIN)
  private eligible = 0
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4))

  constructor(private readonly maxUs: number) {}

  get enabled(): boolean {
    return this.maxUs > 0
  }

  /** A request's arrival: when the main thread put it in the ring (`monotonicMs`). */
  arrived(enqueuedMs: number): void {
    if (!this.enabled) return
    if (this.lastArrivalMs >= 0) {
      const gap = Math.min(Math.max(0, enqueuedMs - this.lastArrivalMs), (GAP_CAP_WAITS * this.maxUs) / 1000)
      this.gapMs = this.gapMs === Infinity ? gap : this.gapMs + (gap - this.gapMs) * GAP_WEIGHT
    }
    this.lastArrivalMs = Math.max(this.lastArrivalMs, enqueuedMs)
  }

  /**
   * How long a batch of `commands` executed commands waits before its commit, ms (0: not at
   * all): while requests come at least once per the longest wait, as long as the missing ones
   * take at the recent rate, at most the longest wait.
   */
  waitMs(commands: number): number {
    if (!this.enabled || commands >= GATHER_BATCH_TARGET || !(this.gapMs * 1000 <= this.maxUs)) return 0
    this.eligible++
    if (this.hits.share < HIT_RATE_MIN && this.eligible % PROBE_EVERY !== 0) return 0
    return Math.min(this.maxUs / 1000, (GATHER_BATCH_TARGET - commands) * this.gapMs)
  }

  /** Sleeps `ms` (the thread: nothing else of it runs meanwhile). */
  sleep(ms: number): void {
    Atomics.wait(this.sleeper, 0, 0, ms)
  }

  /** After a wait: whether requests had come during it. */
  waited(caught: boolean): void {
    this.hits.note(caught)
  }
}
