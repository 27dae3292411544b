// Tests that need a Cassandra server: where it is, and whether it answers. Without one such a
// test fails (CI always has one); VVM_SKIP_CASSANDRA=1 skips it with a loud warning instead.

import { openStorageProvider } from '../../src/shared/storage/index.js'

export const CASSANDRA_HOSTS = process.env['VVM_CASSANDRA_HOSTS'] ?? '127.0.0.1:9042'

/** Undefined when a Cassandra server answers at CASSANDRA_HOSTS, else why not. */
export async function cassandraUnreachable(): Promise<string | undefined> {
  try {
    const p = await openStorageProvider({ kind: 'cassandra', cassandraHosts: CASSANDRA_HOSTS.split(','), cassandraKeyspacePrefix: 'vvm_probe_' })
    await p.close()
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

/** The skip option for `it` when the server is missing and skipping was asked for (warned). */
export function cassandraSkip(unreachable: string | undefined, what: string): string | false {
  if (unreachable === undefined || process.env['VVM_SKIP_CASSANDRA'] !== '1') return false
  console.warn(`!!! WARNING: VVM_SKIP_CASSANDRA=1 and no Cassandra at ${CASSANDRA_HOSTS}: ${what} SKIPPED`)
  return 'VVM_SKIP_CASSANDRA=1'
}
