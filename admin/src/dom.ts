// Small DOM and number helpers. Text from the server goes through textContent only: an app
// name or an error message can never become markup.

type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | undefined>

export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue
    if (k === 'class') el.className = String(v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    el.append(typeof c === 'object' ? c : String(c))
  }
  return el
}

export function byId(id: string): HTMLElement {
  const el = document.getElementById(id)
  if (el === null) throw new Error(`the page has no #${id}`)
  return el
}

/** A table with a header row; `numeric` columns are right-aligned, `wideOnly` ones hidden on a phone. */
export function table(head: readonly string[], rows: readonly Child[][], numeric: readonly number[] = [], wideOnly: readonly number[] = []): HTMLElement {
  const cls = (i: number): string | undefined => [numeric.includes(i) ? 'num' : '', wideOnly.includes(i) ? 'wide-only' : ''].join(' ').trim() || undefined
  return h('table', {},
    h('thead', {}, h('tr', {}, ...head.map((t, i) => h('th', { class: cls(i) }, t)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c, i) => h('td', { class: cls(i) }, c))))))
}

export const empty = (text: string): HTMLElement => h('p', { class: 'empty' }, text)

/** 1234 → "1.23k"; null → "–". */
export function num(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–'
  const a = Math.abs(v)
  if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G'
  if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M'
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k'
  return v.toFixed(a > 0 && a < 10 ? Math.max(digits, 1) : digits).replace(/\.0+$/, '')
}

export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return '–'
  return v < 1 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)
}

export function bytes(v: number): string {
  if (v >= 1 << 30) return (v / (1 << 30)).toFixed(1) + ' GiB'
  if (v >= 1 << 20) return (v / (1 << 20)).toFixed(1) + ' MiB'
  if (v >= 1 << 10) return (v / (1 << 10)).toFixed(1) + ' KiB'
  return `${v} B`
}

export function duration(s: number): string {
  if (s < 60) return `${Math.floor(s)}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`
}
