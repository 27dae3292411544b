// The example app `demo/bank`: accounts, deposits, atomic transfers, a balance query and a
// sync projector into the `bank.Movements` view. Roles: the built-in `owner` may do everything
// in its workspace; a `reader` may read accounts, movements and balances, and change nothing.

import { defineApp, definePackage, perSecond, wasm } from '../../src/shared/appdef/define.js'
import { grant } from '../../src/shared/appdef/acl.js'
import { ExtensionError } from '../../src/shared/errors.js'
import type { CommandState } from '../../src/shared/appdef/state.js'

async function account(state: CommandState, id: unknown) {
  const acc = await state.record(id as number)
  if (acc === undefined || acc['sys.QName'] !== 'bank.Account') throw new ExtensionError(404, `account ${String(id)} not found`)
  if (!acc['sys.IsActive']) throw new ExtensionError(410, `account ${String(id)} is closed`)
  return acc
}

export const bank = definePackage('bank', {
  tables: {
    Account: { kind: 'cdoc', fields: { name: 'varchar', balance: 'int64' } },
    AuditRun: { kind: 'crecord', fields: { atMs: 'int64' } },
  },
  views: {
    Movements: {
      key: { pk: ['account'], cc: ['offset'] },
      fields: { account: 'ref', offset: 'int64', amount: 'int64' },
    },
    // Kept by an async projector: net movement and count of movements per account and day.
    DailyTotals: {
      key: { pk: ['account'], cc: ['day'] },
      fields: { account: 'ref', day: 'int32', total: 'int64', movements: 'int64' },
    },
    // Kept by a sync projector on the audit job: how often it ran and when last.
    JobRuns: {
      key: { pk: ['job'], cc: [] },
      fields: { job: 'qname', runs: 'int64', lastRunAtMs: 'int64' },
    },
  },
  commands: {
    Deposit: {
      args: { account: 'ref', amount: { type: 'int64', min: 1 } },
      result: { balance: 'int64' },
      rate: perSecond(100_000),
      exec: async (args, state) => {
        const acc = await account(state, args.account)
        const balance = (acc.balance as number) + (args.amount as number)
        if (!Number.isSafeInteger(balance)) throw new ExtensionError(409, 'balance would overflow')
        await state.update(acc['sys.ID'], { balance })
        return { balance }
      },
    },
    Transfer: {
      args: { from: 'ref', to: 'ref', amount: { type: 'int64', min: 1 } },
      result: { from: 'int64', to: 'int64' },
      exec: async (args, state) => {
        if (args.from === args.to) throw new ExtensionError(400, 'from and to are the same account')
        const from = await account(state, args.from)
        const to = await account(state, args.to)
        const amount = args.amount as number
        if ((from.balance as number) < amount) throw new ExtensionError(409, 'insufficient funds', { balance: from.balance })
        await state.update(from['sys.ID'], { balance: (from.balance as number) - amount })
        await state.update(to['sys.ID'], { balance: (to.balance as number) + amount })
        return { from: (from.balance as number) - amount, to: (to.balance as number) + amount }
      },
    },
    // bank.Transfer as a WASM extension (AssemblyScript: demo/bank/assembly/transfer.ts, built
    // into dist/demo/bank/transfer.wasm by scripts/build-wasm.mjs): same args, result and errors.
    TransferWasm: {
      args: { from: 'ref', to: 'ref', amount: { type: 'int64', min: 1 } },
      result: { from: 'int64', to: 'int64' },
      exec: wasm('transfer.wasm', 'transfer'),
    },
  },
  queries: {
    Balance: {
      args: { account: 'ref' },
      result: { balance: 'int64' },
      exec: async (args, state) => {
        const acc = await state.record(args.account as number)
        if (acc === undefined || acc['sys.QName'] !== 'bank.Account') throw new ExtensionError(404, `account ${String(args.account)} not found`)
        return [{ balance: acc.balance }]
      },
    },
  },
  projectors: {
    MovementsProjector: {
      on: ['bank.Deposit', 'bank.Transfer', 'bank.TransferWasm'],
      sync: true,
      exec: (event, state) => {
        const a = event.args
        if (event.qname === 'bank.Deposit') {
          state.viewPut('bank.Movements', { account: a.account, offset: event.wlogOffset }, { amount: a.amount })
        } else {
          state.viewPut('bank.Movements', { account: a.from, offset: event.wlogOffset }, { amount: -(a.amount as number) })
          state.viewPut('bank.Movements', { account: a.to, offset: event.wlogOffset }, { amount: a.amount })
        }
      },
    },
    DailyTotalsProjector: {
      on: ['bank.Deposit', 'bank.Transfer', 'bank.TransferWasm'],
      exec: async (event, state) => {
        const day = Math.floor(event.registeredAtMs / 86_400_000)
        const a = event.args
        const moves: [unknown, number][] = event.qname === 'bank.Deposit'
          ? [[a.account, a.amount as number]]
          : [[a.from, -(a.amount as number)], [a.to, a.amount as number]]
        for (const [account, amount] of moves) {
          const prev = await state.viewGet('bank.DailyTotals', { account, day })
          state.viewPut('bank.DailyTotals', { account, day }, {
            total: ((prev?.total as number) ?? 0) + amount,
            movements: ((prev?.movements as number) ?? 0) + 1,
          })
        }
      },
    },
    JobRunsProjector: {
      on: ['bank.Audit'],
      sync: true,
      exec: async (event, state) => {
        const prev = await state.viewGet('bank.JobRuns', { job: event.qname })
        state.viewPut('bank.JobRuns', { job: event.qname }, { runs: ((prev?.runs as number) ?? 0) + 1, lastRunAtMs: event.registeredAtMs })
      },
    },
  },
  roles: ['reader'],
  grants: [
    grant('reader', ['select'], ['bank.Account', 'bank.Movements']),
    grant('reader', ['execute'], ['bank.Balance']),
  ],
  jobs: {
    // Every minute, in each partition's app workspace: records that the bank was audited.
    Audit: { cron: '0 * * * * *', exec: (state) => { state.create('bank.AuditRun', { atMs: Date.now() }) } },
  },
})

export default defineApp('demo/bank', { packages: [bank] })
