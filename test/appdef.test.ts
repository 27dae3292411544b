// Definitions are validated at load: a bad one is refused with a message naming it.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DefinitionError, defineApp, definePackage, perMinute } from '../src/shared/appdef/define.js'
import { validateFields } from '../src/shared/appdef/validate.js'
import bank from '../demo/bank/index.js'

const exec = (): void => {}

describe('app model', () => {
  it('resolves qualified names and sync projector triggers', () => {
    assert.equal(bank.qname, 'demo/bank')
    assert.ok(bank.commands.has('bank.Deposit'))
    assert.ok(bank.tables.has('bank.Account'))
    assert.deepEqual(bank.views.get('bank.Movements')!.pk.map((f) => f.name), ['account'])
    assert.deepEqual(bank.syncProjectorsOn.get('bank.Deposit')!.map((p) => p.qname), ['bank.MovementsProjector'])
    assert.equal(bank.commands.get('bank.Deposit')!.rate!.count, 100_000)
  })

  const refused: [string, () => unknown, RegExp][] = [
    ['bad package name', () => definePackage('1x', {}), /package name '1x'/],
    ['bad app name', () => defineApp('NoSlash', { packages: [] }), /app name 'NoSlash'/],
    ['bad table kind', () => defineApp('a/b', { packages: [definePackage('p', { tables: { T: { kind: 'doc' as never, fields: {} } } })] }), /p\.T: kind 'doc'/],
    ['bad field type', () => defineApp('a/b', { packages: [definePackage('p', { tables: { T: { kind: 'cdoc', fields: { x: 'string' as never } } } })] }), /p\.T: field 'x': type 'string'/],
    ['duplicate name', () => defineApp('a/b', { packages: [definePackage('p', { tables: { T: { kind: 'cdoc', fields: {} } }, commands: { T: { exec } } })] }), /'p\.T' is defined twice/],
    ['view key not in fields', () => defineApp('a/b', { packages: [definePackage('p', { views: { V: { key: { pk: ['k'], cc: [] }, fields: { v: 'int32' } } } })] }), /p\.V: key\.pk names 'k'/],
    ['view without pk', () => defineApp('a/b', { packages: [definePackage('p', { views: { V: { key: { pk: [], cc: [] }, fields: {} } } })] }), /p\.V: key\.pk must list/],
    ['missing exec', () => defineApp('a/b', { packages: [definePackage('p', { commands: { C: {} as never } })] }), /p\.C: exec must be/],
    ['bad rate', () => defineApp('a/b', { packages: [definePackage('p', { commands: { C: { exec, rate: perMinute(0) } } })] }), /p\.C: rate/],
    ['projector on unknown', () => defineApp('a/b', { packages: [definePackage('p', { projectors: { P: { on: ['p.Nope'], exec } } })] }), /p\.P: 'on' names 'p\.Nope'/],
    ['bad partitions', () => defineApp('a/b', { packages: [], partitions: 0 }), /partitions 0/],
    ['reserved field name', () => defineApp('a/b', { packages: [definePackage('p', { commands: { C: { exec, args: { 'sys.ID': 'int64' } } } })] }), /field name 'sys\.ID'/],
  ]
  for (const [what, fn, re] of refused) {
    it(`refuses ${what} with a message naming it`, () => {
      assert.throws(fn, (e: unknown) => e instanceof DefinitionError && re.test(e.message))
    })
  }

  it('validates values by type, required and limits', () => {
    const t = bank.tables.get('bank.Account')!
    assert.deepEqual(validateFields(t.fields, { name: 'a', balance: 5 }, 'full', 'T', 'fields'), { name: 'a', balance: 5 })
    assert.throws(() => validateFields(t.fields, { name: 'a' }, 'full', 'T', 'fields'), /'balance' \(int64\) is required/)
    assert.deepEqual(validateFields(t.fields, { balance: 7 }, 'partial', 'T', 'fields'), { balance: 7 })
    assert.throws(() => validateFields(t.fields, { balance: 1e300 }, 'partial', 'T', 'fields'), /must be an integer/)
    assert.throws(() => validateFields(t.fields, { name: 'x'.repeat(2000) }, 'partial', 'T', 'fields'), /at most 1024/)
  })
})
