// Start-up retries (src/startup.ts) with a clock the test moves: the backoff (250 ms doubling to
// 2 s), one log line per window, the reason /readyz shows, fatal errors, and stop.
import t from 'tap'
import { NotReadyError, notReadyReason, Startup, STARTUP_LOG_EVERY_MS } from '../../src/startup.js'
import { isDatabaseUnavailable } from '../../src/errors.js'
import { ManualClock } from '../helpers/clock.js'

const refused = () => Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5432'), { code: 'ECONNREFUSED' })
const settle = () => new Promise((r) => setImmediate(r))

function harness(attempt: (n: number) => Promise<void>) {
  const clock = new ManualClock(0)
  const logs: { obj: Record<string, unknown>; msg: string }[] = []
  const reasons: string[] = []
  const at: number[] = []
  const startup = new Startup(
    async () => {
      at.push(clock.nowMs())
      await attempt(at.length)
    },
    { clock, log: { warn: (obj, msg) => logs.push({ obj: obj as Record<string, unknown>, msg }) }, waiting: (r) => reasons.push(r) },
  )
  /** Moves the clock 50 ms at a time for `ms`, letting each attempt settle. */
  const advance = async (ms: number) => {
    for (let i = 0; i < ms / 50; i++) {
      clock.advance(50)
      await settle()
    }
  }
  return { clock, logs, reasons, at, startup, advance }
}

t.test('the reason shown while waiting names the kind and the code, nothing else', async (t) => {
  t.equal(notReadyReason(refused()), 'database unavailable (ECONNREFUSED)')
  t.equal(notReadyReason(Object.assign(new Error('the database system is starting up'), { code: '57P03' })), 'database unavailable (57P03)')
  t.equal(notReadyReason(new Error('timeout exceeded when trying to connect')), 'database unavailable')
  t.equal(notReadyReason(new NotReadyError('database schema not migrated')), 'database schema not migrated')
  t.equal(notReadyReason(Object.assign(new Error('password authentication failed for user "tessera"'), { code: '28P01' })), undefined, 'a wrong password is fatal')
  t.equal(notReadyReason(new Error('cannot decrypt the active signing key')), undefined, 'a wrong KEK is fatal')
})

t.test('retries with 250 ms doubling to 2 s, logs the first failure then once per window, then succeeds', async (t) => {
  let downUntil = 65_000
  const h = harness(async () => {
    if (h.clock.nowMs() < downUntil) throw refused()
  })
  const run = h.startup.run()
  await settle()
  await h.advance(70_000)
  t.equal(await run, true, 'ready')
  const gaps = h.at.slice(1).map((ms, i) => ms - h.at[i]!)
  t.same(gaps.slice(0, 6), [250, 500, 1000, 2000, 2000, 2000], 'the backoff')
  t.ok(gaps.every((g) => g <= 2000), 'never more than 2 s between attempts')
  t.ok(h.at.at(-1)! - downUntil <= 2000, 'the first attempt after the database is back is within 2 s')
  t.equal(h.startup.attempts, h.at.length)
  t.equal(h.logs.length, 3, `one line at the first failure, then one per ${STARTUP_LOG_EVERY_MS / 1000} s (${h.logs.map((l) => l.obj.waitingSeconds).join(', ')})`)
  t.match(h.logs[0], { msg: /^not ready: database unavailable \(ECONNREFUSED\); retrying/, obj: { attempts: 1, failedSinceLastLine: 1, waitingSeconds: 0, err: { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 10.1.2.3:5432' } } })
  const second = h.logs[1]!.obj.waitingSeconds as number
  t.ok(second >= 30 && second <= 32, `the second line comes at the first failure ${STARTUP_LOG_EVERY_MS / 1000} s after the first (${second} s)`)
  t.ok((h.logs[1]!.obj.failedSinceLastLine as number) > 10, 'the count of failures since the last line')
  t.same(new Set(h.reasons), new Set(['database unavailable (ECONNREFUSED)']))
  downUntil = 0
})

t.test('a change of kind (database up, schema not migrated) is logged at once', async (t) => {
  const h = harness(async (n) => {
    if (n <= 2) throw refused()
    if (n <= 4) throw new NotReadyError('database schema not migrated: 1 migration(s) pending (run `tessera migrate`)')
  })
  const run = h.startup.run()
  await h.advance(5000)
  t.equal(await run, true)
  t.same(h.logs.map((l) => l.msg.split(';')[0]), ['not ready: database unavailable (ECONNREFUSED)', 'not ready: database schema not migrated: 1 migration(s) pending (run `tessera migrate`)'])
  t.equal(h.reasons.at(-1), 'database schema not migrated: 1 migration(s) pending (run `tessera migrate`)')
})

t.test('a fatal error ends start-up at once, whatever came before', async (t) => {
  const h = harness(async (n) => {
    if (n === 1) throw refused()
    throw new Error('cannot decrypt the active signing key with KEY_ENCRYPTION_KEY')
  })
  const outcome = h.startup.run().then(() => undefined, (err: Error) => err)
  await h.advance(300)
  t.match(await outcome, { message: /cannot decrypt/ }, 'rejects with the fatal error')
  t.equal(h.startup.attempts, 2, 'no retry after a fatal error')
})

t.test('stop() during a wait ends start-up at once; during an attempt, after it', async (t) => {
  const h = harness(async () => { throw refused() })
  const run = h.startup.run()
  await settle()
  t.equal(h.startup.attempts, 1)
  await h.startup.stop()
  t.equal(await run, false, 'stopped, not ready')
  await h.advance(5000)
  t.equal(h.startup.attempts, 1, 'no attempt after stop')

  let release = () => {}
  const slow = harness(() => new Promise<void>((r) => { release = r }))
  const slowRun = slow.startup.run()
  await settle()
  const stopped = slow.startup.stop()
  release()
  await stopped
  t.equal(await slowRun, false, 'an attempt that succeeds after stop() does not make the instance ready')
})

t.test('a migration that failed because the database went away is retried, not fatal: the cause is judged', async (t) => {
  t.ok(isDatabaseUnavailable(new Error('migration 2026_12_04_0012 failed: connect ECONNREFUSED', { cause: refused() })))
  const lockTimeout = Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03' })
  t.equal(isDatabaseUnavailable(new Error('migration x failed', { cause: lockTimeout })), isDatabaseUnavailable(lockTimeout), 'as the cause itself')
  const syntax = Object.assign(new Error('syntax error at or near "tabel"'), { code: '42601' })
  t.notOk(isDatabaseUnavailable(new Error('migration x failed', { cause: syntax })), 'a broken migration stays fatal')
})
