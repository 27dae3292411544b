// Deployment of an app partition (seed 000: DeployAppPartitions → PartitionActualizers and
// PartitionSchedulers). Deploying starts one actualizer per async projector and one scheduler
// per job, all under one cancellation; redeploying (a new app version) cancels the old runners,
// waits until they have stopped, and starts new ones from the stored offsets, so no event is
// lost or applied twice. Undeploying cancels them.

import { Cron } from 'croner'
import type { AppDef, ResolvedJob } from '../../shared/appdef/types.js'
import type { IAppStorage } from '../../shared/storage/types.js'
import type { ExtensionRunner } from '../extensions.js'
import { AsyncActualizer, Wakeup, type ActualizerOptions, type CommittedEvent } from './actualizer.js'

/**
 * Why 4,096: the committed events kept in memory for the actualizers, so that one that keeps up
 * never reads its events back from storage; about 4 batches of the default size. An actualizer
 * further behind reads the PLog. At least this many are kept, at most twice as many: the list is
 * cut back once it holds twice as many, not after every commit (a copy of 4,096 references per
 * batch was young-generation garbage in proportion to the batch rate).
 */
export const RECENT_EVENTS_MAX = 4096

export interface DeploymentOptions extends ActualizerOptions {
  /** Called when a job is due: queue it on the command path (at most one pending run per job). */
  runJob: (app: AppDef, job: ResolvedJob) => void
}

export class PartitionDeployment {
  private ctl: AbortController | undefined
  private runners: Promise<void>[] = []
  private crons: Cron[] = []
  private actualizers: AsyncActualizer[] = []
  private readonly wakeup = new Wakeup()
  private committed = 0
  /** The last committed events, contiguous, ending at `committed`. */
  private recent: CommittedEvent[] = []
  current: AppDef | undefined

  constructor(
    readonly storage: IAppStorage,
    readonly partition: number,
    private readonly runner: ExtensionRunner,
    private readonly opts: DeploymentOptions,
  ) {}

  async deploy(app: AppDef, committedOffset: number): Promise<void> {
    await this.undeploy()
    this.committed = committedOffset
    this.recent = []
    const ctl = new AbortController()
    this.ctl = ctl
    this.current = app
    this.actualizers = app.asyncProjectors.map((p) => new AsyncActualizer(app, p, this.storage, this.partition, this.runner, this.opts))
    const source = { committed: () => this.committed, recent: (from: number, to: number) => this.recentEvents(from, to) }
    this.runners = this.actualizers.map((a) => a.run(source, this.wakeup, ctl.signal).catch((err: unknown) => {
      this.opts.log('error', `actualizer ${a.projector.qname} p${this.partition} stopped: ${(err as Error)?.stack ?? String(err)}`)
    }))
    // A missed run while the server was down is not replayed: croner schedules from now on.
    this.crons = [...app.jobs.values()].map((job) => new Cron(job.cron, { protect: true }, () => this.opts.runJob(app, job)))
  }

  /** Cancels actualizers and schedulers and waits until they have stopped. */
  async undeploy(): Promise<void> {
    for (const c of this.crons) c.stop()
    this.crons = []
    this.ctl?.abort()
    await Promise.all(this.runners)
    this.runners = []
    this.actualizers = []
    this.ctl = undefined
    this.current = undefined
  }

  /**
   * After each commit: keeps its events (offsets committed+1 .. plogOffset) for the actualizers
   * and wakes those that wait for new events.
   */
  notifyCommitted(plogOffset: number, events: readonly CommittedEvent[]): void {
    if (plogOffset <= this.committed) return
    if (events.length === plogOffset - this.committed && events[0]?.plogOffset === this.committed + 1) {
      for (const e of events) this.recent.push(e)
      if (this.recent.length > 2 * RECENT_EVENTS_MAX) this.recent = this.recent.slice(-RECENT_EVENTS_MAX)
    } else {
      this.recent = []
    }
    this.committed = plogOffset
    this.wakeup.notify()
  }

  /** Events from..to (offsets) if all of them are still in memory. */
  private recentEvents(from: number, to: number): readonly CommittedEvent[] | undefined {
    const first = this.recent[0]
    if (first === undefined || from < first.plogOffset || to > this.committed) return undefined
    return this.recent.slice(from - first.plogOffset, to - first.plogOffset + 1)
  }

  /** Events behind the PLog, per async projector (in the app's order). */
  lags(): number[] {
    return this.actualizers.map((a) => Math.max(0, this.committed - a.offset))
  }
}
