// GET /admin/audit: the audit trail, filtered and paginated. SECURITY.md #122.
import t from 'tap'
import type { Test } from 'tap'
import { listAuditEvents } from '../../src/audit/audit.store.js'
import { basic, FORM, form, passwordLogin, testApp, tokenRequest, type Backend, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'
type Creds = { id: string; secret: string | undefined }
type Event = { id: string; at: string; type: string; client_id: string | null; user_id: string | null; family_id: string | null; ip: string | null; user_agent: string | null; detail: Record<string, unknown> }

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function refresh(app: TestApp, client: Creds, rt: string, ua = 'test-agent') {
  return app.app.inject({ method: 'POST', url: '/token', headers: { ...FORM, authorization: basic(client.id, client.secret!), 'user-agent': ua }, remoteAddress: '203.0.113.5', payload: form({ grant_type: 'refresh_token', refresh_token: rt }) })
}

function audit(app: TestApp, token: string | undefined, query = '') {
  return app.app.inject({ method: 'GET', url: `/admin/audit${query}`, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
}

async function events(app: TestApp, token: string, query = ''): Promise<{ events: Event[]; next_cursor: string | null }> {
  const res = await audit(app, token, query)
  if (res.statusCode !== 200) throw new Error(`audit ${query}: ${res.statusCode} ${res.body}`)
  return res.json()
}

async function setup(t: Test, backend: Backend = 'postgres', env: Record<string, string> = {}) {
  const app = await testApp(t, { backend, env })
  const alice = await app.createUser('alice', PASSWORD)
  const bob = await app.createUser('bob', PASSWORD)
  const web = await app.createClient({ name: 'Web app' })
  const mobile = await app.createClient({ name: 'Mobile app' })
  const adminClient = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'tessera:admin' }, adminClient)
  return { app, alice, bob, web, mobile, adminClient, admin: res.json().access_token as string }
}

/**
 * A history: alice logs in on web and mobile, refreshes, her mobile session is caught reusing a
 * token (grace off), bob logs in, and an admin revokes alice's web session.
 */
async function history(app: TestApp, c: Awaited<ReturnType<typeof setup>>) {
  const aliceWeb = await passwordLogin(app, c.web, 'alice', PASSWORD)
  const aliceMobile = await passwordLogin(app, c.mobile, 'alice', PASSWORD)
  const next = await refresh(app, c.web, aliceWeb.refresh_token, 'Firefox/141')
  if (next.statusCode !== 200) throw new Error('refresh failed')
  const m1 = await refresh(app, c.mobile, aliceMobile.refresh_token)
  if (m1.statusCode !== 200) throw new Error('refresh failed')
  await sleep(10)
  // The used token again, with the grace window off: reuse.
  const m2 = await refresh(app, c.mobile, aliceMobile.refresh_token)
  const bobWeb = await passwordLogin(app, c.web, 'bob', PASSWORD)
  const del = await app.app.inject({ method: 'DELETE', url: `/admin/sessions/${claimsOf(aliceWeb.access_token).sid}`, headers: { authorization: `Bearer ${c.admin}` } })
  if (del.statusCode !== 200) throw new Error('admin revoke failed')
  return { webFamily: claimsOf(aliceWeb.access_token).sid as string, mobileFamily: claimsOf(aliceMobile.access_token).sid as string, bobFamily: claimsOf(bobWeb.access_token).sid as string, reuseStatus: m2.statusCode }
}

t.test('admin guard: no token 401 with WWW-Authenticate Bearer, no admin scope 403', async (t) => {
  const c = await setup(t)
  const none = await audit(c.app, undefined)
  t.equal(none.statusCode, 401)
  t.equal(none.headers['www-authenticate'], 'Bearer realm="tessera"')
  t.same(none.json(), { error: 'invalid_token', error_description: 'a bearer token is required' })
  const reader = await c.app.createClient({ name: 'reader', grantTypes: ['client_credentials'], scopes: ['read'], audience: [] })
  const token = (await tokenRequest(c.app, { grant_type: 'client_credentials', scope: 'read' }, reader)).json().access_token
  const res = await audit(c.app, token)
  t.equal(res.statusCode, 403)
  t.same(res.json(), { error: 'insufficient_scope', error_description: 'the tessera:admin scope is required' })
  t.match(res.headers['www-authenticate'], /^Bearer realm="tessera", error="insufficient_scope"/)
  const bad = await audit(c.app, undefined, '?limit=0')
  t.equal(bad.statusCode, 401, 'authentication comes before parameter checks')
})

t.test('#122 the trail of a session history: issued, rotated, reuse detected, revoked with reason, admin action; filters', async (t) => {
  const c = await setup(t, 'postgres', { REFRESH_GRACE_SECONDS: '0' })
  const { app, admin, alice, bob, web, mobile, adminClient } = c
  const h = await history(app, c)
  t.equal(h.reuseStatus, 400, 'the replay was refused as reuse')

  const all = await events(app, admin)
  t.equal(all.next_cursor, null)
  const ids = all.events.map((e) => BigInt(e.id))
  t.same(ids, [...ids].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0)), 'newest first')
  t.equal(new Set(ids).size, ids.length)
  const e0 = all.events[0]!
  t.same(Object.keys(e0).sort(), ['at', 'client_id', 'detail', 'family_id', 'id', 'ip', 'type', 'user_agent', 'user_id'])
  t.match(e0.at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)

  const types = (list: Event[]) => list.map((e) => e.type).reverse()
  const webEvents = (await events(app, admin, `?family=${h.webFamily}`)).events
  t.same(types(webEvents), ['login.succeeded', 'refresh_token.issued', 'refresh_token.rotated', 'refresh_token.revoked', 'admin.sessions_revoked'], "alice's web session, oldest to newest")
  const rotated = webEvents.find((e) => e.type === 'refresh_token.rotated')!
  t.equal(rotated.user_agent, 'Firefox/141')
  t.equal(rotated.ip, '203.0.113.5')
  t.equal(rotated.client_id, web.id)
  t.equal(rotated.user_id, alice.id)
  t.same(webEvents.find((e) => e.type === 'refresh_token.revoked')!.detail, { reason: 'admin', via: 'admin_api', admin_client_id: adminClient.id }, 'revoked, with its reason')
  t.same(webEvents.find((e) => e.type === 'admin.sessions_revoked')!.detail, { via: 'admin_api', admin_client_id: adminClient.id, reason: 'admin', count: 1 })

  const mobileEvents = (await events(app, admin, `?family=${h.mobileFamily}`)).events
  t.same(types(mobileEvents), ['login.succeeded', 'refresh_token.issued', 'refresh_token.rotated', 'refresh_token.reuse_detected'])

  // Exact type, and a prefix.
  const reuse = (await events(app, admin, '?type=refresh_token.reuse_detected')).events
  t.same(reuse.map((e) => e.family_id), [h.mobileFamily])
  const rt = (await events(app, admin, '?type=refresh_token.')).events
  t.ok(rt.length > 0)
  t.ok(rt.every((e) => e.type.startsWith('refresh_token.')), 'prefix: only refresh_token.* events')
  t.equal(rt.length, all.events.filter((e) => e.type.startsWith('refresh_token.')).length, 'prefix: all of them')
  t.same((await events(app, admin, '?type=refresh_token')).events, [], 'no dot: an exact type, which does not exist')
  t.same((await events(app, admin, '?type=refresh.token.')).events, [], '_ in a prefix is literal, not a LIKE wildcard')
  t.equal((await events(app, admin, '?type=login.')).events.length, 3)

  // User: by id and by username give the same; bob's events are only his.
  const byId = (await events(app, admin, `?user=${alice.id}`)).events
  t.same((await events(app, admin, '?user=Alice')).events, byId)
  t.ok(byId.every((e) => e.user_id === alice.id))
  t.same(types((await events(app, admin, `?user=${bob.id}`)).events), ['login.succeeded', 'refresh_token.issued'])
  t.same((await events(app, admin, '?user=00000000-0000-4000-8000-000000000000')).events, [], 'an unknown user id: no events (events outlive users)')

  // Client, and combinations.
  const mobileOnly = (await events(app, admin, `?client=${mobile.id}`)).events
  t.ok(mobileOnly.length > 0 && mobileOnly.every((e) => e.client_id === mobile.id))
  t.same(types((await events(app, admin, `?client=${adminClient.id}`)).events), ['admin.sessions_revoked'], 'admin actions are found by the admin client')
  const combo = (await events(app, admin, `?type=refresh_token.&user=alice&client=${web.id}`)).events
  t.same(types(combo), ['refresh_token.issued', 'refresh_token.rotated', 'refresh_token.revoked'])

  // Time: since is inclusive, until exclusive.
  const oldest = all.events[all.events.length - 1]!
  const newest = all.events[0]!
  t.equal((await events(app, admin, `?since=${encodeURIComponent(oldest.at)}`)).events.length, all.events.length)
  t.same((await events(app, admin, `?until=${encodeURIComponent(oldest.at)}`)).events, [])
  const future = new Date(Date.now() + 3600_000).toISOString()
  t.same((await events(app, admin, `?since=${future}`)).events, [])
  t.equal((await events(app, admin, `?until=${future}&since=2000-01-01`)).events.length, all.events.length)
  await app.database.db.updateTable('audit_event').set({ at: new Date('2026-01-15T12:00:00Z') }).where('id', '=', newest.id).execute()
  const jan = (await events(app, admin, '?since=2026-01-15T00:00:00Z&until=2026-01-16')).events
  t.same(jan.map((e) => e.id), [newest.id], 'a window by date and by date-time with a zone')
  t.same((await events(app, admin, '?since=2026-01-15T13:00:00%2B02:00&until=2026-01-15T12:00:00.001Z')).events.map((e) => e.id), [newest.id], 'offsets are honoured')
})

t.test('keyset pagination: every event exactly once across pages, also while new events arrive', async (t) => {
  const c = await setup(t)
  const { app, admin, web } = c
  let tokens = await passwordLogin(app, web, 'alice', PASSWORD)
  for (let i = 0; i < 20; i++) {
    const res = await refresh(app, web, tokens.refresh_token)
    tokens = res.json()
  }
  t.equal((await events(app, admin, '?limit=1000')).events.length, 22, 'login, issued, 20 rotations')

  for (const limit of [1, 7, 11, 22, 23]) {
    const full = (await events(app, admin, '?limit=1000')).events
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const page: { events: Event[]; next_cursor: string | null } = await events(app, admin, `?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`)
      pages++
      t.ok(page.events.length <= limit)
      seen.push(...page.events.map((e) => e.id))
      if (page.next_cursor !== null) t.equal(page.next_cursor, page.events[page.events.length - 1]!.id, 'the cursor is the last id of the page')
      cursor = page.next_cursor
      // New events between pages are newer than the cursor: they never shift later pages.
      if (pages === 1) tokens = (await refresh(app, web, tokens.refresh_token)).json()
    } while (cursor !== null)
    t.same(seen, full.map((e) => e.id), `limit ${limit}: the same events, in order, no duplicates, no gaps`)
    t.equal(pages, Math.ceil(full.length / limit), `limit ${limit}: no empty last page`)
  }
  const full = (await events(app, admin, '?limit=1000')).events
  const filtered: string[] = []
  let cursor: string | null = null
  do {
    const page: { events: Event[]; next_cursor: string | null } = await events(app, admin, `?type=refresh_token.rotated&limit=4${cursor ? `&cursor=${cursor}` : ''}`)
    filtered.push(...page.events.map((e) => e.id))
    cursor = page.next_cursor
  } while (cursor !== null)
  t.same(filtered, full.filter((e) => e.type === 'refresh_token.rotated').map((e) => e.id), 'pagination with a filter')
  t.equal((await events(app, admin)).events.length, 27, 'the default page holds up to 100')
  // The store bounds the limit whatever a caller passes.
  t.equal((await listAuditEvents(app.database.db, { limit: 5000 })).events.length, 27)
  t.equal((await listAuditEvents(app.database.db, { limit: 0 })).events.length, 1)
})

t.test('bad parameters → 400 invalid_request with a clear message; unknown username → 404', async (t) => {
  const { app, admin } = await setup(t)
  const type = 'type must be an event type such as refresh_token.revoked, or a prefix ending in a dot such as refresh_token.'
  const date = (n: string) => `${n} must be an ISO 8601 date or date-time with a time zone, e.g. 2026-11-23T10:00:00Z`
  const cases: [string, string][] = [
    ['?type=Refresh_Token.revoked', type],
    ['?type=refresh_token..revoked', type],
    ['?type=refresh_token.%25', type],
    ['?type=.', type],
    [`?type=${'a'.repeat(200)}`, type],
    ['?user=not%20a%20user', 'user must be a user id (UUID) or a username'],
    ['?family=123', 'family must be a UUID'],
    ['?family=00000000-0000-4000-8000-00000000000g', 'family must be a UUID'],
    ['?client=a%20b', 'client must be a client id'],
    [`?client=${'c'.repeat(257)}`, 'client must be a client id'],
    ['?since=yesterday', date('since')],
    ['?since=2026-02-30', date('since')],
    ['?since=2026-13-01', date('since')],
    ['?since=2026-11-23T10:00:00', date('since')],
    ['?since=2026-11-23T24:00:00Z', date('since')],
    ['?until=2026-11-23T10:00:00%2B25:00', date('until')],
    ['?until=1700000000', date('until')],
    ['?limit=0', 'limit must be an integer from 1 to 1000'],
    ['?limit=1001', 'limit must be an integer from 1 to 1000'],
    ['?limit=1.5', 'limit must be an integer from 1 to 1000'],
    ['?limit=%20100', 'limit must be an integer from 1 to 1000'],
    ['?cursor=abc', 'cursor must be the next_cursor of a previous page'],
    ['?cursor=0', 'cursor must be the next_cursor of a previous page'],
    ['?cursor=-5', 'cursor must be the next_cursor of a previous page'],
    ['?cursor=9223372036854775808', 'cursor must be the next_cursor of a previous page'],
    ['?cursor=99999999999999999999', 'cursor must be the next_cursor of a previous page'],
    ['?type=login.&type=refresh_token.', 'parameter sent more than once: type'],
    ['?limit=1&limit=2', 'parameter sent more than once: limit'],
  ]
  for (const [query, description] of cases) {
    const res = await audit(app, admin, query)
    t.equal(res.statusCode, 400, `${query.slice(0, 60)}: 400`)
    t.same(res.json(), { error: 'invalid_request', error_description: description }, `${query.slice(0, 60)}: message`)
    t.equal(res.headers['cache-control'], 'no-store')
  }
  const unknown = await audit(app, admin, '?user=mallory')
  t.equal(unknown.statusCode, 404)
  t.same(unknown.json(), { error: 'invalid_request', error_description: 'no such user' })
  t.equal((await audit(app, admin, '?cursor=9223372036854775807&limit=1000&type=&since=2026-02-28')).statusCode, 200, 'the largest cursor, the largest page; an empty parameter is absent')
  t.equal((await audit(app, admin, '?until=2024-02-29T23:59:59.999999Z')).statusCode, 200, 'a leap day, microseconds')
  t.equal((await audit(app, admin, '?unknown=1')).statusCode, 200, 'unknown parameters are ignored')
  for (const q of ['?since=0000-01-01', '?until=9999-12-31T23:59:59Z', '?since=1970-01-01T00:00-12:00', '?until=2026-11-23T10:00:00.123456789Z']) {
    t.equal((await audit(app, admin, q.replace('+', '%2B'))).statusCode, 200, `extreme but valid: ${q}`)
  }
  const post = await app.app.inject({ method: 'POST', url: '/admin/audit', headers: { authorization: `Bearer ${admin}` } })
  t.equal(post.statusCode, 405)
  t.equal(post.headers.allow, 'GET')
})

t.test('the embedded database (PGlite): sessions and audit queries work the same', async (t) => {
  const c = await setup(t, 'pglite')
  const { app, admin, alice, web } = c
  const first = await passwordLogin(app, web, 'alice', PASSWORD)
  await passwordLogin(app, web, 'alice', PASSWORD)
  t.equal((await refresh(app, web, first.refresh_token)).statusCode, 200)
  const list = await app.app.inject({ method: 'GET', url: `/admin/users/alice/sessions?limit=1`, headers: { authorization: `Bearer ${admin}` } })
  t.equal(list.statusCode, 200)
  const page1 = list.json()
  t.equal(page1.sessions.length, 1)
  t.type(page1.next_cursor, 'string')
  const page2 = (await app.app.inject({ method: 'GET', url: `/admin/users/alice/sessions?limit=1&cursor=${page1.next_cursor}`, headers: { authorization: `Bearer ${admin}` } })).json()
  t.equal(page2.sessions.length, 1)
  t.equal(page2.next_cursor, null)
  t.not(page2.sessions[0].id, page1.sessions[0].id)
  const rt = (await events(app, admin, `?type=refresh_token.&user=${alice.id}&limit=2`))
  t.equal(rt.events.length, 2)
  const rest = await events(app, admin, `?type=refresh_token.&user=${alice.id}&cursor=${rt.next_cursor}`)
  t.same([...rt.events, ...rest.events].map((e) => e.type).sort(), ['refresh_token.issued', 'refresh_token.issued', 'refresh_token.rotated'])
  const all = await app.app.inject({ method: 'DELETE', url: '/admin/users/alice/sessions', headers: { authorization: `Bearer ${admin}` } })
  t.same(all.json(), { revoked: 2 })
  t.equal((await refresh(app, web, first.refresh_token)).statusCode, 400)
})
