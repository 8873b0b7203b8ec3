// The sessions admin API: GET/DELETE /admin/users/{user}/sessions, DELETE /admin/sessions/{id}.
// DESIGN rotation promises 3 and 5; SECURITY.md #63, #71, #76, #81, #122, #23.
import t from 'tap'
import type { Test } from 'tap'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { disableClient } from '../../src/clients/disable-client.js'
import { basic, FORM, form, testApp, tokenRequest, type TestApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

const PASSWORD = 'correct horse battery'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
type Creds = { id: string; secret: string | undefined }
type Tokens = { access_token: string; refresh_token: string }

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** POST /token with a chosen user agent and client address. */
function tokenAs(app: TestApp, client: Creds, params: Record<string, string>, ua = 'test-agent', ip = '127.0.0.1') {
  return app.app.inject({
    method: 'POST',
    url: '/token',
    headers: { ...FORM, authorization: basic(client.id, client.secret!), 'user-agent': ua },
    remoteAddress: ip,
    payload: form(params),
  })
}

async function login(app: TestApp, client: Creds, username: string, ua?: string, ip?: string): Promise<Tokens> {
  const res = await tokenAs(app, client, { grant_type: 'password', username, password: PASSWORD, scope: 'openid read' }, ua, ip)
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

const refresh = (app: TestApp, client: Creds, rt: string, ua?: string, ip?: string) => tokenAs(app, client, { grant_type: 'refresh_token', refresh_token: rt }, ua, ip)
const userinfo = (app: TestApp, at: string) => app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${at}` } })

/** An admin API call, with a bearer token or none. */
function call(app: TestApp, method: 'GET' | 'DELETE' | 'POST' | 'PUT', url: string, token?: string) {
  return app.app.inject({ method, url, headers: token === undefined ? {} : { authorization: `Bearer ${token}`, 'user-agent': 'admin-console/1.0' }, remoteAddress: '192.0.2.50' })
}

/** A client_credentials access token of `client` for `scope`. */
async function clientToken(app: TestApp, client: Creds, scope: string): Promise<string> {
  const res = await tokenRequest(app, { grant_type: 'client_credentials', scope }, client)
  if (res.statusCode !== 200) throw new Error(`client_credentials failed: ${res.statusCode} ${res.body}`)
  return res.json().access_token
}

async function setup(t: Test, env: Record<string, string> = {}, clock?: ManualClock) {
  const app = await testApp(t, { env, ...(clock ? { clock } : {}) })
  const alice = await app.createUser('alice', PASSWORD)
  const bob = await app.createUser('bob', PASSWORD)
  const web = await app.createClient({ name: 'Web app' })
  const mobile = await app.createClient({ name: 'Mobile app' })
  const adminClient = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const admin = await clientToken(app, adminClient, 'tessera:admin')
  return { app, alice, bob, web, mobile, adminClient, admin }
}

const assertInvalidGrant = async (t: Test, res: Awaited<ReturnType<typeof refresh>>, what: string) => {
  t.equal(res.statusCode, 400, `${what}: 400`)
  t.same(res.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' }, `${what}: invalid_grant`)
}

t.test('admin guard on every sessions endpoint: 401 without a good token, 403 without the scope; nothing changes', async (t) => {
  const clock = new ManualClock()
  const { app, alice, web, adminClient, admin } = await setup(t, { CACHE_REFRESH_SECONDS: '1' }, clock)
  const session = await login(app, web, 'alice')
  const familyId = claimsOf(session.access_token).sid as string
  const endpoints: ['GET' | 'DELETE', string][] = [
    ['GET', `/admin/users/${alice.id}/sessions`],
    ['DELETE', `/admin/users/alice/sessions`],
    ['DELETE', `/admin/sessions/${familyId}`],
    ['GET', '/admin/audit'],
  ]
  const reader = await app.createClient({ name: 'reader', grantTypes: ['client_credentials'], scopes: ['read'], audience: [] })
  const noScope = await clientToken(app, reader, 'read')
  const foreign = await app.createClient({ name: 'admin for an API', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: ['https://api.example.com'] })
  const wrongAudience = await clientToken(app, foreign, 'tessera:admin')
  t.same(claimsOf(wrongAudience).aud, 'https://api.example.com')
  const revokedAdmin = await clientToken(app, adminClient, 'tessera:admin')
  const rev = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(adminClient.id, adminClient.secret!) }, payload: form({ token: revokedAdmin }) })
  t.equal(rev.statusCode, 200)
  const disabledClient = await app.createClient({ name: 'old admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const disabledAdmin = await clientToken(app, disabledClient, 'tessera:admin')
  t.equal((await call(app, 'GET', '/admin/audit', disabledAdmin)).statusCode, 200, 'the token works before its client is disabled')
  await disableClient(app.database.db, disabledClient.id, CLI_CONTEXT)
  clock.advance(1100) // past the client cache entry (CACHE_REFRESH_SECONDS=1)
  // A client that has the admin scope and also logs users in: the user's token carries the scope,
  // but it is the user's, not the client's own (sub is the user, sid the session).
  const careless = await app.createClient({ name: 'admin that logs users in', grantTypes: ['client_credentials', 'password', 'refresh_token'], scopes: ['openid', 'tessera:admin'], audience: [] })
  const userAdmin = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'openid tessera:admin' }, careless)
  t.equal(userAdmin.statusCode, 200)
  t.match(claimsOf(userAdmin.json().access_token), { scope: 'openid tessera:admin', sub: alice.id })

  const cases: [string, string | undefined, number, string][] = [
    ['no token', undefined, 401, 'invalid_token'],
    ['garbage token', 'not.a.jwt', 401, 'invalid_token'],
    ['token without tessera:admin', noScope, 403, 'insufficient_scope'],
    ['token of a disabled client', disabledAdmin, 401, 'invalid_token'],
    ['token for another audience', wrongAudience, 401, 'invalid_token'],
    ['revoked admin token', revokedAdmin, 401, 'invalid_token'],
    ["a user's access token", session.access_token, 403, 'insufficient_scope'],
    ["a user's access token with tessera:admin", userAdmin.json().access_token as string, 403, 'insufficient_scope'],
  ]
  const before = await app.database.db.selectFrom('refresh_token_family').select(['id', 'revoked_at']).orderBy('id').execute()
  for (const [method, url] of endpoints) {
    for (const [name, token, status, error] of cases) {
      const res = await call(app, method, url, token)
      t.equal(res.statusCode, status, `${method} ${url}, ${name}: ${status}`)
      t.equal(res.json().error, error, `${method} ${url}, ${name}: ${error}`)
      t.equal(res.headers['cache-control'], 'no-store')
      const challenge = res.headers['www-authenticate'] as string
      if (token === undefined) t.equal(challenge, 'Bearer realm="tessera"', 'RFC 6750 §3: no error code without a token')
      else t.match(challenge, new RegExp(`^Bearer realm="tessera", error="${error}"`), `${name}: WWW-Authenticate Bearer`)
    }
  }
  t.same(await app.database.db.selectFrom('refresh_token_family').select(['id', 'revoked_at']).orderBy('id').execute(), before, 'no family was revoked')
  t.equal((await refresh(app, web, session.refresh_token)).statusCode, 200, 'the session still refreshes')
  t.equal((await call(app, 'GET', `/admin/users/${alice.id}/sessions`, admin)).statusCode, 200, 'and the real admin token works')
})

t.test('listing shows client, created, last used, IP and user agent of the last use, newest first (#122)', async (t) => {
  const { app, alice, bob, web, mobile, admin } = await setup(t)
  const t0 = Date.now()
  const firefox = await login(app, web, 'alice', 'Mozilla/5.0 Firefox/140.0', '203.0.113.10')
  await sleep(20)
  const phone = await login(app, mobile, 'alice', 'TesseraMobile/2.1 (Android 15)', '198.51.100.20')
  await login(app, web, 'bob', 'bob-agent', '192.0.2.1')
  await sleep(20)
  // The web session is used again, from another address and a newer browser.
  const next = await refresh(app, web, firefox.refresh_token, 'Mozilla/5.0 Firefox/141.0', '203.0.113.99')
  t.equal(next.statusCode, 200)

  const res = await call(app, 'GET', `/admin/users/${alice.id}/sessions`, admin)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json()
  t.same(body.user, { id: alice.id, username: 'alice' })
  t.equal(body.next_cursor, null)
  t.equal(body.sessions.length, 2, "only alice's two sessions")
  const [s1, s2] = body.sessions
  t.same(Object.keys(s1).sort(), ['auth_time', 'client_id', 'client_name', 'created_at', 'expires_at', 'id', 'last_ip', 'last_used_at', 'last_user_agent', 'revoked_at', 'revoked_reason', 'scope', 'state'])
  // Newest first: the phone logged in last.
  t.equal(s1.id, claimsOf(phone.access_token).sid)
  t.equal(s1.client_id, mobile.id)
  t.equal(s1.client_name, 'Mobile app')
  t.equal(s1.last_ip, '198.51.100.20')
  t.equal(s1.last_user_agent, 'TesseraMobile/2.1 (Android 15)')
  t.equal(s1.state, 'active')
  t.equal(s1.scope, 'openid read')
  t.equal(s1.revoked_at, null)
  t.equal(s2.id, claimsOf(firefox.access_token).sid)
  t.equal(s2.client_id, web.id)
  t.equal(s2.client_name, 'Web app')
  t.equal(s2.last_ip, '203.0.113.99', 'the address of the last refresh, not of the login')
  t.equal(s2.last_user_agent, 'Mozilla/5.0 Firefox/141.0')
  for (const s of [s1, s2]) {
    t.match(s.id, UUID)
    for (const k of ['created_at', 'auth_time', 'expires_at', 'last_used_at']) t.match(s[k], /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, `${k} is ISO 8601`)
    t.ok(Date.parse(s.created_at) >= t0 - 5000 && Date.parse(s.created_at) <= Date.now() + 5000, 'created now')
  }
  t.ok(Date.parse(s2.last_used_at) > Date.parse(s2.created_at), 'last used after created: the refresh')
  t.ok(Date.parse(s1.created_at) > Date.parse(s2.created_at))

  // The same by username, in any case.
  const byName = await call(app, 'GET', '/admin/users/ALICE/sessions', admin)
  t.equal(byName.statusCode, 200)
  t.same(byName.json(), body, 'by username (case-insensitive) = by id')
  const bobs = (await call(app, 'GET', `/admin/users/${bob.id}/sessions`, admin)).json()
  t.equal(bobs.sessions.length, 1)
  t.equal(bobs.sessions[0].last_user_agent, 'bob-agent')
})

t.test('include=all shows revoked and expired sessions with their state; the default shows live ones only', async (t) => {
  const { app, alice, web, admin } = await setup(t)
  const live = await login(app, web, 'alice')
  const revoked = await login(app, web, 'alice')
  const expired = await login(app, web, 'alice')
  const idle = await login(app, web, 'alice')
  const sid = (x: Tokens) => claimsOf(x.access_token).sid as string
  t.same((await call(app, 'DELETE', `/admin/sessions/${sid(revoked)}`, admin)).json(), { revoked: true })
  // Simulated time: one family past its absolute limit, one whose newest token idled out.
  await app.database.db.updateTable('refresh_token_family').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', sid(expired)).execute()
  await app.database.db.updateTable('refresh_token').set({ expires_at: new Date(Date.now() - 1000) }).where('family_id', '=', sid(idle)).execute()

  const byDefault = (await call(app, 'GET', `/admin/users/${alice.id}/sessions`, admin)).json()
  t.same(byDefault.sessions.map((s: { id: string }) => s.id), [sid(live)])
  const all = (await call(app, 'GET', `/admin/users/${alice.id}/sessions?include=all`, admin)).json()
  const states = Object.fromEntries(all.sessions.map((s: { id: string; state: string }) => [s.id, s.state]))
  t.same(states, { [sid(live)]: 'active', [sid(revoked)]: 'revoked', [sid(expired)]: 'expired', [sid(idle)]: 'expired' })
  const r = all.sessions.find((s: { id: string }) => s.id === sid(revoked))
  t.equal(r.revoked_reason, 'admin')
  t.match(r.revoked_at, /^\d{4}-/)
  t.same(all.sessions.map((s: { id: string }) => s.id), [sid(idle), sid(expired), sid(revoked), sid(live)], 'newest first')
  await assertInvalidGrant(t, await refresh(app, web, expired.refresh_token), 'the expired family really is dead')
  await assertInvalidGrant(t, await refresh(app, web, idle.refresh_token), 'the idle family really is dead')
})

t.test('sessions are paginated by an opaque cursor: no duplicates, no gaps', async (t) => {
  const { app, alice, web, admin } = await setup(t)
  const made: string[] = []
  for (let i = 0; i < 5; i++) made.push(claimsOf((await login(app, web, 'alice')).access_token).sid as string)
  const seen: string[] = []
  let url = `/admin/users/${alice.id}/sessions?limit=2`
  let pages = 0
  for (;;) {
    const body = (await call(app, 'GET', url, admin)).json()
    pages++
    t.ok(body.sessions.length <= 2)
    seen.push(...body.sessions.map((s: { id: string }) => s.id))
    if (body.next_cursor === null) break
    url = `/admin/users/${alice.id}/sessions?limit=2&cursor=${encodeURIComponent(body.next_cursor)}`
  }
  t.equal(pages, 3)
  t.same(seen, [...made].reverse(), 'every session once, newest first')
  // Same creation instant for all of them: the id breaks the tie.
  await app.database.db.updateTable('refresh_token_family').set({ created_at: new Date('2026-11-23T10:00:00.123456Z') }).execute()
  const tied: string[] = []
  let cursor: string | null = null
  do {
    const body: { sessions: { id: string }[]; next_cursor: string | null } = (await call(app, 'GET', `/admin/users/${alice.id}/sessions?limit=2${cursor ? `&cursor=${cursor}` : ''}`, admin)).json()
    tied.push(...body.sessions.map((s) => s.id))
    cursor = body.next_cursor
  } while (cursor !== null)
  t.same(tied, [...made].sort().reverse(), 'ties are ordered by id, each once')
})

t.test('DESIGN 3 (#63): revoking one session leaves the user\'s other sessions working; the revoked one is dead everywhere', async (t) => {
  const { app, alice, web, mobile, adminClient, admin } = await setup(t)
  const target = await login(app, web, 'alice', 'laptop')
  const otherWeb = await login(app, web, 'alice', 'desktop')
  const phone = await login(app, mobile, 'alice', 'phone')
  const familyId = claimsOf(target.access_token).sid as string

  const res = await call(app, 'DELETE', `/admin/sessions/${familyId}`, admin)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  t.same(res.json(), { revoked: true })

  await assertInvalidGrant(t, await refresh(app, web, target.refresh_token), 'the revoked session')
  const ui = await userinfo(app, target.access_token)
  t.equal(ui.statusCode, 401, '#23 its access token is refused at /userinfo')
  t.same(ui.json(), { error: 'invalid_token', error_description: 'the access token is invalid' })
  for (const [name, client, tokens] of [['the other web session', web, otherWeb], ['the phone', mobile, phone]] as const) {
    const next = await refresh(app, client, tokens.refresh_token)
    t.equal(next.statusCode, 200, `${name} still refreshes`)
    t.equal((await userinfo(app, tokens.access_token)).statusCode, 200, `${name}: its access token still works`)
    t.equal((await userinfo(app, next.json().access_token)).statusCode, 200)
  }
  t.same((await call(app, 'DELETE', `/admin/sessions/${familyId}`, admin)).json(), { revoked: false }, 'again: 200, revoked false')
  t.same((await call(app, 'DELETE', `/admin/sessions/${familyId.toUpperCase()}`, admin)).json(), { revoked: false }, 'an upper-case UUID is the same id')

  // Audited: the revocation with reason admin, and the admin action with the acting client.
  const events = await app.database.db.selectFrom('audit_event').selectAll().where('family_id', '=', familyId).where('type', 'in', ['refresh_token.revoked', 'admin.sessions_revoked']).orderBy('id').execute()
  t.same(events.map((e) => e.type), ['refresh_token.revoked', 'admin.sessions_revoked', 'admin.sessions_revoked', 'admin.sessions_revoked'])
  t.same(events[0]!.detail, { reason: 'admin', via: 'admin_api', admin_client_id: adminClient.id })
  t.equal(events[0]!.client_id, web.id)
  t.equal(events[0]!.user_id, alice.id)
  t.equal(events[0]!.ip, '192.0.2.50')
  t.equal(events[0]!.user_agent, 'admin-console/1.0')
  t.same(events[1]!.detail, { via: 'admin_api', admin_client_id: adminClient.id, reason: 'admin', count: 1 })
  t.equal(events[1]!.client_id, adminClient.id, 'the admin event names the acting admin client')
  t.equal(events[1]!.user_id, alice.id)
  t.same(events[2]!.detail, { via: 'admin_api', admin_client_id: adminClient.id, reason: 'admin', count: 0 })
  const fam = await app.database.db.selectFrom('refresh_token_family').select(['revoked_reason']).where('id', '=', familyId).executeTakeFirstOrThrow()
  t.equal(fam.revoked_reason, 'admin')
})

t.test('#81 logout everywhere revokes every session of the user, not others; a later login works', async (t) => {
  const { app, alice, bob, web, mobile, adminClient, admin } = await setup(t)
  const sessions = [await login(app, web, 'alice'), await login(app, web, 'alice'), await login(app, mobile, 'alice')]
  const bobs = await login(app, web, 'bob')
  const dead = await login(app, web, 'alice')
  t.same((await call(app, 'DELETE', `/admin/sessions/${claimsOf(dead.access_token).sid}`, admin)).json(), { revoked: true })

  const res = await call(app, 'DELETE', '/admin/users/alice/sessions', admin)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  t.same(res.json(), { revoked: 3 }, 'the three live sessions (not the one already revoked)')
  for (const [i, s] of sessions.entries()) {
    await assertInvalidGrant(t, await refresh(app, i === 2 ? mobile : web, s.refresh_token), `session ${i}`)
    t.equal((await userinfo(app, s.access_token)).statusCode, 401, `session ${i}: access token refused`)
  }
  t.equal((await refresh(app, web, bobs.refresh_token)).statusCode, 200, "bob's session is untouched")
  t.same((await call(app, 'GET', `/admin/users/${alice.id}/sessions`, admin)).json().sessions, [], 'no live session left')
  t.same((await call(app, 'DELETE', `/admin/users/${alice.id}/sessions`, admin)).json(), { revoked: 0 }, 'again: 0')

  const after = await login(app, web, 'alice')
  t.equal((await refresh(app, web, after.refresh_token)).statusCode, 200, 'a later login works')
  const listed = (await call(app, 'GET', `/admin/users/${alice.id}/sessions`, admin)).json().sessions
  t.same(listed.map((s: { id: string }) => s.id), [claimsOf(after.access_token).sid])

  const revokedEvents = await app.database.db.selectFrom('audit_event').selectAll().where('type', '=', 'refresh_token.revoked').where('user_id', '=', alice.id).orderBy('id').execute()
  t.equal(revokedEvents.length, 4, 'one event per revoked family (1 + 3)')
  const everywhere = revokedEvents.slice(1)
  t.same(new Set(everywhere.map((e) => e.family_id)), new Set(sessions.map((s) => claimsOf(s.access_token).sid)))
  for (const e of everywhere) {
    t.same(e.detail, { reason: 'admin', via: 'admin_api', admin_client_id: adminClient.id })
    t.equal(e.ip, '192.0.2.50')
  }
  const adminEvents = await app.database.db.selectFrom('audit_event').selectAll().where('type', '=', 'admin.sessions_revoked').where('family_id', 'is', null).orderBy('id').execute()
  t.same(adminEvents.map((e) => [e.user_id, e.client_id, e.detail]), [
    [alice.id, adminClient.id, { via: 'admin_api', admin_client_id: adminClient.id, reason: 'admin', count: 3 }],
    [alice.id, adminClient.id, { via: 'admin_api', admin_client_id: adminClient.id, reason: 'admin', count: 0 }],
  ])
})

/**
 * Refreshes a chain of tokens one after another (each with the previous answer's token), up
 * to `steps` times or until one fails; records for each whether it started after `flag.answered`.
 * A chain raced by a revocation is given plenty of steps, so that on a busy machine it is still
 * running when the revocation lands (it stops at the first refusal).
 */
const RACED_STEPS = 2000

async function chain(app: TestApp, client: Creds, start: Tokens, flag: { answered: boolean }, progress: { n: number }, steps = 30) {
  let latest = start
  const results: { afterRevoke: boolean; status: number; error?: string }[] = []
  for (let i = 0; i < steps; i++) {
    const afterRevoke = flag.answered
    const res = await refresh(app, client, latest.refresh_token)
    results.push({ afterRevoke, status: res.statusCode, ...(res.statusCode !== 200 ? { error: res.json().error } : {}) })
    if (res.statusCode !== 200) break
    latest = res.json()
    progress.n++
  }
  return { results, latest }
}

t.test('DESIGN 5 (#76): logout everywhere racing chains of refreshes: once it answered 200, nothing of those families refreshes', async (t) => {
  const { app, web, mobile, admin } = await setup(t)
  for (let round = 0; round < 3; round++) {
    const clients = [web, web, mobile]
    const starts = await Promise.all(clients.map((c) => login(app, c, 'alice')))
    const bystander = await login(app, web, 'bob')
    const flag = { answered: false }
    const progress = { n: 0 }
    // Rounds fire the revocation at different points: at once, after a few and after many refreshes.
    const waitFor = [0, 5, 20][round]!
    const revokeAll = (async () => {
      while (progress.n < waitFor) await sleep(1)
      const res = await call(app, 'DELETE', '/admin/users/alice/sessions', admin)
      flag.answered = true
      return res
    })()
    const [revoked, ...chains] = await Promise.all([revokeAll, ...clients.map((c, i) => chain(app, c, starts[i]!, flag, progress, RACED_STEPS))])
    t.equal(revoked!.statusCode, 200, `round ${round}: revoke-all 200`)
    t.equal((revoked!.json() as { revoked: number }).revoked, 3, `round ${round}: three families revoked`)
    for (const [i, c] of chains.entries()) {
      const { results, latest } = c as Awaited<ReturnType<typeof chain>>
      t.same(results.filter((r) => r.status !== 200 && r.status !== 400), [], `round ${round} chain ${i}: never anything but 200 or 400`)
      t.same(results.filter((r) => r.afterRevoke && r.status === 200), [], `round ${round} chain ${i}: no refresh started after the answer succeeded`)
      const last = results[results.length - 1]!
      t.equal(last.status, 400, `round ${round} chain ${i}: the chain ended in a refusal`)
      t.equal(last.error, 'invalid_grant', `round ${round} chain ${i}: invalid_grant`)
      await assertInvalidGrant(t, await refresh(app, clients[i]!, latest.refresh_token), `round ${round} chain ${i}: the family's latest refresh token`)
      t.equal((await userinfo(app, latest.access_token)).statusCode, 401, `round ${round} chain ${i}: the latest access token is refused`)
    }
    t.equal((await refresh(app, web, bystander.refresh_token)).statusCode, 200, `round ${round}: bob is untouched`)
    const live = await app.database.db.selectFrom('refresh_token_family as f').innerJoin('app_user as u', 'u.id', 'f.user_id').select('f.id').where('u.username', '=', 'alice').where('f.revoked_at', 'is', null).execute()
    t.same(live, [], `round ${round}: no live family of alice`)
  }
})

t.test('DESIGN 3 + 5: revoking one session racing refreshes of it and of a sibling session', async (t) => {
  const { app, web, admin } = await setup(t)
  for (let round = 0; round < 3; round++) {
    const target = await login(app, web, 'alice')
    const sibling = await login(app, web, 'alice')
    const flag = { answered: false }
    const progress = { n: 0 }
    const waitFor = [0, 5, 15][round]!
    const revokeOne = (async () => {
      while (progress.n < waitFor) await sleep(1)
      const res = await call(app, 'DELETE', `/admin/sessions/${claimsOf(target.access_token).sid}`, admin)
      flag.answered = true
      return res
    })()
    const siblingProgress = { n: 0 }
    const [revoked, hit, other] = await Promise.all([revokeOne, chain(app, web, target, flag, progress, RACED_STEPS), chain(app, web, sibling, { answered: false }, siblingProgress)])
    t.same(revoked.json(), { revoked: true }, `round ${round}: revoked`)
    t.same(hit.results.filter((r) => r.afterRevoke && r.status === 200), [], `round ${round}: nothing after the answer refreshed`)
    t.equal(hit.results[hit.results.length - 1]!.status, 400)
    await assertInvalidGrant(t, await refresh(app, web, hit.latest.refresh_token), `round ${round}: latest token of the revoked session`)
    t.same(other.results.map((r) => r.status), Array(30).fill(200), `round ${round}: all 30 refreshes of the sibling session succeeded`)
    t.equal((await refresh(app, web, other.latest.refresh_token)).statusCode, 200, `round ${round}: the sibling still refreshes`)
  }
})

t.test('bad parameters → 400 invalid_request; unknown user or session → 404; other methods → 405', async (t) => {
  const { app, alice, admin } = await setup(t)
  const bad: [string, 'GET' | 'DELETE', string, string][] = [
    ['user with a space', 'GET', '/admin/users/al%20ice/sessions', 'user must be a user id (UUID) or a username'],
    ['user with a quote', 'DELETE', "/admin/users/al'ice/sessions", 'user must be a user id (UUID) or a username'],
    ['user with NUL', 'GET', '/admin/users/al%00ice/sessions', 'user must be a user id (UUID) or a username'],
    ['include=dead', 'GET', `/admin/users/${alice.id}/sessions?include=dead`, 'include must be all'],
    ['include twice', 'GET', `/admin/users/${alice.id}/sessions?include=all&include=all`, 'parameter sent more than once: include'],
    ['limit=0', 'GET', `/admin/users/${alice.id}/sessions?limit=0`, 'limit must be an integer from 1 to 1000'],
    ['limit=1001', 'GET', `/admin/users/${alice.id}/sessions?limit=1001`, 'limit must be an integer from 1 to 1000'],
    ['limit=-1', 'GET', `/admin/users/${alice.id}/sessions?limit=-1`, 'limit must be an integer from 1 to 1000'],
    ['limit=ten', 'GET', `/admin/users/${alice.id}/sessions?limit=ten`, 'limit must be an integer from 1 to 1000'],
    ['limit=1e3', 'GET', `/admin/users/${alice.id}/sessions?limit=1e3`, 'limit must be an integer from 1 to 1000'],
    ['garbage cursor', 'GET', `/admin/users/${alice.id}/sessions?cursor=zzz`, 'cursor must be the next_cursor of a previous page'],
    ['forged cursor', 'GET', `/admin/users/${alice.id}/sessions?cursor=${Buffer.from("2026-13-99T00:00:00.000000Z|x' or 1=1").toString('base64url')}`, 'cursor must be the next_cursor of a previous page'],
    ['cursor with an impossible date (Feb 31)', 'GET', `/admin/users/${alice.id}/sessions?cursor=${Buffer.from(`2026-02-31T00:00:00.000000Z|${alice.id}`).toString('base64url')}`, 'cursor must be the next_cursor of a previous page'],
    // Year 0 is a valid JavaScript date but not a PostgreSQL one: its error is bad input too, not a 500.
    ['cursor from year 0', 'GET', `/admin/users/${alice.id}/sessions?cursor=${Buffer.from(`0000-01-01T00:00:00.000000Z|${alice.id}`).toString('base64url')}`, 'the request contains an invalid date or time'],
    ['session id not a UUID', 'DELETE', '/admin/sessions/123', 'the session id must be a UUID'],
    ['session id SQL', 'DELETE', "/admin/sessions/1'%20or%20'1'='1", 'the session id must be a UUID'],
  ]
  for (const [name, method, url, description] of bad) {
    const res = await call(app, method, url, admin)
    t.equal(res.statusCode, 400, `${name}: 400`)
    t.same(res.json(), { error: 'invalid_request', error_description: description }, `${name}: message`)
    t.equal(res.headers['cache-control'], 'no-store')
  }
  const missing: [string, 'GET' | 'DELETE', string, string][] = [
    ['unknown user id', 'GET', '/admin/users/00000000-0000-4000-8000-000000000000/sessions', 'no such user'],
    ['unknown username', 'GET', '/admin/users/mallory/sessions', 'no such user'],
    ['unknown username, logout everywhere', 'DELETE', '/admin/users/mallory/sessions', 'no such user'],
    ['unknown session', 'DELETE', '/admin/sessions/00000000-0000-4000-8000-000000000000', 'no such session'],
  ]
  for (const [name, method, url, description] of missing) {
    const res = await call(app, method, url, admin)
    t.equal(res.statusCode, 404, `${name}: 404`)
    t.same(res.json(), { error: 'invalid_request', error_description: description })
  }
  for (const [method, url, allow] of [['POST', `/admin/users/${alice.id}/sessions`, 'GET, DELETE'], ['GET', '/admin/sessions/00000000-0000-4000-8000-000000000000', 'DELETE'], ['PUT', '/admin/sessions/x', 'DELETE']] as const) {
    const res = await call(app, method, url, admin)
    t.equal(res.statusCode, 405, `${method} ${url}: 405`)
    t.equal(res.headers.allow, allow)
  }
  t.equal((await app.database.db.selectFrom('audit_event').select('id').where('type', '=', 'admin.sessions_revoked').execute()).length, 0, 'refused requests changed nothing')
})
