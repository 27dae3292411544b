// Range reads of view rows straight from storage (query processors, and command processors
// before they merge their staged rows).

import type { IAppStorage, StorageRow } from '../shared/storage/types.js'

export function readViewRange(
  storage: IAppStorage, pk: Uint8Array, ccFrom: Uint8Array | undefined, ccTo: Uint8Array | undefined, limit: number, reverse: boolean,
): AsyncIterable<StorageRow> {
  return storage.read(pk, { ccFrom, ccTo, limit, reverse })
}
