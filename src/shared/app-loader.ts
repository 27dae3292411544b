// Loads application modules. An app module's default export is the result of `defineApp`.
// Every thread (main, partition workers, query workers) imports the same module by URL, so
// builtin extensions are plain functions in each thread.

import type { AppDef } from './appdef/types.js'

export async function loadApp(moduleUrl: string): Promise<AppDef> {
  let mod: { default?: unknown }
  try {
    mod = (await import(moduleUrl)) as { default?: unknown }
  } catch (err) {
    throw new Error(`cannot load app module ${moduleUrl}: ${(err as Error).message}`, { cause: err })
  }
  const app = mod.default as AppDef | undefined
  if (typeof app !== 'object' || app === null || typeof app.qname !== 'string' || !(app.commands instanceof Map)) {
    throw new Error(`app module ${moduleUrl} must export default defineApp(...)`)
  }
  return app
}

export async function loadApps(moduleUrls: readonly string[]): Promise<Map<string, AppDef>> {
  const apps = new Map<string, AppDef>()
  for (const url of moduleUrls) {
    const app = await loadApp(url)
    if (apps.has(app.qname)) throw new Error(`app ${app.qname} is deployed twice (${url})`)
    apps.set(app.qname, app)
  }
  return apps
}
