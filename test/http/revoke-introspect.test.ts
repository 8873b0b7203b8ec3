// POST /revoke (RFC 7009) and POST /introspect (RFC 7662): SECURITY.md section D, #71–#76 and #82.
import t from 'tap'
import type { Test } from 'tap'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { disableClient } from '../../src/clients/disable-client.js'
import { basic, FORM, form, ISSUER, passwordLogin, testApp, tokenRequest, type TestApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

const PASSWORD = 'correct horse battery'
type ClientCreds = { id: string; secret: string | undefined }

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>

/** POST to a client-authenticated endpoint with Basic auth (or none when `client` is undefined). */
function post(app: TestApp, url: '/revoke' | '/introspect', params: Record<string, string>, client?: ClientCreds) {
  return app.app.inject({
    method: 'POST',
    url,
    headers: { ...FORM, ...(client ? { authorization: basic(client.id, client.secret!) } : {}) },
    payload: form(params),
  })
}

const revoke = (app: TestApp, client: ClientCreds, token: string, hint?: string) => post(app, '/revoke', { token, ...(hint !== undefined ? { token_type_hint: hint } : {}) }, client)
const introspect = (app: TestApp, client: ClientCreds, token: string) => post(app, '/introspect', { token }, client)
const refresh = (app: TestApp, client: ClientCreds, refreshToken: string) => tokenRequest(app, { grant_type: 'refresh_token', refresh_token: refreshToken }, client)
const userinfo = (app: TestApp, token: string) => app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${token}` } })

type Reply = Awaited<ReturnType<typeof revoke>>

/** RFC 7009 §2.2: 200 and nothing in the body. */
function assertRevoked200(t: Test, res: Reply, what: string) {
  t.equal(res.statusCode, 200, `${what}: 200`)
  t.equal(res.body, '', `${what}: empty body`)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: no-store`)
}

/** RFC 7662 §2.2: an inactive token is `{"active": false}` and nothing else. */
async function assertInactive(t: Test, app: TestApp, client: ClientCreds, token: string, what: string) {
  const res = await introspect(app, client, token)
  t.equal(res.statusCode, 200, `${what}: introspection 200`)
  t.strictSame(res.json(), { active: false }, `${what}: {"active": false} only`)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: no-store`)
}

async function assertRefreshFails(t: Test, app: TestApp, client: ClientCreds, refreshToken: string, what: string) {
  const res = await refresh(app, client, refreshToken)
  t.equal(res.statusCode, 400, `${what}: 400`)
  t.same(res.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' }, `${what}: invalid_grant`)
}

/** Every row that revocation could touch, to show a request changed nothing. */
async function snapshot(app: TestApp) {
  const db = app.database.db
  return {
    families: await db.selectFrom('refresh_token_family').select(['id', 'revoked_at', 'revoked_reason']).orderBy('id').execute(),
    tokens: await db.selectFrom('refresh_token').select(['id', 'used_at', 'successor_id']).orderBy('id').execute(),
    denylist: await db.selectFrom('revoked_access_token').select(['jti', 'expires_at', 'revoked_at']).orderBy('jti').execute(),
    audit: await db.selectFrom('audit_event').select(['id', 'type']).orderBy('id').execute(),
  }
}

async function setup(t: Test, opts: Parameters<typeof testApp>[1] = {}) {
  const app = await testApp(t, opts)
  const alice = await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const login = () => passwordLogin(app, client, 'alice', PASSWORD)
  return { app, alice, client, login }
}

t.test('#71 revoking a refresh token revokes its whole family, whatever the hint', async (t) => {
  const { app, client, login } = await setup(t)
  // [hint, which token of the family is revoked]: the newest one or its used parent.
  const cases: [string | undefined, 'newest' | 'used parent'][] = [
    ['refresh_token', 'newest'],
    ['access_token', 'used parent'],
    ['urn:example:unknown', 'newest'],
    [undefined, 'used parent'],
  ]
  const bystander = await login()
  for (const [hint, which] of cases) {
    const name = `hint ${hint ?? '(none)'}, ${which}`
    const first = await login()
    const next = await refresh(app, client, first.refresh_token)
    t.equal(next.statusCode, 200, `${name}: rotated`)
    const second = next.json() as { access_token: string; refresh_token: string }
    t.equal((await userinfo(app, second.access_token)).statusCode, 200, `${name}: live before`)
    assertRevoked200(t, await revoke(app, client, which === 'newest' ? second.refresh_token : first.refresh_token, hint), name)

    await assertRefreshFails(t, app, client, second.refresh_token, `${name}: the newest refresh token`)
    await assertRefreshFails(t, app, client, first.refresh_token, `${name}: the used parent`)
    for (const [label, at] of [['first', first.access_token], ['second', second.access_token]]) {
      t.equal((await userinfo(app, at!)).statusCode, 401, `${name}: ${label} access token refused at /userinfo`)
      await assertInactive(t, app, client, at!, `${name}: ${label} access token`)
    }
    const family = await app.database.db.selectFrom('refresh_token_family').select(['revoked_at', 'revoked_reason']).where('id', '=', claimsOf(first.access_token).sid as string).executeTakeFirstOrThrow()
    t.not(family.revoked_at, null, `${name}: family revoked`)
    t.equal(family.revoked_reason, 'revoked_by_client', `${name}: by the client, not as reuse`)
  }
  const events = await app.database.db.selectFrom('audit_event').select('type').where('type', '=', 'refresh_token.revoked').execute()
  t.equal(events.length, cases.length, 'one audit event per revocation')
  t.equal((await refresh(app, client, bystander.refresh_token)).statusCode, 200, "the user's other family is untouched")
})

t.test('#72 revoking an access token denylists its jti until exp', async (t) => {
  const { app, alice, client, login } = await setup(t)
  const tokens = await login()
  const claims = claimsOf(tokens.access_token)
  t.equal((await userinfo(app, tokens.access_token)).statusCode, 200)
  assertRevoked200(t, await revoke(app, client, tokens.access_token, 'access_token'), 'revoke the access token')
  const rows = await app.database.db.selectFrom('revoked_access_token').select(['jti', 'expires_at']).execute()
  t.equal(rows.length, 1)
  t.equal(rows[0]!.jti, claims.jti)
  t.equal(rows[0]!.expires_at.getTime(), (claims.exp as number) * 1000, 'kept until the token would expire anyway')
  await assertInactive(t, app, client, tokens.access_token, 'revoked access token')
  const res = await userinfo(app, tokens.access_token)
  t.equal(res.statusCode, 401)
  t.same(res.json(), { error: 'invalid_token', error_description: 'the access token is invalid' })
  // Only that access token: the session's refresh token still works and mints a good one.
  const next = await refresh(app, client, tokens.refresh_token)
  t.equal(next.statusCode, 200, 'the family is not revoked by revoking one access token')
  const fresh = await userinfo(app, next.json().access_token)
  t.equal(fresh.statusCode, 200)
  t.same(fresh.json(), { sub: alice.id, preferred_username: 'alice' })
  assertRevoked200(t, await revoke(app, client, tokens.access_token, 'refresh_token'), 'again, with the wrong hint')
  t.equal((await app.database.db.selectFrom('revoked_access_token').select('jti').execute()).length, 1, 'still one row')
})

t.test('#73 revoking garbage, already revoked or expired tokens: 200, nothing changes', async (t) => {
  let now = Date.now()
  const { app, client, login } = await setup(t, { now: () => now })
  const live = await login()
  const revokedFamily = await login()
  const revokedAt = await login()
  assertRevoked200(t, await revoke(app, client, revokedFamily.refresh_token), 'setup: revoke a family')
  assertRevoked200(t, await revoke(app, client, revokedAt.access_token), 'setup: revoke an access token')

  const garbage = [
    'garbage',
    'tsr_' + 'A'.repeat(43),
    'tsr_' + 'A'.repeat(42),
    live.refresh_token + 'x',
    ' ' + live.refresh_token,
    'a.b.c',
    'eyJhbGciOiJub25lIn0.e30.',
    live.access_token.slice(0, -4) + 'AAAA',
    'x'.repeat(10_000),
    '🔑',
  ]
  for (const token of garbage) {
    const before = await snapshot(app)
    assertRevoked200(t, await revoke(app, client, token), `garbage ${JSON.stringify(token.slice(0, 24))}`)
    t.same(await snapshot(app), before, `garbage ${JSON.stringify(token.slice(0, 24))}: nothing changed`)
  }

  let before = await snapshot(app)
  assertRevoked200(t, await revoke(app, client, revokedFamily.refresh_token), 'an already revoked refresh token')
  t.same(await snapshot(app), before, 'already revoked refresh token: nothing changed')

  before = await snapshot(app)
  assertRevoked200(t, await revoke(app, client, revokedAt.access_token), 'an already revoked access token')
  t.same(await snapshot(app), before, 'already revoked access token: nothing changed')

  // An access token past exp (+ leeway) on the app's clock is not a token any more.
  now = ((claimsOf(live.access_token).exp as number) + 60) * 1000
  before = await snapshot(app)
  assertRevoked200(t, await revoke(app, client, live.access_token), 'an expired access token')
  t.same(await snapshot(app), before, 'expired access token: nothing changed')
  t.equal((await refresh(app, client, live.refresh_token)).statusCode, 200, 'the live family still refreshes')
})

t.test("#74 revoking another client's tokens: 200 and not revoked", async (t) => {
  const { app, client, login } = await setup(t)
  const other = await app.createClient()
  const victim = await login()
  const before = await snapshot(app)
  assertRevoked200(t, await revoke(app, other, victim.refresh_token), "another client's refresh token")
  assertRevoked200(t, await revoke(app, other, victim.refresh_token, 'refresh_token'), "another client's refresh token, with the hint")
  assertRevoked200(t, await revoke(app, other, victim.access_token), "another client's access token")
  assertRevoked200(t, await revoke(app, other, victim.access_token, 'access_token'), "another client's access token, with the hint")
  t.same(await snapshot(app), before, 'nothing changed')
  t.equal((await userinfo(app, victim.access_token)).statusCode, 200, "the owner's access token still works")
  const introspected = await introspect(app, client, victim.access_token)
  t.equal(introspected.json().active, true, "the owner's access token is still active")
  t.equal((await refresh(app, client, victim.refresh_token)).statusCode, 200, 'the owner can still refresh')
})

t.test('#75 /revoke without client authentication: 401; without token: 400', async (t) => {
  const { app, client, login } = await setup(t)
  const tokens = await login()
  const noAuth = await post(app, '/revoke', { token: tokens.refresh_token })
  t.equal(noAuth.statusCode, 401)
  t.same(noAuth.json(), { error: 'invalid_client', error_description: 'client authentication failed' })
  const bodyId = await post(app, '/revoke', { token: tokens.refresh_token, client_id: client.id })
  t.equal(bodyId.statusCode, 401, 'a confidential client_id without its secret')
  t.equal(bodyId.json().error, 'invalid_client')
  const wrong = await post(app, '/revoke', { token: tokens.refresh_token }, { id: client.id, secret: 'tessera_cs_wrong' })
  t.equal(wrong.statusCode, 401, 'wrong secret')
  t.equal(wrong.json().error, 'invalid_client')
  t.equal(wrong.headers['www-authenticate'], 'Basic realm="tessera", charset="UTF-8"')
  t.equal((await refresh(app, client, tokens.refresh_token)).statusCode, 200, 'nothing was revoked by the failed calls')

  for (const params of [{}, { token: '' }, { token_type_hint: 'refresh_token' }] as Record<string, string>[]) {
    const res = await post(app, '/revoke', params, client)
    t.equal(res.statusCode, 400, `${JSON.stringify(params)}: 400`)
    t.same(res.json(), { error: 'invalid_request', error_description: 'missing parameter: token' })
  }
})

t.test('#76 /revoke racing a refresh: once revoke answered, nothing of the family lives', async (t) => {
  const { app, client } = await setup(t)
  // One after the other: 20 simultaneous password checks of one account from one address are
  // more than the throttle lets run at once (docs/security.md "Brute force and abuse").
  const logins: Awaited<ReturnType<typeof passwordLogin>>[] = []
  for (let i = 0; i < 20; i++) logins.push(await passwordLogin(app, client, 'alice', PASSWORD))
  // Half the rounds send the revoke first, and one side starts up to 3 ms late, so both orders occur.
  const later = <T>(ms: number, f: () => Promise<T>) => new Promise<T>((resolve, reject) => setTimeout(() => f().then(resolve, reject), ms))
  const rounds = await Promise.all(
    logins.map(async (first, i) => {
      const doRefresh = () => refresh(app, client, first.refresh_token)
      const doRevoke = () => revoke(app, client, first.refresh_token)
      const delay = i % 4 < 2 ? 0 : Math.floor(Math.random() * 4)
      const [refreshed, revoked] = await (i % 2 === 0 ? Promise.all([doRefresh(), later(delay, doRevoke)]) : Promise.all([later(delay, doRefresh), doRevoke()]))
      return { first, refreshed, revoked }
    }),
  )
  let won = 0
  for (const [i, { first, refreshed, revoked }] of rounds.entries()) {
    t.equal(revoked.statusCode, 200, `round ${i}: revoke 200`)
    t.ok(refreshed.statusCode === 200 || refreshed.statusCode === 400, `round ${i}: refresh ${refreshed.statusCode}, never 5xx`)
    await assertRefreshFails(t, app, client, first.refresh_token, `round ${i}: the original refresh token`)
    t.equal((await userinfo(app, first.access_token)).statusCode, 401, `round ${i}: the original access token is refused`)
    if (refreshed.statusCode === 200) {
      won++
      const minted = refreshed.json() as { access_token: string; refresh_token: string }
      await assertRefreshFails(t, app, client, minted.refresh_token, `round ${i}: the refresh token the race minted`)
      t.equal((await userinfo(app, minted.access_token)).statusCode, 401, `round ${i}: the access token the race minted is refused`)
      await assertInactive(t, app, client, minted.access_token, `round ${i}: minted access token`)
    } else {
      t.equal(refreshed.json().error, 'invalid_grant', `round ${i}: the losing refresh is invalid_grant`)
    }
  }
  t.comment(`the racing refresh got a 200 in ${won} of ${rounds.length} rounds (the rest lost to the revoke)`)
  const live = await app.database.db.selectFrom('refresh_token_family').select('id').where('revoked_at', 'is', null).execute()
  t.equal(live.length, 0, 'every family is revoked')
})

t.test('#82 /introspect without client authentication: 401', async (t) => {
  const { app, login } = await setup(t)
  const tokens = await login()
  const res = await post(app, '/introspect', { token: tokens.access_token })
  t.equal(res.statusCode, 401)
  t.same(res.json(), { error: 'invalid_client', error_description: 'client authentication failed' })
  const missing = await post(app, '/introspect', {}, (await app.createClient()) as ClientCreds)
  t.equal(missing.statusCode, 400)
  t.same(missing.json(), { error: 'invalid_request', error_description: 'missing parameter: token' })
})

t.test('#82 /introspect of an active token by its own client: the claims, no-store', async (t) => {
  const { app, alice, client, login } = await setup(t)
  const tokens = await login()
  const claims = claimsOf(tokens.access_token)
  const res = await introspect(app, client, tokens.access_token)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers.pragma, 'no-cache')
  t.match(res.headers['content-type'], /^application\/json/)
  t.strictSame(res.json(), {
    active: true,
    token_type: 'Bearer',
    scope: 'openid read',
    client_id: client.id,
    sub: alice.id,
    aud: ['https://api.example.com', ISSUER],
    iss: ISSUER,
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    sid: claims.sid,
  })
})

t.test("#82 /introspect of another client's token: active only for the client id its audience names", async (t) => {
  const { app, client, login } = await setup(t)
  const tokens = await login()
  const stranger = await app.createClient({ audience: ['https://other.example.com'] })
  await assertInactive(t, app, stranger, tokens.access_token, 'a client that is not an audience of the token')
  // Requesting tokens for the same API proves nothing about being that API: still inactive.
  const sibling = await app.createClient({ audience: ['https://api.example.com'] })
  await assertInactive(t, app, sibling, tokens.access_token, 'another client that requests tokens for the same audience')
  // A resource server registered as a client, and named by its client id in the token's aud, may introspect it (RFC 7662 §1).
  const api = await app.createClient({ audience: [], grantTypes: ['client_credentials'] })
  const frontend = await app.createClient({ audience: [api.id], grantTypes: ['password', 'refresh_token'] })
  const forApi = await passwordLogin(app, frontend, 'alice', PASSWORD, 'read')
  const res = await introspect(app, api, forApi.access_token)
  t.equal(res.json().active, true, 'the resource server named in aud')
  t.equal(res.json().client_id, frontend.id)
  t.same(res.json().aud, api.id)
  await assertInactive(t, app, client, forApi.access_token, 'a third client')
})

t.test('#82 /introspect by a public client (client_id alone) → 401 invalid_client', async (t) => {
  const { app, login } = await setup(t)
  const tokens = await login()
  const spa = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'] })
  const res = await app.app.inject({ method: 'POST', url: '/introspect', headers: FORM, payload: form({ client_id: spa.id, token: tokens.access_token }) })
  t.equal(res.statusCode, 401)
  t.same(res.json(), { error: 'invalid_client', error_description: 'client authentication failed' })
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test('#60 the client_credentials token of a disabled client is inactive', async (t) => {
  const clock = new ManualClock()
  const { app } = await setup(t, { clock, env: { CACHE_REFRESH_SECONDS: '1' } })
  const api = await app.createClient({ audience: [], grantTypes: ['client_credentials'] })
  const worker = await app.createClient({ audience: [api.id], grantTypes: ['client_credentials'] })
  const token = (await tokenRequest(app, { grant_type: 'client_credentials' }, worker)).json().access_token as string
  t.equal((await introspect(app, api, token)).json().active, true, 'active before')
  await disableClient(app.database.db, worker.id, CLI_CONTEXT)
  clock.advance(1100) // past the client cache entry's life
  await assertInactive(t, app, api, token, 'after its client was disabled')
})

t.test('#82 /introspect of garbage, an id_token, another client\'s refresh token or an expired token: {"active": false}', async (t) => {
  let now = Date.now()
  const { app, client, login } = await setup(t, { now: () => now })
  const tokens = await login()
  // Its holder may introspect a live refresh token (every state: oauth-errors-introspection.test.ts).
  t.equal((await introspect(app, client, tokens.refresh_token)).json().active, true, 'a live refresh token, by its holder')
  await assertInactive(t, app, await app.createClient(), tokens.refresh_token, "another client's refresh token")
  await assertInactive(t, app, client, 'garbage', 'garbage')
  await assertInactive(t, app, client, tokens.id_token!, 'an id_token')
  t.equal((await introspect(app, client, tokens.access_token)).json().active, true, 'active now')
  now = ((claimsOf(tokens.access_token).exp as number) + 6) * 1000
  await assertInactive(t, app, client, tokens.access_token, 'past exp and the leeway')
})
