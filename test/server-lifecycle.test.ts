// Start, restart and close: the partition count is stored with the data, each partition has a
// LevelDB database of its own, a restart continues the logs where they were, and close() leaves
// no thread or handle of the server behind.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ClassicLevel } from 'classic-level'
import { ConfigError } from '../src/main/config.js'
import { balanceOf, createAccount, http, startTestServer, tempDir } from './helpers/server.js'

describe('server lifecycle', () => {
  it('refuses to start with another partition count than the data has', async () => {
    const d = await tempDir()
    const t = await startTestServer(['--partitions', '3'], d.path)
    await createAccount(t.ws(1))
    await t.close()
    await assert.rejects(startTestServer(['--partitions', '4'], d.path), (e: unknown) => e instanceof ConfigError && /created with 3 partitions/.test(e.message))
    const again = await startTestServer(['--partitions', '3'], d.path)
    await again.close()
    await d.remove()
  })

  it('continues offsets, ids and balances after a restart', async () => {
    const d = await tempDir()
    let t = await startTestServer([], d.path)
    const acc = await createAccount(t.ws(42), 'a', 10)
    const r1 = await http('POST', `${t.ws(42)}/commands/bank.Deposit`, { args: { account: acc, amount: 5 } })
    assert.equal(r1.body.currentWLogOffset, 2)
    await t.close()
    t = await startTestServer([], d.path)
    const r2 = await http('POST', `${t.ws(42)}/commands/bank.Deposit`, { args: { account: acc, amount: 5 } })
    assert.equal(r2.body.currentWLogOffset, 3)
    assert.equal(await balanceOf(t.ws(42), acc), 20)
    const acc2 = await createAccount(t.ws(42), 'b', 0)
    assert.equal(acc2, acc + 1)
    await t.close()
    await d.remove()
  })

  it('keeps each partition of an app in a LevelDB database of its own, read by the query pool, across a restart', async () => {
    const d = await tempDir()
    let t = await startTestServer(['--partitions', '2'], d.path)
    // Workspaces 1 and 2: partitions 1 and 0.
    const a1 = await createAccount(t.ws(1), 'one', 10)
    const a2 = await createAccount(t.ws(2), 'two', 20)
    assert.equal((await http('POST', `${t.ws(1)}/commands/bank.Deposit`, { args: { account: a1, amount: 5 } })).status, 200)
    assert.equal((await http('POST', `${t.ws(2)}/commands/bank.Deposit`, { args: { account: a2, amount: 7 } })).status, 200)
    assert.equal(await balanceOf(t.ws(1), a1), 15)
    assert.equal(await balanceOf(t.ws(2), a2), 27)
    await t.close()
    const dir = join(d.path, 'level-partitions', encodeURIComponent('demo/bank'))
    for (const p of ['0', '1']) {
      const db = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, p), { keyEncoding: 'view', valueEncoding: 'view' })
      await db.open()
      const rows = (await db.keys({ limit: 1000 }).all()).length
      await db.close()
      assert.ok(rows >= 5, `partition ${p}'s database holds its rows (${rows})`)
    }
    t = await startTestServer(['--partitions', '2'], d.path)
    assert.equal(await balanceOf(t.ws(1), a1), 15)
    assert.equal(await balanceOf(t.ws(2), a2), 27)
    assert.equal((await http('POST', `${t.ws(2)}/commands/bank.Deposit`, { args: { account: a2, amount: 1 } })).status, 200)
    assert.equal(await balanceOf(t.ws(2), a2), 28)
    await t.close()
    await d.remove()
  })

  it('close() leaves no worker, socket or timer behind', async () => {
    const before = new Set(process.getActiveResourcesInfo())
    const t = await startTestServer([])
    const acc = await createAccount(t.ws(5))
    await http('POST', `${t.ws(5)}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } })
    await balanceOf(t.ws(5), acc)
    await t.close()
    // fetch keeps pooled connections to the closed server for a moment; give them time to end.
    await new Promise((r) => setTimeout(r, 200))
    const left = process.getActiveResourcesInfo().filter((r) => !before.has(r) && r !== 'TTYWrap')
    assert.deepEqual(left.filter((r) => r !== 'Timeout'), [], `left: ${left.join(', ')}`)
  })

  it('mem storage serves reads from the partition workers', async () => {
    const t = await startTestServer(['--storage', 'mem'])
    const acc = await createAccount(t.ws(9))
    await http('POST', `${t.ws(9)}/commands/bank.Deposit`, { args: { account: acc, amount: 3 } })
    assert.equal(await balanceOf(t.ws(9), acc), 3)
    assert.equal((await http('GET', `${t.ws(9)}/cdocs/bank.Account`)).body.results.length, 1)
    await t.close()
  })
})
