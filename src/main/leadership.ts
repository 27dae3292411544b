// Leadership (seed 003): a VVM serves only while it holds a lease in its storage. The lease is
// one key written with `insertIfNotExists` and a TTL, renewed with `compareAndSwap` every third
// of the TTL. Whoever fails to renew before the TTL runs out has lost it.
//
// On storages that are one process's alone (level: the data directory is locked; mem), the
// lock already makes this process the only possible leader, so the lease is taken at once even
// if a dead predecessor's lease has not expired yet: a restart after kill -9 serves at once.

import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import type { IAppStorage, IStorageProvider } from '../shared/storage/types.js'
import { VvmError } from '../shared/errors.js'

/** The VVM's own storage, apart from every application's. */
export const SYS_APP = 'sys/vvm'
const LEASE_PK = new TextEncoder().encode('\x7fleadership')
const LEASE_CC = new Uint8Array(0)
/** Where the lease lives in the `sys/vvm` storage (operators and tests may inspect it). */
export const LEASE_KEY = { pk: LEASE_PK, cc: LEASE_CC } as const

export interface LeaseHolder {
  nodeId: string
  pid: number
  host: string
  acquiredAtMs: number
  nonce: string
}

export class LeadershipLostError extends VvmError {
  constructor(message: string) { super('INTERNAL', message) }
}

export interface LeadershipOptions {
  nodeId: string
  leaseTtlS: number
  log: (level: 'info' | 'warn' | 'error', msg: string) => void
}

export class Leadership {
  private value: Uint8Array | undefined
  private timer: NodeJS.Timeout | undefined
  private lastRenewMs = 0
  private stopped = false
  /** 1 while this node holds the lease (for metrics). */
  get held(): boolean {
    return this.value !== undefined && !this.stopped
  }

  private constructor(private readonly storage: IAppStorage, private readonly exclusive: boolean, private readonly o: LeadershipOptions) {}

  static async open(provider: IStorageProvider, o: LeadershipOptions): Promise<Leadership> {
    return new Leadership(await provider.appStorage(SYS_APP), provider.kind !== 'cassandra', o)
  }

  /** The current holder, if any (for "waiting for leadership held by …"). */
  async holder(): Promise<LeaseHolder | undefined> {
    const v = await this.storage.ttlGet(LEASE_PK, LEASE_CC)
    return v === undefined ? undefined : (JSON.parse(new TextDecoder().decode(v.value)) as LeaseHolder)
  }

  /** Resolves once the lease is ours; rejects with AbortError when `signal` fires first. */
  async acquire(signal: AbortSignal): Promise<void> {
    const holder: LeaseHolder = { nodeId: this.o.nodeId, pid: process.pid, host: hostname(), acquiredAtMs: Date.now(), nonce: randomUUID() }
    const value = new TextEncoder().encode(JSON.stringify(holder))
    if (this.exclusive) {
      await this.storage.put(LEASE_PK, LEASE_CC, value)
      this.value = value
      this.lastRenewMs = Date.now()
      return
    }
    let announced = false
    for (;;) {
      signal.throwIfAborted()
      if (await this.storage.insertIfNotExists(LEASE_PK, LEASE_CC, value, this.o.leaseTtlS)) {
        this.value = value
        this.lastRenewMs = Date.now()
        this.o.log('info', `leadership acquired by ${this.o.nodeId}`)
        return
      }
      if (!announced) {
        const h = await this.holder()
        this.o.log('info', `waiting for leadership, held by ${h ? `${h.nodeId} (pid ${h.pid} on ${h.host})` : 'another node'}`)
        announced = true
      }
      await sleep(Math.max(100, (this.o.leaseTtlS * 1000) / 6), signal)
    }
  }

  /** Renews the lease until `stop()`; calls `onLost` once if it cannot. */
  monitor(onLost: (err: Error) => void): void {
    const periodMs = (this.o.leaseTtlS * 1000) / 3
    const tick = async (): Promise<void> => {
      if (this.stopped || this.value === undefined) return
      let renewed = false
      try {
        renewed = await this.storage.compareAndSwap(LEASE_PK, LEASE_CC, this.value, this.value, this.exclusive ? 0 : this.o.leaseTtlS)
        // Released while the renewal was under way: the lease is given up, not lost.
        if (this.stopped) return
        if (!renewed) {
          this.stopped = true
          onLost(new LeadershipLostError(`leadership lost: the lease of ${this.o.nodeId} was taken by another holder`))
          return
        }
        this.lastRenewMs = Date.now()
      } catch (err) {
        if (this.stopped) return
        // A storage error is retried until the lease would have expired anyway.
        if (Date.now() - this.lastRenewMs >= this.o.leaseTtlS * 1000) {
          this.stopped = true
          onLost(new LeadershipLostError(`leadership lost: the lease could not be renewed for ${this.o.leaseTtlS} s: ${(err as Error).message}`))
          return
        }
        this.o.log('warn', `lease renewal failed, retrying: ${(err as Error).message}`)
      }
      if (!this.stopped) this.timer = setTimeout(() => void tick(), renewed ? periodMs : Math.min(periodMs, 500))
    }
    this.timer = setTimeout(() => void tick(), periodMs)
  }

  /** Stops renewing and gives the lease up, so a waiting node takes over at once. */
  async release(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    if (this.value === undefined) return
    const value = this.value
    this.value = undefined
    try {
      await this.storage.compareAndDelete(LEASE_PK, LEASE_CC, value)
    } catch (err) {
      this.o.log('warn', `could not release the lease (it expires in at most ${this.o.leaseTtlS} s): ${(err as Error).message}`)
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(t); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
