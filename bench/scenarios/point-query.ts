// `point-query`: the bank.Balance query (one record read in the query processor pool). One
// account per workspace opened with balance 7; right: 200 with `results[0].balance === 7`.

import { defineScenario, field, statusError } from '../scenario.js'
import { openAccounts } from './bank-accounts.js'

const BALANCE = 7

export default defineScenario({
  name: 'point-query',
  description: 'bank.Balance query of a random workspace\'s account (one record read, query pool)',
  app: 'demo/bank',
  setup: async (ctx) => ({ accounts: await openAccounts(ctx, 1, BALANCE) }),
  source(ctx, data) {
    return {
      next() {
        const i = Math.floor(ctx.random() * ctx.workspaces)
        return { kind: 'query', wsid: ctx.wsid(i), qname: 'bank.Balance', args: { account: data.accounts[i]! } }
      },
      check(_op, reply) {
        if (reply.status !== 200) return statusError(reply)
        const rows = field(reply.body, 'results')
        if (!Array.isArray(rows) || rows.length !== 1) return 'content: results is not one row'
        if (field(rows[0], 'balance') !== BALANCE) return `content: balance is not ${BALANCE}`
        return undefined
      },
    }
  },
})
