// The sync projector stage: the projectors a command triggers run once each, in order (the
// command's, then its CUDs' tables'), whether they finish synchronously or return a promise;
// one that throws or rejects fails the command, and nothing of it — event, records, view rows
// put by the projectors before the failure — is staged, while the other commands of its batch
// commit.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { AppDef } from '../src/shared/appdef/types.js'
import { SYSTEM_OWNER } from '../src/shared/authz.js'
import { Op, ReplyFormat, type EngineRequest } from '../src/shared/engine-messages.js'
import { viewRowKeys } from '../src/shared/view-codec.js'
import { withMemProcessor } from './helpers/processor.js'

const APP_URL = new URL('./fixtures/apps/sync-projectors.js', import.meta.url).href
const WSID = 1_000_005
const ALL = ['first', 'second', 'third'] as const

let reqIds = 0
const run = (mode: string): EngineRequest => ({
  reqId: ++reqIds, op: Op.COMMAND, format: ReplyFormat.JSON_V2, app: 'test/sync-projectors', wsid: WSID, qname: 'sp.Run', id: 0,
  idempotencyKey: null, body: new TextEncoder().encode(JSON.stringify({ args: { mode } })), params: null, principal: SYSTEM_OWNER,
})
const json = (body: Uint8Array): { currentWLogOffset?: number; code?: string; message?: string } => JSON.parse(Buffer.from(body).toString('utf8'))

describe('sync projectors', () => {
  it('run once each, in order, sync or async; a throw or a rejection fails the command and stages nothing of it', async () => {
    const mod = (await import(APP_URL)) as { default: AppDef; calls: string[] }
    const app = mod.default
    await withMemProcessor(app, async ({ storage, part, batch }) => {
      const logRow = async (by: string, offset: number, mode = 'ok') => {
        const { pk, cc } = viewRowKeys(app.views.get('sp.Log')!, WSID, { by, mode, offset })
        return storage.get(pk, cc)
      }

      mod.calls.splice(0)
      const [ok] = await batch([run('ok')])
      assert.equal(ok!.status, 200, Buffer.from(ok!.body).toString())
      assert.deepEqual(mod.calls, ALL, 'the command\'s projectors in order; Third once though triggered twice')
      const wo = json(ok!.body).currentWLogOffset!
      for (const by of ALL) assert.notEqual(await logRow(by, wo), undefined, `${by}'s row is stored`)

      // A batch of three: the middle one fails in a synchronous projector, the last in an async one.
      mod.calls.splice(0)
      const offset = part.plogOffset
      const [a, thrown, rejected, b] = await batch([run('ok'), run('throw'), run('reject'), run('ok')])
      assert.deepEqual([a!.status, thrown!.status, rejected!.status, b!.status], [200, 409, 409, 200])
      assert.match(json(thrown!.body).message!, /first threw/)
      assert.match(json(rejected!.body).message!, /second rejected/)
      assert.deepEqual(mod.calls, [...ALL, 'first', 'first', 'second', ...ALL], 'a failure stops the projectors after it')
      assert.equal(part.plogOffset, offset + 2, 'two events: the failed commands staged none')
      const woA = json(a!.body).currentWLogOffset!
      const woB = json(b!.body).currentWLogOffset!
      assert.equal(woB, woA + 1, 'the failed commands took no WLog offset')
      for (const by of ALL) {
        assert.notEqual(await logRow(by, woA), undefined)
        assert.notEqual(await logRow(by, woB), undefined)
      }
      // The rows the failing projectors put before failing (each would have had offset woA + 1).
      for (const mode of ['throw', 'reject']) {
        for (const by of ALL) assert.equal(await logRow(by, woA + 1, mode), undefined, `no ${by} row of the command that ${mode === 'throw' ? 'threw' : 'rejected'}`)
      }
    })
  })
})
