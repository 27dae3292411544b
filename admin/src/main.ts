// The admin page: one EventSource on /admin/stream (authorized by the session cookie the
// server set when the page was opened with ?token=), a snapshot a second, drawn into panels and
// charts. When the stream is refused (401, 503), a probe tells which, and the page says so.

import type { AdminSnapshot } from '../../src/main/admin-wire.js'
import { TimeChart } from './charts.js'
import { byId } from './dom.js'
import { renderSnapshot } from './render.js'
import './style.css'

const STREAM_URL = '/admin/stream'
/** No snapshot for this long: the figures on screen are marked stale. */
const STALE_MS = 5000
const PROBE_RETRY_MS = 5000

const C = { blue: '#4c9aff', green: '#36b37e', amber: '#ffab00', red: '#ff5630', violet: '#a77bff' }
const charts = {
  // Requests first: under a command load both lines coincide, and the one drawn last shows.
  throughput: new TimeChart(byId('chart-throughput'), [{ label: 'requests/s', color: C.green, digits: 1 }, { label: 'commands/s', color: C.blue, digits: 1 }]),
  latency: new TimeChart(byId('chart-latency'), [{ label: 'p99', color: C.red, digits: 2 }, { label: 'p50', color: C.amber, digits: 2 }, { label: 'commit', color: C.violet, digits: 2 }]),
  batch: new TimeChart(byId('chart-batch'), [{ label: 'cmd/batch', color: C.blue, digits: 1 }]),
  backlog: new TimeChart(byId('chart-backlog'), [{ label: 'in flight', color: C.blue }, { label: 'actualizer lag', color: C.amber }, { label: 'query queue', color: C.green }]),
}

const conn = byId('conn')
let lastMs = 0

function setConn(state: 'live' | 'stale' | 'reconnecting' | 'refused' | 'connecting', text: string): void {
  conn.dataset.state = state
  conn.textContent = text
  document.body.dataset.conn = state
}

function onSnapshot(s: AdminSnapshot): void {
  lastMs = Date.now()
  setConn('live', `live · ${new Date(s.timeMs).toLocaleTimeString()}`)
  renderSnapshot(s)
  const t = s.totals
  const x = s.timeMs / 1000
  charts.throughput.push(x, [t.requestsPerS, t.commandsPerS])
  charts.latency.push(x, [t.latencyMsP99, t.latencyMsP50, t.commitMsMean])
  charts.batch.push(x, [t.batchSizeMean])
  charts.backlog.push(x, [t.inflight, t.actualizerLagEvents, s.queries?.queueSize ?? null])
}

function connect(): void {
  const es = new EventSource(STREAM_URL)
  es.onmessage = (ev: MessageEvent<string>) => onSnapshot(JSON.parse(ev.data) as AdminSnapshot)
  es.onerror = () => {
    // CONNECTING: the browser retries by itself (server restart, network). CLOSED: the server
    // answered with an error status, which EventSource does not expose; a probe finds it.
    if (es.readyState === EventSource.CONNECTING) setConn('reconnecting', 'reconnecting…')
    else void probe()
  }
}

async function probe(): Promise<void> {
  const abort = new AbortController()
  let status = 0
  try {
    const r = await fetch(STREAM_URL, { signal: abort.signal, cache: 'no-store' })
    status = r.status
  } catch {
    status = 0 // unreachable: retried below like a 503
  } finally {
    abort.abort()
  }
  if (status === 401) {
    setConn('refused', 'refused: open /admin/?token=… again')
    return
  }
  setConn('reconnecting', status === 0 ? 'server unreachable, retrying…' : `stream refused (${status}), retrying…`)
  setTimeout(connect, PROBE_RETRY_MS)
}

setInterval(() => {
  if (lastMs > 0 && Date.now() - lastMs > STALE_MS && conn.dataset.state === 'live') setConn('stale', 'stale: no data for 5 s')
}, 1000)

connect()
