// Partition ownership across nodes (cluster mode, on Cassandra). Each app partition is owned by
// exactly one node at a time through a lease in storage: `insertIfNotExists` with a TTL, renewed
// with `compareAndSwap` every third of the TTL. Nodes announce themselves with a heartbeat key
// (same TTL) and each aims at its fair share, ceil(partitions / live nodes): below it a node
// takes free partitions, above it (a node joined) it hands extra ones back — drained first,
// then the lease deleted so the other takes over at once. A node that dies stops renewing; its
// leases expire after the TTL and the others take its partitions, which resume from the stored
// heads (and complete any interrupted commit: src/workers/command/commit.ts).
//
// A node also stops serving a partition whose lease it could not renew for two thirds of the
// TTL, so it has stopped before another node can take the lease.

import { randomUUID } from 'node:crypto'
import type { IAppStorage } from '../shared/storage/types.js'

const enc = new TextEncoder()
const dec = new TextDecoder()
const LEASES_PK = enc.encode('\x7fpartition-leases')
const NODES_PK = enc.encode('\x7fnodes')
/** Why 1000: bounds the owner map read each tick; far above any partition count we run. */
const LEASES_READ_MAX = 100_000

export interface PartitionRef {
  app: string
  partition: number
}

interface LeaseValue {
  nodeId: string
  advertise: string
  nonce: string
}

export interface OwnershipOptions {
  nodeId: string
  /** The base URL other nodes and clients reach this node at, e.g. http://10.0.0.5:8822. */
  advertise: string
  leaseTtlS: number
  apps: readonly { qname: string; partitions: number }[]
  /** Start serving a partition (its lease is ours); resolves when it serves. */
  acquire: (p: PartitionRef) => Promise<void>
  /** Stop serving a partition (drain); resolves when stopped. */
  release: (p: PartitionRef) => Promise<void>
  log: (level: 'info' | 'warn' | 'error', msg: string) => void
}

const keyOf = (p: PartitionRef): string => `${p.app}#${p.partition}`

export class PartitionOwnership {
  private readonly owned = new Map<string, { ref: PartitionRef; value: Uint8Array; renewedMs: number }>()
  private owners = new Map<string, LeaseValue>()
  private timer: NodeJS.Timeout | undefined
  private ticking: Promise<void> | undefined
  private stopped = false
  private readonly nonce = randomUUID()

  constructor(private readonly storage: IAppStorage, private readonly o: OwnershipOptions) {}

  /** Runs the first round at once (so a lone node serves everything), then every TTL/3. */
  async start(): Promise<void> {
    await this.tick()
    this.schedule()
  }

  /** The node serving a partition now, as last read (undefined: none, or unknown yet). */
  ownerOf(app: string, partition: number): { nodeId: string; advertise: string } | undefined {
    return this.owners.get(`${app}#${partition}`)
  }

  ownedCount(): number {
    return this.owned.size
  }

  /** Stops every partition this node serves and gives the leases up. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.ticking
    await Promise.all([...this.owned.values()].map((o) => this.handBack(o.ref, o.value)))
    await this.storage.compareAndDelete(NODES_PK, enc.encode(this.o.nodeId), this.nodeValue()).catch(() => false)
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.ticking = this.tick().catch((err: unknown) => this.o.log('error', `ownership round failed: ${(err as Error).message}`))
      void this.ticking.then(() => this.schedule())
    }, (this.o.leaseTtlS * 1000) / 3)
  }

  private nodeValue(): Uint8Array {
    return enc.encode(JSON.stringify({ nodeId: this.o.nodeId, advertise: this.o.advertise, nonce: this.nonce }))
  }

  private async tick(): Promise<void> {
    const ttl = this.o.leaseTtlS
    await this.storage.putBatch([{ pk: NODES_PK, cc: enc.encode(this.o.nodeId), value: this.nodeValue(), ttlSeconds: ttl }])
    let liveNodes = 0
    for await (const _ of this.storage.read(NODES_PK, { limit: 10_000 })) liveNodes++
    await this.renew()
    const all = this.o.apps.flatMap((a) => Array.from({ length: a.partitions }, (_, partition) => ({ app: a.qname, partition })))
    const fairShare = Math.ceil(all.length / Math.max(1, liveNodes))
    if (this.owned.size < fairShare) {
      for (const ref of all) {
        if (this.stopped || this.owned.size >= fairShare) break
        if (this.owned.has(keyOf(ref))) continue
        const value = enc.encode(JSON.stringify({ nodeId: this.o.nodeId, advertise: this.o.advertise, nonce: randomUUID() } satisfies LeaseValue))
        if (!(await this.storage.insertIfNotExists(LEASES_PK, enc.encode(keyOf(ref)), value, ttl))) continue
        this.owned.set(keyOf(ref), { ref, value, renewedMs: Date.now() })
        this.o.log('info', `partition ${ref.partition} of ${ref.app}: acquired by ${this.o.nodeId}`)
        try {
          await this.o.acquire(ref)
        } catch (err) {
          this.o.log('error', `partition ${ref.partition} of ${ref.app} failed to start: ${(err as Error).message}`)
          const o = this.owned.get(keyOf(ref))
          if (o) await this.handBack(ref, o.value)
        }
      }
    } else if (this.owned.size > fairShare) {
      // Hand back the surplus, the highest partitions first, so nodes converge on the same split.
      const surplus = [...this.owned.values()].sort((a, b) => keyOf(b.ref).localeCompare(keyOf(a.ref))).slice(0, this.owned.size - fairShare)
      for (const o of surplus) await this.handBack(o.ref, o.value)
    }
    await this.readOwners()
  }

  private async renew(): Promise<void> {
    for (const [k, o] of [...this.owned]) {
      let ok = false
      try {
        ok = await this.storage.compareAndSwap(LEASES_PK, enc.encode(k), o.value, o.value, this.o.leaseTtlS)
      } catch (err) {
        this.o.log('warn', `partition ${o.ref.partition} of ${o.ref.app}: lease renewal failed: ${(err as Error).message}`)
        ok = Date.now() - o.renewedMs < (this.o.leaseTtlS * 1000 * 2) / 3
        if (ok) continue
      }
      if (ok) {
        o.renewedMs = Date.now()
        continue
      }
      this.owned.delete(k)
      this.o.log('error', `partition ${o.ref.partition} of ${o.ref.app}: lease lost; no longer served here`)
      await this.o.release(o.ref)
    }
  }

  private async handBack(ref: PartitionRef, value: Uint8Array): Promise<void> {
    this.owned.delete(keyOf(ref))
    await this.o.release(ref)
    await this.storage.compareAndDelete(LEASES_PK, enc.encode(keyOf(ref)), value).catch((err: unknown) => {
      this.o.log('warn', `partition ${ref.partition} of ${ref.app}: could not delete the lease (expires in ${this.o.leaseTtlS} s): ${(err as Error).message}`)
    })
    this.o.log('info', `partition ${ref.partition} of ${ref.app}: handed back by ${this.o.nodeId}`)
  }

  private async readOwners(): Promise<void> {
    const owners = new Map<string, LeaseValue>()
    for await (const r of this.storage.read(LEASES_PK, { limit: LEASES_READ_MAX })) owners.set(dec.decode(r.cc), JSON.parse(dec.decode(r.value)) as LeaseValue)
    this.owners = owners
  }
}
