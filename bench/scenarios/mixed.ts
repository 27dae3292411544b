// `mixed`: what a typical app does — 60 % deposits, 25 % balance queries, 15 % document reads,
// all on one account per workspace. Each kind of reply is checked like in its own scenario; a
// document read must return the account itself (its `sys.ID`, `sys.QName` and a balance ≥ 0).

import { defineScenario, field, statusError, type Op } from '../scenario.js'
import { isCount, openAccounts } from './bank-accounts.js'

const DEPOSIT_SHARE = 0.6
const QUERY_SHARE = 0.25

export default defineScenario({
  name: 'mixed',
  description: '60 % bank.Deposit, 25 % bank.Balance query, 15 % GET of the account document',
  app: 'demo/bank',
  setup: async (ctx) => ({ accounts: await openAccounts(ctx, 1, 0) }),
  source(ctx, data) {
    return {
      next(): Op {
        const i = Math.floor(ctx.random() * ctx.workspaces)
        const account = data.accounts[i]!
        const r = ctx.random()
        if (r < DEPOSIT_SHARE) return { kind: 'command', wsid: ctx.wsid(i), qname: 'bank.Deposit', args: { account, amount: 1 } }
        if (r < DEPOSIT_SHARE + QUERY_SHARE) return { kind: 'query', wsid: ctx.wsid(i), qname: 'bank.Balance', args: { account } }
        return { kind: 'doc-get', wsid: ctx.wsid(i), qname: 'bank.Account', id: account }
      },
      check(op, reply) {
        if (reply.status !== 200) return statusError(reply)
        switch (op.kind) {
          case 'command': {
            const balance = field(reply.body, 'result', 'balance')
            return isCount(balance) && balance >= 1 ? undefined : 'content: deposit result.balance is not an integer ≥ 1'
          }
          case 'query': {
            const rows = field(reply.body, 'results')
            return Array.isArray(rows) && rows.length === 1 && isCount(field(rows[0], 'balance')) ? undefined : 'content: balance query is not one row with an integer balance'
          }
          case 'doc-get': {
            const b = reply.body
            return field(b, 'sys.ID') === op.id && field(b, 'sys.QName') === 'bank.Account' && isCount(field(b, 'balance')) ? undefined : 'content: document is not the account'
          }
          default:
            return `content: unexpected operation ${op.kind}`
        }
      },
    }
  },
})
