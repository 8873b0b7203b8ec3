// Brute force and abuse (docs/security.md "Brute force and abuse", issue #12): throttled password checks on
// counters in PostgreSQL, no user enumeration, load shedding, per-client /token rates, and the
// operator's view. SECURITY.md rows #36, #40, #94, #96, #98, #104, #122, #141 and #158 (the same
// rules on /login and the password grant). Time moves with a ManualClock, never by sleeping.
import t from 'tap'
import type { Test } from 'tap'
import { ManualClock } from '../helpers/clock.js'
import { basic, form, FORM, testApp, tokenRequest, type Backend, type TestApp } from '../helpers/app.js'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { disableUser } from '../../src/users/disable-user.js'
import { LoginThrottle } from '../../src/throttle/login-throttle.js'

const PASSWORD = 'correct horse battery'
const BAD_LOGIN = { error: 'invalid_grant', error_description: 'invalid username or password' }
const THROTTLED = { error: 'temporarily_unavailable', error_description: 'too many failed attempts; retry later' }

type Reply = Awaited<ReturnType<TestApp['app']['inject']>>
type Creds = { id: string; secret: string | undefined }

/** POST /login as JSON from `ip`. */
function login(app: TestApp, client: Creds, username: string, password: string, ip = '198.51.100.1'): Promise<Reply> {
  return app.app.inject({
    method: 'POST',
    url: '/login',
    remoteAddress: ip,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ username, password, client_id: client.id, client_secret: client.secret }),
  })
}

/** Status, headers (without the ones that differ per response) and body, for byte-for-byte comparison. */
function shape(res: Reply) {
  const headers = { ...res.headers }
  delete headers.date
  delete headers['content-length'] // the bodies are compared byte for byte below
  return { status: res.statusCode, headers, body: res.body }
}

async function setup(t: Test, env: Record<string, string> = {}, backend: Backend = 'postgres') {
  const clock = new ManualClock()
  const app = await testApp(t, { env, clock, backend })
  const alice = await app.createUser('alice', PASSWORD)
  const client = await app.createClient({ grantTypes: ['password', 'refresh_token', 'client_credentials'] })
  return { app, clock, alice, client }
}

async function auditOf(app: TestApp, type: string) {
  const { rows } = await app.database.db.selectFrom('audit_event').selectAll().where('type', '=', type).orderBy('id').execute().then((rows) => ({ rows }))
  return rows
}

async function metric(app: TestApp, line: string): Promise<number> {
  const text = await app.services.metrics.render()
  const m = new RegExp(`^${line.replace(/[{}()[\]."]/g, '\\$&')} (\\d+)$`, 'm').exec(text)
  return m ? Number(m[1]) : NaN
}

for (const backend of ['postgres', 'pglite'] as const) {
  t.test(`#96 #141 (#12) an account guessed from many addresses backs off exponentially; the right password is refused during a lock and accepted after it (${backend})`, async (t) => {
    const { app, clock, client } = await setup(t, { LOGIN_ACCOUNT_FREE_FAILURES: '3', LOGIN_BACKOFF_BASE_SECONDS: '2', LOGIN_BACKOFF_MAX_SECONDS: '10' }, backend)
    const verified = app.services.passwords.verifications
    // Three free failures, each from its own address (an address+account counter cannot be what locks).
    for (let i = 1; i <= 3; i++) t.same((await login(app, client, 'alice', 'wrong', `203.0.113.${i}`)).json(), BAD_LOGIN, `failure ${i} is judged`)
    // The fourth failure is judged too, and locks the account for the base delay.
    t.same((await login(app, client, 'alice', 'wrong', '203.0.113.4')).json(), BAD_LOGIN, 'failure 4 is judged, and locks')
    t.equal(app.services.passwords.verifications - verified, 4, 'four hashes so far')

    const locked = await login(app, client, 'alice', PASSWORD, '203.0.113.5')
    t.equal(locked.statusCode, 429, 'the right password is refused during the lock')
    t.same(locked.json(), THROTTLED)
    t.equal(locked.headers['retry-after'], '2', 'Retry-After: the base delay')
    t.equal(locked.headers['cache-control'], 'no-store')
    t.equal(app.services.passwords.verifications - verified, 4, 'refused before any hash was computed')

    clock.advance(2_000)
    t.same((await login(app, client, 'alice', 'wrong', '203.0.113.6')).json(), BAD_LOGIN, 'after the lock, one more guess is judged')
    t.equal((await login(app, client, 'alice', PASSWORD, '203.0.113.7')).headers['retry-after'], '4', 'and the next lock is twice as long')
    clock.advance(4_000)
    t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.8')).statusCode, 400)
    t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.8')).headers['retry-after'], '8')
    clock.advance(8_000)
    t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.9')).statusCode, 400)
    t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.9')).headers['retry-after'], '10', 'capped at LOGIN_BACKOFF_MAX_SECONDS')

    clock.advance(10_000)
    const ok = await login(app, client, 'alice', PASSWORD, '203.0.113.10')
    t.equal(ok.statusCode, 200, 'after the lock, the right password logs in: locks are never permanent')
    // A success resets the account: three free failures again.
    for (let i = 0; i < 3; i++) t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.11')).statusCode, 400)
    t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.12')).statusCode, 400)
    t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.12')).statusCode, 429, 'locked again only after the free failures')

    const locks = await auditOf(app, 'login.locked')
    t.ok(locks.length >= 5, `every lock is an audit event (${locks.length})`)
    t.match(locks[0]!.detail, { kind: 'account', username: 'alice', failures: 4, seconds: 2 })
    t.equal(locks[0]!.ip, '203.0.113.4')
    t.equal(await metric(app, 'tessera_login_locks_total{kind="account"}'), locks.filter((e) => e.detail.kind === 'account').length, 'and a metric')
    t.ok((await metric(app, 'tessera_login_throttled_total{kind="account"}')) >= 5, 'refused checks are counted')
  })
}

t.test('#96 (#12) stuffing: one address, one wrong password for each of 200 accounts: the address is slowed; the accounts are not, from elsewhere', async (t) => {
  const { app, clock, client } = await setup(t)
  const stuffer = '192.0.2.66'
  const statuses: number[] = []
  for (let i = 0; i < 200; i++) statuses.push((await login(app, client, `user${i}@example.com`, `leaked-password-${i}`, stuffer)).statusCode)
  t.same(statuses.slice(0, 100), Array(100).fill(400), 'LOGIN_ADDRESS_FREE_FAILURES (100) failures are judged')
  t.equal(statuses[100], 400, 'the 101st is judged too, and locks the address')
  t.same(statuses.slice(101), Array(99).fill(429), 'then the address waits')
  const lock = (await auditOf(app, 'login.locked')).find((e) => e.detail.kind === 'address')
  t.match(lock?.detail, { kind: 'address', address: stuffer, failures: 101, seconds: 1 })

  // Each account met one failure: from another address, its owner logs in; alice is untouched.
  await app.createUser('user7@example.com', PASSWORD)
  t.equal((await login(app, client, 'user7@example.com', PASSWORD, '198.51.100.20')).statusCode, 200, 'an attacked account logs in from its own address')
  t.equal((await login(app, client, 'alice', PASSWORD, '198.51.100.21')).statusCode, 200, 'another account from another address is untouched')
  t.equal((await login(app, client, 'alice', PASSWORD, stuffer)).statusCode, 429, 'the stuffing address is refused even for a right password')
  clock.advance(1_000)
  t.equal((await login(app, client, 'alice', PASSWORD, stuffer)).statusCode, 200, 'until its lock ends')
})

t.test('#94 (#12) no enumeration: unknown user, wrong password, empty password, disabled user answer byte-identical 400s after one argon2id verify each', async (t) => {
  const { app, client } = await setup(t)
  await app.createUser('bob', PASSWORD)
  await disableUser(app.database.db, 'bob', CLI_CONTEXT)
  const cases = [
    ['unknown user', 'nobody', PASSWORD],
    ['wrong password', 'alice', 'wrong password'],
    ['empty password', 'alice', ''],
    ['disabled user', 'bob', PASSWORD],
  ] as const
  const shapes = []
  for (const [name, username, password] of cases) {
    const before = app.services.passwords.verifications
    // Each from its own address: the address counters stay alike.
    const res = await login(app, client, username, password, `198.51.100.${shapes.length + 30}`)
    t.equal(app.services.passwords.verifications - before, 1, `${name}: one argon2id verify (a decoy where there is no usable hash)`)
    t.same(res.json(), BAD_LOGIN, name)
    shapes.push(shape(res))
  }
  for (const [i, s] of shapes.entries()) t.same(s, shapes[0], `${cases[i]![0]}: same status, headers and body as ${cases[0][0]}`)
  const reasons = (await auditOf(app, 'login.failed')).map((e) => e.detail.reason)
  t.same(reasons, ['unknown_user', 'bad_password', 'bad_password', 'disabled'], 'the audit trail (not the answer) knows why')
})

t.test('#94 #96 (#12) no enumeration under a lock: an existing and an unknown account locked alike answer byte-identical 429s, whatever the password or state', async (t) => {
  const { app, client } = await setup(t, { LOGIN_ACCOUNT_FREE_FAILURES: '2' })
  await app.createUser('bob', PASSWORD)
  await disableUser(app.database.db, 'bob', CLI_CONTEXT)
  // Three failures each, at the same instant, from addresses of their own.
  for (const username of ['alice', 'nobody', 'bob']) {
    for (let i = 0; i < 3; i++) t.equal((await login(app, client, username, 'wrong', `203.0.113.${i + 40}`)).statusCode, 400)
  }
  const before = app.services.passwords.verifications
  const answers = [
    await login(app, client, 'alice', PASSWORD, '198.51.100.50'), // right password
    await login(app, client, 'alice', 'wrong', '198.51.100.51'),
    await login(app, client, 'nobody', PASSWORD, '198.51.100.52'), // no such account
    await login(app, client, 'bob', PASSWORD, '198.51.100.53'), // disabled
    await login(app, client, 'ALICE', '', '198.51.100.54'), // the normalised username, an empty password
  ]
  t.equal(app.services.passwords.verifications, before, 'no hash was computed for any of them')
  for (const res of answers) {
    t.equal(res.statusCode, 429)
    t.same(shape(res), shape(answers[0]!), 'same status, headers (Retry-After too) and body')
  }
  t.same(answers[0]!.json(), THROTTLED)
})

t.test('#94 #96 (#12) an address lock answers every username alike, existing or not', async (t) => {
  const { app, client } = await setup(t, { LOGIN_ADDRESS_FREE_FAILURES: '3' })
  const ip = '192.0.2.77'
  for (let i = 0; i < 4; i++) await login(app, client, `probe${i}`, 'wrong', ip)
  const a = await login(app, client, 'alice', PASSWORD, ip)
  const b = await login(app, client, 'nobody', PASSWORD, ip)
  t.equal(a.statusCode, 429)
  t.same(shape(a), shape(b))
})

t.test('#158 (#12) the password grant shares the counters of /login', async (t) => {
  const { app, client } = await setup(t, { LOGIN_ACCOUNT_FREE_FAILURES: '2' })
  const grant = (password: string) => app.app.inject({ method: 'POST', url: '/token', remoteAddress: '203.0.113.90', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ grant_type: 'password', username: 'alice', password }) })
  t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.91')).statusCode, 400)
  t.equal((await grant('wrong')).statusCode, 400)
  t.equal((await login(app, client, 'alice', 'wrong', '203.0.113.92')).statusCode, 400, 'the third failure, across both routes, locks')
  const res = await grant(PASSWORD)
  t.equal(res.statusCode, 429, 'the grant is refused with the right password')
  t.same(res.json(), THROTTLED)
  t.match(res.headers['retry-after'], /^\d+$/)
})

t.test('(#12) TRUST_PROXY trusts one hop: the address is the last X-Forwarded-For entry, never one the client wrote', async (t) => {
  const { app, client } = await setup(t, { TRUST_PROXY: 'true', LOGIN_ADDRESS_FREE_FAILURES: '2' })
  const viaProxy = (xff: string, username: string) => app.app.inject({
    method: 'POST', url: '/login', remoteAddress: '10.0.0.2',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': xff },
    payload: JSON.stringify({ username, password: 'wrong', client_id: client.id, client_secret: client.secret }),
  })
  // The attacker writes a new first entry each time; the proxy appends what it saw.
  for (let i = 0; i < 3; i++) t.equal((await viaProxy(`1.1.1.${i}, 203.0.113.200`, `victim${i}`)).statusCode, 400)
  t.equal((await viaProxy('1.1.1.99, 203.0.113.200', 'victim9')).statusCode, 429, 'the spoofed entries did not make new addresses')
  t.equal((await viaProxy('203.0.113.201', 'victim9')).statusCode, 400, 'another real address is not slowed')
  const lock = (await auditOf(app, 'login.locked'))[0]
  t.equal(lock?.ip, '203.0.113.200')
})

t.test('(#12) IPv6 addresses are throttled by their /64', async (t) => {
  const { app, client } = await setup(t, { LOGIN_ADDRESS_FREE_FAILURES: '2' })
  for (let i = 1; i <= 3; i++) t.equal((await login(app, client, `v6user${i}`, 'wrong', `2001:db8:1:2::${i}`)).statusCode, 400)
  t.equal((await login(app, client, 'v6user9', 'wrong', '2001:db8:1:2:ffff:ffff:ffff:ffff')).statusCode, 429, 'the whole /64 waits')
  t.equal((await login(app, client, 'v6user9', 'wrong', '2001:db8:1:3::1')).statusCode, 400, 'the next /64 does not')
})

t.test('#36 (#12) load shedding: with the argon2id queue full, further password checks get 503 + Retry-After at once; nothing else waits', async (t) => {
  // Slow hashes (t=12): a queued check waits long enough to tell "at once" from "after the queue".
  const { app, client } = await setup(t, { ARGON2_TIME_COST: '12', PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE: '2', LOGIN_ACCOUNT_FREE_FAILURES: '100', LOGIN_ADDRESS_FREE_FAILURES: '100', LOGIN_ADDRESS_ACCOUNT_FREE_FAILURES: '100' })
  const order: string[] = []
  const tagged = (p: Promise<Reply>, i: number) => p.then((res) => { order.push(`${res.statusCode}`); return { i, res } })
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => tagged(login(app, client, 'alice', PASSWORD, `198.51.100.${100 + i}`), i)))
  const shed = results.filter((r) => r.res.statusCode === 503)
  const ok = results.filter((r) => r.res.statusCode === 200)
  t.equal(ok.length + shed.length, 8, `every check is 200 or 503 (${ok.length} / ${shed.length})`)
  t.ok(shed.length >= 1, 'some are shed')
  t.ok(ok.length >= 3, 'the running one and the queued ones finish')
  for (const { res } of shed) {
    t.same(res.json(), { error: 'temporarily_unavailable', error_description: 'the server is busy; retry later' })
    t.equal(res.headers['retry-after'], '1')
  }
  const second200 = order.indexOf('200', order.indexOf('200') + 1)
  t.ok(second200 > order.lastIndexOf('503'), `every 503 was answered before any queued check finished (${order.join(' ')})`)
  t.equal(await metric(app, 'tessera_password_checks_shed_total'), shed.length)
  const { rows } = await app.database.db.selectFrom('login_throttle').selectAll().execute().then((rows) => ({ rows }))
  t.same(rows.filter((r) => r.failures !== 0 || r.blocked_until !== null), [], 'a shed check counted no failure')
  t.equal((await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).statusCode, 200)
})

t.test('#40 (#12) per-client /token rate: 429 + Retry-After past the client\'s burst, its own --rate-limit over the default, others untouched', async (t) => {
  const { app, clock, client } = await setup(t, { CLIENT_RATE_LIMIT_PER_SECOND: '3' })
  const cc = (c: Creds) => tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, c)
  const statuses: number[] = []
  for (let i = 0; i < 7; i++) statuses.push((await cc(client)).statusCode)
  t.same(statuses, [200, 200, 200, 200, 200, 200, 429], 'a burst of twice the rate, then refused')
  const refused = await cc(client)
  t.equal(refused.statusCode, 429)
  t.same(refused.json(), { error: 'temporarily_unavailable', error_description: 'too many requests from this client; retry later' })
  t.equal(refused.headers['retry-after'], '1')
  t.equal(refused.headers['cache-control'], 'no-store')
  const other = await app.createClient({ grantTypes: ['client_credentials'] })
  t.equal((await cc(other)).statusCode, 200, 'another client has its own bucket')
  clock.advance(1_000)
  t.same([(await cc(client)).statusCode, (await cc(client)).statusCode, (await cc(client)).statusCode, (await cc(client)).statusCode], [200, 200, 200, 429], 'refilled at the rate')
  t.equal(await metric(app, 'tessera_client_rate_limited_total'), 3)

  const unlimited = await app.createClient({ grantTypes: ['client_credentials'], rateLimitPerSecond: 0 })
  const own = await app.createClient({ grantTypes: ['client_credentials'], rateLimitPerSecond: 1 })
  const many = await Promise.all(Array.from({ length: 20 }, () => cc(unlimited)))
  t.same(new Set(many.map((r) => r.statusCode)), new Set([200]), '--rate-limit 0: no limit')
  t.same([(await cc(own)).statusCode, (await cc(own)).statusCode, (await cc(own)).statusCode], [200, 200, 429], 'its own rate over the default')
})

t.test('#122 (#12) operators see and clear an account\'s or an address\'s state (admin API), audited', async (t) => {
  const { app, clock, client } = await setup(t, { LOGIN_ACCOUNT_FREE_FAILURES: '2', LOGIN_ADDRESS_FREE_FAILURES: '50' })
  const admin = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const token = (await tokenRequest(app, { grant_type: 'client_credentials', scope: 'tessera:admin' }, admin)).json().access_token as string
  const call = (method: 'GET' | 'DELETE', url: string, bearer: string | null = token) =>
    app.app.inject({ method, url, remoteAddress: '192.0.2.50', headers: bearer === null ? {} : { authorization: `Bearer ${bearer}` } })

  for (let i = 0; i < 3; i++) await login(app, client, 'Alice', 'wrong', '203.0.113.60')
  const state = await call('GET', '/admin/throttle?account=ALICE')
  t.equal(state.statusCode, 200)
  t.equal(state.headers['cache-control'], 'no-store')
  const body = state.json()
  t.equal(body.account, 'alice', 'the normalised username')
  t.equal(body.locked, true)
  const account = body.counters.find((c: { kind: string }) => c.kind === 'account')
  t.match(account, { kind: 'account', account: 'alice', failures: 3, locked: true, retry_after: 1 })
  t.match(body.counters.find((c: { kind: string }) => c.kind === 'address_account'), { account: 'alice', address: '203.0.113.60', failures: 3 })

  const byAddress = (await call('GET', '/admin/throttle?address=203.0.113.60')).json()
  t.same(byAddress.counters.map((c: { kind: string }) => c.kind).sort(), ['address', 'address_account'])
  t.equal(byAddress.locked, false, 'the address itself has free failures left')

  t.equal((await call('GET', '/admin/throttle')).statusCode, 400, 'exactly one of account and address')
  t.equal((await call('GET', '/admin/throttle?account=a&address=192.0.2.1')).statusCode, 400)
  t.equal((await call('GET', '/admin/throttle?address=not-an-ip')).statusCode, 400)
  t.equal((await call('GET', '/admin/throttle?account=alice', null)).statusCode, 401, 'an admin token is needed')
  t.equal((await call('DELETE', '/admin/throttle?account=alice', null)).statusCode, 401)

  const cleared = await call('DELETE', '/admin/throttle?account=alice')
  t.same(cleared.json(), { account: 'alice', cleared: 2 })
  t.equal((await login(app, client, 'alice', PASSWORD, '203.0.113.60')).statusCode, 200, 'the lock ended at once')
  const audit = await auditOf(app, 'login_throttle.cleared')
  t.match(audit[0], { client_id: admin.id, ip: '192.0.2.50', detail: { account: 'alice', cleared: 2, via: 'admin_api', admin_client_id: admin.id } })
  t.same((await call('GET', '/admin/throttle?account=alice')).json(), { account: 'alice', locked: false, counters: [] })
  clock.advance(0)
})

t.test('(#12) housekeeping deletes counters that have been quiet for LOGIN_FAILURE_MEMORY_SECONDS and are not locked', async (t) => {
  const { app, client } = await setup(t)
  await login(app, client, 'alice', 'wrong', '203.0.113.70')
  const db = app.database.db
  await db.updateTable('login_throttle').set({ last_failure_at: new Date(Date.parse('2020-01-01')) }).where('kind', '=', 'account').execute()
  const { runHousekeeping, housekeepingSettings } = await import('../../src/housekeeping/housekeeping.js')
  const deleted = await runHousekeeping(db, housekeepingSettings(app.config))
  t.equal(deleted.login_throttle, 1)
  t.same((await db.selectFrom('login_throttle').select('kind').orderBy('kind').execute()).map((r) => r.kind), ['address', 'address_account'])
})

t.test('(#12) concurrent attempts, successes and cancellations on one account and address never deadlock: every counter is settled', async (t) => {
  // An attempt locks its counters in key order; settling one must take them in the same order, or
  // an attempt holding the account's row while waiting for the address's deadlocks with a success
  // holding the address's row (seen in CI as a 503 among 20 parallel logins of one user). A success
  // deletes the account's counters, and the next attempts create them again: 30 workers in a loop
  // keep that happening. Until an attempt created or locked all its counters in one statement
  // (migration 0023), more than half of such attempts ended in a 40P01 (the bench's /login
  // scenario saw them as 503s).
  const { app } = await setup(t)
  const policy = { ...app.config.loginThrottle, accountFreeFailures: 100_000, addressFreeFailures: 100_000, addressAccountFreeFailures: 100_000 }
  const throttle = new LoginThrottle(app.services.db, policy, app.services.clock, app.services.metrics)
  const WORKERS = 30
  const ROUNDS = 8
  const outcomes = (
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        const mine: PromiseSettledResult<number>[] = []
        for (let r = 0; r < ROUNDS; r++) {
          const i = w * ROUNDS + r
          mine.push(
            await (async () => {
              const attempt = await throttle.begin('alice', '198.51.100.9')
              if (i % 3 === 0) await throttle.succeeded(attempt)
              else if (i % 3 === 1) await throttle.cancel(attempt)
              return i
            })().then(
              (value) => ({ status: 'fulfilled' as const, value }),
              (reason: unknown) => ({ status: 'rejected' as const, reason }),
            ),
          )
        }
        return mine
      }),
    )
  ).flat()
  t.equal(outcomes.length, WORKERS * ROUNDS)
  t.same(
    outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason)),
    [],
    'no attempt failed (no deadlock, no lock timeout)',
  )
  const rows = await app.database.db.selectFrom('login_throttle').select(['kind', 'failures']).orderBy('kind').execute()
  const address = rows.find((r) => r.kind === 'address')
  // The address keeps exactly the 80 attempts that were left counted as failures (successes and
  // cancellations took theirs back); the account's counter started again at some success.
  const unsettled = outcomes.filter((o) => o.status === 'fulfilled' && o.value % 3 === 2).length
  t.equal(unsettled, 80)
  t.equal(address?.failures, unsettled, 'the address counts the unsettled attempts')
  t.ok(rows.every((r) => r.failures <= unsettled))
})
