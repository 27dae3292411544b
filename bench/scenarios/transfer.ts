// `transfer`: an atomic two-record command. Two accounts per workspace, each opened with a
// balance far above what a run can move; each operation moves 1 between them in a random
// direction. Right: 200 with both new balances integers ≥ 0. `transferScenario` also makes
// `transfer-wasm`, the same load on the command's WASM twin.

import { defineScenario, field, statusError } from '../scenario.js'
import { isCount, openAccounts } from './bank-accounts.js'

/** Why 1e12: a run moves at most a few million units, so no transfer meets insufficient funds. */
const OPENING_BALANCE = 1e12

export function transferScenario(name: string, qname: string, description: string) {
  return defineScenario({
    name,
    description,
    app: 'demo/bank',
    setup: async (ctx) => ({ accounts: await openAccounts(ctx, 2, OPENING_BALANCE) }),
    source(ctx, data) {
      return {
        next() {
          const i = Math.floor(ctx.random() * ctx.workspaces)
          const flip = ctx.random() < 0.5 ? 0 : 1
          const from = data.accounts[i * 2 + flip]!
          const to = data.accounts[i * 2 + 1 - flip]!
          return { kind: 'command', wsid: ctx.wsid(i), qname, args: { from, to, amount: 1 } }
        },
        check(_op, reply) {
          if (reply.status !== 200) return statusError(reply)
          if (!isCount(field(reply.body, 'result', 'from')) || !isCount(field(reply.body, 'result', 'to'))) return 'content: result.from/to are not integers ≥ 0'
          return undefined
        },
      }
    },
  })
}

export default transferScenario('transfer', 'bank.Transfer', 'bank.Transfer of 1 between the two accounts of a random workspace (two record updates + event)')
