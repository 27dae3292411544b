// The file the piscina pool loads in each query thread (CommonJS on purpose). piscina
// `require`s its filename before it tries `import()`, and on Node 20 requiring an ES module
// (require(esm)) is a young path that aborted the whole process once in CI here:
// "FATAL ERROR: v8::Module::IsGraphAsync must be used on an instantiated module", from
// piscina's worker.js `require`. This entry is CommonJS, so `require` loads it as such, and it
// imports the ES module that does the work (pool-worker.js) with `import()`, started at once so
// that the thread opens its storage and apps before its first query, as before.

import type { QueryTask } from './pool-worker.js'

const loaded: Promise<QueryTask> = import('./pool-worker.js').then((m) => m.default)
// A failed load fails each task (below), not the thread with an unhandled rejection.
loaded.catch(() => {})

module.exports = async function runQueries(task: Uint8Array): Promise<Uint8Array> {
  return (await loaded)(task)
}
