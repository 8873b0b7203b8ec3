// The self-service account API (issue 14, docs/account.md): GET /account, POST /account/password,
// GET /account/sessions, DELETE /account/sessions/{id}, with the user's own access token carrying
// `tessera:account`. Status, body, headers and database state; the password check is throttled by
// the login counters (#96, #141) and hashed in the bounded queue (#36). Time moves with a ManualClock.
import { verify } from '@node-rs/argon2'
import t from 'tap'
import type { Test } from 'tap'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { disableUser } from '../../src/users/disable-user.js'
import { basic, form, FORM, ISSUER, testApp, tokenRequest, type Backend, type TestApp } from '../helpers/app.js'
import { authorize, Browser, codeClient, pkce, redeem } from '../helpers/authcode.js'
import { ManualClock } from '../helpers/clock.js'

const PASSWORD = 'correct horse battery'
const NEW_PASSWORD = 'a brand new passphrase'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const SCOPE = 'openid tessera:account'

type Reply = Awaited<ReturnType<TestApp['app']['inject']>>
type Creds = { id: string; secret: string | undefined }
type Tokens = { access_token: string; refresh_token: string; scope: string }

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
const sidOf = (token: string) => claimsOf(token).sid as string

/** A self-service call with a bearer token (or none), from `ip`. */
function call(app: TestApp, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, token?: string, body?: unknown, ip = '198.51.100.7'): Promise<Reply> {
  const headers: Record<string, string> = { 'user-agent': 'account-test/1.0' }
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  return app.app.inject({ method, url, headers, remoteAddress: ip, ...(body !== undefined ? { payload: JSON.stringify(body) } : {}) })
}

const changePassword = (app: TestApp, token: string, current: string, next: string, ip?: string) => call(app, 'POST', '/account/password', token, { current_password: current, new_password: next }, ip)

async function login(app: TestApp, client: Creds, username: string, scope = SCOPE, password = PASSWORD, ua = 'test-agent'): Promise<Tokens> {
  const res = await app.app.inject({
    method: 'POST', url: '/token', remoteAddress: '192.0.2.10',
    headers: { ...FORM, authorization: basic(client.id, client.secret!), 'user-agent': ua },
    payload: form({ grant_type: 'password', username, password, scope }),
  })
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

const refresh = (app: TestApp, client: Creds, rt: string) => tokenRequest(app, { grant_type: 'refresh_token', refresh_token: rt }, client)

/** POST /login as JSON (the first-party login endpoint), from `ip`. */
function loginEndpoint(app: TestApp, client: Creds, username: string, password: string, ip = '198.51.100.7'): Promise<Reply> {
  return app.app.inject({
    method: 'POST', url: '/login', remoteAddress: ip, headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ username, password, client_id: client.id, client_secret: client.secret, scope: SCOPE }),
  })
}

async function setup(t: Test, env: Record<string, string> = {}, backend: Backend = 'postgres') {
  const clock = new ManualClock()
  const app = await testApp(t, { env, clock, backend })
  const alice = await app.createUser('alice', PASSWORD)
  const bob = await app.createUser('bob', PASSWORD)
  // The test client's audience is a resource server; tessera:account adds the issuer (like openid).
  const web = await app.createClient({ name: 'Web app', scopes: ['openid', 'read', 'tessera:account'] })
  const mobile = await app.createClient({ name: 'Mobile app', scopes: ['openid', 'read', 'tessera:account'] })
  return { app, clock, alice, bob, web, mobile }
}

const familyRow = (app: TestApp, id: string) => app.database.db.selectFrom('refresh_token_family').select(['id', 'user_id', 'revoked_at', 'revoked_reason']).where('id', '=', id).executeTakeFirstOrThrow()
const passwordHash = async (app: TestApp, username: string) => (await app.database.db.selectFrom('app_user').select('password_hash').where('username', '=', username).executeTakeFirstOrThrow()).password_hash
const auditOf = (app: TestApp, type: string) => app.database.db.selectFrom('audit_event').selectAll().where('type', '=', type).orderBy('id').execute()

function noStore(t: Test, res: Reply, what: string) {
  t.equal(res.headers['cache-control'], 'no-store', `${what}: Cache-Control: no-store`)
  t.match(res.headers['content-type'], /^application\/json/, `${what}: JSON`)
}

t.test('GET /account: the caller\'s own profile, no-store; the token names Tessera in aud because of tessera:account', async (t) => {
  const { app, alice, web } = await setup(t)
  await app.database.db.updateTable('app_user').set({ name: 'Alice Liddell', email: 'alice@example.com', email_verified: true, roles: ['editor'] }).where('id', '=', alice.id).execute()
  const session = await login(app, web, 'alice')
  t.same(claimsOf(session.access_token).aud, ['https://api.example.com', ISSUER], 'aud: the resource server and Tessera')
  const res = await call(app, 'GET', '/account', session.access_token)
  t.equal(res.statusCode, 200, res.body)
  noStore(t, res, 'profile')
  const row = await app.database.db.selectFrom('app_user').select('created_at').where('id', '=', alice.id).executeTakeFirstOrThrow()
  t.same(res.json(), { id: alice.id, username: 'alice', name: 'Alice Liddell', email: 'alice@example.com', email_verified: true, roles: ['editor'], created_at: row.created_at.toISOString() })
  t.notOk('password_hash' in res.json(), 'never the hash')

  // Without profile attributes: nulls, not missing members.
  const bob = await login(app, web, 'bob')
  const b = (await call(app, 'GET', '/account', bob.access_token)).json()
  t.same({ name: b.name, email: b.email, email_verified: b.email_verified, roles: b.roles }, { name: null, email: null, email_verified: false, roles: [] })

  const wrongMethod = await call(app, 'DELETE', '/account', session.access_token)
  t.equal(wrongMethod.statusCode, 405)
  t.equal(wrongMethod.headers.allow, 'GET')
})

t.test('authorisation on every endpoint: 401 without a good token (before any body validation), 403 without the scope or for a client token; nothing changes', async (t) => {
  const { app, clock, alice, web } = await setup(t)
  const good = await login(app, web, 'alice')
  const other = await login(app, web, 'alice', 'openid read')
  const hashBefore = await passwordHash(app, 'alice')
  const sid = sidOf(other.access_token)
  const endpoints: [method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown][] = [
    ['GET', '/account'],
    // A body that would fail validation: the token decides first.
    ['POST', '/account/password', { current_password: 7 }],
    ['POST', '/account/password', { current_password: PASSWORD, new_password: NEW_PASSWORD }],
    ['GET', '/account/sessions'],
    ['GET', '/account/sessions?limit=nope'],
    ['DELETE', `/account/sessions/${sid}`],
    ['DELETE', '/account/sessions/not-a-uuid'],
  ]
  const expect401 = async (token: string | undefined, what: string, header: string) => {
    for (const [method, url, body] of endpoints) {
      const res = await call(app, method, url, token, body)
      t.equal(res.statusCode, 401, `${what}: ${method} ${url}`)
      t.equal(res.headers['www-authenticate'], header, `${what}: WWW-Authenticate`)
      t.equal(res.headers['cache-control'], 'no-store')
      t.equal(res.json().error, 'invalid_token')
    }
  }
  const expect403 = async (token: string, what: string, description: string) => {
    for (const [method, url, body] of endpoints) {
      const res = await call(app, method, url, token, body)
      t.equal(res.statusCode, 403, `${what}: ${method} ${url}`)
      t.same(res.json(), { error: 'insufficient_scope', error_description: description }, what)
      t.equal(res.headers['www-authenticate'], `Bearer realm="tessera", error="insufficient_scope", error_description="${description}"`)
    }
  }
  const invalid = 'Bearer realm="tessera", error="invalid_token", error_description="the access token is invalid"'

  await expect401(undefined, 'no token', 'Bearer realm="tessera"')
  t.same((await call(app, 'GET', '/account')).json(), { error: 'invalid_token', error_description: 'a bearer token is required' })
  await expect401('not.a.jwt', 'garbage token', invalid)
  // A token for a resource server only (no openid, no tessera:account: aud is the API alone).
  await expect401((await login(app, web, 'alice', 'read')).access_token, 'resource-server token', invalid)

  // Without tessera:account.
  await expect403(other.access_token, 'openid read', 'the tessera:account scope is required')
  // A client whose allowed scopes do not list it cannot obtain it.
  const plain = await app.createClient({ name: 'plain', scopes: ['openid', 'read'] })
  const refused = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: PASSWORD, scope: SCOPE }, plain)
  t.equal(refused.statusCode, 400)
  t.same(refused.json(), { error: 'invalid_scope', error_description: 'scope not allowed: tessera:account' })

  // A client's own token, even with the scope (a client allowed tessera:account and client_credentials).
  const service = await app.createClient({ name: 'service', grantTypes: ['client_credentials'], scopes: ['tessera:account'], audience: [] })
  const cc = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'tessera:account' }, service)
  t.equal(cc.statusCode, 200, cc.body)
  await expect403(cc.json().access_token, 'client_credentials token', 'account calls need a token issued to a user')

  // Revoked at /revoke (RFC 7009: the access token is denylisted).
  const revoked = await login(app, web, 'alice')
  const r = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(web.id, web.secret!) }, payload: form({ token: revoked.access_token }) })
  t.equal(r.statusCode, 200)
  await expect401(revoked.access_token, 'revoked access token', invalid)

  // Its family revoked (the refresh token revoked at /revoke).
  const family = await login(app, web, 'alice')
  await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(web.id, web.secret!) }, payload: form({ token: family.refresh_token }) })
  await expect401(family.access_token, 'family revoked', invalid)

  // The user disabled: a token without a family (a client without refresh tokens) dies too.
  const noRefresh = await app.createClient({ name: 'no refresh', grantTypes: ['password'], scopes: ['tessera:account'] })
  await app.createUser('carol', PASSWORD)
  const carol = await login(app, noRefresh, 'carol', 'tessera:account')
  t.equal(claimsOf(carol.access_token).sid, undefined, 'no family')
  t.equal((await call(app, 'GET', '/account', carol.access_token)).statusCode, 200, 'works while carol is enabled')
  await disableUser(app.database.db, 'carol', CLI_CONTEXT)
  await expect401(carol.access_token, 'disabled user', invalid)

  // Expired.
  clock.advance((app.config.accessTokenTtlSeconds + 10) * 1000)
  await expect401(good.access_token, 'expired token', invalid)

  t.equal(await passwordHash(app, 'alice'), hashBefore, 'the password is unchanged')
  t.equal((await familyRow(app, sid)).revoked_at, null, 'the session is not revoked')
  t.same(await auditOf(app, 'account.password_changed'), [])
  t.same((await auditOf(app, 'login.failed')).length, 0, 'no password was checked')
  t.equal(alice.username, 'alice')
})

for (const backend of ['postgres', 'pglite'] as const) {
  t.test(`POST /account/password: changes the password; every other session and SSO session ends, the caller's stays; audited in one transaction (${backend})`, async (t) => {
    const { app, alice, bob, web, mobile } = await setup(t, {}, backend)
    // The caller: a code-flow session in browser 1 (its SSO session is the caller's and stays).
    const rp = await codeClient(app, { scopes: ['openid', 'profile', 'tessera:account'] })
    const browser1 = new Browser(app)
    const p1 = pkce()
    const cb = await authorize(browser1, rp.id, { challenge: p1.challenge, extra: { scope: SCOPE } })
    const mine = (await redeem(app, rp, cb.get('code')!, p1.verifier)).json() as Tokens
    t.match(mine.scope, /tessera:account/)
    const mySid = sidOf(mine.access_token)
    // Others: a second browser's SSO session and its family, two password-grant sessions; bob's.
    const browser2 = new Browser(app)
    const p2 = pkce()
    const cb2 = await authorize(browser2, rp.id, { challenge: p2.challenge })
    const theirs = (await redeem(app, rp, cb2.get('code')!, p2.verifier)).json() as Tokens
    const laptop = await login(app, web, 'alice', 'openid read')
    const phone = await login(app, mobile, 'alice', 'openid read')
    const bobs = await login(app, web, 'bob', 'openid read')
    const ssoRows = await app.database.db.selectFrom('sso_session').select(['id', 'user_id']).where('user_id', '=', alice.id).orderBy('created_at').execute()
    t.equal(ssoRows.length, 2, 'two SSO sessions of alice')
    const hashBefore = await passwordHash(app, 'alice')
    const bobHash = await passwordHash(app, 'bob')

    const res = await changePassword(app, mine.access_token, PASSWORD, NEW_PASSWORD)
    t.equal(res.statusCode, 200, res.body)
    noStore(t, res, 'password change')
    t.same(res.json(), { sessions_revoked: 3, sso_sessions_ended: 1 })

    // The hash: argon2id of the new password.
    const hash = await passwordHash(app, 'alice')
    t.not(hash, hashBefore)
    t.match(hash, /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/)
    t.ok(await verify(hash, NEW_PASSWORD), 'the new password verifies')
    t.equal(await passwordHash(app, 'bob'), bobHash, "bob's password is untouched")

    // Sessions: the caller's stays, every other one of alice's is revoked, bob's stays.
    t.equal((await familyRow(app, mySid)).revoked_at, null, 'the calling session stays')
    for (const [name, tokens] of [['second browser', theirs], ['laptop', laptop], ['phone', phone]] as const) {
      const row = await familyRow(app, sidOf(tokens.access_token))
      t.not(row.revoked_at, null, `${name}: revoked`)
      t.equal(row.revoked_reason, 'password_changed', `${name}: reason`)
      const r = await refresh(app, name === 'phone' ? mobile : name === 'laptop' ? web : rp, tokens.refresh_token)
      t.equal(r.statusCode, 400, `${name}: its refresh token fails`)
      t.same(r.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' })
      t.equal((await call(app, 'GET', '/userinfo', tokens.access_token)).statusCode, 401, `${name}: its access token is dead at Tessera`)
    }
    t.equal((await familyRow(app, sidOf(bobs.access_token))).revoked_at, null, "bob's session stays")
    const sso = await app.database.db.selectFrom('sso_session').select(['id', 'revoked_at', 'revoked_reason']).where('user_id', '=', alice.id).orderBy('created_at').execute()
    t.same(sso.map((s) => [s.id, s.revoked_reason]), [[ssoRows[0]!.id, null], [ssoRows[1]!.id, 'password_changed']], "browser 1's SSO session stays, browser 2's ended")

    // The caller goes on: its token still works, its refresh token rotates.
    t.equal((await call(app, 'GET', '/account', mine.access_token)).statusCode, 200)
    t.equal((await refresh(app, rp, mine.refresh_token)).statusCode, 200, 'the calling session still refreshes')

    // Audit: one password change, with the revocations (each family, the SSO session) beside it.
    const [changed, ...more] = await auditOf(app, 'account.password_changed')
    t.same(more, [])
    t.match(changed, { client_id: rp.id, user_id: alice.id, family_id: mySid, ip: '198.51.100.7', user_agent: 'account-test/1.0', detail: { families_revoked: 3, sso_sessions_ended: 1, kept_sso_session: ssoRows[0]!.id } })
    const revokedEvents = (await auditOf(app, 'refresh_token.revoked')).filter((e) => (e.detail as { reason?: string }).reason === 'password_changed')
    t.same(revokedEvents.map((e) => e.family_id).sort(), [theirs, laptop, phone].map((x) => sidOf(x.access_token)).sort(), 'one refresh_token.revoked event per family')
    t.match(await auditOf(app, 'sso_session.ended'), [{ user_id: alice.id, detail: { sid: ssoRows[1]!.id, reason: 'password_changed' } }])

    // The old password is gone, at /login and the password grant alike.
    t.equal((await loginEndpoint(app, web, 'alice', PASSWORD)).statusCode, 400, 'old password refused')
    t.equal((await loginEndpoint(app, web, 'alice', NEW_PASSWORD)).statusCode, 200, 'new password accepted')
  })
}

t.test('two password changes at once from two sessions of one user: one wins, the other is refused, and the winner keeps its session', async (t) => {
  const { app, web, mobile } = await setup(t)
  const a = await login(app, web, 'alice')
  const b = await login(app, mobile, 'alice')
  const [ra, rb] = await Promise.all([changePassword(app, a.access_token, PASSWORD, 'passphrase from a'), changePassword(app, b.access_token, PASSWORD, 'passphrase from b')])
  const results = [[ra, a, 'passphrase from a'], [rb, b, 'passphrase from b']] as const
  const winners = results.filter(([r]) => r.statusCode === 200)
  t.equal(winners.length, 1, `exactly one change wins (${ra.statusCode}, ${rb.statusCode})`)
  const [, winner, password] = winners[0]!
  const [loserRes, loser] = results.find(([r]) => r.statusCode !== 200)!
  t.ok([400, 401].includes(loserRes.statusCode), `the other is refused: its session ended (401) or its current password is no longer current (400): ${loserRes.body}`)
  t.ok(await verify(await passwordHash(app, 'alice'), password), "the winner's password is stored")
  t.equal((await familyRow(app, sidOf(winner.access_token))).revoked_at, null, "the winner's session stays")
  t.not((await familyRow(app, sidOf(loser.access_token))).revoked_at, null, "the loser's session ended")
  t.equal((await auditOf(app, 'account.password_changed')).length, 1, 'one change audited')
})

t.test('POST /account/password from a session with no SSO session: every SSO session ends; from a token without a family: every family ends', async (t) => {
  const { app, alice, web } = await setup(t)
  const rp = await codeClient(app)
  const browser = new Browser(app)
  const p = pkce()
  const cb = await authorize(browser, rp.id, { challenge: p.challenge })
  const viaBrowser = (await redeem(app, rp, cb.get('code')!, p.verifier)).json() as Tokens
  const mine = await login(app, web, 'alice')
  const res = await changePassword(app, mine.access_token, PASSWORD, NEW_PASSWORD)
  t.same(res.json(), { sessions_revoked: 1, sso_sessions_ended: 1 })
  t.equal((await familyRow(app, sidOf(viaBrowser.access_token))).revoked_reason, 'password_changed')
  const sso = await app.database.db.selectFrom('sso_session').select('revoked_reason').where('user_id', '=', alice.id).execute()
  t.same(sso, [{ revoked_reason: 'password_changed' }])

  const noRefresh = await app.createClient({ name: 'no refresh', grantTypes: ['password'], scopes: ['tessera:account'] })
  const bare = await login(app, noRefresh, 'alice', 'tessera:account', NEW_PASSWORD)
  const res2 = await changePassword(app, bare.access_token, NEW_PASSWORD, 'yet another passphrase')
  t.same(res2.json(), { sessions_revoked: 1, sso_sessions_ended: 0 }, 'the web session ends too: the caller has none of its own')
  t.not((await familyRow(app, sidOf(mine.access_token))).revoked_at, null)
})

t.test('POST /account/password refusals: a wrong current password (invalid_grant), the policy naming its rule, bad input naming the field; nothing changes', async (t) => {
  const { app, alice, web } = await setup(t)
  const mine = await login(app, web, 'alice')
  const other = await login(app, web, 'alice', 'openid read')
  const hashBefore = await passwordHash(app, 'alice')
  const expect400 = async (res: Reply, body: { error: string; error_description: string }, what: string) => {
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.same(res.json(), body, what)
    noStore(t, res, what)
    t.equal(res.headers['www-authenticate'], undefined, `${what}: not an authentication failure`)
  }

  const verified = app.services.passwords.verifications
  await expect400(await changePassword(app, mine.access_token, 'not my password', NEW_PASSWORD), { error: 'invalid_grant', error_description: 'current_password is wrong' }, 'wrong current password')
  t.equal(app.services.passwords.verifications - verified, 1, 'one argon2id verification')
  t.match(await auditOf(app, 'login.failed'), [{ user_id: alice.id, client_id: web.id, ip: '198.51.100.7', detail: { reason: 'bad_password' } }], 'audited as a failed password check')

  // The policy, before any password is checked (no hash, no throttle count).
  const policy: [string, string][] = [
    ['short', 'new_password: password must have at least 8 characters'],
    ['iloveyou', 'new_password: password is on the list of common and breached passwords: choose another'],
    ['é'.repeat(513), 'new_password: password must be at most 1024 bytes (a long passphrase fits)'],
  ]
  for (const [next, description] of policy) {
    await expect400(await changePassword(app, mine.access_token, PASSWORD, next), { error: 'invalid_request', error_description: description }, `policy: ${description}`)
  }
  t.equal(app.services.passwords.verifications - verified, 1, 'no verification for a policy refusal')
  await app.createUser('longname1', PASSWORD)
  const longname = await login(app, web, 'longname1')
  await expect400(await changePassword(app, longname.access_token, PASSWORD, 'LongName1'), { error: 'invalid_request', error_description: 'new_password: password must not equal the username' }, 'policy: the username')

  await expect400(await changePassword(app, mine.access_token, PASSWORD, PASSWORD), { error: 'invalid_request', error_description: 'new_password must differ from current_password' }, 'the same password')
  await expect400(await changePassword(app, mine.access_token, 'x'.repeat(1025), NEW_PASSWORD), { error: 'invalid_request', error_description: 'current_password: password is too long' }, 'current password too long')

  // Schema validation names the field.
  const bad: [unknown, RegExp][] = [
    [{ current_password: PASSWORD }, /must have required property 'new_password'/],
    [{ new_password: NEW_PASSWORD }, /must have required property 'current_password'/],
    [{ current_password: PASSWORD, new_password: 12345678 }, /body\/new_password must be string/],
    [{ current_password: PASSWORD, new_password: NEW_PASSWORD, admin: true }, /must NOT have additional properties/],
    [{ current_password: '', new_password: NEW_PASSWORD }, /body\/current_password must NOT have fewer than 1 characters/],
    [['not', 'an', 'object'], /body must be object/],
  ]
  for (const [body, description] of bad) {
    const res = await call(app, 'POST', '/account/password', mine.access_token, body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().error, 'invalid_request')
    t.match(res.json().error_description, description)
  }
  const wrongMethod = await call(app, 'PUT', '/account/password', mine.access_token, { current_password: PASSWORD, new_password: NEW_PASSWORD })
  t.equal(wrongMethod.statusCode, 405)
  t.equal(wrongMethod.headers.allow, 'POST')

  t.equal(await passwordHash(app, 'alice'), hashBefore, 'the password is unchanged')
  t.equal((await familyRow(app, sidOf(other.access_token))).revoked_at, null, 'no session was revoked')
  t.same(await auditOf(app, 'account.password_changed'), [])
})

t.test('#96 #141 throttling: wrong current passwords count on the login counters; a lock refuses the right password here and at /login, and ends with the clock', async (t) => {
  const { app, clock, alice, web } = await setup(t, { LOGIN_ACCOUNT_FREE_FAILURES: '3', LOGIN_BACKOFF_BASE_SECONDS: '2', LOGIN_BACKOFF_MAX_SECONDS: '10' })
  const mine = await login(app, web, 'alice')
  const other = await login(app, web, 'alice', 'openid read')
  const hashBefore = await passwordHash(app, 'alice')
  const WRONG = { error: 'invalid_grant', error_description: 'current_password is wrong' }
  const THROTTLED = { error: 'temporarily_unavailable', error_description: 'too many failed attempts; retry later' }

  // Two failures at /login, two here (each from its own address): the fourth locks the account.
  t.equal((await loginEndpoint(app, web, 'alice', 'guess 1', '203.0.113.1')).statusCode, 400)
  t.equal((await loginEndpoint(app, web, 'alice', 'guess 2', '203.0.113.2')).statusCode, 400)
  t.same((await changePassword(app, mine.access_token, 'guess 3', NEW_PASSWORD, '203.0.113.3')).json(), WRONG)
  t.same((await changePassword(app, mine.access_token, 'guess 4', NEW_PASSWORD, '203.0.113.4')).json(), WRONG, 'the fourth failure is judged, and locks')
  t.match(await auditOf(app, 'login.locked'), [{ user_id: alice.id }], 'the lock is audited')

  const verified = app.services.passwords.verifications
  const locked = await changePassword(app, mine.access_token, PASSWORD, NEW_PASSWORD, '203.0.113.5')
  t.equal(locked.statusCode, 429, 'the right current password is refused during the lock')
  t.same(locked.json(), THROTTLED)
  t.equal(locked.headers['retry-after'], '2')
  t.equal(locked.headers['cache-control'], 'no-store')
  const atLogin = await loginEndpoint(app, web, 'alice', PASSWORD, '203.0.113.6')
  t.equal(atLogin.statusCode, 429, '/login is locked by the same counters')
  t.same(atLogin.json(), THROTTLED)
  t.equal(app.services.passwords.verifications - verified, 0, 'refused before any hash')
  t.equal(await passwordHash(app, 'alice'), hashBefore, 'unchanged during the lock')
  t.equal((await familyRow(app, sidOf(other.access_token))).revoked_at, null)

  // Failures here lock /login too, from /login's own counters' point of view: one more guess after the lock doubles it.
  clock.advance(2_000)
  t.same((await changePassword(app, mine.access_token, 'guess 5', NEW_PASSWORD, '203.0.113.7')).json(), WRONG, 'after the lock, one more guess is judged')
  t.equal((await loginEndpoint(app, web, 'alice', PASSWORD, '203.0.113.8')).headers['retry-after'], '4', '…and /login is locked twice as long')
  clock.advance(4_000)
  const ok = await changePassword(app, mine.access_token, PASSWORD, NEW_PASSWORD, '203.0.113.9')
  t.equal(ok.statusCode, 200, ok.body)
  t.ok(await verify(await passwordHash(app, 'alice'), NEW_PASSWORD))
})

t.test('#36 POST /account/password with the argon2id queue full: 503 + Retry-After at once, nothing changes', async (t) => {
  const { app, web } = await setup(t, { PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE: '0' })
  const mine = await login(app, web, 'alice')
  const hashBefore = await passwordHash(app, 'alice')
  const held = app.services.passwords.reserve()
  try {
    const res = await changePassword(app, mine.access_token, PASSWORD, NEW_PASSWORD)
    t.equal(res.statusCode, 503)
    t.same(res.json(), { error: 'temporarily_unavailable', error_description: 'the server is busy; retry later' })
    t.equal(res.headers['retry-after'], '1')
    t.equal(res.headers['cache-control'], 'no-store')
  } finally {
    held.release()
  }
  t.equal(await passwordHash(app, 'alice'), hashBefore)
  t.same(await auditOf(app, 'login.failed'), [], 'no failure counted')
  // With the place back, the change goes through (a form body works as well as JSON).
  const res = await app.app.inject({ method: 'POST', url: '/account/password', headers: { ...FORM, authorization: `Bearer ${mine.access_token}` }, payload: form({ current_password: PASSWORD, new_password: NEW_PASSWORD }) })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json(), { sessions_revoked: 0, sso_sessions_ended: 0 })
})

t.test('GET /account/sessions: the caller\'s own live sessions, newest first, the current one marked; pages', async (t) => {
  const { app, clock, alice, web, mobile } = await setup(t)
  const first = await login(app, web, 'alice', 'openid read', PASSWORD, 'Firefox')
  clock.advance(1_000)
  const gone = await login(app, web, 'alice', 'openid read')
  await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(web.id, web.secret!) }, payload: form({ token: gone.refresh_token }) })
  const second = await login(app, mobile, 'alice', 'openid read', PASSWORD, 'Phone')
  const mine = await login(app, web, 'alice', SCOPE, PASSWORD, 'Account page')
  await login(app, web, 'bob', 'openid read')

  const res = await call(app, 'GET', '/account/sessions', mine.access_token)
  t.equal(res.statusCode, 200, res.body)
  noStore(t, res, 'sessions')
  const body = res.json() as { sessions: Record<string, unknown>[]; next_cursor: string | null }
  t.equal(body.next_cursor, null)
  t.same(body.sessions.map((s) => s.id).sort(), [mine, second, first].map((x) => sidOf(x.access_token)).sort(), 'live sessions of alice only: not the revoked one, not bob\'s')
  t.same(body.sessions.map((s) => s.current), body.sessions.map((s) => s.id === sidOf(mine.access_token)), 'only the caller\'s own is current')
  const current = body.sessions.find((s) => s.current)!
  t.same(Object.keys(current).sort(), ['auth_time', 'client_id', 'client_name', 'created_at', 'current', 'expires_at', 'id', 'last_ip', 'last_used_at', 'last_user_agent', 'scope'])
  t.match(current, { client_id: web.id, client_name: 'Web app', scope: SCOPE, last_ip: '192.0.2.10', last_user_agent: 'Account page', created_at: ISO, auth_time: ISO, expires_at: ISO })
  t.match(body.sessions.find((s) => s.id === sidOf(second.access_token)), { client_id: mobile.id, client_name: 'Mobile app', last_user_agent: 'Phone', current: false })
  t.match(body.sessions[body.sessions.length - 1], { id: sidOf(first.access_token) }, 'the oldest last')
  t.notOk(body.sessions.some((s) => s.id === alice.id))

  // Pages of one.
  const seen: string[] = []
  let cursor: string | null = null
  do {
    const page = await call(app, 'GET', `/account/sessions?limit=1${cursor ? `&cursor=${cursor}` : ''}`, mine.access_token)
    t.equal(page.statusCode, 200, page.body)
    const p = page.json() as typeof body
    t.equal(p.sessions.length, 1)
    seen.push(p.sessions[0]!.id as string)
    cursor = p.next_cursor
  } while (cursor !== null && seen.length < 5)
  t.same(seen, body.sessions.map((s) => s.id), 'the pages give the same sessions in the same order')

  for (const [query, description] of [['limit=0', /limit must be an integer from 1 to 1000/], ['limit=x', /querystring\/limit must match pattern/], ['cursor=bogus', /cursor must be the next_cursor of a previous page/], ['user=bob', /must NOT have additional properties/]] as const) {
    const r = await call(app, 'GET', `/account/sessions?${query}`, mine.access_token)
    t.equal(r.statusCode, 400, query)
    t.equal(r.json().error, 'invalid_request')
    t.match(r.json().error_description, description, query)
  }
})

t.test('DELETE /account/sessions/{id}: revokes one of the caller\'s own sessions, audited; another user\'s or an unknown id is 404 and unchanged', async (t) => {
  const { app, alice, web, mobile } = await setup(t)
  const mine = await login(app, web, 'alice')
  const phone = await login(app, mobile, 'alice', 'openid read')
  const bobs = await login(app, web, 'bob', 'openid read')
  const phoneSid = sidOf(phone.access_token)

  const res = await call(app, 'DELETE', `/account/sessions/${phoneSid.toUpperCase()}`, mine.access_token)
  t.equal(res.statusCode, 200, res.body)
  noStore(t, res, 'revoke')
  t.same(res.json(), { revoked: true })
  t.match(await familyRow(app, phoneSid), { user_id: alice.id, revoked_reason: 'revoked_by_user' })
  t.not((await familyRow(app, phoneSid)).revoked_at, null)
  t.match(await auditOf(app, 'refresh_token.revoked'), [{ family_id: phoneSid, user_id: alice.id, client_id: mobile.id, ip: '198.51.100.7', user_agent: 'account-test/1.0', detail: { reason: 'revoked_by_user' } }])
  const r = await refresh(app, mobile, phone.refresh_token)
  t.equal(r.statusCode, 400)
  t.same(r.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' }, "the revoked session's refresh token fails")
  t.same((await call(app, 'DELETE', `/account/sessions/${phoneSid}`, mine.access_token)).json(), { revoked: false }, 'again: already revoked')
  t.equal((await auditOf(app, 'refresh_token.revoked')).length, 1, 'no second event')

  // Another user's session and an unknown id: the same 404, nothing revoked.
  const bobSid = sidOf(bobs.access_token)
  const foreign = await call(app, 'DELETE', `/account/sessions/${bobSid}`, mine.access_token)
  const unknown = await call(app, 'DELETE', '/account/sessions/00000000-0000-4000-8000-000000000000', mine.access_token)
  for (const [what, x] of [['another user\'s', foreign], ['unknown', unknown]] as const) {
    t.equal(x.statusCode, 404, what)
    t.same(x.json(), { error: 'invalid_request', error_description: 'no such session' }, what)
    t.equal(x.headers['cache-control'], 'no-store')
  }
  t.equal((await familyRow(app, bobSid)).revoked_at, null, "bob's session is untouched")
  t.equal((await refresh(app, web, bobs.refresh_token)).statusCode, 200, "bob's session still refreshes")
  const malformed = await call(app, 'DELETE', '/account/sessions/12345', mine.access_token)
  t.equal(malformed.statusCode, 400)
  t.match(malformed.json().error_description, /params\/id must match pattern/)

  // Ending one's own current session: like a logout; the token dies with it.
  const own = await call(app, 'DELETE', `/account/sessions/${sidOf(mine.access_token)}`, mine.access_token)
  t.same(own.json(), { revoked: true })
  t.equal((await call(app, 'GET', '/account', mine.access_token)).statusCode, 401, 'the current token is dead after its session ends')
  t.equal(UUID.test(phoneSid), true)
})

t.test('CORS: a browser app of an allowed origin may call the account API (preflight for DELETE too); other origins get no CORS headers', async (t) => {
  const { app, web } = await setup(t)
  await app.createClient({ name: 'SPA', isPublic: true, grantTypes: ['refresh_token'], refreshDelivery: 'cookie', allowedOrigins: ['https://app.example.com'] })
  const mine = await login(app, web, 'alice')
  const preflight = (origin: string, url: string, method: string) => app.app.inject({ method: 'OPTIONS', url, headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'authorization' } })

  const ok = await preflight('https://app.example.com', `/account/sessions/${sidOf(mine.access_token)}`, 'DELETE')
  t.equal(ok.statusCode, 204)
  t.equal(ok.headers['access-control-allow-origin'], 'https://app.example.com')
  t.equal(ok.headers['access-control-allow-methods'], 'GET, POST, DELETE')
  t.match(String(ok.headers['access-control-allow-headers']), /authorization/)
  t.equal((await preflight('https://app.example.com', '/token', 'POST')).headers['access-control-allow-methods'], 'GET, POST', 'other endpoints keep GET, POST')

  const evil = await preflight('https://evil.example', '/account/password', 'POST')
  t.equal(evil.headers['access-control-allow-origin'], undefined, 'no CORS for an unknown origin')
  t.equal(evil.statusCode, 405)

  const get = await app.app.inject({ method: 'GET', url: '/account', headers: { origin: 'https://app.example.com', authorization: `Bearer ${mine.access_token}` } })
  t.equal(get.statusCode, 200)
  t.equal(get.headers['access-control-allow-origin'], 'https://app.example.com')
  const anon = await app.app.inject({ method: 'GET', url: '/account', headers: { origin: 'https://app.example.com' } })
  t.equal(anon.statusCode, 401)
  t.equal(anon.headers['access-control-allow-origin'], 'https://app.example.com', 'the 401 is readable by the app too')
})
