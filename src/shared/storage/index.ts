// Storage: the `IStorageProvider` interface (types.ts), its backends (mem.ts, level.ts,
// cassandra.ts), the contract every backend enforces (contract.ts), key encodings (keys.ts)
// and the TCK all backends pass (tck.ts). Runs on main and worker threads. Nothing above this
// folder imports a backend directly: it calls `openStorageProvider` with a config.

import { StorageError, VvmError } from '../errors.js'
import { LevelStorageProvider } from './level.js'
import { MemStorageProvider } from './mem.js'
import type { IStorageProvider, StorageConfig } from './types.js'

export type * from './types.js'
export { createCasLockBuffer } from './cas-lock.js'
export { compareBytes, concatBytes, decodeKeyTuple, encodeKeyTuple, prefixEnd, u16be, u64be } from './keys.js'
export type { DecodedKeyPart, KeyPart, KeyPartType } from './keys.js'

/** Per-process resources a backend needs beyond its config; shared memory cannot be config. */
export interface StorageOpenOptions {
  /**
   * level: lock memory from `createCasLockBuffer()`, created once on the main thread and
   * passed to every worker, so compare-and-set is atomic across all threads.
   */
  readonly levelCasLock?: SharedArrayBuffer
}

type CassandraOpen = (config: StorageConfig) => Promise<IStorageProvider>

// A variable specifier: tsc does not resolve it, so this folder compiles whether or not the
// Cassandra backend (and its driver) is present, and processes that never use it never load it.
const CASSANDRA_MODULE = './cassandra.js'

export async function openStorageProvider(config: StorageConfig, options: StorageOpenOptions = {}): Promise<IStorageProvider> {
  const kind = config.kind
  switch (kind) {
    case 'mem':
      return MemStorageProvider.open()
    case 'level':
      return LevelStorageProvider.open(config, options.levelCasLock === undefined ? {} : { casLock: options.levelCasLock })
    case 'cassandra':
      return (await loadCassandraOpen())(config)
    default: {
      const never: never = kind
      throw new VvmError('VALIDATION', `storage: kind ${JSON.stringify(never)} is not one of 'mem', 'level', 'cassandra'`)
    }
  }
}

async function loadCassandraOpen(): Promise<CassandraOpen> {
  let mod: unknown
  try {
    mod = await import(CASSANDRA_MODULE)
  } catch (err) {
    throw new StorageError(`storage: the cassandra backend cannot be loaded: ${err instanceof Error ? err.message : String(err)}`, err)
  }
  const provider = (mod as { CassandraStorageProvider?: { open?: unknown } }).CassandraStorageProvider
  if (provider === undefined || typeof provider.open !== 'function') {
    throw new StorageError('storage: cassandra.js does not export CassandraStorageProvider with a static open(config)')
  }
  const open = provider.open as CassandraOpen
  return (config) => open.call(provider, config)
}
