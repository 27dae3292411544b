// The VVM (seed 003): a write-once problem, a launcher that waits for leadership before it
// starts the services, a leadership monitor, and a shutdown sequence: stop services → stop the
// leadership monitor (and give the lease up) → done. After `shutdown()` resolves nothing of the
// VVM runs, except the killer armed when leadership was lost (it must end the process).

import { readFile, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { pino, type Logger } from 'pino'
import { StorageError } from '../shared/errors.js'
import { openStorageProvider } from '../shared/storage/index.js'
import type { IStorageProvider } from '../shared/storage/types.js'
import type { VvmConfig } from './config.js'
import { Leadership, SYS_APP } from './leadership.js'
import { PartitionOwnership } from './ownership.js'
import { startServer, storageConfigOf, type VvmServer } from './server.js'

const HOLDER_FILE = 'vvm.holder.json'
/** Level data directories open by a VVM of this process (LevelDB's LOCK only stops other processes). */
const openDataDirs = new Set<string>()

export class VVM {
  private problemErr: Error | undefined
  private readonly problemCtl = new AbortController()
  private readonly servicesShut = new AbortController()
  private launcher: Promise<void> | undefined
  private shutting: Promise<Error | undefined> | undefined
  private provider: IStorageProvider | undefined
  private leadership: Leadership | undefined
  private ownership: PartitionOwnership | undefined
  private server: VvmServer | undefined
  private servingResolve: ((s: VvmServer) => void) | undefined
  private servingReject: ((e: Error) => void) | undefined
  /** Resolves when the services serve (after leadership is won); rejects on a problem before. */
  readonly serving: Promise<VvmServer>

  constructor(readonly config: VvmConfig, readonly log: Logger = pino({ level: config.logLevel })) {
    this.serving = new Promise((resolve, reject) => { this.servingResolve = resolve; this.servingReject = reject })
    // Nobody has to wait for `serving`; a rejection nobody awaits is not an unhandled error.
    this.serving.catch(() => {})
  }

  /** The first problem wins; later ones are only logged. */
  updateProblem(err: Error): void {
    if (this.problemErr !== undefined) {
      this.log.error({ err }, 'a further problem (the first one stands)')
      return
    }
    this.problemErr = err
    this.log.error({ err }, 'VVM problem')
    this.servingReject!(err)
    this.problemCtl.abort(err)
  }

  get problem(): Error | undefined {
    return this.problemErr
  }

  /** Starts the launcher; the returned signal fires on the first problem. */
  launch(): AbortSignal {
    this.launcher ??= this.runLauncher().catch((err: unknown) => {
      if (!this.servicesShut.signal.aborted) this.updateProblem(err as Error)
    })
    return this.problemCtl.signal
  }

  private async runLauncher(): Promise<void> {
    this.provider = await openStorage(this.config)
    const logFn = (level: 'info' | 'warn' | 'error', msg: string): void => this.log[level](msg)
    if (this.config.advertise !== '') {
      await this.launchClusterNode(this.provider, logFn)
      return
    }
    this.leadership = await Leadership.open(this.provider, { nodeId: this.nodeId, leaseTtlS: this.config.leaseTtlS, log: logFn })
    await this.leadership.acquire(this.servicesShut.signal)
    if (this.servicesShut.signal.aborted) return
    this.leadership.monitor((err) => this.onLeadershipLost(err))
    this.server = await startServer(this.config, this.log, this.provider)
    const leadership = this.leadership
    this.server.metrics.registry.gauge('vvm_leader', '1 while this node holds the leadership lease', () => [{ labels: {}, value: leadership.held ? 1 : 0 }])
    this.server.metrics.registry.gauge('vvm_problem', '1 once the VVM has a problem (it stops)', () => [{ labels: {}, value: this.problemErr ? 1 : 0 }])
    this.server.admin?.attach({ leader: () => leadership.held, problem: () => this.problemErr })
    if (this.servicesShut.signal.aborted) return
    this.servingResolve!(this.server)
  }

  get nodeId(): string {
    return this.config.nodeId || `${hostname()}:${process.pid}`
  }

  /**
   * Cluster mode: no VVM-wide leader; every node serves, and the partitions are shared out
   * through per-partition leases (ownership.ts). Requests for a partition served elsewhere
   * are redirected there (307).
   */
  private async launchClusterNode(provider: IStorageProvider, log: (level: 'info' | 'warn' | 'error', msg: string) => void): Promise<void> {
    let ownership: PartitionOwnership | undefined
    const self = this.nodeId
    const server = await startServer(this.config, this.log, provider, {
      ownerOf: (app, partition) => {
        const o = ownership?.ownerOf(app, partition)
        return o === undefined || o.nodeId === self ? undefined : o
      },
    })
    this.server = server
    ownership = new PartitionOwnership(await provider.appStorage(SYS_APP), {
      nodeId: self, advertise: this.config.advertise, leaseTtlS: this.config.leaseTtlS,
      apps: [...server.appPartitions].map(([qname, partitions]) => ({ qname, partitions })),
      acquire: (p) => server.partitions.startPartition(p.app, p.partition),
      release: (p) => server.partitions.stopPartition(p.app, p.partition),
      log,
    })
    this.ownership = ownership
    server.admin?.attach({ cluster: true, problem: () => this.problemErr })
    const owned = ownership
    server.metrics.registry.gauge('vvm_partitions_owned', 'partitions this node serves (cluster mode)', () => [{ labels: {}, value: owned.ownedCount() }])
    await ownership.start()
    if (this.servicesShut.signal.aborted) return
    this.servingResolve!(server)
  }

  private onLeadershipLost(err: Error): void {
    this.server?.stopServing()
    // Seed 003: the killer is never stopped; the process must end even if shutdown hangs.
    const killer = setTimeout(() => {
      this.log.fatal({ killAfterS: this.config.killAfterS }, 'leadership lost and the VVM did not stop in time: exiting')
      process.exit(3)
    }, this.config.killAfterS * 1000)
    killer.unref()
    this.updateProblem(err)
  }

  /** Stops services, then the leadership monitor; resolves with the problem, if any. */
  shutdown(): Promise<Error | undefined> {
    this.shutting ??= (async () => {
      this.servicesShut.abort(new Error('shutdown'))
      this.servingReject!(new Error('the VVM was shut down before it served'))
      await this.launcher
      // Cluster mode: drain this node's partitions and give their leases up before closing, so
      // the other nodes take them over at once.
      this.server?.stopServing()
      await this.ownership?.stop()
      await this.server?.close()
      await this.leadership?.release()
      await this.provider?.close()
      return this.problemErr
    })()
    return this.shutting
  }
}

/**
 * Opens storage for the VVM. The level data directory is one process's; a second process is
 * refused with the holder's name, read from a file the holder writes after it opened.
 */
async function openStorage(config: VvmConfig): Promise<IStorageProvider> {
  const storage = storageConfigOf(config)
  if (storage.kind === 'level') {
    if (openDataDirs.has(storage.dataDir!)) throw new StorageError(`data directory ${storage.dataDir} is in use by another VVM of this process (pid ${process.pid})`)
    openDataDirs.add(storage.dataDir!)
  }
  let provider: IStorageProvider
  try {
    provider = await openStorageProvider(storage)
  } catch (err) {
    if (storage.kind === 'level' && err instanceof StorageError && /in use/.test(err.message)) {
      const holder = await readFile(join(storage.dataDir!, HOLDER_FILE), 'utf8').catch(() => undefined)
      openDataDirs.delete(storage.dataDir!)
      throw new StorageError(`${err.message}${holder ? `; holder: ${holder.trim()}` : ''}`, err)
    }
    openDataDirs.delete(storage.dataDir!)
    throw err
  }
  if (storage.kind === 'level') {
    const dir = storage.dataDir!
    const close = provider.close.bind(provider)
    provider = Object.assign(Object.create(Object.getPrototypeOf(provider) as object) as IStorageProvider, provider, {
      close: async () => { try { await close() } finally { openDataDirs.delete(dir) } },
    })
    const holder = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), port: config.port, cwd: resolve('.') }
    await writeFile(join(storage.dataDir!, HOLDER_FILE), JSON.stringify(holder) + '\n')
  }
  return provider
}
