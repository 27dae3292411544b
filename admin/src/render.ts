// Draws one snapshot into the page's panels. Each panel is rebuilt whole: they are small, and
// a rebuild cannot leave a stale row behind.

import type { AdminSnapshot, LeadershipState } from '../../src/main/admin-wire.js'
import { byId, bytes, duration, empty, h, ms, num, table } from './dom.js'

const LEADERSHIP: Record<LeadershipState, { text: string; tone: string }> = {
  held: { text: 'leader', tone: 'ok' },
  lost: { text: 'leadership lost', tone: 'bad' },
  cluster: { text: 'cluster: partitions leased', tone: 'info' },
  unmanaged: { text: 'leadership: not managed', tone: 'muted' },
}

export function renderSnapshot(s: AdminSnapshot): void {
  renderHeader(s)
  renderTiles(s)
  renderPartitions(s)
  renderApps(s)
  renderActualizers(s)
  renderErrors(s)
  renderQueries(s)
  renderEngines(s)
}

const pill = (text: string, tone: string, title?: string): HTMLElement => h('span', { class: `pill ${tone}`, title }, text)

function renderHeader(s: AdminSnapshot): void {
  byId('node').replaceChildren(h('strong', {}, s.node.id), h('span', { class: 'sub' }, ` pid ${s.node.pid} · up ${duration((s.timeMs - s.node.startedAtMs) / 1000)}`))
  const l = LEADERSHIP[s.node.leadership]
  byId('pills').replaceChildren(
    s.node.serving ? pill('serving', 'ok') : pill('not serving', 'bad', 'requests get 503'),
    pill(l.text, l.tone),
    pill(s.node.storage, 'muted', 'storage'),
  )
  const problem = byId('problem')
  problem.hidden = s.node.problem === null
  problem.replaceChildren(...(s.node.problem === null ? [] : [h('strong', {}, 'Problem: '), s.node.problem]))
}

function tile(label: string, value: string, unit: string, id: string, note?: string, tone?: string): HTMLElement {
  return h('div', { class: `tile ${tone ?? ''}`, 'data-figure': id },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, value, h('span', { class: 'unit' }, unit)),
    note === undefined ? null : h('div', { class: 'note' }, note))
}

function renderTiles(s: AdminSnapshot): void {
  const t = s.totals
  const fill = t.ringBytesCapacity > 0 ? (t.ringBytesUsed / t.ringBytesCapacity) * 100 : 0
  const errorsMin = s.errors.reduce((a, e) => a + e.lastMinute, 0)
  const committed = s.partitions.reduce((a, p) => a + p.committed, 0)
  byId('tiles').replaceChildren(
    tile('Commands', num(t.commandsPerS, 1), '/s', 'commandsPerS', `${num(committed)} committed`),
    tile('Requests', num(t.requestsPerS, 1), '/s', 'requestsPerS'),
    tile('Latency p99', ms(t.latencyMsP99), 'ms', 'latencyMsP99', `p50 ${ms(t.latencyMsP50)} ms`),
    tile('Batch size', num(t.batchSizeMean, 1), 'cmd', 'batchSizeMean', `commit ${ms(t.commitMsMean)} ms`),
    tile('In flight', num(t.inflight), 'req', 'inflight', `ring ${bytes(t.ringBytesUsed)} · ${fill.toFixed(fill > 0 && fill < 1 ? 2 : 0)}%`, fill > 50 ? 'warn' : undefined),
    tile('Actualizer lag', num(t.actualizerLagEvents), 'ev', 'actualizerLagEvents', undefined, t.actualizerLagEvents > 1000 ? 'warn' : undefined),
    tile('Query queue', s.queries === null ? '–' : num(s.queries.queueSize), '', 'queryQueue', s.queries === null ? 'no pool' : `${num(s.queries.completedPerS, 1)} done/s`),
    tile('Errors', num(errorsMin), '/min', 'errorsPerMin', `${num(s.errors.reduce((a, e) => a + e.total, 0))} total`, errorsMin > 0 ? 'warn' : undefined),
  )
}

function ringBar(used: number, capacity: number): HTMLElement {
  const pct = capacity > 0 ? Math.min(100, (used / capacity) * 100) : 0
  return h('span', { class: 'ring', title: `${bytes(used)} of ${bytes(capacity)}` },
    h('span', { class: 'ring-fill', style: `width:${pct.toFixed(1)}%` }), h('span', { class: 'ring-text' }, bytes(used)))
}

function renderPartitions(s: AdminSnapshot): void {
  const ringCap = s.totals.ringBytesCapacity / Math.max(1, s.partitions.filter((p) => p.here).length)
  const rows = s.partitions.map((p) => [
    p.app, p.partition,
    h('span', { class: p.here ? 'owner here' : 'owner' }, p.owner ?? 'unowned'),
    p.here ? num(p.inflight) : '–', p.here ? ringBar(p.ringBytesUsed, ringCap) : '–',
    p.here ? num(p.commandsPerS, 1) : '–', p.here ? p.lastBatchSize : '–', p.here ? num(p.committed) : '–', p.here ? p.plogOffset : '–',
  ])
  byId('partitions').replaceChildren(rows.length === 0 ? empty('no partitions') :
    table(['app', 'p', 'owner', 'in flight', 'ring', 'cmd/s', 'last batch', 'committed', 'PLog offset'], rows, [1, 3, 5, 6, 7, 8], [4, 6, 7, 8]))
}

function renderApps(s: AdminSnapshot): void {
  byId('apps').replaceChildren(s.apps.length === 0 ? empty('no apps deployed') :
    table(['app', 'version', 'partitions', 'async projectors'], s.apps.map((a) => [a.qname, a.version, a.partitions, a.asyncProjectors.join(', ') || '–']), [2], [3]))
}

function renderActualizers(s: AdminSnapshot): void {
  byId('actualizers').replaceChildren(s.actualizers.length === 0 ? empty('no async projectors') :
    table(['app', 'p', 'projector', 'lag'], s.actualizers.map((a) => [a.app, a.partition, a.projector, num(a.lagEvents)]), [1, 3]))
}

function renderErrors(s: AdminSnapshot): void {
  byId('errors').replaceChildren(s.errors.length === 0 ? empty('no error replies since start') :
    table(['code', 'last min', 'total'], s.errors.map((e) => [h('code', {}, e.code), num(e.lastMinute), num(e.total)]), [1, 2]))
}

function renderQueries(s: AdminSnapshot): void {
  const q = s.queries
  byId('queries').replaceChildren(q === null ? empty('no query pool: with this storage, queries run in the partition workers') :
    h('dl', { class: 'facts' },
      h('dt', {}, 'threads'), h('dd', {}, q.threads),
      h('dt', {}, 'queue'), h('dd', {}, `${num(q.queueSize)} / ${num(q.queueMax)}`),
      h('dt', {}, 'completed'), h('dd', {}, `${num(q.completedPerS, 1)} /s`),
      h('dt', {}, 'run time p99'), h('dd', {}, `${ms(q.runTimeMsP99)} ms`)))
}

function renderEngines(s: AdminSnapshot): void {
  const e = s.enginePools
  byId('engines').replaceChildren(e === null ? h('p', { class: 'placeholder' }, 'Not reported by this server.') :
    e.length === 0 ? empty('no engine pools') :
      table(['app', 'partition', 'engines', 'borrows', 'replaced'], e.map((p) => [p.app, p.partition ?? 'all', p.instances, num(p.borrows), p.replaced]), [1, 2, 3, 4]))
}
