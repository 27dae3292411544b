// Shared by the demo/bank scenarios: opening accounts in every workspace before the load.

import { field, statusError, type SetupContext } from '../scenario.js'

/** Opens `perWorkspace` accounts in each workspace with `balance`; returns their ids, workspace-major. */
export async function openAccounts(ctx: SetupContext, perWorkspace: number, balance: number): Promise<number[]> {
  const ids = new Array<number>(ctx.workspaces * perWorkspace)
  let done = 0
  await ctx.forEach(ctx.workspaces, async (i) => {
    for (let k = 0; k < perWorkspace; k++) {
      const r = await ctx.send({ kind: 'doc-create', wsid: ctx.wsid(i), qname: 'bank.Account', fields: { name: `bench-${i}-${k}`, balance } })
      const id = field(r.body, 'newIDs', '1')
      if (r.status !== 201 || typeof id !== 'number') throw new Error(`setup: opening an account in workspace ${ctx.wsid(i)} failed: ${statusError(r)} ${JSON.stringify(r.body)}`)
      ids[i * perWorkspace + k] = id
    }
    ctx.progress(++done, ctx.workspaces)
  })
  return ids
}

export const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
