// Engine pools (seed 000): per worker thread one wasmtime engine (the native addon, native/),
// each WASM module compiled once, and per module and processor kind a pool of instances made
// at start. A call borrows an instance, invokes it and gives it back; an instance that trapped
// (poisoned) is disposed and replaced. No free instance is 503.
//
// Runs only inside workers: the addon's objects belong to the thread that made them.

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { WasmEngine, WasmInstance, WasmInstancePre, WasmModule } from '../../../native/index.js'
import { BusyError } from '../../shared/errors.js'
import type { WasmOptions } from '../../shared/partition-protocol.js'
import type { ProcessorKind } from '../extensions.js'

type Native = typeof import('../../../native/index.js')

/** From dist/src/workers/wasm/ to the addon's loader at the repository root. */
const NATIVE_URL = new URL('../../../../native/index.js', import.meta.url)
let native: Promise<Native> | undefined

/** Loads the addon on first use: workers of apps without WASM functions never do. */
function loadNative(): Promise<Native> {
  native ??= import(NATIVE_URL.href) as Promise<Native>
  return native
}

/** Instances of one module for one processor kind. */
export class InstancePool {
  private readonly idle: WasmInstance[] = []
  private borrowed = 0
  /** Why the last replacement could not be made (shown in the 503), if it failed. */
  private refillError: string | undefined
  borrowsCount = 0
  replacedCount = 0

  constructor(private readonly pre: WasmInstancePre, readonly size: number, readonly label: string) {
    for (let i = 0; i < size; i++) this.idle.push(pre.instantiate())
  }

  /** Deployed app versions using the pool; at 0 it is closed (WasmEngines.release). */
  refs = 0
  private closed = false

  borrow(): WasmInstance {
    if (this.closed) throw new BusyError(`${this.label} was replaced by a redeploy`)
    if (this.idle.length === 0) this.refill()
    const inst = this.idle.pop()
    if (inst === undefined) {
      const why = this.refillError === undefined ? `all ${this.size} are in use` : `a discarded one could not be replaced: ${this.refillError}`
      throw new BusyError(`no free WASM engine for ${this.label}: ${why}`)
    }
    this.borrowed++
    this.borrowsCount++
    return inst
  }

  /** Takes an instance back; one that trapped is disposed and replaced. */
  giveBack(inst: WasmInstance): void {
    this.borrowed--
    assert.ok(this.borrowed >= 0, 'an instance was given back twice')
    if (this.closed) {
      inst.dispose()
      return
    }
    if (!inst.poisoned) {
      this.idle.push(inst)
      return
    }
    inst.dispose()
    this.replacedCount++
    this.refill()
  }

  /** Tops the pool up to its size; a failure leaves it short (the next borrow tries again). */
  private refill(): void {
    while (this.idle.length + this.borrowed < this.size) {
      try {
        this.idle.push(this.pre.instantiate())
        this.refillError = undefined
      } catch (err) {
        this.refillError = `${(err as { code?: string }).code ?? 'ERROR'}: ${(err as Error).message}`
        return
      }
    }
  }

  /** Disposes the idle instances now and borrowed ones when given back. */
  close(): void {
    this.closed = true
    for (const inst of this.idle) inst.dispose()
    this.idle.length = 0
  }
}

interface LoadedModule {
  module: WasmModule
  pre: WasmInstancePre
}

/** One engine per worker, its compiled modules (by content hash) and their pools. */
export class WasmEngines {
  private readonly modules = new Map<string, Promise<LoadedModule>>()
  private readonly pools = new Map<string, InstancePool>()

  private constructor(private readonly engine: WasmEngine, readonly opts: WasmOptions) {}

  /**
   * `instancesPlanned`: the pools' total size. The engine's pool of slots gets twice that, so
   * that a redeploy can make the new version's instances before the old ones go.
   */
  static async open(opts: WasmOptions, instancesPlanned: number): Promise<WasmEngines> {
    const { WasmEngine } = await loadNative()
    const engine = new WasmEngine({
      deadlineMs: opts.deadlineMs,
      memoryBytesMax: opts.memoryBytesMax,
      instancesMax: Math.max(8, instancesPlanned * 2),
      cacheDir: opts.cacheDir,
    })
    return new WasmEngines(engine, opts)
  }

  /**
   * The pool of a module for a processor kind, made (pre-instantiated) on first request and
   * shared by every app version using the same bytes; each request takes a reference.
   */
  async pool(bytes: Buffer, kind: ProcessorKind, label: string): Promise<{ pool: InstancePool; module: WasmModule }> {
    const sha256 = createHash('sha256').update(bytes).digest('hex')
    const { module, pre } = await this.load(sha256, bytes)
    const key = `${sha256}/${kind}`
    let pool = this.pools.get(key)
    if (pool === undefined) {
      pool = new InstancePool(pre, this.opts.poolSize, `${label} (${kind})`)
      this.pools.set(key, pool)
    }
    pool.refs++
    return { pool, module }
  }

  /** Drops a reference taken by `pool`; the last one closes the pool and frees its slots. */
  release(pool: InstancePool): void {
    assert.ok(pool.refs > 0, 'a pool was released more often than taken')
    if (--pool.refs > 0) return
    pool.close()
    for (const [k, p] of this.pools) if (p === pool) this.pools.delete(k)
  }

  /** Compiles (or finds) a module; concurrent requests for the same bytes share one compile. */
  private load(sha256: string, bytes: Buffer): Promise<LoadedModule> {
    let m = this.modules.get(sha256)
    if (m === undefined) {
      m = this.engine.compileAsync(bytes).then((module) => ({ module, pre: module.instantiatePre() }))
      this.modules.set(sha256, m)
      m.catch(() => this.modules.delete(sha256))
    }
    return m
  }

  get poolsCount(): number {
    return this.pools.size
  }

  /** Instances in all pools, borrows and replacements of trapped instances since start. */
  usage(): { instances: number; borrows: number; replaced: number } {
    let instances = 0
    let borrows = 0
    let replaced = 0
    for (const p of this.pools.values()) {
      instances += p.size
      borrows += p.borrowsCount
      replaced += p.replacedCount
    }
    return { instances, borrows, replaced }
  }

  close(): void {
    for (const p of this.pools.values()) p.close()
    this.pools.clear()
  }
}
