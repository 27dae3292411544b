// A load worker thread: opens its connections, waits for the common start time, then drives
// load in one of two ways and records every reply.
//
// Closed loop: each connection keeps `pipeline` operations in flight, sending the next as soon
// as a reply comes — maximum throughput; its latency is not a latency figure.
//
// Open loop: the worker's k-th operation is due at the intended time start + k·period, period =
// 1 / (the worker's share of the rate), and goes out on any of its connections with room (fewer
// than `pipeline` operations in flight; the one that made room longest ago first). When none
// has room, the due operations wait and go as soon as a reply makes room. Latency is measured
// from the intended time, so a server stall counts for every operation that should have been
// sent during it (coordinated-omission correction); the uncorrected histogram, measured from the
// actual send, is kept beside it to show the difference. One schedule for all the connections,
// not one per connection as wrk2 has: with a schedule per connection, a slow reply holds back
// the operations due on its connection while the others sit idle — 64 connections × 1 in
// flight at 9k/s give each connection 7 ms between operations, and every reply slower than that
// delayed the next ones, counted as latency the server never saw. Independent users do not
// queue behind each other's requests; they wait only when no connection is free.

import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { loadScenario, type Op, type Reply, type SourceContext } from '../scenario.js'
import { createTransport, type Connection, type ConnectionEvents } from '../transport/types.js'
import { encodeHistogram, newHistogram } from './histogram.js'
import type { FromWorker, ToWorker, WorkerJob } from './job.js'

/** Distinct error kinds kept; more are counted under `other` (kinds come from scenario checks). */
const ERROR_KINDS_MAX = 64
const ERROR_SAMPLES_MAX = 5
/** A dead connection is reopened after this long, at most RECONNECTS_MAX times per worker. */
const RECONNECT_DELAY_MS = 100
const RECONNECTS_MAX = 1000
/** Open loop wakes every millisecond to send what is due (timers have 1 ms resolution). */
const OPEN_TICK_MS = 1
const CLOSED_TICK_MS = 20

const job = workerData as WorkerJob
const port = parentPort!
const post = (m: FromWorker): void => port.postMessage(m)
const nowMs = (): number => performance.timeOrigin + performance.now()
const us = (ms: number): number => Math.max(1, Math.round(ms * 1000))

interface ConnState {
  index: number
  conn: Connection | undefined
  inflight: number
  /** Open loop: this connection's entries in the queue of connections with room. */
  queued: number
}

async function main(): Promise<void> {
  const scenario = await loadScenario(job.scenarioUrl)
  let seed = (0x9e3779b9 * (job.workerIndex + 1)) >>> 0 || 1
  const ctx: SourceContext = {
    workspaces: job.workspaces,
    payloadBytes: job.payloadBytes,
    workerIndex: job.workerIndex,
    workersCount: job.workersCount,
    wsid: (i) => job.wsidBase + i,
    random: () => {
      seed ^= seed << 13; seed >>>= 0
      seed ^= seed >>> 17
      seed ^= seed << 5; seed >>>= 0
      return seed / 4294967296
    },
  }
  const source = scenario.source(ctx, job.scenarioData)
  const transport = await createTransport(job.transport, job.echo)
  const pipeline = job.transport.pipeline
  const slotsCount = job.connections * pipeline
  const slotOp = new Array<Op | undefined>(slotsCount)
  const slotConn = new Int32Array(slotsCount)
  const slotIntended = new Float64Array(slotsCount)
  const slotSent = new Float64Array(slotsCount)
  const freeSlots = new Int32Array(slotsCount).map((_, i) => i)
  let freeCount = slotsCount

  const corrected = newHistogram()
  const uncorrected = newHistogram()
  let interval = newHistogram()
  let intervalIndex = 0
  let intervalOk = 0
  let intervalErrors = 0
  let okInWindow = 0
  let sentInWindow = 0
  let reconnects = 0
  const errorsByKind = new Map<string, number>()
  const errorSamples: string[] = []

  let startAt = Infinity
  let measureStart = Infinity
  let measureEnd = Infinity
  const periodMs = job.mode === 'open' ? 1000 / job.ratePerS : 0
  /** Open loop: the intended time of the next operation. */
  let nextMs = Infinity
  /**
   * Open loop: connections with room, one entry per free place (FIFO: the one that made room
   * longest ago goes first). A connection has at most `pipeline` − in flight entries, so the
   * queue never overflows; an entry whose connection closed meanwhile is dropped when taken, and
   * a reconnected connection adds its places again.
   */
  const roomy = new Int32Array(slotsCount)
  let roomyHead = 0
  let roomyCount = 0
  const addRoom = (c: ConnState): void => {
    while (c.inflight + c.queued < pipeline) {
      roomy[(roomyHead + roomyCount++) % roomy.length] = c.index
      c.queued++
    }
  }
  const takeRoom = (): ConnState | undefined => {
    while (roomyCount > 0) {
      const c = conns[roomy[roomyHead]!]!
      roomyHead = (roomyHead + 1) % roomy.length
      roomyCount--
      c.queued--
      if (c.conn !== undefined && c.conn.open) return c
    }
    return undefined
  }
  let eluStart: ReturnType<typeof performance.eventLoopUtilization> | undefined
  let elu = 0
  let finished = false

  const countError = (kind: string, n: number, sample?: string): void => {
    const k = errorsByKind.has(kind) || errorsByKind.size < ERROR_KINDS_MAX ? kind : 'other'
    errorsByKind.set(k, (errorsByKind.get(k) ?? 0) + n)
    intervalErrors += n
    if (sample !== undefined && errorSamples.length < ERROR_SAMPLES_MAX) errorSamples.push(sample)
  }

  const roll = (now: number): void => {
    const index = Math.floor((now - startAt) / job.intervalMs)
    while (intervalIndex < index) {
      post({ type: 'interval', index: intervalIndex, ok: intervalOk, errors: intervalErrors, histogram: encodeHistogram(interval) })
      interval = newHistogram()
      intervalOk = 0
      intervalErrors = 0
      intervalIndex++
    }
  }

  const sendOn = (c: ConnState, intendedMs: number, now: number): void => {
    const slot = freeSlots[--freeCount]!
    const op = source.next()
    slotOp[slot] = op
    slotConn[slot] = c.index
    slotIntended[slot] = intendedMs
    slotSent[slot] = now
    c.inflight++
    if (intendedMs >= measureStart && intendedMs < measureEnd) sentInWindow++
    c.conn!.send(op, slot)
  }

  /** Closed loop: fills `c`'s pipeline. */
  const refill = (c: ConnState, now: number): void => {
    if (c.conn === undefined || !c.conn.open) return
    while (c.inflight < pipeline && now < measureEnd) sendOn(c, now, now)
  }

  /** Open loop: sends what is due on connections with room. */
  const sendDue = (now: number): void => {
    while (nextMs <= now && nextMs < measureEnd) {
      const c = takeRoom()
      if (c === undefined) return
      sendOn(c, nextMs, now)
      nextMs += periodMs
    }
  }

  const onReply = (slot: number, reply: Reply): void => {
    const now = nowMs()
    const op = slotOp[slot]!
    slotOp[slot] = undefined
    freeSlots[freeCount++] = slot
    const c = conns[slotConn[slot]!]!
    c.inflight--
    if (now >= startAt) roll(now)
    let kind: string | undefined
    try {
      kind = source.check(op, reply)
    } catch (err) {
      kind = `check threw: ${(err as Error).message}`
    }
    if (kind === undefined) {
      const start = job.mode === 'open' ? slotIntended[slot]! : slotSent[slot]!
      intervalOk++
      interval.recordValue(us(now - start))
      if (now >= measureStart && now < measureEnd) okInWindow++
      if (start >= measureStart && start < measureEnd) {
        corrected.recordValue(us(now - start))
        uncorrected.recordValue(us(now - slotSent[slot]!))
      }
    } else {
      countError(kind, 1, `${kind} — ${describe(op)} → ${reply.status} ${excerpt(reply.body)}`)
    }
    if (finished) return
    if (job.mode === 'closed') refill(c, now)
    else {
      addRoom(c)
      sendDue(now)
    }
  }

  const conns: ConnState[] = []
  const events = (c: ConnState): ConnectionEvents => ({
    reply: onReply,
    closed: (reason) => {
      c.conn = undefined
      if (finished || nowMs() >= measureEnd || reconnects >= RECONNECTS_MAX) return
      reconnects++
      setTimeout(() => {
        transport.connect(events(c)).then(
          (conn) => {
            if (finished) return conn.close()
            c.conn = conn
            if (job.mode === 'closed') return refill(c, nowMs())
            addRoom(c)
            sendDue(nowMs())
          },
          (err: Error) => countError(`transport: reconnect failed`, 0, `${reason}; then ${err.message}`),
        )
      }, RECONNECT_DELAY_MS)
    },
  })
  for (let i = 0; i < job.connections; i++) {
    const c: ConnState = { index: i, conn: undefined, inflight: 0, queued: 0 }
    conns.push(c)
    c.conn = await transport.connect(events(c))
    if (job.mode === 'open') addRoom(c)
  }

  startAt = await new Promise<number>((resolve) => {
    port.once('message', (m: ToWorker) => resolve(m.startAtMs))
    post({ type: 'ready' })
  })
  measureStart = startAt + job.warmupMs
  measureEnd = measureStart + job.durationMs
  if (job.mode === 'open') nextMs = startAt

  await new Promise<void>((resolve) => {
    const finish = (now: number): void => {
      finished = true
      clearInterval(timer)
      let lost = 0
      for (const c of conns) lost += c.inflight
      if (job.mode === 'open' && nextMs < measureEnd) lost += Math.ceil((measureEnd - nextMs) / periodMs)
      if (lost > 0) countError('timeout: no reply by the end of the drain', lost)
      roll(now + job.intervalMs)
      resolve()
    }
    const tick = (): void => {
      const now = nowMs()
      if (now < startAt) return
      roll(now)
      if (eluStart === undefined && now >= measureStart) eluStart = performance.eventLoopUtilization()
      if (now >= measureEnd && eluStart !== undefined && elu === 0) elu = performance.eventLoopUtilization(eluStart).utilization
      if (job.mode === 'open') sendDue(now)
      let busy = job.mode === 'open' && nextMs < measureEnd && conns.some((c) => c.conn !== undefined)
      for (const c of conns) {
        if (job.mode === 'closed') refill(c, now)
        if (c.inflight > 0) busy = true
      }
      if (now >= measureEnd && (!busy || now >= measureEnd + job.drainMs)) finish(now)
    }
    const timer = setInterval(tick, job.mode === 'open' ? OPEN_TICK_MS : CLOSED_TICK_MS)
  })

  for (const c of conns) c.conn?.close()
  post({
    type: 'done',
    corrected: encodeHistogram(corrected),
    uncorrected: encodeHistogram(uncorrected),
    okInWindow, sentInWindow,
    errorsByKind: Object.fromEntries(errorsByKind), errorSamples,
    elu, reconnects,
  })
}

function describe(op: Op): string {
  switch (op.kind) {
    case 'echo': return `echo ${op.payload.length} B`
    case 'doc-get': return `GET ws ${op.wsid} ${op.qname}/${op.id}`
    default: return `${op.kind} ws ${op.wsid} ${op.qname}`
  }
}

function excerpt(body: unknown): string {
  const s = Buffer.isBuffer(body) ? body.toString('utf8') : typeof body === 'string' ? body : JSON.stringify(body) ?? String(body)
  return s.length > 160 ? s.slice(0, 160) + '…' : s
}

main().catch((err: Error) => post({ type: 'failed', message: err.stack ?? err.message }))
