// bank.TransferWasm (AssemblyScript, demo/bank/assembly/transfer.ts, run by the real native
// addon in the partition workers) passes the same tests as the builtin bank.Transfer: each case
// below runs once per command. Errors are checked to write nothing: PLog offsets, balances and
// the movements view are compared before and after.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { balanceOf, createAccount, http, startTestServer, type TestServer } from './helpers/server.js'

const q = (v: unknown): string => encodeURIComponent(JSON.stringify(v))

for (const command of ['bank.Transfer', 'bank.TransferWasm']) {
  describe(`${command} on the level storage`, () => {
    let t: TestServer
    let base: string
    before(async () => {
      t = await startTestServer(['--partitions', '2'])
      base = t.ws(4242)
    })
    after(() => t.close())

    const transfer = (from: number, to: number, amount: number) => http('POST', `${base}/commands/${command}`, { args: { from, to, amount } })

    async function movements(account: number): Promise<{ offset: number; amount: number }[]> {
      const r = await http('GET', `${base}/views/bank.Movements?where=${q({ account })}`)
      assert.equal(r.status, 200, JSON.stringify(r.body))
      return r.body.results.map((m: { offset: number; amount: number }) => ({ offset: m.offset, amount: m.amount }))
    }

    async function snapshot(accounts: number[]): Promise<string> {
      const offsets = t.server.partitions.stats().map((s) => s.plogOffset)
      const state = await Promise.all(accounts.map(async (a) => [a, await balanceOf(base, a), await movements(a)]))
      return JSON.stringify({ offsets, state })
    }

    it('moves money both ways, returns both balances, and the movements view agrees', async () => {
      const a = await createAccount(base, 'a', 100)
      const b = await createAccount(base, 'b', 5)
      const r1 = await transfer(a, b, 30)
      assert.equal(r1.status, 200, JSON.stringify(r1.body))
      assert.deepEqual(r1.body.result, { from: 70, to: 35 })
      const r2 = await transfer(b, a, 35)
      assert.deepEqual(r2.body.result, { from: 0, to: 105 })
      assert.equal(await balanceOf(base, a), 105)
      assert.equal(await balanceOf(base, b), 0)
      assert.deepEqual(await movements(a), [{ offset: r1.body.currentWLogOffset, amount: -30 }, { offset: r2.body.currentWLogOffset, amount: 35 }])
      assert.deepEqual(await movements(b), [{ offset: r1.body.currentWLogOffset, amount: 30 }, { offset: r2.body.currentWLogOffset, amount: -35 }])
      // The event carries the command's name and args.
      assert.ok(r2.body.currentWLogOffset > r1.body.currentWLogOffset)
    })

    it('409 insufficient funds with the balance as data, and nothing is written', async () => {
      const a = await createAccount(base, 'poor', 10)
      const b = await createAccount(base, 'rich', 1000)
      const before = await snapshot([a, b])
      const r = await transfer(a, b, 11)
      assert.equal(r.status, 409)
      assert.equal(r.body.code, 'EXTENSION')
      assert.match(r.body.message, /insufficient funds/)
      assert.deepEqual(r.body.data, { balance: 10 })
      assert.equal(await snapshot([a, b]), before)
      // The partition serves the next command.
      assert.equal((await transfer(a, b, 10)).status, 200)
      assert.equal(await balanceOf(base, b), 1010)
    })

    it('400 for the same account, 404 for an unknown one, 410 for a closed one; nothing is written', async () => {
      const a = await createAccount(base, 'x', 50)
      const closed = await createAccount(base, 'closed', 50)
      assert.equal((await http('DELETE', `${base}/docs/bank.Account/${closed}`)).status, 200)
      const before = await snapshot([a, closed])
      const same = await transfer(a, a, 1)
      assert.equal(same.status, 400)
      assert.match(same.body.message, /same account/)
      const unknown = await transfer(a, 99_999_999, 1)
      assert.equal(unknown.status, 404)
      assert.equal(unknown.body.message, 'account 99999999 not found')
      const unknownFrom = await transfer(99_999_998, a, 1)
      assert.equal(unknownFrom.body.message, 'account 99999998 not found')
      const gone = await transfer(a, closed, 1)
      assert.equal(gone.status, 410)
      assert.match(gone.body.message, /is closed/)
      // Argument validation happens before the extension, the same for both.
      assert.equal((await transfer(a, closed, 0)).status, 400)
      assert.equal(await snapshot([a, closed]), before)
    })

    it('concurrent transfers in one batch see each other and conserve the total', async () => {
      const accounts = await Promise.all([0, 1, 2, 3].map((i) => createAccount(base, `c${i}`, 1000)))
      const sent = await Promise.all(Array.from({ length: 200 }, (_, i) => transfer(accounts[i % 4]!, accounts[(i + 1) % 4]!, 1 + (i % 7))))
      assert.ok(sent.every((r) => r.status === 200), JSON.stringify(sent.find((r) => r.status !== 200)?.body))
      const balances = await Promise.all(accounts.map((a) => balanceOf(base, a)))
      assert.equal(balances.reduce((x, y) => x + y, 0), 4000)
      for (const [i, a] of accounts.entries()) {
        const moved = (await movements(a)).reduce((s, m) => s + m.amount, 0)
        assert.equal(1000 + moved, balances[i], `account ${a}: movements agree with the balance`)
      }
    })

    it('the async DailyTotals projector counts the movements', async () => {
      const a = await createAccount(base, 'd1', 100)
      const b = await createAccount(base, 'd2', 100)
      for (let i = 0; i < 5; i++) assert.equal((await transfer(a, b, 3)).status, 200)
      let totals: { total: number; movements: number }[] = []
      for (let i = 0; i < 100; i++) {
        totals = (await http('GET', `${base}/views/bank.DailyTotals?where=${q({ account: a })}`)).body.results
        if (totals[0]?.movements === 5) break
        await new Promise((r) => setTimeout(r, 50))
      }
      assert.equal(totals.length, 1)
      assert.equal(totals[0]!.total, -15)
      assert.equal(totals[0]!.movements, 5)
    })
  })
}
