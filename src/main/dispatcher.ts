// Where a request goes: writes and subscriptions to their workspace's partition worker; reads to the query pool,
// or to the partition worker when the storage is not shared across threads (mem). Rate limits
// are taken here, before anything is queued.

import type { AppDef, Rate } from '../shared/appdef/types.js'
import type { Principal } from '../shared/appdef/state.js'
import { ANONYMOUS } from '../shared/authz.js'
import { Op, isSubscriptionOp, isWriteOp, type EngineRequest } from '../shared/engine-messages.js'
import { PartitionNotHereError, type PartitionSet, type ReplySink } from './partitions.js'
import { VvmError } from '../shared/errors.js'
import type { QueryPool } from './query-pool.js'
import type { RateLimiter } from './rate-limiter.js'

export class Dispatcher {
  /** The rate in force per function definition (a redeployed app brings new definitions). */
  private readonly effectiveRates = new WeakMap<object, { rate: Rate | undefined }>()

  constructor(
    private readonly apps: ReadonlyMap<string, AppDef>,
    private readonly partitions: PartitionSet,
    private readonly queries: QueryPool | undefined,
    private readonly rates: RateLimiter,
    /** Config overrides of declared rates, by "owner/app:pkg.Func". */
    private readonly rateOverrides: Readonly<Record<string, Rate>> = {},
    /** Cluster mode: which node serves a partition this node does not. */
    private readonly ownerOf?: (app: string, partition: number) => { nodeId: string; advertise: string } | undefined,
    /** For requests that come without a principal: anonymous, or the owner with `--auth off`. */
    private readonly defaultPrincipal: Principal = ANONYMOUS,
  ) {}

  /** Throws RateLimitedError (429) when the function's declared rate is exceeded. */
  /** Takes the request's rate (429 when spent); `address` is asked only for a rate by address. */
  checkRate(req: EngineRequest, address: string | (() => string)): void {
    const app = this.apps.get(req.app)
    let fn: { rate?: Rate } | undefined
    if (req.op === Op.COMMAND) fn = app?.commands.get(req.qname)
    else if (req.op === Op.QUERY) fn = app?.queries.get(req.qname)
    else return
    const rate = fn === undefined ? this.rateOverrides[`${req.app}:${req.qname}`] : this.rateOf(req.app, req.qname, fn)
    if (rate === undefined) return
    const scope = rate.scope ?? 'workspace'
    const who = scope === 'workspace' ? `ws${req.wsid}` : scope === 'partition' ? `p${this.partitions.partitionOf(req.app, req.wsid)}` : `a${typeof address === 'string' ? address : address()}`
    this.rates.take(`${req.app}|${req.qname}|${who}`, rate, req.qname)
  }

  /** A declared function's rate, the config's override first; remembered per function definition. */
  private rateOf(app: string, qname: string, fn: { rate?: Rate }): Rate | undefined {
    let r = this.effectiveRates.get(fn)
    if (r === undefined) {
      r = { rate: this.rateOverrides[`${app}:${qname}`] ?? fn.rate }
      this.effectiveRates.set(fn, r)
    }
    return r.rate
  }

  submit(req: EngineRequest, sink: ReplySink): void {
    req.principal ??= this.defaultPrincipal
    if (!isWriteOp(req.op) && !isSubscriptionOp(req.op) && this.queries !== undefined) {
      this.queries.submit(req, sink)
      return
    }
    try {
      this.partitions.submit(req, sink)
    } catch (err) {
      if (!(err instanceof PartitionNotHereError)) throw err
      // Cluster mode: the owner takes it (307 keeps method and body); no owner yet: retry soon.
      const owner = this.ownerOf?.(err.app, err.partition)
      if (owner !== undefined) throw new VvmError('MOVED', `partition ${err.partition} of ${err.app} is served by ${owner.nodeId}`, { data: { location: owner.advertise } })
      throw new VvmError('BUSY', `partition ${err.partition} of ${err.app} is being taken over; retry`, { retryAfterS: 1 })
    }
  }
}
