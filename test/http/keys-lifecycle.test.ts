// Signing-key lifecycle with a controllable clock (SECURITY E #84–#89, K #139, #143, #145):
// the schedule (pending → active → retired → removed), the JWKS cache contract, a full
// rotation drill against a resource server that verifies with jose's createRemoteJWKSet and
// honours the cache headers, several instances running the schedule at once, and changes
// reaching every instance within seconds without a restart.
import { Writable } from 'node:stream'
import { createLocalJWKSet, createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify, type JWK } from 'jose'
import { sql } from 'kysely'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp, type Tessera } from '../../src/app.js'
import { openDatabase } from '../../src/db/connect.js'
import type { SigningKeyRow } from '../../src/db/schema.js'
import { kekSet, parseKek } from '../../src/keys/kek.js'
import type { KeyPolicy } from '../../src/keys/policy.js'
import { retireLine, revokeKey, rotateKey, runKeySchedule, scheduleRotation, type KeyOptions } from '../../src/keys/lifecycle.js'
import { basic, FORM, form, ISSUER, passwordLogin, TEST_KEK, testApp, type TestApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

const API = 'https://api.example.com'
const HOUR = 3600
// Short enough for a drill, long enough that every allowance is visible.
const ENV = {
  KEY_ROTATION_INTERVAL_SECONDS: String(HOUR),
  JWKS_MAX_AGE_SECONDS: '300',
  CACHE_REFRESH_SECONDS: '10',
  KEY_CLOCK_SKEW_SECONDS: '60',
  ACCESS_TOKEN_TTL_SECONDS: '900',
}
const LEAD = 300 + 10 + 60 // max-age ceiling + propagation + skew
const RETENTION = 900 + 300 + 10 + 60 // longest token + the same allowances
const kek = parseKek(TEST_KEK)

/** A clock the test moves by hand (`advance` in seconds; `now` in ms); the apps' timers follow it. */
function clock(start = Date.now()) {
  const manual = new ManualClock(start)
  return {
    clock: manual,
    get now() {
      return manual.ms
    },
    advance: (seconds: number) => manual.advance(seconds * 1000),
    fn: () => manual.ms,
  }
}

/** Key lifecycle options at `nowMs` with this file's KEK. */
const at = (nowMs: number, policy: KeyPolicy): KeyOptions => ({ keks: kekSet(kek), policy, nowMs })

/**
 * One line's keys (default: the access-token line, ES256). The RS256 line (ID tokens) starts at
 * the same instant and so runs in lockstep; the tests of both lines are at the end.
 */
async function rows(app: { database: TestApp['database'] }, line = 'ES256'): Promise<SigningKeyRow[]> {
  // Keys made at the same instant (the first key and its standby): the one that signed first, first.
  return app.database.db.selectFrom('signing_key').selectAll().where('alg', 'like', line).orderBy('created_at').orderBy(sql`activated_at asc nulls last`).orderBy('kid').execute()
}

const states = async (app: TestApp, line = 'ES256') => (await rows(app, line)).map((r) => r.state)

function getJwks(app: { app: TestApp['app'] }, headers: Record<string, string> = {}) {
  return app.app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers })
}

const maxAgeOf = (cacheControl: unknown) => Number(/max-age=(\d+)/.exec(String(cacheControl))![1])
/** The kids of one line in a JWKS body. */
const kidsOf = (body: string, line = 'ES256') => (JSON.parse(body) as { keys: JWK[] }).keys.filter((k) => k.alg === line).map((k) => k.kid!).sort()

async function clientToken(app: { app: TestApp['app'] }, client: { id: string; secret: string | undefined }, scope = 'read'): Promise<string> {
  const res = await app.app.inject({ method: 'POST', url: '/token', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ grant_type: 'client_credentials', scope }) })
  if (res.statusCode !== 200) throw new Error(`token: ${res.statusCode} ${res.body}`)
  return res.json().access_token
}

/** A second instance on the same database, with its own pool and the same clock. */
async function secondInstance(t: Test, app: TestApp, clock: ManualClock): Promise<Tessera> {
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 3, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  const quiet = new Writable({ write: (_c, _e, cb) => cb() })
  const other = await buildApp({ config: app.config, database, logStream: quiet, clock })
  t.teardown(async () => {
    await other.close()
    await database.close()
  })
  return other
}

t.test('#85 #86 the schedule: a standby is published as soon as a key is active, signs one interval later; retired for the retention, then removed', async (t) => {
  const c = clock()
  const t0 = c.now
  const app = await testApp(t, { clock: c.clock, env: ENV })
  const policy = app.services.keyring.policy
  t.equal(policy.publishLeadSeconds, LEAD)
  t.equal(policy.retentionSeconds, RETENTION)
  const [first, standby] = await rows(app)
  t.equal(first!.state, 'active')
  t.equal(first!.activated_at!.getTime(), t0, 'dates come from the injected clock')
  t.equal(standby!.state, 'pending', 'the standby is published at start')
  t.equal(standby!.created_at.getTime(), t0)
  t.equal(standby!.activate_at!.getTime(), t0 + HOUR * 1000, 'it signs one interval after the active key started')
  t.same(kidsOf((await getJwks(app)).body), [first!.kid, standby!.kid].sort(), 'published at once')
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 300, 'the next change is an interval away: the ceiling')
  t.equal(decodeProtectedHeader(await clientToken(app, await app.createClient())).kid, first!.kid, 'the pending key does not sign')

  // Before the activation max-age shrinks: the next standby is published right after it.
  c.advance(HOUR - 360)
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 300)
  c.advance(100)
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 200, 'shortened to the activation minus the skew allowance')
  c.advance(200)
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 0, 'within the skew allowance of the activation: 0')
  c.advance(59)
  await app.jobs.keySync.run()
  t.same(await states(app), ['active', 'pending'], 'not a second early')
  c.advance(1)
  await app.jobs.keySync.run()
  const activated = await rows(app)
  t.same(activated.map((r) => r.state), ['retired', 'active', 'pending'], 'activation, and the next standby in the same step')
  t.equal(activated[1]!.activated_at!.getTime(), c.now)
  t.equal(activated[0]!.retired_at!.getTime(), c.now)
  t.equal(activated[0]!.remove_at!.getTime(), c.now + RETENTION * 1000, 'removal after the retention')
  t.equal(activated[0]!.private_key_enc.length, 0, 'a retired key never signs again: its private part is destroyed')
  t.equal(activated[2]!.created_at.getTime(), c.now)
  t.equal(activated[2]!.activate_at!.getTime(), c.now + HOUR * 1000, 'the next standby signs one interval later')
  t.equal(decodeProtectedHeader(await clientToken(app, await app.createClient())).kid, standby!.kid, 'the former standby signs')
  const jwks = await getJwks(app)
  t.same(kidsOf(jwks.body), activated.map((r) => r.kid).sort(), 'the retired key is still published, the new standby already')
  t.equal(maxAgeOf(jwks.headers['cache-control']), 300, 'the next change is far: the ceiling')

  c.advance(RETENTION - 60)
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 0, 'within the skew allowance before the removal: 0')
  c.advance(-100)
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 100, 'shortened to the removal minus the allowance')
  c.advance(160 - 1)
  await app.jobs.keySync.run()
  t.same(await states(app), ['retired', 'active', 'pending'], 'not a second early')
  c.advance(1)
  await app.jobs.keySync.run()
  const removed = await rows(app)
  t.same(removed.map((r) => r.state), ['removed', 'active', 'pending'])
  t.equal(removed[0]!.removed_at!.getTime(), c.now)
  t.same(kidsOf((await getJwks(app)).body), [standby!.kid, removed[2]!.kid].sort(), 'the removed key left the JWKS')
})

t.test('rotation off (KEY_ROTATION_INTERVAL_SECONDS=0): no key is ever published by the schedule; max-age is the ceiling', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: { ...ENV, KEY_ROTATION_INTERVAL_SECONDS: '0' } })
  c.advance(400 * 86_400)
  await app.jobs.keySync.run()
  t.same(await states(app), ['active'])
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 300)
})

t.test('a scheduled rotation by command (keys rotate): pending now, active after the lead, idempotent', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: { ...ENV, KEY_ROTATION_INTERVAL_SECONDS: '0' } })
  const [first] = await rows(app)
  c.advance(1)
  const r = await scheduleRotation(app.database.db, at(c.now, app.services.keyring.policy), 'ES256')
  t.match(r, { state: 'pending', created: true })
  t.equal(r.activateAt.getTime(), c.now + LEAD * 1000)
  const again = await scheduleRotation(app.database.db, at(c.now + 5000, app.services.keyring.policy), 'ES256')
  t.same(again, { ...r, created: false }, 'a second call returns the same pending key')
  await app.jobs.keySync.run()
  t.same(kidsOf((await getJwks(app)).body), [first!.kid, r.kid].sort(), 'the instance saw it within one tick')
  c.advance(LEAD)
  await app.jobs.keySync.run()
  t.same(await states(app), ['retired', 'active'])
  t.equal(decodeProtectedHeader(await clientToken(app, await app.createClient())).kid, r.kid)
})

/**
 * A resource server that verifies with jose's createRemoteJWKSet and honours the JWKS cache
 * headers, in the test clock: it re-fetches when max-age has run out, and never otherwise (no
 * re-fetch on an unknown kid: the strictest cache). Every failure is recorded.
 */
function resourceServer(jwksUrl: string, now: () => number) {
  const rs = { fetches: 0, expiresAt: -Infinity, maxAges: [] as number[], failures: [] as string[], verified: 0 }
  const jwks = createRemoteJWKSet(new URL(jwksUrl), {
    cacheMaxAge: Infinity,
    cooldownDuration: Infinity,
    [customFetch]: async (url: string, init: RequestInit) => {
      const res = await fetch(url, init)
      const cc = res.headers.get('cache-control') ?? ''
      const maxAge = /no-cache|no-store/.test(cc) ? 0 : maxAgeOf(cc)
      rs.fetches++
      rs.maxAges.push(maxAge)
      rs.expiresAt = now() + maxAge * 1000
      return res
    },
  })
  return {
    stats: rs,
    /** Verifies an access token (ES256 line), or an ID token for `idTokenFor` as a relying party pinned to RS256 would. */
    async verify(token: string, label: string, idTokenFor?: string) {
      if (now() >= rs.expiresAt) await jwks.reload()
      try {
        const expect = idTokenFor === undefined ? { audience: API, typ: 'at+jwt', algorithms: ['ES256'] } : { audience: idTokenFor, typ: 'JWT', algorithms: ['RS256'] }
        await jwtVerify(token, jwks, { issuer: ISSUER, ...expect, currentDate: new Date(now()) })
        rs.verified++
      } catch (err) {
        rs.failures.push(`${label}: ${(err as Error & { code?: string }).code ?? (err as Error).message}`)
      }
    },
  }
}

t.test('rotation drill: a resource server honouring the cache headers verifies every access token (ES256 line) and ID token (RS256 line) before, during and after two rotations of both lines (#85 #86 #89)', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV })
  const b = await secondInstance(t, app, c.clock)
  await app.app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.app.server.address() as { port: number }).port
  const rs = resourceServer(`http://127.0.0.1:${port}/.well-known/jwks.json`, c.fn)
  const client = await app.createClient()
  await app.createUser('drill', 'correct horse battery staple')
  const introspect = (token: string, via: { app: TestApp['app'] }) =>
    via.app.inject({ method: 'POST', url: '/introspect', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token }) }).then((r) => r.json().active as boolean)

  const live: { token: string; exp: number; label: string; idTokenFor?: string }[] = []
  const samples: { at: number; etag: string; maxAge: number }[] = []
  const kidsSeen = new Set<string>()
  const idKidsSeen = new Set<string>()
  const STEP = 30
  const steps = Math.ceil((2 * HOUR + RETENTION + 300) / STEP)
  let tesseraFailures = 0
  for (let i = 0; i < steps; i++) {
    c.advance(STEP)
    // Both instances run the schedule (they race for it) and pick up each other's changes.
    await Promise.all([app.jobs.keySync.run(), b.jobs.keySync.run()])
    const jwks = await getJwks(i % 2 === 0 ? app : b)
    samples.push({ at: c.now, etag: String(jwks.headers.etag), maxAge: maxAgeOf(jwks.headers['cache-control']) })
    const via = i % 2 === 0 ? app : b
    const token = await clientToken(via, client)
    kidsSeen.add(decodeProtectedHeader(token).kid!)
    live.push({ token, exp: c.now + 900_000, label: `token ${i} (${i % 2 === 0 ? 'A' : 'B'})` })
    // An ID token every fourth step (a password login: argon2id), from the other instance.
    if (i % 4 === 0) {
      const idToken = (await passwordLogin(i % 8 === 0 ? b : app, client, 'drill', 'correct horse battery staple', 'openid')).id_token!
      idKidsSeen.add(decodeProtectedHeader(idToken).kid!)
      live.push({ token: idToken, exp: c.now + 900_000, label: `id token ${i}`, idTokenFor: client.id })
    }
    while (live.length > 0 && live[0]!.exp <= c.now) live.shift()
    for (const l of live) await rs.verify(l.token, l.label, l.idTokenFor)
    // Tessera's own verifier agrees, on both instances (oldest and newest live access token).
    const access = live.filter((l) => l.idTokenFor === undefined)
    for (const l of [access[0]!, access[access.length - 1]!]) for (const inst of [app, b]) if (!(await introspect(l.token, inst))) tesseraFailures++
  }
  const final = await rows(app)
  t.same(final.map((r) => r.state), ['removed', 'removed', 'active', 'pending'], 'two rotations happened: the first two keys came and went, a standby waits')
  t.same((await rows(app, 'RS256')).map((r) => r.state), ['removed', 'removed', 'active', 'pending'], 'the RS256 line rotated twice too')
  t.equal(kidsSeen.size, 3, 'access tokens were signed by three ES256 keys in turn')
  t.equal(idKidsSeen.size, 3, 'ID tokens were signed by three RS256 keys in turn')
  t.ok([...idKidsSeen].every((kid) => final.every((r) => r.kid !== kid)), 'no ID token was signed by an access-token key')
  t.same(rs.stats.failures, [], 'zero verification failures at the resource server')
  t.ok(rs.stats.verified > steps * 10, `${rs.stats.verified} verifications`)
  t.equal(tesseraFailures, 0, "Tessera's own introspection accepted every live token on both instances")
  t.ok(rs.stats.fetches > steps / 12, `the resource server re-fetched as max-age allowed (${rs.stats.fetches} fetches)`)
  t.ok(rs.stats.maxAges.some((m) => m < 300), 'max-age shortened near a change')

  // The cache contract, black-box: no answer's max-age outlived its key set.
  let violations = 0
  for (const s of samples) for (const later of samples) if (later.at > s.at && later.at < s.at + s.maxAge * 1000 && later.etag !== s.etag) violations++
  t.equal(violations, 0, 'every max-age ended before the key set changed')
  t.ok(samples.every((s) => s.maxAge <= 300), 'never beyond the ceiling')
  // Each key was published at least the lead before it signed, and kept for the retention.
  for (const r of final.slice(1, 3)) t.ok(r.activated_at!.getTime() - r.created_at.getTime() >= HOUR * 1000, `${r.kid.slice(0, 8)} published an interval (${HOUR}s ≥ ${LEAD}s) before it signed`)
  for (const r of final.slice(0, 2)) t.ok(r.removed_at!.getTime() - r.retired_at!.getTime() >= RETENTION * 1000, `${r.kid.slice(0, 8)} kept ${RETENTION}s after retirement`)
})

t.test('#88 #143 five instances run the schedule at once: exactly one new key at each step, never zero active keys', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV })
  const others = await Promise.all(Array.from({ length: 4 }, () => secondInstance(t, app, c.clock)))
  const all = [app, ...others]
  t.same((await states(app)).sort(), ['active', 'pending'], 'one standby at start: the other instances made no key')
  const activeCount = async () => (await rows(app)).filter((r) => r.state === 'active').length

  // Revoke the standby: every instance wants to publish the next one at once.
  await revokeKey(app.database.db, at(c.now, app.services.keyring.policy), (await rows(app))[1]!.kid)
  await Promise.all([...all.map((i) => i.jobs.keySync.run()), ...Array.from({ length: 10 }, () => runKeySchedule(app.database.db, at(c.now, app.services.keyring.policy)))])
  t.same((await states(app)).sort(), ['active', 'pending', 'revoked'], 'exactly one new standby')

  c.advance(HOUR)
  await Promise.all([...all.map((i) => i.jobs.keySync.run()), ...Array.from({ length: 10 }, () => runKeySchedule(app.database.db, at(c.now, app.services.keyring.policy)))])
  t.same((await states(app)).sort(), ['active', 'pending', 'retired', 'revoked'], 'exactly one activation and one new standby')
  t.equal(await activeCount(), 1)
  const etags = new Set<string>()
  for (const i of all) {
    await i.jobs.keySync.run()
    etags.add(String((await getJwks(i)).headers.etag))
  }
  t.equal(etags.size, 1, 'every instance serves the same key set (#145)')
  const activeKid = (await rows(app)).find((r) => r.state === 'active')!.kid
  for (const i of all) t.equal(i.services.keyring.activeSigner().kid, activeKid, 'every instance signs with the new key')

  c.advance(RETENTION)
  await Promise.all(all.map((i) => i.jobs.keySync.run()))
  t.same((await states(app)).sort(), ['active', 'pending', 'removed', 'revoked'], 'exactly one removal')
})

t.test('the schedule runs by itself on the background timer, and a change reaches another instance within seconds (#139)', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV })
  const b = await secondInstance(t, app, c.clock)
  const before = String((await getJwks(b)).headers.etag)
  // The clock moves an interval: the key-sync timers of both instances fire (one runs the
  // schedule); one poll later (1 s) B has what A did. Nobody calls anything.
  const settled = () => Promise.all([app.jobs.keySync.idle(), b.jobs.keySync.idle()])
  c.advance(HOUR)
  await settled()
  c.advance(1)
  await settled()
  t.ok(String((await getJwks(b)).headers.etag) !== before, 'the standby was activated, the next one published, and that reached B within one poll (1 s), without any call')
  t.same(await states(app), ['retired', 'active', 'pending'])
  t.equal(kidsOf((await getJwks(app)).body).length, 3)
  t.equal((await getJwks(app)).headers.etag, (await getJwks(b)).headers.etag)
})

t.test('#11 #85 a pending key verifies only from its activation time: forged early, refused; after another instance activated it, accepted', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV })
  const b = await secondInstance(t, app, c.clock)
  const client = await app.createClient({ audience: [] })
  await b.jobs.keySync.run()
  const pendingKid = (await rows(app)).find((r) => r.state === 'pending')!.kid
  c.advance(HOUR)
  // A activates and signs; B has not ticked yet and still holds the key as pending.
  await app.jobs.keySync.run()
  const token = await clientToken(app, client, 'read')
  t.equal(decodeProtectedHeader(token).kid, pendingKid)
  const res = await b.app.inject({ method: 'POST', url: '/introspect', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token }) })
  t.equal(res.json().active, true, 'B accepts a token of a key whose activation time has come')
})

t.test('a JWKS request costs no serialisation: the same body object until the key set changes', async (t) => {
  const app = await testApp(t, { env: { ...ENV, KEY_ROTATION_INTERVAL_SECONDS: '0' } })
  const doc = app.services.keyring.jwksDocument()
  await getJwks(app)
  await app.jobs.keySync.run()
  await app.services.keyring.reload()
  t.equal(app.services.keyring.jwksDocument(), doc, 'the very same document object')
  await scheduleRotation(app.database.db, at(Date.now(), app.services.keyring.policy), 'ES256')
  await app.jobs.keySync.run()
  t.not(app.services.keyring.jwksDocument(), doc, 'a new one after the change')
})

t.test('JWKS CORS: GET is open to any origin with the ETag exposed; a preflight for If-None-Match is answered', async (t) => {
  const app = await testApp(t)
  const res = await getJwks(app, { origin: 'https://anywhere.example' })
  t.equal(res.headers['access-control-allow-origin'], '*')
  t.match(String(res.headers['access-control-expose-headers']), /ETag/i)
  t.match(String(res.headers['cache-control']), /^public, max-age=\d+$/)
  const pre = await app.app.inject({ method: 'OPTIONS', url: '/.well-known/jwks.json', headers: { origin: 'https://anywhere.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'if-none-match' } })
  t.equal(pre.statusCode, 204)
  t.equal(pre.headers['access-control-allow-origin'], '*')
  t.match(String(pre.headers['access-control-allow-headers']), /if-none-match/)
})

t.test('a database outage: the keyring keeps its keys, logs once, and recovers', async (t) => {
  const app = await testApp(t, { env: ENV })
  const b = await (async () => {
    const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 2, acquireTimeoutMs: 1000, lockTimeoutMs: 1000 })
    const logs: string[] = []
    const stream = new Writable({ write: (chunk, _e, cb) => (logs.push(String(chunk)), cb()) })
    const inst = await buildApp({ config: app.config, database, logStream: stream })
    t.teardown(() => inst.close())
    return { inst, database, logs }
  })()
  await b.database.close()
  await b.inst.jobs.keySync.run()
  await b.inst.jobs.keySync.run()
  t.equal(b.logs.filter((l) => l.includes('signing key refresh failed')).length, 1, 'logged once')
  t.ok(b.inst.services.keyring.canSign(), 'still signs with the key it has')
  t.equal((await getJwks(b.inst)).statusCode, 200, 'the JWKS is served from memory (#126)')
})

t.test('the embedded database (PGlite) runs the same schedule', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV, backend: 'pglite' })
  t.same(await states(app), ['active', 'pending'])
  c.advance(HOUR)
  await app.jobs.keySync.run()
  t.same(await states(app), ['retired', 'active', 'pending'])
  const revoked = (await rows(app))[0]!.kid
  await revokeKey(app.database.db, at(c.now, app.services.keyring.policy), revoked, { reason: 'test' })
  await app.services.keyring.reload()
  t.equal(kidsOf((await getJwks(app)).body).length, 2, 'the revoked key left the JWKS')
})

t.test('#87 emergency revoke of the active key promotes the standby: its kid was in a JWKS fetched long before, so a cached JWKS verifies its tokens without a re-fetch', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV })
  const client = await app.createClient()
  // A resource server fetched the JWKS at start and keeps it (the strictest cache: no re-fetch at all).
  const early = await getJwks(app)
  const cached = createLocalJWKSet(JSON.parse(early.body) as { keys: JWK[] })
  const [first, standby] = await rows(app)
  c.advance(HOUR / 2)
  await app.jobs.keySync.run()
  const r = await revokeKey(app.database.db, at(c.now, app.services.keyring.policy), first!.kid, { reason: 'leaked' })
  t.match(r, { revoked: true, successor: standby!.kid, successorPrepublished: true }, 'the standby, published half an interval ago, signs now')
  await app.services.keyring.reload()
  const token = await clientToken(app, client)
  t.equal(decodeProtectedHeader(token).kid, standby!.kid)
  t.ok(kidsOf(early.body).includes(standby!.kid), 'the successor was in the JWKS fetched before the revoke')
  await t.resolves(jwtVerify(token, cached, { issuer: ISSUER, audience: API, typ: 'at+jwt', currentDate: new Date(c.now) }), 'a resource server verifies it from its old cache')
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 0, 'until the next standby is published, max-age is 0')
  await app.jobs.keySync.run()
  const after = await rows(app)
  t.same(after.map((r) => r.state), ['revoked', 'active', 'pending'], 'the next standby is published at once')
  t.equal(after[2]!.activate_at!.getTime(), c.now + HOUR * 1000, 'it signs one interval after the promoted key started')
  t.equal(maxAgeOf((await getJwks(app)).headers['cache-control']), 300)
  const audit = await app.database.db.selectFrom('audit_event').select('detail').where('type', '=', 'signing_key.revoked').executeTakeFirstOrThrow()
  t.match(audit.detail, { successor: standby!.kid, successor_prepublished: true })
})

t.test('#87 revoke right after an activation: the standby is too fresh (published < L) but still promoted, and the result says so; with rotation off a new key signs', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV })
  c.advance(HOUR)
  await app.jobs.keySync.run()
  const [, active, standby] = await rows(app)
  c.advance(LEAD - 1)
  const r = await revokeKey(app.database.db, at(c.now, app.services.keyring.policy), active!.kid)
  t.match(r, { successor: standby!.kid, successorPrepublished: false }, 'promoted, though not every cache has it yet')

  const off = await testApp(t, { clock: c.clock, env: { ...ENV, KEY_ROTATION_INTERVAL_SECONDS: '0' } })
  t.same(await states(off), ['active'], 'rotation off: no standby')
  const only = (await rows(off))[0]!.kid
  const r2 = await revokeKey(off.database.db, at(c.now, off.services.keyring.policy), only)
  t.match(r2, { revoked: true, successorPrepublished: false }, 'a key nobody has seen signs at once')
  t.not(r2.successor, only)
})

t.test('each algorithm is a key line of its own: rotating, scheduling or revoking one line leaves the other untouched; a line started by rotate is kept by the schedule', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV })
  const policy = app.services.keyring.policy
  const live = async () => (await rows(app, '%')).length
  const lineOf = async (alg: string) => (await rows(app, alg)).filter((r) => r.state === 'active' || r.state === 'pending').map((r) => `${r.state}:${r.kid}`).sort()
  const es = await lineOf('ES256')
  const rsBefore = await lineOf('RS256')
  t.equal(es.length, 2, 'ES256: active and standby')
  t.equal(rsBefore.length, 2, 'RS256: active and standby')

  const rotated = await rotateKey(app.database.db, at(c.now, policy), 'RS256')
  t.match(rotated, { alg: 'RS256', promoted: true }, 'the RS256 standby signs its line')
  t.same(await lineOf('ES256'), es, 'the ES256 line did not move')
  const byDefault = await rotateKey(app.database.db, at(c.now, policy))
  t.equal(byDefault.alg, 'ES256', 'without an alg: the access-token line (SIGNING_ALG)')
  await app.jobs.keySync.run()
  t.equal(app.services.keyring.activeSigner().kid, byDefault.kid)
  t.equal(app.services.keyring.activeSigner('RS256').kid, rotated.kid)
  t.equal((await lineOf('RS256')).length, 2, 'each line published its next standby')

  const scheduled = await scheduleRotation(app.database.db, at(c.now, policy), 'RS256')
  t.equal(scheduled.alg, 'RS256')
  t.equal((await rows(app, 'ES256')).find((r) => r.state === 'pending')!.activate_at!.getTime(), c.now + HOUR * 1000, 'the ES256 standby keeps its own date')

  const rsActive = app.services.keyring.activeSigner('RS256').kid
  const revoked = await revokeKey(app.database.db, at(c.now, policy), rsActive)
  t.match(revoked, { alg: 'RS256', successor: String })
  t.equal((await rows(app, 'RS256')).find((r) => r.kid === revoked.successor)!.alg, 'RS256', 'the successor is of the revoked line')
  await app.jobs.keySync.run()
  t.equal(app.services.keyring.activeSigner().kid, byDefault.kid, 'access tokens are still signed by the same ES256 key')

  // A third line, started by hand, lives on in the schedule (with its own standby), and shows in discovery.
  const before = await live()
  const ed = await rotateKey(app.database.db, at(c.now, policy), 'EdDSA')
  t.match(ed, { alg: 'EdDSA', retired: [], promoted: false })
  await app.jobs.keySync.run()
  t.equal((await rows(app, 'EdDSA')).length, 2, 'EdDSA: active, and a standby from the schedule')
  t.ok((await live()) > before)
  const discovery = await app.app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })
  t.same(discovery.json().id_token_signing_alg_values_supported, ['ES256', 'EdDSA', 'RS256'], 'exactly the algorithms with an active key')
  await revokeKey(app.database.db, at(c.now, policy), ed.kid)
  await app.jobs.keySync.run()
  t.equal((await rows(app, 'EdDSA')).filter((r) => r.state === 'active').length, 1, 'its standby took over')

  // Ending the line: refused for a configured line and while a client's ID tokens use it.
  await t.rejects(retireLine(app.database.db, at(c.now, policy), 'RS256'), /the RS256 line is one this configuration signs with/)
  await t.rejects(retireLine(app.database.db, at(c.now, policy), 'ES256'), /cannot be retired/)
  const rp = await app.createClient({ idTokenSignedResponseAlg: 'EdDSA' })
  await t.rejects(retireLine(app.database.db, at(c.now, policy), 'EdDSA'), /1 enabled client\(s\) sign their ID tokens with EdDSA/)
  await app.database.db.updateTable('client').set({ disabled_at: new Date() }).where('id', '=', rp.id).execute()
  const edActive = (await rows(app, 'EdDSA')).find((r) => r.state === 'active')!.kid
  const ended = await retireLine(app.database.db, at(c.now, policy), 'EdDSA', { actor: { via: 'cli' } })
  t.same(ended.retired, [edActive], 'its active key is retired (its tokens verify until they expire)')
  t.equal(ended.withdrawn.length, 1, 'its standby is withdrawn')
  t.same(await retireLine(app.database.db, at(c.now, policy), 'EdDSA'), { alg: 'EdDSA', retired: [], withdrawn: [] }, 'idempotent')
  const audit = await app.database.db.selectFrom('audit_event').select('detail').where('type', '=', 'signing_key.line_retired').execute()
  t.equal(audit.length, 1, 'audited once')
  await app.jobs.keySync.run()
  t.same((await app.app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json().id_token_signing_alg_values_supported, ['ES256', 'RS256'], 'discovery drops it')
  t.ok(kidsOf((await getJwks(app)).body, 'EdDSA').includes(edActive), 'the retired key stays published for the retention')
  c.advance(RETENTION)
  await app.jobs.keySync.run()
  t.same(kidsOf((await getJwks(app)).body, 'EdDSA'), [], 'then it is removed, and the line is not restarted')
  t.equal((await rows(app, 'EdDSA')).filter((r) => r.state === 'active' || r.state === 'pending').length, 0)
})

t.test('keys rotate (scheduled) with a standby: the standby is the answer, activated as soon as it has been published for the lead', async (t) => {
  const c = clock()
  const app = await testApp(t, { clock: c.clock, env: ENV })
  const policy = app.services.keyring.policy
  const [, standby] = await rows(app)
  c.advance(10)
  const early = await scheduleRotation(app.database.db, at(c.now, policy))
  t.same(early, { kid: standby!.kid, alg: 'ES256', state: 'pending', activateAt: new Date(standby!.created_at.getTime() + LEAD * 1000), created: false }, 'published 10 s ago: it signs at publication + L')
  t.same(await scheduleRotation(app.database.db, at(c.now + 5000, policy), 'ES256'), early, 'idempotent')
  c.advance(LEAD)
  await app.jobs.keySync.run()
  t.same(await states(app), ['retired', 'active', 'pending'], 'rotated; and a new standby')
  c.advance(HOUR / 2)
  const ready = await scheduleRotation(app.database.db, at(c.now, policy))
  t.equal(ready.activateAt.getTime(), c.now, 'a standby published long ago signs at the next tick')
})
