// `deposit`: the simple command of PERFORMANCE.md (one record update + one event, and the sync
// projector's view row). One account per workspace; each operation deposits 1 into the account
// of a random workspace. A reply is right when it is 200 with an integer balance ≥ 1 and an
// integer WLog offset ≥ 2 (the account's creation was offset 1).

import { defineScenario, field, statusError } from '../scenario.js'
import { isCount, openAccounts } from './bank-accounts.js'

export default defineScenario({
  name: 'deposit',
  description: 'bank.Deposit of 1 into the account of a random workspace (one record update + event)',
  app: 'demo/bank',
  setup: async (ctx) => ({ accounts: await openAccounts(ctx, 1, 0) }),
  source(ctx, data) {
    return {
      next() {
        const i = Math.floor(ctx.random() * ctx.workspaces)
        return { kind: 'command', wsid: ctx.wsid(i), qname: 'bank.Deposit', args: { account: data.accounts[i]!, amount: 1 } }
      },
      check(_op, reply) {
        if (reply.status !== 200) return statusError(reply)
        const balance = field(reply.body, 'result', 'balance')
        if (!isCount(balance) || balance < 1) return 'content: result.balance is not an integer ≥ 1'
        const offset = field(reply.body, 'currentWLogOffset')
        if (!isCount(offset) || offset < 2) return 'content: currentWLogOffset is not an integer ≥ 2'
        return undefined
      },
    }
  },
})
