// The partition's bounded caches (LruMap): what they keep, what they forget, their bound.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { LruMap } from '../src/workers/command/partition-state.js'

describe('LruMap', () => {
  it('never holds more than max entries', () => {
    const m = new LruMap<number, number>(100)
    for (let i = 0; i < 10_000; i++) {
      m.set(i, i)
      assert.ok(m.size <= 100)
    }
    assert.equal(m.get(9_999), 9_999)
    assert.equal(m.get(0), undefined)
  })

  it('keeps an entry used within the last max/2 insertions, however old it is', () => {
    const m = new LruMap<string, number>(10)
    m.set('hot', 1)
    for (let i = 0; i < 1000; i++) {
      m.set(`k${i}`, i)
      if (i % 4 === 0) assert.equal(m.get('hot'), 1, `lost after ${i} insertions`)
    }
  })

  it('set replaces the value in either generation; clear forgets everything', () => {
    const m = new LruMap<string, number>(4)
    m.set('a', 1)
    m.set('b', 2)
    m.set('c', 3) // 'a' and 'b' are now the old generation
    m.set('a', 10)
    assert.equal(m.get('a'), 10)
    assert.equal(m.get('b'), 2)
    m.clear()
    assert.equal(m.size, 0)
    assert.equal(m.get('c'), undefined)
  })
})
