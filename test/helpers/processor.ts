// A command processor of one partition over in-memory storage, for tests of the command path
// without workers, rings or sockets: `one` runs a request as a batch of its own.

import type { AppDef } from '../../src/shared/appdef/types.js'
import type { EngineReply, EngineRequest } from '../../src/shared/engine-messages.js'
import { openStorageProvider } from '../../src/shared/storage/index.js'
import type { IAppStorage } from '../../src/shared/storage/types.js'
import { committerFor } from '../../src/workers/command/commit.js'
import { PartitionState } from '../../src/workers/command/partition-state.js'
import { CommandProcessor, type BatchStats } from '../../src/workers/command/processor.js'
import { BuiltinRunner } from '../../src/workers/extensions.js'

export interface MemProcessor {
  storage: IAppStorage
  part: PartitionState
  processor: CommandProcessor
  batch(reqs: EngineRequest[]): Promise<EngineReply[]>
  one(req: EngineRequest): Promise<EngineReply>
}

/** Runs `use` with a fresh processor of `app` (partition 0, mem storage); closes the storage after. */
export async function withMemProcessor(app: AppDef, use: (p: MemProcessor) => Promise<void>): Promise<void> {
  const provider = await openStorageProvider({ kind: 'mem' })
  try {
    const storage = await provider.appStorage(app.qname)
    const part = new PartitionState(storage, 0, { wsHeadsCachedMax: 100, recordsCachedMax: 100 })
    const processor = new CommandProcessor(app, part, storage, {
      idempotencyTtlSeconds: 60, committer: committerFor(storage, 0, true), onInternalError: (_s, e) => { throw e },
    }, new BuiltinRunner())
    const stats: BatchStats = { commands: 0, committed: 0, commitMs: 0, executeMs: 0 }
    const batch = (reqs: EngineRequest[]) => processor.processBatch(reqs, stats)
    await use({ storage, part, processor, batch, one: async (req) => (await batch([req]))[0]! })
  } finally {
    await provider.close()
  }
}
