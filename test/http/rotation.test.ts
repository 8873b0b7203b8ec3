// Refresh-token rotation semantics (DESIGN.md "Refresh-token rotation: the promise"), branch by
// branch, with a controllable clock: idempotent retry in the grace window, reuse, lifetimes,
// revocation winning races. SECURITY.md rows #50–#58 where they apply.
import { decodeJwt } from 'jose'
import { sql } from 'kysely'
import t, { type Test } from 'tap'
import { parseKek, type Kek } from '../../src/keys/kek.js'
import { hashRefreshToken } from '../../src/tokens/refresh-token.js'
import { rotate } from '../../src/tokens/refresh-tokens.store.js'
import { SuccessorDeriver } from '../../src/tokens/successor.js'
import { basic, FORM, form, passwordLogin, TEST_KEK, testApp, tokenRequest, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery staple'
type Creds = { id: string; secret: string | undefined }

/**
 * A controllable clock for both sides: the app's clock (token iat/exp) moves forward, and
 * every stored rotation timestamp moves back by the same amount, which is what the database
 * clock moving forward looks like to the rows (expiry and grace decisions use `now()`).
 */
async function setup(t: Test, env: Record<string, string> = {}) {
  let offsetMs = 0
  const app = await testApp(t, { env, now: () => Date.now() + offsetMs })
  const alice = await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const travel = async (seconds: number) => {
    offsetMs += seconds * 1000
    const s = sql`make_interval(secs => ${seconds})`
    await sql`update refresh_token_family set created_at = created_at - ${s}, auth_time = auth_time - ${s}, expires_at = expires_at - ${s}, last_used_at = last_used_at - ${s}`.execute(app.database.db)
    await sql`update refresh_token set created_at = created_at - ${s}, expires_at = expires_at - ${s}, used_at = used_at - ${s}`.execute(app.database.db)
  }
  return { app, alice, client, travel }
}

const refresh = (app: TestApp, client: Creds, token: string, extra: Record<string, string> = {}) =>
  tokenRequest(app, { grant_type: 'refresh_token', refresh_token: token, ...extra }, client)

const userinfo = (app: TestApp, at: string) => app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${at}` } })

async function familyRow(app: TestApp, id: string) {
  return app.database.db.selectFrom('refresh_token_family').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
}

async function auditTypes(app: TestApp, familyId: string) {
  const rows = await app.database.db.selectFrom('audit_event').select('type').where('family_id', '=', familyId).orderBy('id').execute()
  return rows.map((r) => r.type)
}

t.test('#65 a retry within the grace window (a lost response) gets the same successor and a fresh access token; nothing forks', async (t) => {
  const { app, client } = await setup(t, { REFRESH_GRACE_SECONDS: '5' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const sid = decodeJwt(login.access_token).sid as string
  const first = await refresh(app, client, login.refresh_token)
  t.equal(first.statusCode, 200)
  const retry = await refresh(app, client, login.refresh_token, { scope: 'read' })
  t.equal(retry.statusCode, 200, 'the retry is answered')
  t.equal(retry.headers['cache-control'], 'no-store')
  t.equal(retry.json().refresh_token, first.json().refresh_token, 'the same successor')
  t.not(retry.json().access_token, first.json().access_token, 'a fresh access token')
  t.equal(retry.json().scope, 'read', 'the retry may narrow the scope too')
  t.equal(decodeJwt(retry.json().access_token).sid, sid, 'of the same family')
  const tokens = await app.database.db.selectFrom('refresh_token').select(['id', 'parent_id', 'used_at']).where('family_id', '=', sid).execute()
  t.equal(tokens.length, 2, 'no fork: still two tokens in the family')
  t.same(await auditTypes(app, sid), ['login.succeeded', 'refresh_token.issued', 'refresh_token.rotated', 'refresh_token.retried'])
  const next = await refresh(app, client, retry.json().refresh_token)
  t.equal(next.statusCode, 200, 'the successor rotates normally')
  t.equal((await familyRow(app, sid)).revoked_at, null)
})

t.test('a retry that asks for a wider scope is refused and changes nothing', async (t) => {
  const { app, client } = await setup(t)
  const login = await passwordLogin(app, client, 'alice', PASSWORD, 'read')
  const first = await refresh(app, client, login.refresh_token)
  t.equal(first.statusCode, 200)
  const wider = await refresh(app, client, login.refresh_token, { scope: 'read write' })
  t.equal(wider.statusCode, 400)
  t.equal(wider.json().error, 'invalid_scope')
  const sid = decodeJwt(login.access_token).sid as string
  t.equal((await familyRow(app, sid)).revoked_at, null, 'not treated as reuse')
  t.equal((await refresh(app, client, login.refresh_token)).json().refresh_token, first.json().refresh_token, 'a proper retry still works')
})

t.test('#50 the parent outside the grace window is reuse: the family is revoked, the answer is invalid_grant', async (t) => {
  const { app, client, travel } = await setup(t, { REFRESH_GRACE_SECONDS: '5' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const other = await passwordLogin(app, client, 'alice', PASSWORD) // a second device of the same user
  const first = await refresh(app, client, login.refresh_token)
  t.equal(first.statusCode, 200)
  await travel(6)
  const late = await app.app.inject({
    method: 'POST',
    url: '/token',
    headers: { ...FORM, authorization: basic(client.id, client.secret!), 'user-agent': 'replayer/1.0', 'x-forwarded-for': '203.0.113.9' },
    payload: form({ grant_type: 'refresh_token', refresh_token: login.refresh_token }),
  })
  t.equal(late.statusCode, 400)
  t.same(late.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' })
  const sid = decodeJwt(login.access_token).sid as string
  const fam = await familyRow(app, sid)
  t.not(fam.revoked_at, null)
  t.equal(fam.revoked_reason, 'reuse_detected')
  t.equal((await refresh(app, client, first.json().refresh_token)).statusCode, 400, 'every token of the family is dead')
  t.equal((await userinfo(app, first.json().access_token)).statusCode, 401, "the family's access tokens are refused at /userinfo")
  const intro = await app.app.inject({ method: 'POST', url: '/introspect', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token: first.json().access_token }) })
  t.same(intro.json(), { active: false }, 'and at /introspect')
  const audit = await app.database.db.selectFrom('audit_event').selectAll().where('type', '=', 'refresh_token.reuse_detected').execute()
  t.equal(audit.length, 1, 'one reuse event')
  t.match(audit[0], { family_id: sid, client_id: client.id, user_id: fam.user_id, user_agent: 'replayer/1.0' })
  t.type(audit[0]!.ip, 'string', 'with the caller IP')
  t.equal((await refresh(app, client, other.refresh_token)).statusCode, 200, "the user's other family keeps working (DESIGN 3)")
})

t.test('#51 #62 the grandparent, even within the grace window and the same second, is reuse', async (t) => {
  const { app, client } = await setup(t, { REFRESH_GRACE_SECONDS: '60' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const a = await refresh(app, client, login.refresh_token)
  const b = await refresh(app, client, a.json().refresh_token)
  t.equal(b.statusCode, 200)
  const replay = await refresh(app, client, login.refresh_token)
  t.equal(replay.statusCode, 400)
  t.equal(replay.json().error, 'invalid_grant')
  t.equal((await refresh(app, client, b.json().refresh_token)).statusCode, 400, 'the newest token died with the family')
})

t.test('#52 a parent whose successor was already used is reuse, even within the grace window', async (t) => {
  const { app, client } = await setup(t, { REFRESH_GRACE_SECONDS: '60' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const a = await refresh(app, client, login.refresh_token)
  t.equal((await refresh(app, client, a.json().refresh_token)).statusCode, 200)
  // `login`'s successor (`a`) has been used in turn, so `login` is no longer the newest token's parent.
  const replay = await refresh(app, client, login.refresh_token)
  t.equal(replay.statusCode, 400)
  const sid = decodeJwt(login.access_token).sid as string
  t.equal((await familyRow(app, sid)).revoked_reason, 'reuse_detected')
})

t.test('#54 REFRESH_GRACE_SECONDS=0 turns retries off: the second use is reuse at once', async (t) => {
  const { app, client } = await setup(t, { REFRESH_GRACE_SECONDS: '0' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  t.equal((await refresh(app, client, login.refresh_token)).statusCode, 200)
  const again = await refresh(app, client, login.refresh_token)
  t.equal(again.statusCode, 400)
  t.equal((await familyRow(app, decodeJwt(login.access_token).sid as string)).revoked_reason, 'reuse_detected')
})

t.test('#56 another client presenting a used token within the window is refused and revokes nothing', async (t) => {
  const { app, client } = await setup(t)
  const thief = await app.createClient({ name: 'thief' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  t.equal((await refresh(app, client, login.refresh_token)).statusCode, 200)
  const stolen = await refresh(app, thief, login.refresh_token)
  t.equal(stolen.statusCode, 400)
  t.equal(stolen.json().error, 'invalid_grant')
  t.equal((await familyRow(app, decodeJwt(login.access_token).sid as string)).revoked_at, null)
})

t.test('#58 idle limit: a token unused longer than REFRESH_TOKEN_IDLE_TTL_SECONDS is refused, without revoking', async (t) => {
  const { app, client, travel } = await setup(t, { REFRESH_TOKEN_IDLE_TTL_SECONDS: '600', REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS: '3600' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  await travel(590)
  const ok = await refresh(app, client, login.refresh_token)
  t.equal(ok.statusCode, 200, 'just inside the idle limit')
  await travel(601)
  const idle = await refresh(app, client, ok.json().refresh_token)
  t.equal(idle.statusCode, 400)
  t.same(idle.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' })
  const sid = decodeJwt(login.access_token).sid as string
  t.equal((await familyRow(app, sid)).revoked_at, null, 'expiry is not reuse: nothing revoked')
  t.equal((await app.database.db.selectFrom('refresh_token').select('id').where('family_id', '=', sid).execute()).length, 2, 'nothing written')
})

t.test('#58 absolute limit: successors inherit the family expiry; past it nothing refreshes', async (t) => {
  const { app, client, travel } = await setup(t, { REFRESH_TOKEN_IDLE_TTL_SECONDS: '600', REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS: '1000' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const sid = decodeJwt(login.access_token).sid as string
  let token = login.refresh_token
  for (let i = 0; i < 3; i++) {
    await travel(300)
    const res = await refresh(app, client, token)
    t.equal(res.statusCode, 200, `refresh at +${(i + 1) * 300} s`)
    token = res.json().refresh_token
  }
  const fam = await familyRow(app, sid)
  const newest = await app.database.db.selectFrom('refresh_token').select('expires_at').where('token_hash', '=', hashRefreshToken(token)).executeTakeFirstOrThrow()
  t.equal(newest.expires_at.getTime(), fam.expires_at.getTime(), 'the newest token expires with the family (idle limit capped by the absolute one)')
  await travel(101)
  const dead = await refresh(app, client, token)
  t.equal(dead.statusCode, 400, 'past the absolute limit')
  t.equal(dead.json().error, 'invalid_grant')
  t.equal((await familyRow(app, sid)).revoked_at, null)
})

t.test('#64 a cookie follows the family: its Max-Age is the time left to the absolute limit; two tabs get the same new cookie', async (t) => {
  const { app } = await setup(t, { COOKIE_SECURE: 'true', REFRESH_TOKEN_IDLE_TTL_SECONDS: '600', REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS: '1000' })
  const spa = await app.createClient({ isPublic: true, refreshDelivery: 'cookie', allowedOrigins: ['https://app.example.com'], grantTypes: ['password', 'refresh_token'] })
  const origin = 'https://app.example.com'
  const login = await app.app.inject({ method: 'POST', url: '/login', headers: { origin, 'content-type': 'application/json' }, payload: { username: 'alice', password: PASSWORD, client_id: spa.id } })
  t.equal(login.statusCode, 200)
  const cookie = login.cookies.find((c) => c.path === '/refresh')!
  t.ok(cookie.maxAge! <= 1000 && cookie.maxAge! >= 990, `Max-Age ${cookie.maxAge}`)
  const first = await app.app.inject({ method: 'POST', url: '/refresh', headers: { origin, cookie: `${cookie.name}=${cookie.value}` } })
  t.equal(first.statusCode, 200)
  const retried = await app.app.inject({ method: 'POST', url: '/refresh', headers: { origin, cookie: `${cookie.name}=${cookie.value}` } })
  t.equal(retried.statusCode, 200, 'a second tab refreshing with the same cookie within the window')
  const v1 = first.cookies.filter((c) => c.name === cookie.name).map((c) => c.value)
  const v2 = retried.cookies.filter((c) => c.name === cookie.name).map((c) => c.value)
  t.same(v2, v1, 'gets the same new cookie, on both paths')
  t.not(v1[0], cookie.value)
})

t.test('#59 expiry beats grace: a parent that expired inside the window is refused, and nothing is revoked', async (t) => {
  const { app, client, travel } = await setup(t, { REFRESH_GRACE_SECONDS: '60', REFRESH_TOKEN_IDLE_TTL_SECONDS: '600', REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS: '3600' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  await travel(590)
  const first = await refresh(app, client, login.refresh_token)
  t.equal(first.statusCode, 200, 'rotated 10 s before the parent would have expired')
  await travel(20) // the successor is 20 s old (inside the window); the parent is past its idle limit
  const retry = await refresh(app, client, login.refresh_token)
  t.equal(retry.statusCode, 400)
  t.equal(retry.json().error, 'invalid_grant')
  const sid = decodeJwt(login.access_token).sid as string
  t.equal((await familyRow(app, sid)).revoked_at, null, 'an expired token is not reuse')
  t.equal((await refresh(app, client, first.json().refresh_token)).statusCode, 200, 'the successor still works')
})

t.test('#80 a retry within the window after /revoke or /logout answered is refused', async (t) => {
  const { app, client } = await setup(t, { REFRESH_GRACE_SECONDS: '60' })
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const first = await refresh(app, client, login.refresh_token)
  t.equal(first.statusCode, 200)
  const revoke = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token: first.json().refresh_token }) })
  t.equal(revoke.statusCode, 200)
  const retry = await refresh(app, client, login.refresh_token)
  t.equal(retry.statusCode, 400, 'the parent no longer gets its successor')
  t.equal(retry.json().error, 'invalid_grant')
  t.equal((await familyRow(app, decodeJwt(login.access_token).sid as string)).revoked_reason, 'revoked_by_client', 'still revoked by the client, not re-flagged as reuse')
})

t.test('the successor derivation: a retry after a KEK change still finds its successor; an unknown one revokes nothing', async (t) => {
  const { app, client } = await setup(t)
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const sid = decodeJwt(login.access_token).sid as string
  const first = await refresh(app, client, login.refresh_token)
  t.equal(first.statusCode, 200)
  const oldKek = parseKek(TEST_KEK)
  const newKek = parseKek('next:' + Buffer.alloc(32, 9).toString('base64url'))
  const lifetimes = { idleSeconds: 600, absoluteSeconds: 3600 }
  const ctx = { ip: '127.0.0.1', userAgent: 'test' }
  const request = (keks: Kek[]) => ({ clientId: client.id, scope: undefined, successors: new SuccessorDeriver(keks).successors(login.refresh_token), graceSeconds: 10 })
  const rotated = await rotate(app.database.db, login.refresh_token, request([newKek, oldKek]), lifetimes, ctx)
  t.equal(rotated.kind, 'retried', 'the successor derived under the previous KEK is recognised')
  t.equal(rotated.kind === 'retried' ? rotated.refreshToken : undefined, first.json().refresh_token)
  const unknown = await rotate(app.database.db, login.refresh_token, request([newKek]), lifetimes, ctx)
  t.same(unknown, { kind: 'retry_mismatch' }, 'a successor no known key derives')
  t.equal((await familyRow(app, sid)).revoked_at, null, 'is not reuse')
  t.same(await rotate(app.database.db, 'tsr_' + 'A'.repeat(43), request([oldKek]), lifetimes, ctx), { kind: 'not_found' })
  t.same(await rotate(app.database.db, 'not a token', request([oldKek]), lifetimes, ctx), { kind: 'not_found' })
  const derived = new SuccessorDeriver([oldKek]).successors(login.refresh_token)
  t.equal(derived[0], first.json().refresh_token, 'the successor is the keyed derivation of its parent')
  t.match(derived[0], /^tsr_[A-Za-z0-9_-]{43}$/)
  t.throws(() => new SuccessorDeriver([]))
})

t.test('#76 revocation wins races: once /revoke answered, no refresh of the family succeeds', async (t) => {
  const { app, client } = await setup(t, { REFRESH_GRACE_SECONDS: '10' })
  const ROUNDS = 150
  let lateSuccesses = 0
  let earlyAnswers = 0
  for (let round = 0; round < ROUNDS; round++) {
    const login = await passwordLogin(app, client, 'alice', PASSWORD)
    const sid = decodeJwt(login.access_token).sid as string
    // A chain of refreshes keeps the family busy while /revoke arrives at a varying moment.
    let latest = login.refresh_token
    let revokedAt = Infinity
    const issued: string[] = []
    const accessTokens: string[] = []
    const chain = (async () => {
      for (let i = 0; i < 8; i++) {
        const started = performance.now()
        const res = await refresh(app, client, latest)
        if (res.statusCode === 200) {
          if (started > revokedAt) lateSuccesses++
          latest = res.json().refresh_token
          issued.push(latest)
          accessTokens.push(res.json().access_token)
        } else {
          t.equal(res.statusCode, 400)
        }
      }
    })()
    const retries = Promise.all(Array.from({ length: 6 }, async () => {
      const started = performance.now()
      const res = await refresh(app, client, login.refresh_token)
      if (res.statusCode === 200 && started > revokedAt) lateSuccesses++
      t.ok(res.statusCode === 200 || res.statusCode === 400, 'no 5xx')
      if (res.statusCode === 200) accessTokens.push(res.json().access_token)
    }))
    await new Promise((r) => setTimeout(r, round % 5))
    const revoke = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token: login.refresh_token }) })
    t.equal(revoke.statusCode, 200)
    revokedAt = performance.now()
    await Promise.all([chain, retries])
    if (issued.length < 8) earlyAnswers++
    // Whatever was issued before the revocation is dead now, refresh and access tokens alike.
    for (const rt of new Set([login.refresh_token, ...issued])) {
      if ((await refresh(app, client, rt)).statusCode !== 400) t.fail(`round ${round}: a refresh token of the revoked family still refreshes`)
    }
    for (const at of accessTokens) {
      if ((await userinfo(app, at)).statusCode !== 401) t.fail(`round ${round}: an access token of the revoked family is still accepted`)
    }
    // A retry that lost the race against the chain's second rotation is reuse: either reason ends the family.
    t.match((await familyRow(app, sid)).revoked_reason, /^(revoked_by_client|reuse_detected)$/)
  }
  t.equal(lateSuccesses, 0, `no refresh that started after /revoke answered succeeded (${ROUNDS} rounds)`)
  t.comment(`rounds in which the revocation cut the chain short: ${earlyAnswers}/${ROUNDS}`)
})
