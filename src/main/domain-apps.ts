// Domain → app binding (`--domain-app bank.example=demo/bank`): on a bound host the v2
// workspace routes may leave out owner/app, `/api/v2/workspaces/{wsid}/…` meaning
// `/api/v2/apps/{owner}/{app}/workspaces/{wsid}/…` (docs/operations.md, "Domain → app").
// The host is the request's Host header without its port, compared case-insensitively.

const HOST_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/
const APP_RE = /^[^/\s]+\/[^/\s]+$/

/** A DNS name as vvm accepts it in `--domain` and `--domain-app`: lower-case labels, no wildcard. */
export function isDomainName(name: string): boolean {
  return name.length <= 253 && HOST_RE.test(name)
}

/** `host=owner/app` entries into a map; a bad entry gives a message naming it (config.ts). */
export function parseDomainApps(entries: readonly string[]): Map<string, string> | string {
  const out = new Map<string, string>()
  for (const entry of entries) {
    const eq = entry.indexOf('=')
    const host = entry.slice(0, eq).trim().toLowerCase()
    const app = entry.slice(eq + 1).trim()
    if (eq <= 0 || !isDomainName(host) || !APP_RE.test(app)) return `domain app '${entry}' is invalid: expected host=owner/app, e.g. bank.example=demo/bank`
    if (out.has(host)) return `domain app '${entry}': host ${host} is bound twice`
    out.set(host, app)
  }
  return out
}

/** The map of entries validated by the config (tls/config.ts); a bad one here is a bug. */
export function domainAppMap(entries: readonly string[]): Map<string, string> {
  const map = parseDomainApps(entries)
  if (typeof map === 'string') throw new Error(map)
  return map
}

/** The host of a Host header: lower case, without the port (`[::1]:8443` keeps its brackets). */
export function hostOf(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase()
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    return end < 0 ? h : h.slice(0, end + 1)
  }
  const colon = h.indexOf(':')
  return colon < 0 ? h : h.slice(0, colon)
}

/** The app bound to the request's host, if any. */
export function appOfHost(domainApps: ReadonlyMap<string, string>, hostHeader: string): string | undefined {
  return domainApps.size === 0 ? undefined : domainApps.get(hostOf(hostHeader))
}
