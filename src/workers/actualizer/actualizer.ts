// An async actualizer (seed 000): follows its partition's PLog from a stored offset and runs
// one async projector. The projector's view writes and the new offset go to storage in one
// batch, so although events may be delivered twice (a crash after the projector ran, before the
// batch), each takes effect in the view exactly once.
//
// It wakes on commits (no polling when idle), processes bounded batches, retries a failing batch
// with bounded exponential backoff (logging the event's offset), and never blocks commands or
// other actualizers: each runs its own loop.

import type { AppDef, ProjectorEvent, ResolvedProjector } from '../../shared/appdef/types.js'
import type { Principal, ProjectorState, Row } from '../../shared/appdef/state.js'
import { actualizerOffsetKey, decodeStored, encodeStored, plogKey, type StoredEvent } from '../../shared/layout.js'
import type { BatchItem, IAppStorage } from '../../shared/storage/types.js'
import { encodeViewValue } from '../../shared/view-codec.js'
import { isPromiseLike, type ExtensionRunner } from '../extensions.js'
import { RowKeyMemo, getMergedView, type ViewStaging } from '../read-views.js'
import { StorageReadState } from '../query/query-processor.js'

export interface ActualizerOptions {
  /** Events per storage batch at most. */
  batchEventsMax: number
  /** After a wake-up, wait this long so that a burst of commits is projected in one batch. */
  flushIntervalMs: number
  retryDelayMinMs: number
  retryDelayMaxMs: number
  log: (level: 'info' | 'warn' | 'error', msg: string) => void
}

/** Resolves waiters when commits happen; one per partition, shared by its actualizers. */
export class Wakeup {
  private waiters: (() => void)[] = []

  notify(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve()
      const done = (): void => { signal.removeEventListener('abort', done); resolve() }
      this.waiters.push(done)
      signal.addEventListener('abort', done, { once: true })
    })
  }
}

/** A committed event as the command processor staged it. */
export interface CommittedEvent {
  readonly plogOffset: number
  readonly event: StoredEvent
}

/** Where an actualizer learns of commits and finds recent events without reading storage. */
export interface EventSource {
  committed(): number
  /** Events from..to (offsets, inclusive) while they are in memory; else undefined. */
  recent(from: number, to: number): readonly CommittedEvent[] | undefined
}

export class AsyncActualizer {
  offset = 0
  private failures = 0

  constructor(
    readonly app: AppDef,
    readonly projector: ResolvedProjector,
    readonly storage: IAppStorage,
    readonly partition: number,
    private readonly runner: ExtensionRunner,
    private readonly opts: ActualizerOptions,
  ) {}

  /** Runs until `signal` fires; a batch under way is finished (or dropped) first. */
  async run(source: EventSource, wakeup: Wakeup, signal: AbortSignal): Promise<void> {
    const k = actualizerOffsetKey(this.partition, this.projector.qname)
    const stored = await this.storage.get(k.pk, k.cc)
    this.offset = stored === undefined ? 0 : decodeStored<{ po: number }>(stored).po
    while (!signal.aborted) {
      if (this.offset >= source.committed()) {
        await wakeup.wait(signal)
        continue
      }
      if (this.opts.flushIntervalMs > 0) await sleep(this.opts.flushIntervalMs, signal)
      if (signal.aborted) break
      try {
        await this.step(source, signal)
        if (this.failures > 0) this.opts.log('info', `${this.projector.qname} p${this.partition}: recovered at offset ${this.offset}`)
        this.failures = 0
      } catch (err) {
        if (signal.aborted) break
        this.failures++
        const delayMs = Math.min(this.opts.retryDelayMaxMs, this.opts.retryDelayMinMs * 2 ** Math.min(this.failures - 1, 20))
        this.opts.log('error', `${this.projector.qname} p${this.partition}: ${(err as Error).message}; retry ${this.failures} in ${delayMs} ms`)
        await sleep(delayMs, signal)
      }
    }
  }

  /**
   * Projects events offset+1 .. min(committed, offset+batchEventsMax) and stores them with the
   * new offset. Events still in memory are taken from there; older ones are read from the PLog.
   */
  private async step(source: EventSource, signal: AbortSignal): Promise<void> {
    const to = Math.min(source.committed(), this.offset + this.opts.batchEventsMax)
    const staging: ViewStaging = new Map()
    const recent = source.recent(this.offset + 1, to)
    if (recent !== undefined) {
      // Events in memory: a plain loop (for await wraps each element in a promise).
      for (const e of recent) {
        try {
          const running = this.project(e, staging)
          if (running !== undefined) await running
        } catch (err) {
          throw eventError(e, err)
        }
      }
    } else {
      for await (const e of readPlog(this.storage, this.partition, this.offset + 1, to)) {
        try {
          const running = this.project(e, staging)
          if (running !== undefined) await running
        } catch (err) {
          throw eventError(e, err)
        }
      }
    }
    // Cancelled mid-batch: nothing is written; the next runner starts from the stored offset.
    if (signal.aborted) return
    const k = actualizerOffsetKey(this.partition, this.projector.qname)
    const items: BatchItem[] = [...staging.values()].map((r) => ({ pk: r.pk, cc: r.cc, value: r.value }))
    items.push({ pk: k.pk, cc: k.cc, value: encodeStored({ po: to }) })
    // Derived data: a power loss may cost the last projections, never the PLog they come from.
    // Unsynced, the write is a copy into the OS: written on this thread, no pool hand-off.
    await this.storage.putBatch(items, { durable: false, inline: true })
    this.offset = to
  }

  /** Runs the projector on one event, if it triggers it; a promise only when the projector returned one. */
  private project({ plogOffset: offset, event }: CommittedEvent, staging: ViewStaging): Promise<void> | undefined {
    if (!this.triggers(event)) return undefined
    const pe: ProjectorEvent = {
      qname: event.q, wsid: event.ws, plogOffset: offset, wlogOffset: event.wo, registeredAtMs: event.t, args: event.a,
      cuds: event.c.map((c) => ({ id: c.id, table: c.t, isNew: c.n, fields: c.f })),
    }
    const running = this.runner.projector(this.app, this.projector, pe, new ActualizerState(this.app, this.storage, event.ws, staging))
    return isPromiseLike(running) ? running : undefined
  }

  private triggers(e: StoredEvent): boolean {
    const on = this.projector.on
    return on.includes(e.q) || e.c.some((c) => on.includes(c.t))
  }
}

function eventError({ plogOffset, event }: CommittedEvent, err: unknown): Error {
  return new Error(`event at PLog offset ${plogOffset} (${event.q}, workspace ${event.ws}): ${(err as Error).message}`, { cause: err })
}

/** Events of a partition's PLog with from <= offset <= to, across 4096-offset chunks. */
export async function* readPlog(storage: IAppStorage, partition: number, from: number, to: number): AsyncIterable<CommittedEvent> {
  let offset = from
  while (offset <= to) {
    const first = plogKey(partition, offset)
    const chunkEnd = Math.min(to, (Math.floor(offset / 4096) + 1) * 4096 - 1)
    for await (const r of storage.read(first.pk, { ccFrom: first.cc, ccTo: plogKey(partition, chunkEnd + 1).cc })) {
      const o = Number(Buffer.from(r.cc).readBigUInt64BE(0))
      yield { plogOffset: o, event: decodeStored<StoredEvent>(r.value) }
    }
    offset = chunkEnd + 1
  }
}

/** Projectors act for no caller. */
const SYSTEM_PRINCIPAL: Principal = { login: '', roles: [] }

/** The state an async projector sees: committed records, views merged with its batch. */

class ActualizerState extends StorageReadState implements ProjectorState {
  /** A projector's viewGet then viewPut of one row builds its keys once. */
  private readonly keys = new RowKeyMemo()

  constructor(app: AppDef, storage: IAppStorage, wsid: number, readonly staging: ViewStaging) {
    super(app, storage, wsid, SYSTEM_PRINCIPAL, [staging])
  }

  override viewGet(view: string, key: Row): Promise<Row | undefined> {
    return getMergedView(this.storage, this.stagings, this.view(view), this.wsid, key, this.keys)
  }

  viewPut(view: string, key: Row, value: Row): void {
    const v = this.view(view)
    const { pk, cc, mapKey } = this.keys.of(v, this.wsid, key)
    this.staging.set(mapKey, { pk, cc, value: encodeViewValue(v, value) })
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}
