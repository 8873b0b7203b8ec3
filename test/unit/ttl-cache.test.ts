// TtlCache (src/cache.ts): entries live for their TTL on the clock; `delete` and `clear` (a change
// announced by another instance) also discard a load that was running when they were called.
import t from 'tap'
import { TtlCache } from '../../src/cache.js'
import { ManualClock } from '../helpers/clock.js'

/** A loader the test answers by hand, counting its calls. */
function manualLoader() {
  const pending: Array<(v: string) => void> = []
  let calls = 0
  const load = (key: string) => {
    calls++
    return new Promise<string>((resolve) => pending.push((v) => resolve(`${key}=${v}`)))
  }
  return { load, answer: (v: string) => pending.shift()!(v), calls: () => calls }
}

t.test('a value lives for the TTL of the clock', async (t) => {
  const clock = new ManualClock()
  const l = manualLoader()
  const cache = new TtlCache(l.load, 1000, clock)
  const first = cache.get('a')
  l.answer('1')
  t.equal(await first, 'a=1')
  t.equal(await cache.get('a'), 'a=1', 'a hit')
  clock.advance(1000)
  const again = cache.get('a')
  l.answer('2')
  t.equal(await again, 'a=2', 'loaded again after the TTL')
  t.equal(l.calls(), 2)
})

t.test('delete: the next get loads again; a load running during the delete is answered but not kept', async (t) => {
  const clock = new ManualClock()
  const l = manualLoader()
  const cache = new TtlCache(l.load, 60_000, clock)
  const first = cache.get('a')
  l.answer('old')
  await first
  cache.delete('a')
  const racing = cache.get('a') // reads the row before the change commits…
  cache.delete('a') // …and the change is announced while it runs
  l.answer('stale')
  t.equal(await racing, 'a=stale', 'the running request gets what it read')
  const fresh = cache.get('a')
  l.answer('new')
  t.equal(await fresh, 'a=new', 'the stale value was not kept')
  t.equal(await cache.get('a'), 'a=new', 'the fresh one is')
  t.equal(l.calls(), 3)
})

t.test('clear drops everything, and discards running loads too', async (t) => {
  const clock = new ManualClock()
  const l = manualLoader()
  const cache = new TtlCache(l.load, 60_000, clock)
  const a = cache.get('a')
  l.answer('1')
  await a
  const b = cache.get('b')
  cache.clear()
  l.answer('1')
  await b
  const a2 = cache.get('a')
  l.answer('2')
  t.equal(await a2, 'a=2')
  const b2 = cache.get('b')
  l.answer('2')
  t.equal(await b2, 'b=2')
  t.equal(l.calls(), 4)
})
