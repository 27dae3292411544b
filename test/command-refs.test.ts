// Ref fields of records: a staged record's ref must name a record of the workspace — stored,
// or created earlier in the same request — else the command fails with VALIDATION and stages
// nothing; an absent optional ref is not checked.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { AppDef } from '../src/shared/appdef/types.js'
import { SYSTEM_OWNER } from '../src/shared/authz.js'
import { Op, ReplyFormat, type EngineRequest } from '../src/shared/engine-messages.js'
import { withMemProcessor } from './helpers/processor.js'

const REFS_URL = new URL('./fixtures/apps/refs.js', import.meta.url).href
const WSID = 1_000_003

let reqIds = 0
const request = (op: EngineRequest['op'], qname: string, body: unknown): EngineRequest => ({
  reqId: ++reqIds, op, format: ReplyFormat.JSON_V2, app: 'test/refs', wsid: WSID, qname, id: 0,
  idempotencyKey: null, body: new TextEncoder().encode(JSON.stringify(body)), params: null, principal: SYSTEM_OWNER,
})
const json = (body: Uint8Array): { newIDs?: Record<string, number>; code?: string; message?: string } => JSON.parse(Buffer.from(body).toString('utf8'))

describe('ref fields of records', () => {
  it('must name a record of the workspace, stored or created in the same request', async () => {
    const app = (await import(REFS_URL)).default as AppDef
    await withMemProcessor(app, async ({ part, one }) => {
      const owner = json((await one(request(Op.DOC_CREATE, 'refs.Owner', { name: 'ann' }))).body).newIDs!['1']!

      const ok = await one(request(Op.DOC_CREATE, 'refs.Pet', { name: 'rex', owner }))
      assert.equal(ok.status, 201, Buffer.from(ok.body).toString())
      const offset = part.plogOffset

      const missing = await one(request(Op.DOC_CREATE, 'refs.Pet', { name: 'tom', owner: owner + 1000 }))
      assert.equal(missing.status, 400)
      assert.equal(json(missing.body).code, 'VALIDATION')
      assert.match(json(missing.body).message!, /refs\.Pet\.owner refers to record \d+, which does not exist/)
      const badVet = await one(request(Op.DOC_CREATE, 'refs.Pet', { name: 'tom', owner, vet: owner + 2000 }))
      assert.equal(badVet.status, 400, 'an optional ref with a value is checked too')
      assert.equal(part.plogOffset, offset, 'the failed commands staged nothing')

      // A ref to a record created in the same request (CUDs, raw ids), and one to nothing.
      const cuds = (owner2: number) => [
        { fields: { 'sys.ID': 1, 'sys.QName': 'refs.Owner', name: 'bob' } },
        { fields: { 'sys.ID': 2, 'sys.QName': 'refs.Pet', name: 'kit', owner: owner2 } },
      ]
      const adopted = await one(request(Op.COMMAND, 'refs.Adopt', { cuds: cuds(1) }))
      assert.equal(adopted.status, 200, Buffer.from(adopted.body).toString())
      const ids = json(adopted.body).newIDs!
      assert.equal((await part.record(WSID, ids['2']!))!.f.owner, ids['1'])
      const dangling = await one(request(Op.COMMAND, 'refs.Adopt', { cuds: cuds(owner + 3000) }))
      assert.equal(dangling.status, 400)
      assert.equal(json(dangling.body).code, 'VALIDATION')
    })
  })
})
