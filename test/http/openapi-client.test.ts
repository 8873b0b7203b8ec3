// A client generated from /openapi.json (issue 14): openapi-typescript types (committed in
// test/generated/openapi.d.ts by `npm run openapi:types`) drive openapi-fetch against a real,
// listening server: admin token → user → password login → the user's sessions → revoke one; and
// the issue-14 scenario: create user (admin API) → login → change password (/account) → list sessions.
import { readFileSync } from 'node:fs'
import t from 'tap'
import createClient from 'openapi-fetch'
import type { paths } from '../generated/openapi.js'
import { basic, testApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'
const generator = (await import('../../scripts/openapi-types.mjs' as string)) as { openApiTypes(doc: unknown): Promise<string>; TYPES_FILE: string }

const app = await testApp(t)

t.test('the committed types are those of the current document (else: npm run openapi:types)', async (t) => {
  const expected = await generator.openApiTypes(app.app.swagger())
  t.equal(readFileSync(generator.TYPES_FILE, 'utf8'), expected)
})

t.test('a generated client drives admin token → user → login → sessions → revoke', async (t) => {
  const address = await app.app.listen({ port: 0, host: '127.0.0.1' })
  const api = createClient<paths>({ baseUrl: address })
  const adminClient = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const web = await app.createClient({ name: 'Web app', grantTypes: ['password', 'refresh_token'] })
  const formBody = (body: Record<string, unknown>) => new URLSearchParams(body as Record<string, string>).toString()

  // An admin token: client_credentials, the client authenticated with HTTP Basic (`client_basic`).
  const token = await api.POST('/token', {
    body: { grant_type: 'client_credentials', scope: 'tessera:admin' },
    bodySerializer: formBody,
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(adminClient.id, adminClient.secret!) },
  })
  t.equal(token.response.status, 200)
  const admin = token.data!.access_token
  t.equal(token.data!.token_type, 'Bearer')
  const auth = { headers: { authorization: `Bearer ${admin}` } }

  // The user (created directly here; the next test creates one through POST /admin/users).
  const user = await app.createUser('carol', PASSWORD)

  // Two password logins: two sessions.
  for (const ua of ['phone', 'laptop']) {
    const login = await api.POST('/login', { body: { username: 'carol', password: PASSWORD, client_id: web.id, client_secret: web.secret!, scope: 'openid' }, headers: { 'user-agent': ua } })
    t.equal(login.response.status, 200)
    t.ok(login.data!.access_token)
    t.ok(login.data!.refresh_token, 'a body-delivery client gets its refresh token in the body')
  }
  const badLogin = await api.POST('/login', { body: { username: 'carol', password: 'wrong password', client_id: web.id, client_secret: web.secret! } })
  t.equal(badLogin.response.status, 400)
  t.same(badLogin.error, { error: 'invalid_grant', error_description: 'invalid username or password' })

  const list = await api.GET('/admin/users/{user}/sessions', { params: { path: { user: 'carol' } }, ...auth })
  t.equal(list.response.status, 200)
  t.same(list.data!.user, { id: user.id, username: 'carol' })
  t.equal(list.data!.sessions.length, 2)
  t.same(list.data!.sessions.map((s) => s.state), ['active', 'active'])
  const [first, second] = list.data!.sessions

  const revoked = await api.DELETE('/admin/sessions/{familyId}', { params: { path: { familyId: first!.id } }, ...auth })
  t.equal(revoked.response.status, 200)
  t.same(revoked.data, { revoked: true })

  const after = await api.GET('/admin/users/{user}/sessions', { params: { path: { user: user.id }, query: { include: 'all' } }, ...auth })
  t.same(Object.fromEntries(after.data!.sessions.map((s) => [s.id, s.state])), { [first!.id]: 'revoked', [second!.id]: 'active' })

  // Errors come back typed as the document's error body.
  const missing = await api.GET('/admin/users/{user}/sessions', { params: { path: { user: 'nobody' } }, ...auth })
  t.equal(missing.response.status, 404)
  t.same(missing.error, { error: 'invalid_request', error_description: 'no such user' })
  const anonymous = await api.GET('/admin/users/{user}/sessions', { params: { path: { user: 'carol' } } })
  t.equal(anonymous.response.status, 401)
  t.equal(anonymous.error?.error, 'invalid_token')
})

t.test('a generated client drives create user → login → change password → list sessions (issue 14 scenario)', async (t) => {
  const address = app.app.server.listening ? `http://127.0.0.1:${(app.app.server.address() as { port: number }).port}` : await app.app.listen({ port: 0, host: '127.0.0.1' })
  const api = createClient<paths>({ baseUrl: address })
  const adminClient = await app.createClient({ name: 'user admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin:users'], audience: [] })
  const web = await app.createClient({ name: 'Account app', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'tessera:account'] })
  const formBody = (body: Record<string, unknown>) => new URLSearchParams(body as Record<string, string>).toString()
  const token = await api.POST('/token', {
    body: { grant_type: 'client_credentials', scope: 'tessera:admin:users' },
    bodySerializer: formBody,
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(adminClient.id, adminClient.secret!) },
  })
  t.equal(token.response.status, 200)
  const admin = { authorization: `Bearer ${token.data!.access_token}` }

  // Create the user through the admin API, idempotently.
  const created = await api.POST('/admin/users', { body: { username: 'Dora', password: PASSWORD, profile: { name: 'Dora D' } }, headers: { ...admin, 'idempotency-key': 'scenario-dora' } })
  t.equal(created.response.status, 201)
  t.equal(created.data!.username, 'dora', 'the username is stored normalised')
  t.equal(created.response.headers.get('etag'), '"v1"')

  // Two logins with the account scope: two sessions.
  const logins = []
  for (const ua of ['phone', 'laptop']) {
    const login = await api.POST('/login', { body: { username: 'dora', password: PASSWORD, client_id: web.id, client_secret: web.secret!, scope: 'openid tessera:account' }, headers: { 'user-agent': ua } })
    t.equal(login.response.status, 200)
    logins.push(login.data!)
  }
  const me = { authorization: `Bearer ${logins[1]!.access_token}` }

  const changed = await api.POST('/account/password', { body: { current_password: PASSWORD, new_password: 'a brand new passphrase' }, headers: me })
  t.equal(changed.response.status, 200)
  t.equal(changed.data!.sessions_revoked, 1, 'the other session ends')

  const sessions = await api.GET('/account/sessions', { headers: me })
  t.equal(sessions.response.status, 200)
  t.equal(sessions.data!.sessions.length, 1, 'only the calling session is left')
  t.equal(sessions.data!.sessions[0]!.current, true)

  // The old password no longer logs in; the new one does.
  const old = await api.POST('/login', { body: { username: 'dora', password: PASSWORD, client_id: web.id, client_secret: web.secret! } })
  t.equal(old.response.status, 400)
  const fresh = await api.POST('/login', { body: { username: 'dora', password: 'a brand new passphrase', client_id: web.id, client_secret: web.secret! } })
  t.equal(fresh.response.status, 200)
})
