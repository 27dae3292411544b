// Roles and grants are checked when the app loads: an unknown role, op, resource or field, or an
// op that does not fit the resource, is a DefinitionError naming it. The ACL answers what a set
// of roles may do; the owner may do everything.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DefinitionError, defineApp, definePackage } from '../src/shared/appdef/define.js'
import { allowedFields, grant, type GrantDef } from '../src/shared/appdef/acl.js'
import { decodeRequest, encodeRequest, Op, ReplyFormat } from '../src/shared/engine-messages.js'
import bank from '../demo/bank/index.js'

const exec = (): void => {}
const app = (grants: GrantDef[], roles: string[] = ['reader']) => defineApp('a/b', {
  packages: [definePackage('p', {
    tables: { T: { kind: 'cdoc', fields: { x: 'int32', y: 'int32' } } },
    views: { V: { key: { pk: ['k'], cc: [] }, fields: { k: 'int32', v: 'int32' } } },
    commands: { C: { exec } },
    queries: { Q: { exec: () => [] } },
    roles,
    grants,
  })],
})

describe('roles and grants in the app model', () => {
  const refused: [string, () => unknown, RegExp][] = [
    ['an unknown role', () => app([grant('nobody', ['select'], ['p.T'])]), /grant to 'nobody': role 'nobody' is not declared/],
    ['an unknown op', () => app([grant('reader', ['delete' as never], ['p.T'])]), /op 'delete' is invalid/],
    ['an unknown resource', () => app([grant('reader', ['select'], ['p.Nope'])]), /resource 'p\.Nope' is not a command, query, table or view/],
    ['an unknown field', () => app([grant('reader', ['select'], ['p.T'], { fields: ['z'] })]), /field 'z' is not a field of p\.T/],
    ['execute on a table', () => app([grant('reader', ['execute'], ['p.T'])]), /op 'execute' does not apply to table p\.T/],
    ['insert on a view', () => app([grant('reader', ['insert'], ['p.V'])]), /op 'insert' does not apply to view p\.V/],
    ['select on a command', () => app([grant('reader', ['select'], ['p.C'])]), /op 'select' does not apply to command p\.C/],
    ['fields with insert', () => app([grant('reader', ['insert'], ['p.T'], { fields: ['x'] })]), /a field list applies to select and update/],
    ['a grant to owner', () => app([grant('owner', ['select'], ['p.T'])]), /the owner may do everything already/],
    ['a grant of sys.GrantRole', () => app([grant('reader', ['execute'], ['sys.GrantRole'])]), /sys\.GrantRole is for the owner only/],
    ['a role declared twice', () => app([], ['reader', 'reader']), /role 'reader' is declared twice/],
    ['a built-in role declared', () => app([], ['public']), /role 'public' is built in/],
    ['a bad role name', () => app([], ['Reader']), /role name 'Reader' is invalid/],
    ['the sys package', () => definePackage('sys', {}), /package name 'sys' is reserved/],
  ]
  for (const [what, fn, re] of refused) {
    it(`refuses ${what} with a message naming it`, () => {
      assert.throws(fn, (e: unknown) => e instanceof DefinitionError && re.test(e.message), String(re))
    })
  }

  it('answers what roles may do: owner everything, field lists add up, nothing ungranted', () => {
    const a = app([
      grant('reader', ['select'], ['p.T'], { fields: ['x'] }),
      grant('reader', ['select'], ['p.T'], { fields: ['y'] }),
      grant('reader', ['update'], ['p.T'], { fields: ['x', 'sys.IsActive'] }),
      grant('public', ['execute'], ['p.Q']),
    ])
    assert.deepEqual([...allowedFields(a.acl, ['reader'], 'select', 'p.T')!].sort(), ['x', 'y'])
    assert.deepEqual([...allowedFields(a.acl, ['reader'], 'update', 'p.T')!].sort(), ['sys.IsActive', 'x'])
    assert.equal(allowedFields(a.acl, ['reader'], 'insert', 'p.T'), undefined)
    assert.equal(allowedFields(a.acl, ['reader'], 'execute', 'p.C'), undefined)
    assert.equal(allowedFields(a.acl, ['public'], 'execute', 'p.Q'), null)
    assert.equal(allowedFields(a.acl, ['owner'], 'insert', 'p.T'), null)
    assert.equal(allowedFields(a.acl, ['owner'], 'execute', 'sys.GrantRole'), null)
    assert.equal(allowedFields(a.acl, ['reader', 'public'], 'execute', 'sys.GrantRole'), undefined)
  })

  it('demo/bank: a reader selects accounts and movements and executes Balance, nothing else', () => {
    assert.deepEqual([...bank.roles].sort(), ['owner', 'public', 'reader'])
    assert.equal(allowedFields(bank.acl, ['reader'], 'select', 'bank.Account'), null)
    assert.equal(allowedFields(bank.acl, ['reader'], 'select', 'bank.Movements'), null)
    assert.equal(allowedFields(bank.acl, ['reader'], 'execute', 'bank.Balance'), null)
    assert.equal(allowedFields(bank.acl, ['reader'], 'execute', 'bank.Deposit'), undefined)
    assert.equal(allowedFields(bank.acl, ['reader'], 'insert', 'bank.Account'), undefined)
    assert.equal(allowedFields(bank.acl, ['reader'], 'update', 'bank.Account'), undefined)
    assert.ok(bank.commands.has('sys.GrantRole') && bank.commands.has('sys.RevokeRole'))
  })

  it('the principal travels with the request to the processors', () => {
    const base = { reqId: 1, op: Op.QUERY, format: ReplyFormat.JSON_V2, app: 'a/b', wsid: 5, qname: 'p.Q', id: 0, idempotencyKey: null, body: undefined, params: null } as const
    assert.deepEqual(decodeRequest(encodeRequest({ ...base, principal: { login: 'bob', roles: ['reader'] } })).principal, { login: 'bob', roles: ['reader'] })
    assert.equal(decodeRequest(encodeRequest({ ...base })).principal, undefined)
  })
})
