// The command processor of one app partition: a strictly sequential pipeline of named stages
// (decode → authorize → load workspace → idempotency → validate → CUDs → execute → build event →
// validate records → sync projectors → stage), then one group commit for the whole batch.
// Only after the batch is durable are its commands acknowledged. A failed command stages
// nothing; a failed commit acknowledges nothing.
//
// The commit is pipelined: the next batch may execute while the previous one is being written,
// on top of its staged state (`Staging.parent`). It is committed only after its parent is
// durable; when the parent's commit fails, it is abandoned: nothing of it is written and its
// commands get BUSY, as theirs do.

import type { AppDef, ProjectorEvent, ResolvedCommand, ResolvedJob, ResolvedProjector } from '../../shared/appdef/types.js'
import type { Principal, Row } from '../../shared/appdef/state.js'
import { FIELD_IS_ACTIVE, LOGIN_RE, ROLE_OWNER, ROLE_PUBLIC, SYS_GRANT_ROLE, SYS_REVOKE_ROLE } from '../../shared/appdef/acl.js'
import { ANONYMOUS, SYSTEM_OWNER, authorize, effectiveRoles, grantOpOf, needsStoredGrants } from '../../shared/authz.js'
import { isWasmRef } from '../../shared/appdef/define.js'
import { validateFields } from '../../shared/appdef/validate.js'
import { isPromiseLike, type ExtensionRunner } from '../extensions.js'
import type { Committer } from './commit.js'
import { Op, type EngineReply, type EngineRequest } from '../../shared/engine-messages.js'
import { BadRequestError, NotFoundError, ValidationError, VvmError, toVvmError } from '../../shared/errors.js'
import { RAW_ID_MAX, decodeStored, idempotencyKey, type StoredCud, type StoredEvent } from '../../shared/layout.js'
import { renderCommand, renderError, type CommandOutcome } from '../../shared/reply.js'
import type { IAppStorage } from '../../shared/storage/types.js'
import { CommandTx } from './command-tx.js'
import { grantKey, type PartitionState } from './partition-state.js'
import { Staging, idempotentKey, type IdempotentReply } from './staging.js'
import { decodeBody } from '../decode-body.js'

export type Stage =
  | 'decode' | 'authorize' | 'load workspace' | 'idempotency' | 'validate' | 'cuds' | 'execute' | 'build event'
  | 'validate records' | 'sync projectors' | 'stage' | 'commit'

/** Longest wait between attempts to recover a partition after a failed commit. */
const RECOVERY_DELAY_MAX_MS = 10_000

export interface CommandProcessorOptions {
  idempotencyTtlSeconds: number
  committer: Committer
  /** Logs an unexpected failure (a bug or a storage fault), never bad input. */
  onInternalError: (stage: Stage, err: unknown) => void
}

export interface BatchStats {
  commands: number
  committed: number
  commitMs: number
  /** Time in `execute`/`extend` (every stage before the commit). */
  executeMs: number
}

/** A batch executed and staged, not yet durable: its replies wait for its commit. */
export interface ExecutedBatch {
  readonly reqs: EngineRequest[]
  readonly replies: EngineReply[]
  /** Indexes of the replies that acknowledge a staged command. */
  readonly acked: number[]
  readonly staging: Staging
  /** Set when the batch it was staged on failed to commit: it is never written. */
  abandoned: boolean
}

interface Cud {
  rawId: number | undefined
  id: number | undefined
  table: string | undefined
  fields: Record<string, unknown>
}

export class CommandProcessor {
  constructor(
    /** The deployed version; replaced on redeploy, undefined while undeployed. */
    public app: AppDef | undefined,
    readonly part: PartitionState,
    readonly storage: IAppStorage,
    readonly opts: CommandProcessorOptions,
    readonly extensions: ExtensionRunner,
  ) {}

  /** Executes a batch in order and commits it once; returns one reply per request. */
  async processBatch(reqs: readonly EngineRequest[], stats: BatchStats): Promise<EngineReply[]> {
    const b = await this.execute(reqs, undefined, stats)
    await this.commit(b, stats)
    return b.replies
  }

  /**
   * Executes a batch in order, staging on top of `parent` (the batch whose commit is under way,
   * if any; never an abandoned one). Nothing is written: `commit` does that, after the parent's.
   */
  async execute(reqs: readonly EngineRequest[], parent: ExecutedBatch | undefined, stats: BatchStats): Promise<ExecutedBatch> {
    const staging = new Staging(parent?.staging, parent === undefined ? this.part.plogOffset : parent.staging.lastOffset)
    const b: ExecutedBatch = { reqs: [], replies: [], acked: [], staging, abandoned: false }
    await this.extend(b, reqs, stats)
    return b
  }

  /** Executes more requests into a batch not yet committed, after those already in it. */
  async extend(b: ExecutedBatch, reqs: readonly EngineRequest[], stats: BatchStats): Promise<void> {
    const t0 = performance.now()
    for (const req of reqs) {
      const r = await this.execOne(req, b.staging)
      if (r.status < 300) b.acked.push(b.replies.length)
      b.reqs.push(req)
      b.replies.push(r)
    }
    stats.commands += reqs.length
    stats.executeMs += performance.now() - t0
  }

  /**
   * Writes an executed batch in one group commit; its parent must be committed. True when it
   * is durable (or had nothing to write); false when the commit failed: its commands then
   * answer BUSY and the partition has recovered its committed state. `inline`: the caller has
   * nothing to do until it is durable (`Committer.commit`).
   */
  async commit(b: ExecutedBatch, stats: BatchStats, inline = false): Promise<boolean> {
    const batch = b.staging
    if (b.abandoned) return false
    if (batch.empty) return true
    const lastOffset = batch.lastOffset
    const t0 = performance.now()
    try {
      await this.opts.committer.commit(batch.toBatchItems(this.part.partition, lastOffset, this.opts.idempotencyTtlSeconds), lastOffset, inline)
      this.part.applyCommitted(lastOffset, batch.wsHeads, batch.committedRecords(), batch.grants)
      stats.committed += b.acked.length
      return true
    } catch (err) {
      this.opts.onInternalError('commit', err)
      this.abandon(b)
      await this.recoverAfterFailure()
      return false
    } finally {
      stats.commitMs += performance.now() - t0
    }
  }

  /** The parent's commit failed: this batch, staged on top of it, is never written. */
  abandon(b: ExecutedBatch): void {
    b.abandoned = true
    const e = new VvmError('BUSY', 'the commit failed; the command may or may not be applied: retry with the same Idempotency-Key', { retryAfterS: 1 })
    for (const i of b.acked) b.replies[i] = errorReply(b.reqs[i]!, e)
  }

  /**
   * The batch may be in storage, partly (non-atomic storages) or not at all: complete it or
   * find it absent, forget every cached value and reload the head. Until that works the
   * partition takes no new batch (its ring fills and clients get 503), retrying with backoff.
   */
  private async recoverAfterFailure(): Promise<void> {
    this.part.resetCaches()
    for (let attempt = 0; ; attempt++) {
      try {
        await this.opts.committer.recover()
        await this.part.load()
        return
      } catch (err) {
        this.opts.onInternalError('commit', err)
        await new Promise((r) => setTimeout(r, Math.min(RECOVERY_DELAY_MAX_MS, 100 * 2 ** Math.min(attempt, 10))))
      }
    }
  }

  private async execOne(req: EngineRequest, batch: Staging): Promise<EngineReply> {
    let stage: Stage = 'decode'
    try {
      const app = this.app
      if (app === undefined) throw new NotFoundError(`app ${req.app} is not deployed`)
      const body = decodeBody(req.body)
      const tx = new CommandTx(app, this.part, batch, req.wsid)
      stage = 'authorize'
      tx.principal = await this.authorize(app, req, body, tx, batch)
      stage = 'load workspace'
      // Awaited only when it reads storage: an await costs ~600 instructions (bench/instructions.ts).
      if (!tx.workspaceLoaded()) await tx.loadWorkspace()
      if (req.idempotencyKey !== null) {
        stage = 'idempotency'
        const prior = await this.findIdempotent(req.wsid, req.idempotencyKey, batch)
        if (prior !== undefined) return { reqId: req.reqId, status: prior.status, body: renderCommand(req.format, prior.outcome), retryAfterS: 0 }
      }
      let status = 200
      let outcome: CommandOutcome
      let eventQName: string
      let args: Record<string, unknown> = {}
      switch (req.op) {
        case Op.COMMAND: {
          const cmd = app.commands.get(req.qname)
          if (cmd === undefined) throw new NotFoundError(`command ${req.qname} is not defined in app ${app.qname}`, req.qname)
          stage = 'validate'
          const b = objectBody(body, req.qname)
          args = validateFields(cmd.args, b.args, 'full', req.qname, 'args')
          const unlogged = validateFields(cmd.unloggedArgs, b.unloggedArgs, 'full', req.qname, 'unloggedArgs')
          const cuds = parseCuds(b.cuds, req.qname)
          stage = 'cuds'
          const newIDs = cuds.length === 0 ? {} : await applyCuds(tx, cuds)
          stage = 'execute'
          let ret = cmd.qname === SYS_GRANT_ROLE || cmd.qname === SYS_REVOKE_ROLE
            ? this.changeRoles(app, cmd.qname, args, tx, batch)
            : this.extensions.command(app, cmd, { ...args, ...unlogged }, tx)
          if (isPromiseLike(ret)) ret = await ret
          const result = ret === undefined || ret === null ? undefined : ret
          if (result !== undefined && (typeof result !== 'object' || Array.isArray(result))) throw new VvmError('INTERNAL', `command ${req.qname} returned a ${typeof result}, not an object`)
          outcome = { wlogOffset: 0, newIDs, result }
          eventQName = req.qname
          break
        }
        case Op.JOB: {
          const job = app.jobs.get(req.qname)
          if (job === undefined) throw new NotFoundError(`job ${req.qname} is not defined in app ${app.qname}`, req.qname)
          stage = 'execute'
          const ret = this.extensions.command(app, jobAsCommand(job), {}, tx)
          if (isPromiseLike(ret)) await ret
          outcome = { wlogOffset: 0, newIDs: {}, result: undefined }
          eventQName = req.qname
          break
        }
        case Op.DOC_CREATE: {
          stage = 'validate'
          const id = tx.create(req.qname, objectBody(body, req.qname) as Record<string, unknown>)
          outcome = { wlogOffset: 0, newIDs: { '1': id }, result: undefined }
          eventQName = 'sys.CUD'
          status = 201
          break
        }
        case Op.DOC_UPDATE:
        case Op.DOC_DEACTIVATE: {
          stage = 'validate'
          const rec = await tx.storedRecord(req.id)
          if (rec === undefined || rec.q !== req.qname) throw new NotFoundError(`${req.qname} ${req.id} not found in workspace ${req.wsid}`, req.qname)
          if (!rec.a) throw new VvmError('GONE', `${req.qname} ${req.id} is deactivated`, { qname: req.qname })
          if (req.op === Op.DOC_UPDATE) await tx.update(req.id, objectBody(body, req.qname) as Record<string, unknown>)
          else await tx.setActive(req.id, false)
          outcome = { wlogOffset: 0, newIDs: {}, result: undefined }
          eventQName = 'sys.CUD'
          break
        }
        default:
          throw new BadRequestError(`operation ${req.op} is not a write`)
      }
      stage = 'build event'
      const event = this.buildEvent(tx, eventQName, args)
      outcome.wlogOffset = event.wo
      stage = 'validate records'
      const refs = refsOf(tx)
      if (refs.length > 0) await validateRefs(tx, refs)
      stage = 'sync projectors'
      const projected = this.runSyncProjectors(app, tx, event, batch.nextOffset)
      if (projected !== undefined) await projected
      stage = 'stage'
      tx.staged.events.push({ partition: this.part.partition, plogOffset: batch.nextOffset, event })
      tx.staged.wsHeads.set(req.wsid, tx.wsHeadStaged)
      if (req.idempotencyKey !== null) {
        tx.staged.idempotent.set(idempotentKey(req.wsid, req.idempotencyKey), { wsid: req.wsid, key: req.idempotencyKey, reply: { status, outcome } })
      }
      batch.mergeFrom(tx.staged)
      return { reqId: req.reqId, status, body: renderCommand(req.format, outcome), retryAfterS: 0 }
    } catch (err) {
      const e = toVvmError(err)
      if (e.code === 'INTERNAL' && !(err instanceof VvmError)) this.opts.onInternalError(stage, err)
      return errorReply(req, e)
    }
  }

  /**
   * The authorize stage: the caller's roles in the workspace (its token's claims, the grants
   * stored here, `public`) must grant the request, its CUDs included; else 403 before any
   * extension runs or anything is staged. An owner may do everything.
   */
  private async authorize(app: AppDef, req: EngineRequest, body: unknown, tx: CommandTx, batch: Staging): Promise<Principal> {
    if (req.op === Op.JOB) return SYSTEM_OWNER
    const given = req.principal ?? ANONYMOUS
    const p = effectiveRoles(given, needsStoredGrants(given) ? await this.storedRoles(req.wsid, given.login, batch) : [])
    if (p.roles.includes(ROLE_OWNER)) return p
    switch (req.op) {
      case Op.COMMAND: {
        authorize(app, p, 'execute', req.qname, req.wsid)
        for (const c of parseCuds(objectBody(body, req.qname).cuds, req.qname)) {
          if (c.table !== undefined) {
            authorize(app, p, 'insert', c.table, req.wsid)
            continue
          }
          // An update names a record; its table is the stored one (absent: 404 at the cuds stage).
          const rec = await tx.storedRecord(c.id!)
          if (rec !== undefined) authorize(app, p, 'update', rec.q, req.wsid, Object.keys(c.fields))
        }
        break
      }
      case Op.DOC_UPDATE:
        authorize(app, p, 'update', req.qname, req.wsid, Object.keys(objectBody(body, req.qname)))
        break
      case Op.DOC_DEACTIVATE:
        authorize(app, p, 'update', req.qname, req.wsid, [FIELD_IS_ACTIVE])
        break
      default: {
        const op = grantOpOf(req.op)
        if (op === undefined) throw new BadRequestError(`operation ${req.op} is not a write`)
        authorize(app, p, op, req.qname, req.wsid)
      }
    }
    return p
  }

  /** Stored grants as this batch leaves them: staged by an earlier command, else committed. */
  private async storedRoles(wsid: number, login: string, batch: Staging): Promise<readonly string[]> {
    return batch.grantOf(grantKey(wsid, login))?.roles ?? this.part.storedRoles(wsid, login)
  }

  /** sys.GrantRole / sys.RevokeRole: the workspace's stored roles of a login, staged with the event. */
  private async changeRoles(app: AppDef, qname: string, args: Row, tx: CommandTx, batch: Staging): Promise<Row> {
    const login = args.login as string
    const role = args.role as string
    if (!LOGIN_RE.test(login)) throw new ValidationError(`args of ${qname}: login '${login}' is invalid: expected 3..64 characters of a-z 0-9 . _ -`, qname)
    if (!app.roles.has(role) || role === ROLE_PUBLIC) {
      throw new ValidationError(`args of ${qname}: '${role}' is not a role that can be granted in app ${app.qname} (roles: ${[...app.roles].filter((r) => r !== ROLE_PUBLIC).join(', ')})`, qname)
    }
    const key = grantKey(tx.wsid, login)
    const current = tx.staged.grants.get(key)?.roles ?? (await this.storedRoles(tx.wsid, login, batch))
    const roles = qname === SYS_GRANT_ROLE ? [...new Set([...current, role])] : current.filter((r) => r !== role)
    tx.staged.grants.set(key, { wsid: tx.wsid, login, roles })
    return { login, roles }
  }

  private buildEvent(tx: CommandTx, qname: string, args: Record<string, unknown>): StoredEvent {
    const head = tx.wsHeadStaged
    head.wo += 1
    const c: StoredCud[] = []
    for (const r of tx.staged.records.values()) c.push({ id: r.id, t: r.rec.q, n: r.isNew, f: r.rec.f })
    return { q: qname, ws: tx.wsid, wo: head.wo, t: Date.now(), a: args, c }
  }

  /**
   * Runs the sync projectors the event triggers, in order; undefined when all of them finished
   * synchronously (no await for the common projector that only puts view rows), else the
   * promise of the rest.
   */
  private runSyncProjectors(app: AppDef, tx: CommandTx, event: StoredEvent, plogOffset: number): Promise<void> | undefined {
    const triggered = triggeredProjectors(app, event)
    if (triggered.length === 0) return undefined
    const pe: ProjectorEvent = {
      qname: event.q, wsid: event.ws, plogOffset, wlogOffset: event.wo, registeredAtMs: event.t, args: event.a,
      cuds: event.c.map((x) => ({ id: x.id, table: x.t, isNew: x.n, fields: x.f })),
    }
    for (let i = 0; i < triggered.length; i++) {
      const running = this.extensions.projector(app, triggered[i]!, pe, tx)
      if (isPromiseLike(running)) return this.finishProjectors(app, tx, pe, triggered, i + 1, running)
    }
    return undefined
  }

  private async finishProjectors(
    app: AppDef, tx: CommandTx, pe: ProjectorEvent, triggered: readonly ResolvedProjector[], next: number, running: Promise<void>,
  ): Promise<void> {
    await running
    for (let i = next; i < triggered.length; i++) {
      const r = this.extensions.projector(app, triggered[i]!, pe, tx)
      if (isPromiseLike(r)) await r
    }
  }

  private async findIdempotent(wsid: number, key: string, batch: Staging): Promise<IdempotentReply | undefined> {
    const staged = batch.idempotentOf(idempotentKey(wsid, key))
    if (staged !== undefined) return staged
    const k = idempotencyKey(wsid, key)
    const bytes = await this.storage.get(k.pk, k.cc)
    return bytes === undefined ? undefined : decodeStored<IdempotentReply>(bytes)
  }
}

const NO_PROJECTORS: readonly ResolvedProjector[] = []

/** The sync projectors of the event's command, then those of its CUDs' tables, each once. */
function triggeredProjectors(app: AppDef, event: StoredEvent): readonly ResolvedProjector[] {
  const onEvent = app.syncProjectorsOn.get(event.q) ?? NO_PROJECTORS
  let out: ResolvedProjector[] | undefined
  for (const cud of event.c) {
    for (const p of app.syncProjectorsOn.get(cud.t) ?? NO_PROJECTORS) {
      if (!(out ?? onEvent).includes(p)) (out ??= [...onEvent]).push(p)
    }
  }
  return out ?? onEvent
}

const jobCommands = new WeakMap<ResolvedJob, ResolvedCommand>()

/** A job runs as a command without arguments: same pipeline, same extension runner. */
function jobAsCommand(job: ResolvedJob): ResolvedCommand {
  let cmd = jobCommands.get(job)
  if (cmd === undefined) {
    const exec = job.exec
    cmd = {
      qname: job.qname, args: new Map(), unloggedArgs: new Map(), rate: undefined,
      exec: isWasmRef(exec) ? exec : (_args, state) => exec(state),
    }
    jobCommands.set(job, cmd)
  }
  return cmd
}

export function errorReply(req: EngineRequest, e: VvmError): EngineReply {
  return { reqId: req.reqId, status: e.status, body: renderError(req.format, e), retryAfterS: e.retryAfterS ?? 0 }
}

function objectBody(body: unknown, qname: string): Record<string, unknown> {
  if (body === undefined || body === null) return {}
  if (typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError(`the body of ${qname} must be a JSON object`, qname)
  return body as Record<string, unknown>
}

/** CUDs in the v1 shape: create `{fields: {"sys.ID": raw, "sys.QName": t, ...}}`, update `{"sys.ID": id, fields}`. */
function parseCuds(cuds: unknown, qname: string): Cud[] {
  if (cuds === undefined || cuds === null) return []
  if (!Array.isArray(cuds)) throw new BadRequestError(`cuds of ${qname} must be an array`, qname)
  return cuds.map((c, i): Cud => {
    if (typeof c !== 'object' || c === null || typeof c.fields !== 'object' || c.fields === null || Array.isArray(c.fields)) {
      throw new BadRequestError(`cuds[${i}] of ${qname} must be {"fields": {...}} or {"sys.ID": id, "fields": {...}}`, qname)
    }
    const { 'sys.ID': rawId, 'sys.QName': table, ...fields } = c.fields as Record<string, unknown>
    const id = c['sys.ID'] as unknown
    if (id !== undefined) {
      if (!Number.isSafeInteger(id) || (id as number) <= RAW_ID_MAX) throw new BadRequestError(`cuds[${i}]: sys.ID ${String(id)} is not a record id`, qname)
      return { rawId: undefined, id: id as number, table: undefined, fields }
    }
    if (!Number.isInteger(rawId) || (rawId as number) < 1 || (rawId as number) > RAW_ID_MAX) {
      throw new BadRequestError(`cuds[${i}]: a new record needs fields."sys.ID", a raw id 1..${RAW_ID_MAX}`, qname)
    }
    if (typeof table !== 'string') throw new BadRequestError(`cuds[${i}]: a new record needs fields."sys.QName"`, qname)
    return { rawId: rawId as number, id: undefined, table, fields }
  })
}

async function applyCuds(tx: CommandTx, cuds: readonly Cud[]): Promise<Record<string, number>> {
  const newIDs: Record<string, number> = {}
  const rawToId = new Map<number, number>()
  // Refs to raw ids of records created in the same request resolve to their new ids.
  const resolveRefs = (table: string, fields: Record<string, unknown>): Record<string, unknown> => {
    const t = tx.table(table)
    const out = { ...fields }
    for (const f of t.fields.values()) {
      const v = out[f.name]
      if (f.type === 'ref' && typeof v === 'number' && rawToId.has(v)) out[f.name] = rawToId.get(v)
    }
    return out
  }
  for (const c of cuds) {
    if (c.rawId !== undefined) {
      if (rawToId.has(c.rawId)) throw new BadRequestError(`raw id ${c.rawId} is used twice`)
      const id = tx.create(c.table!, resolveRefs(c.table!, c.fields))
      rawToId.set(c.rawId, id)
      newIDs[String(c.rawId)] = id
    } else {
      const rec = await tx.storedRecord(c.id!)
      if (rec === undefined) throw new NotFoundError(`record ${c.id} not found in workspace ${tx.wsid}`)
      const { 'sys.IsActive': active, ...fields } = c.fields
      if (Object.keys(fields).length > 0) await tx.update(c.id!, resolveRefs(rec.q, fields))
      if (typeof active === 'boolean') await tx.setActive(c.id!, active)
    }
  }
  return newIDs
}

/** The ref fields with a value in the staged records: what validateRefs checks (often nothing). */
function refsOf(tx: CommandTx): readonly Ref[] {
  let out: Ref[] | undefined
  for (const r of tx.staged.records.values()) {
    for (const f of tx.table(r.rec.q).fields.values()) {
      const v = r.rec.f[f.name]
      if (f.type === 'ref' && v !== undefined && v !== null) (out ??= []).push({ table: r.rec.q, field: f.name, id: v })
    }
  }
  return out ?? NO_REFS
}

interface Ref { table: string; field: string; id: unknown }
const NO_REFS: readonly Ref[] = []

/** Every ref field of a staged record must name an existing record of the workspace. */
async function validateRefs(tx: CommandTx, refs: readonly Ref[]): Promise<void> {
  for (const { table, field, id } of refs) {
    if ((await tx.storedRecord(id as number)) === undefined) {
      throw new VvmError('VALIDATION', `${table}.${field} refers to record ${String(id)}, which does not exist`, { qname: table })
    }
  }
}
