// The users admin API (issue 14): POST/GET/PATCH/DELETE /admin/users[/{user}], PUT …/password,
// POST …/disable|enable; the shared admin infrastructure (scopes, ETag/If-Match, Idempotency-Key);
// migration 0021 (usernames re-normalised, collisions refused).
import { Writable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { openDatabase } from '../../src/db/connect.js'
import { migrateToLatest, migrator } from '../../src/db/migrate.js'
import { runHousekeeping } from '../../src/housekeeping/housekeeping.js'
import { freshDatabase, testApp, testEnv, tokenRequest, type Backend, type TestApp } from '../helpers/app.js'
import { loadConfig } from '../../src/config.js'

const PASSWORD = 'correct horse battery'
const NEW_PASSWORD = 'a different long passphrase'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
type Creds = { id: string; secret: string | undefined }
type Json = Record<string, any>
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function clientToken(app: Pick<TestApp, 'app'>, client: Creds, scope: string): Promise<string> {
  const res = await tokenRequest(app, { grant_type: 'client_credentials', scope }, client)
  if (res.statusCode !== 200) throw new Error(`client_credentials failed: ${res.statusCode} ${res.body}`)
  return res.json().access_token
}

interface CallOptions {
  token?: string | undefined
  body?: unknown
  headers?: Record<string, string>
}

function call(app: Pick<TestApp, 'app'>, method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, o: CallOptions = {}) {
  return app.app.inject({
    method, url,
    headers: {
      ...(o.token !== undefined ? { authorization: `Bearer ${o.token}` } : {}),
      ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
      'user-agent': 'admin-console/2.0',
      ...o.headers,
    },
    remoteAddress: '192.0.2.77',
    ...(o.body !== undefined ? { payload: typeof o.body === 'string' ? o.body : JSON.stringify(o.body) } : {}),
  })
}

async function setup(t: Test, backend: Backend = 'postgres') {
  const app = await testApp(t, { backend })
  const adminClient = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const admin = await clientToken(app, adminClient, 'tessera:admin')
  const api = (method: Parameters<typeof call>[1], url: string, o: Omit<CallOptions, 'token'> = {}) => call(app, method, url, { token: admin, ...o })
  return { app, adminClient, admin, api }
}

const countUsers = async (app: TestApp) => Number((await app.database.db.selectFrom('app_user').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)
const auditOf = (app: TestApp, type: string) => app.database.db.selectFrom('audit_event').selectAll().where('type', '=', type).orderBy('id').execute()

t.test('create, read, list, update, set password, disable, enable, delete: statuses, headers, bodies, audit', async (t) => {
  const { app, adminClient, api } = await setup(t)
  const web = await app.createClient({ name: 'Web app' })

  const created = await api('POST', '/admin/users', { body: { username: 'Carol', password: PASSWORD, roles: ['editor'], profile: { name: 'Carol Q', email: 'carol@example.com', email_verified: true } } })
  t.equal(created.statusCode, 201, created.body)
  const carol = created.json() as Json
  t.match(carol, { username: 'carol', roles: ['editor'], profile: { name: 'Carol Q', email: 'carol@example.com', email_verified: true }, disabled: false, has_password: true, version: 1 })
  t.match(carol.id, UUID)
  t.equal(created.headers.location, `/admin/users/${carol.id}`)
  t.equal(created.headers.etag, '"v1"')
  t.equal(created.headers['cache-control'], 'no-store')
  t.notOk('password' in carol || 'password_hash' in carol, 'no password or hash in the answer')
  t.notMatch(created.body, /argon2/)

  // Read by id and by username (any case, normalised).
  for (const ref of [carol.id, 'carol', 'CAROL', 'Ｃarol']) {
    const res = await api('GET', `/admin/users/${encodeURIComponent(ref)}`)
    t.equal(res.statusCode, 200, `GET ${ref}`)
    t.equal(res.headers.etag, '"v1"')
    t.same(res.json(), carol, `GET ${ref}: the created user`)
  }
  // The password works at /token.
  const login = await tokenRequest(app, { grant_type: 'password', username: 'Carol', password: PASSWORD, scope: 'openid read' }, web)
  t.equal(login.statusCode, 200, 'carol logs in')

  // A user without a password cannot log in with one.
  const nopw = await api('POST', '/admin/users', { body: { username: 'dave' } })
  t.equal(nopw.statusCode, 201)
  t.match(nopw.json(), { username: 'dave', has_password: false, roles: [], profile: { name: null, email: null, email_verified: false } })
  t.equal((await tokenRequest(app, { grant_type: 'password', username: 'dave', password: '', scope: 'openid' }, web)).statusCode, 400, 'dave: no password login')

  // PATCH with If-Match: profile (null clears) and roles.
  const patched = await api('PATCH', `/admin/users/${carol.id}`, { headers: { 'if-match': '"v1"' }, body: { profile: { name: null, email: 'carol@example.org' }, roles: ['editor', 'admin'] } })
  t.equal(patched.statusCode, 200, patched.body)
  t.equal(patched.headers.etag, '"v2"')
  t.match(patched.json(), { version: 2, roles: ['editor', 'admin'], profile: { name: null, email: 'carol@example.org', email_verified: true } })

  // Set the password: families revoked (default), the old password stops working.
  const family = login.json().refresh_token as string
  const pw = await api('PUT', `/admin/users/carol/password`, { body: { password: NEW_PASSWORD } })
  t.equal(pw.statusCode, 200, pw.body)
  t.equal(pw.json().families_revoked, 1)
  t.equal(pw.headers.etag, '"v3"')
  t.equal((await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: family }, web)).statusCode, 400, 'the family is revoked')
  t.equal((await tokenRequest(app, { grant_type: 'password', username: 'carol', password: PASSWORD, scope: 'openid' }, web)).statusCode, 400, 'old password refused')
  const login2 = await tokenRequest(app, { grant_type: 'password', username: 'carol', password: NEW_PASSWORD, scope: 'openid read' }, web)
  t.equal(login2.statusCode, 200, 'new password works')
  // revoke_sessions: false keeps them.
  const keep = await api('PUT', `/admin/users/carol/password`, { body: { password: PASSWORD, revoke_sessions: false } })
  t.equal(keep.statusCode, 200)
  t.equal(keep.json().families_revoked, 0)
  t.equal((await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: login2.json().refresh_token }, web)).statusCode, 200, 'the family lives on')

  // Disable: every family revoked; login refused; enable: login works again.
  const disabled = await api('POST', `/admin/users/carol/disable`)
  t.equal(disabled.statusCode, 200, disabled.body)
  t.match(disabled.json(), { user: { disabled: true }, families_revoked: 1, sso_sessions_ended: 0 })
  t.equal((await tokenRequest(app, { grant_type: 'password', username: 'carol', password: PASSWORD, scope: 'openid' }, web)).statusCode, 400, 'disabled: login refused')
  const listedDisabled = await api('GET', '/admin/users?disabled=true')
  t.same(listedDisabled.json().users.map((u: Json) => u.username), ['carol'])
  const enabled = await api('POST', `/admin/users/${carol.id}/enable`, { headers: { 'if-match': disabled.headers.etag as string } })
  t.equal(enabled.statusCode, 200, enabled.body)
  t.equal(enabled.json().disabled, false)
  const login3 = await tokenRequest(app, { grant_type: 'password', username: 'carol', password: PASSWORD, scope: 'openid read' }, web)
  t.equal(login3.statusCode, 200, 'enabled: login works')

  // Delete: 204, the user is gone, its families and tokens too; audit rows stay with the user id.
  const deleted = await api('DELETE', `/admin/users/carol`)
  t.equal(deleted.statusCode, 204)
  t.equal(deleted.body, '')
  t.equal((await api('GET', `/admin/users/${carol.id}`)).statusCode, 404)
  t.equal((await call(app, 'GET', '/userinfo', { token: login3.json().access_token })).statusCode, 401, "the deleted user's access token is refused")
  const families = await app.database.db.selectFrom('refresh_token_family').select('id').where('user_id', '=', carol.id).execute()
  t.same(families, [], 'families deleted with the user')
  const trail = await app.database.db.selectFrom('audit_event').select(['type', 'client_id', 'detail']).where('user_id', '=', carol.id).where('type', 'like', 'user.%').orderBy('id').execute()
  t.same(trail.map((e) => e.type), ['user.created', 'user.updated', 'user.password_set', 'user.password_set', 'user.disabled', 'user.enabled', 'user.deleted'], 'one audit event per write, kept after the delete')
  for (const e of trail) {
    t.equal(e.client_id, adminClient.id, `${e.type}: the acting client`)
    t.match(e.detail, { via: 'admin_api', admin_client_id: adminClient.id })
  }
  t.match(trail[0]!.detail, { username: 'carol', roles: ['editor'], password: true })
  t.same((trail[1]!.detail as Json).changed, ['name', 'email', 'roles'])
  t.match(trail[6]!.detail, { username: 'carol' })
  t.notMatch(JSON.stringify(trail), /horse|passphrase|argon2/, 'no password in the audit trail')
  const revokedEvents = await app.database.db.selectFrom('audit_event').select('detail').where('user_id', '=', carol.id).where('type', '=', 'refresh_token.revoked').execute()
  t.ok(revokedEvents.length >= 3, 'the revocations are audited too')
})

t.test('list: cursor pagination, prefix (normalised) and disabled filters', async (t) => {
  const { app, api } = await setup(t)
  for (const name of ['amy', 'anna', 'bert', 'alex', 'Ａndy', 'zoe']) await app.createUser(name, PASSWORD)
  await api('POST', '/admin/users/bert/disable')
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await api('GET', `/admin/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
    t.equal(res.statusCode, 200, res.body)
    const body = res.json() as { users: Json[]; next_cursor: string | null }
    t.ok(body.users.length <= 2)
    seen.push(...body.users.map((u) => u.username))
    cursor = body.next_cursor
    pages++
  } while (cursor && pages < 10)
  t.same(seen, ['alex', 'amy', 'andy', 'anna', 'bert', 'zoe'], 'every user once, in username order')
  t.equal(pages, 3)
  const a = await api('GET', '/admin/users?prefix=A')
  t.same(a.json().users.map((u: Json) => u.username), ['alex', 'amy', 'andy', 'anna'], 'prefix is normalised (A → a)')
  t.same((await api('GET', '/admin/users?prefix=an&disabled=false')).json().users.map((u: Json) => u.username), ['andy', 'anna'])
  t.same((await api('GET', '/admin/users?disabled=true')).json(), { users: [(await api('GET', '/admin/users/bert')).json()], next_cursor: null })
  for (const [q, field] of [['limit=0', 'querystring/limit'], ['limit=abc', 'querystring/limit'], ['limit=501', 'querystring/limit'], ['disabled=yes', 'querystring/disabled'], ['cursor=%25%25', 'querystring/cursor']] as const) {
    const res = await api('GET', `/admin/users?${q}`)
    t.equal(res.statusCode, 400, q)
    t.equal(res.json().error, 'invalid_request')
    t.match(res.json().error_description, field, `${q}: names ${field}`)
  }
})

t.test('bad input: 400 naming the field, nothing written', async (t) => {
  const { app, api } = await setup(t)
  await app.createUser('alice', PASSWORD)
  const cases: [string, unknown, RegExp][] = [
    ['no username', { password: PASSWORD }, /^body\/username is required$/],
    ['username with a space', { username: 'alice smith' }, /^body\/username may contain letters, digits/],
    ['username too long', { username: 'a'.repeat(300) }, /^body\/username may contain/],
    ['username a number', { username: 42 }, /^body\/username must be string$/],
    ['unknown field', { username: 'x', nickname: 'y' }, /^body\/nickname is not a known field$/],
    ['unknown profile field', { username: 'x', profile: { phone: '1' } }, /^body\/profile\/phone is not a known field$/],
    ['bad e-mail', { username: 'x', profile: { email: 'not-an-address' } }, /^body\/profile\/email must be an e-mail address$/],
    ['control character in name', { username: 'x', profile: { name: 'a\u0001b' } }, /^body\/profile\/name must be at most 256 printable/],
    ['roles not an array', { username: 'x', roles: 'admin' }, /^body\/roles must be array$/],
    ['role with a space', { username: 'x', roles: ['a b'] }, /^body\/roles must be words/],
    ['short password', { username: 'x', password: 'short' }, /^body\/password must have at least/],
    ['common password', { username: 'x', password: 'password1234' }, /^body\/password is on the list of common/],
    ['password equal to the username', { username: 'longusername1', password: 'LongUsername1' }, /^body\/password must not equal the username/],
    ['malformed JSON', '{"username": ', /malformed/],
  ]
  for (const [what, body, message] of cases) {
    const res = await api('POST', '/admin/users', { body })
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.equal(res.json().error, 'invalid_request', what)
    t.match(res.json().error_description, message, `${what}: ${res.json().error_description}`)
    t.equal(res.headers['cache-control'], 'no-store')
  }
  t.equal(await countUsers(app), 1, 'nothing created')
  const patch = await api('PATCH', '/admin/users/alice', { headers: { 'if-match': '"v1"' }, body: { profile: { email_verified: 'yes' } } })
  t.equal(patch.statusCode, 400)
  t.match(patch.json().error_description, /^body\/profile\/email_verified/)
  const empty = await api('PATCH', '/admin/users/alice', { headers: { 'if-match': '"v1"' }, body: {} })
  t.equal(empty.statusCode, 400, 'an empty PATCH')
  const pw = await api('PUT', '/admin/users/alice/password', { body: { password: 'alice' } })
  t.equal(pw.statusCode, 400)
  t.match(pw.json().error_description, /^body\/password/)
  t.equal((await api('GET', '/admin/users/alice')).json().version, 1, 'alice unchanged')
  t.equal((await api('GET', '/admin/users/not%20a%20name')).statusCode, 400, 'a malformed {user}')
})

t.test('404 for an unknown user on every operation', async (t) => {
  const { api } = await setup(t)
  const unknown = ['00000000-0000-4000-8000-000000000000', 'nobody']
  for (const ref of unknown) {
    const ops: [Parameters<typeof call>[1], string, CallOptions][] = [
      ['GET', `/admin/users/${ref}`, {}],
      ['PATCH', `/admin/users/${ref}`, { headers: { 'if-match': '"v1"' }, body: { roles: [] } }],
      ['PUT', `/admin/users/${ref}/password`, { body: { password: NEW_PASSWORD } }],
      ['POST', `/admin/users/${ref}/disable`, {}],
      ['POST', `/admin/users/${ref}/enable`, {}],
      ['DELETE', `/admin/users/${ref}`, {}],
    ]
    for (const [method, url, o] of ops) {
      const res = await api(method, url, o)
      t.equal(res.statusCode, 404, `${method} ${url}`)
      t.same(res.json(), { error: 'invalid_request', error_description: 'no such user' })
    }
  }
})

t.test('409 on a username taken under normalisation (NFKC, case)', async (t) => {
  const { app, api } = await setup(t)
  t.equal((await api('POST', '/admin/users', { body: { username: 'alice' } })).statusCode, 201)
  for (const name of ['alice', 'ALICE', 'Ａlice', 'ａｌｉｃｅ']) {
    const res = await api('POST', '/admin/users', { body: { username: name, password: PASSWORD } })
    t.equal(res.statusCode, 409, `${name}: 409`)
    t.equal(res.json().error, 'invalid_request')
    t.match(res.json().error_description, /exists already/)
  }
  t.equal(await countUsers(app), 1)
  t.equal((await auditOf(app, 'user.created')).length, 1, 'no audit event for a refused create')
  // The normalised form is what is stored and what logs in.
  const res = await api('POST', '/admin/users', { body: { username: 'Ｂｏｂ', password: PASSWORD } })
  t.equal(res.json().username, 'bob')
  const web = await app.createClient({ name: 'Web app' })
  t.equal((await tokenRequest(app, { grant_type: 'password', username: 'BOB', password: PASSWORD, scope: 'openid' }, web)).statusCode, 200, 'BOB logs in as bob')
})

t.test('If-Match: 428 when missing or *, 412 when stale; two concurrent PATCHes with one ETag: one 200, one 412', async (t) => {
  const { app, api } = await setup(t)
  const alice = await app.createUser('alice', PASSWORD)
  const missing = await api('PATCH', '/admin/users/alice', { body: { roles: ['x'] } })
  t.equal(missing.statusCode, 428)
  t.equal(missing.json().error, 'invalid_request')
  t.match(missing.json().error_description, /If-Match/)
  t.equal((await api('PATCH', '/admin/users/alice', { headers: { 'if-match': '*' }, body: { roles: ['x'] } })).statusCode, 428, 'If-Match: * is refused')
  for (const stale of ['"v2"', 'W/"v1"', '"1"', 'v1', '"v0"']) {
    const res = await api('PATCH', '/admin/users/alice', { headers: { 'if-match': stale }, body: { roles: ['x'] } })
    t.equal(res.statusCode, 412, `If-Match ${stale}: 412`)
    t.match(res.json().error_description, /changed since it was read/)
  }
  t.equal((await api('PATCH', '/admin/users/alice', { headers: { 'if-match': '"v7", "v1"' }, body: { roles: ['x'] } })).statusCode, 200, 'a list with the current ETag matches')
  const now = (await api('GET', `/admin/users/${alice.id}`)).headers.etag as string
  t.equal(now, '"v2"')
  // Actions take an optional If-Match, checked when given.
  t.equal((await api('POST', '/admin/users/alice/disable', { headers: { 'if-match': '"v1"' } })).statusCode, 412, 'disable with a stale ETag')
  t.equal((await api('DELETE', '/admin/users/alice', { headers: { 'if-match': '"v1"' } })).statusCode, 412, 'delete with a stale ETag')
  t.equal((await api('PUT', '/admin/users/alice/password', { headers: { 'if-match': '"v1"' }, body: { password: NEW_PASSWORD } })).statusCode, 412, 'password with a stale ETag')
  t.equal((await api('GET', '/admin/users/alice')).json().version, 2, 'nothing changed')

  for (let round = 0; round < 5; round++) {
    const etag = (await api('GET', '/admin/users/alice')).headers.etag as string
    const [a, b] = await Promise.all([
      api('PATCH', '/admin/users/alice', { headers: { 'if-match': etag }, body: { profile: { name: `A${round}` } } }),
      api('PATCH', '/admin/users/alice', { headers: { 'if-match': etag }, body: { profile: { name: `B${round}` } } }),
    ])
    t.same([a.statusCode, b.statusCode].sort(), [200, 412], `round ${round}: one 200, one 412`)
    const winner = a.statusCode === 200 ? `A${round}` : `B${round}`
    const after = (await api('GET', '/admin/users/alice')).json()
    t.equal(after.profile.name, winner, `round ${round}: the winner's write stands`)
    t.equal(`"v${after.version}"`, (a.statusCode === 200 ? a : b).headers.etag)
  }
  t.equal((await auditOf(app, 'user.updated')).length, 6, 'one audit event per successful PATCH')
})

t.test('Idempotency-Key: a replay gets the stored response; another request with the key 422; concurrent identical creates make one user', async (t) => {
  const { app, api, adminClient } = await setup(t)
  const body = { username: 'erin', password: PASSWORD, roles: ['a'] }
  const first = await api('POST', '/admin/users', { headers: { 'idempotency-key': 'k-1' }, body })
  t.equal(first.statusCode, 201)
  t.notOk(first.headers['idempotency-replayed'])
  // The same body with members in another order is the same request.
  const again = await api('POST', '/admin/users', { headers: { 'idempotency-key': 'k-1' }, body: { roles: ['a'], password: PASSWORD, username: 'erin' } })
  t.equal(again.statusCode, 201)
  t.equal(again.headers['idempotency-replayed'], 'true')
  t.same(again.json(), first.json(), 'the same user')
  t.equal(again.headers.location, first.headers.location)
  t.equal(again.headers.etag, first.headers.etag)
  const other = await api('POST', '/admin/users', { headers: { 'idempotency-key': 'k-1' }, body: { username: 'frank' } })
  t.equal(other.statusCode, 422)
  t.equal(other.json().error, 'invalid_request')
  t.match(other.json().error_description, /different request/)
  // The password counts by presence only (no hash of it is stored): with or without one differ.
  t.equal((await api('POST', '/admin/users', { headers: { 'idempotency-key': 'k-1' }, body: { username: 'erin', roles: ['a'] } })).statusCode, 422, 'without the password: another request')
  const otherPassword = await api('POST', '/admin/users', { headers: { 'idempotency-key': 'k-1' }, body: { ...body, password: NEW_PASSWORD } })
  t.equal(otherPassword.headers['idempotency-replayed'], 'true', 'another password value: the same request (a replay; the first password stays)')
  t.equal(await countUsers(app), 1)
  t.equal((await auditOf(app, 'user.created')).length, 1)
  const stored = await app.database.db.selectFrom('idempotency_key').selectAll().execute()
  t.equal(stored.length, 1)
  t.equal(stored[0]!.actor, adminClient.id)
  t.equal(stored[0]!.response_status, 201)
  t.match(stored[0]!.fingerprint, /^[0-9a-f]{64}$/)
  t.notMatch(JSON.stringify(stored), /horse|argon2|password_hash/, 'no password or hash stored with the key')
  // A refused create stores nothing: the retry runs again.
  const dup = await api('POST', '/admin/users', { headers: { 'idempotency-key': 'k-2' }, body: { username: 'ERIN' } })
  t.equal(dup.statusCode, 409)
  t.equal((await app.database.db.selectFrom('idempotency_key').select('key').where('key', '=', 'k-2').execute()).length, 0)
  for (const bad of ['', 'x'.repeat(256), 'tab\there']) {
    const res = await api('POST', '/admin/users', { headers: { 'idempotency-key': bad }, body: { username: 'gina' } })
    t.equal(res.statusCode, 400, `key ${JSON.stringify(bad.slice(0, 10))}`)
    t.match(res.json().error_description, /Idempotency-Key/)
  }

  for (let round = 0; round < 3; round++) {
    const key = `burst-${round}`
    const results = await Promise.all(Array.from({ length: 6 }, () => api('POST', '/admin/users', { headers: { 'idempotency-key': key }, body: { username: `burst${round}`, password: PASSWORD } })))
    t.same(results.map((r) => r.statusCode), [201, 201, 201, 201, 201, 201], `round ${round}: every request 201`)
    t.equal(results.filter((r) => r.headers['idempotency-replayed'] !== 'true').length, 1, `round ${round}: one fresh, the rest replays`)
    t.equal(new Set(results.map((r) => r.json().id)).size, 1, `round ${round}: one id`)
    t.equal((await app.database.db.selectFrom('app_user').select('id').where('username', '=', `burst${round}`).execute()).length, 1, `round ${round}: one user`)
  }

  // Keys older than 24 h: housekeeping deletes them.
  await app.database.db.updateTable('idempotency_key').set({ created_at: new Date(Date.UTC(2020, 0, 1)) }).where('key', '=', 'k-1').execute()
  const deleted = await runHousekeeping(app.database.db, { retentionSeconds: 3600, auditRetentionDays: 0, batchSize: 100 })
  t.equal(deleted.idempotency_key, 1)
  t.same((await app.database.db.selectFrom('idempotency_key').select('key').orderBy('key').execute()).map((r) => r.key), ['burst-0', 'burst-1', 'burst-2'])
})

t.test('authorisation: 401 without a token (before body validation), 403 without the scope, read-only scope writing, clients scope, a user token', async (t) => {
  const { app, api } = await setup(t)
  await app.createUser('alice', PASSWORD)
  const web = await app.createClient({ name: 'Web app', scopes: ['openid', 'read', 'tessera:admin', 'tessera:admin:users'] })
  const scoped = async (scopes: string[]) => clientToken(app, await app.createClient({ name: scopes.join(' '), grantTypes: ['client_credentials'], scopes, audience: [] }), scopes.join(' '))
  const usersAdmin = await scoped(['tessera:admin:users'])
  const usersReader = await scoped(['tessera:admin:users:read'])
  const clientsAdmin = await scoped(['tessera:admin:clients'])
  const clientsReader = await scoped(['tessera:admin:clients:read'])
  const noScope = await scoped(['read'])
  const userToken = (await tokenRequest(app, { grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'openid tessera:admin tessera:admin:users' }, web)).json().access_token as string
  t.ok(userToken)

  const reads: [Parameters<typeof call>[1], string, CallOptions][] = [
    ['GET', '/admin/users', {}],
    ['GET', '/admin/users/alice', {}],
  ]
  const writes: [Parameters<typeof call>[1], string, CallOptions][] = [
    ['POST', '/admin/users', { body: { username: 'zed' } }],
    ['PATCH', '/admin/users/alice', { headers: { 'if-match': '"v1"' }, body: { roles: ['x'] } }],
    ['PUT', '/admin/users/alice/password', { body: { password: NEW_PASSWORD } }],
    ['POST', '/admin/users/alice/disable', {}],
    ['POST', '/admin/users/alice/enable', {}],
    ['DELETE', '/admin/users/alice', {}],
  ]
  for (const [method, url, o] of [...reads, ...writes]) {
    const none = await call(app, method, url, { ...o, token: undefined })
    t.equal(none.statusCode, 401, `${method} ${url}: no token`)
    t.equal(none.headers['www-authenticate'], 'Bearer realm="tessera"')
    // The guard runs before the body is parsed or validated.
    if (method !== 'GET') t.equal((await call(app, method, url, { ...o, token: undefined, body: '{"not json' })).statusCode, 401, `${method} ${url}: no token, bad body: 401 first`)
    t.equal((await call(app, method, url, { ...o, token: 'junk' })).statusCode, 401, `${method} ${url}: a bad token`)
    for (const [who, token] of [['no admin scope', noScope], ['clients scope', clientsAdmin], ['clients read scope', clientsReader], ['a user token', userToken]] as const) {
      const res = await call(app, method, url, { ...o, token })
      t.equal(res.statusCode, 403, `${method} ${url}: ${who}`)
      t.equal(res.json().error, 'insufficient_scope')
      if (method !== 'GET') t.equal((await call(app, method, url, { ...o, token, body: { nickname: 1 } })).statusCode, 403, `${method} ${url}: ${who}, bad body: 403 first`)
    }
  }
  for (const [method, url, o] of reads) t.equal((await call(app, method, url, { ...o, token: usersReader })).statusCode, 200, `${method} ${url}: read-only scope reads`)
  for (const [method, url, o] of writes) {
    const res = await call(app, method, url, { ...o, token: usersReader })
    t.equal(res.statusCode, 403, `${method} ${url}: read-only scope cannot write`)
    t.match(res.json().error_description, /tessera:admin:users/)
  }
  t.equal(await countUsers(app), 1, 'nothing written by a refused call')
  t.equal((await api('GET', '/admin/users/alice')).json().version, 1)
  // The users scope writes.
  const created = await call(app, 'POST', '/admin/users', { token: usersAdmin, body: { username: 'zed' } })
  t.equal(created.statusCode, 201)
  t.equal((await call(app, 'DELETE', '/admin/users/zed', { token: usersAdmin })).statusCode, 204)
  // The existing full-admin routes keep requiring tessera:admin.
  t.equal((await call(app, 'GET', '/admin/users/alice/sessions', { token: usersAdmin })).statusCode, 403, 'sessions route: users scope is not full admin')
  t.equal((await api('GET', '/admin/users/alice/sessions')).statusCode, 200, 'sessions route still works with tessera:admin')
  t.equal((await api('PUT', '/admin/users')).statusCode, 405)
})

/** A second app on the same PostgreSQL database (another instance). */
async function secondInstance(t: Test, app: TestApp) {
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: app.config.databasePoolSize, acquireTimeoutMs: app.config.dbAcquireTimeoutMs, lockTimeoutMs: app.config.lockTimeoutMs })
  const other = await buildApp({ config: app.config, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
  t.teardown(async () => {
    await other.close()
    await database.close()
  })
  return other
}

t.test('disabling a user mid-refresh-burst on two instances leaves no live family', async (t) => {
  const { app, admin } = await setup(t)
  const b = await secondInstance(t, app)
  const instances = [app, b]
  const web = await app.createClient({ name: 'Web app' })
  for (let round = 0; round < 3; round++) {
    const username = `user${round}`
    await app.createUser(username, PASSWORD)
    const starts = await Promise.all([0, 1, 2, 3].map((i) => tokenRequest(instances[i % 2]!, { grant_type: 'password', username, password: PASSWORD, scope: 'openid read' }, web)))
    const flag = { answered: false }
    const progress = { n: 0, done: 0 }
    const chain = async (i: number) => {
      let rt = starts[i]!.json().refresh_token as string
      const statuses: { status: number; after: boolean }[] = []
      for (let step = 0; step < 2000; step++) {
        const after = flag.answered
        const res = await tokenRequest(instances[(i + step) % 2]!, { grant_type: 'refresh_token', refresh_token: rt }, web)
        statuses.push({ status: res.statusCode, after })
        if (res.statusCode !== 200) break
        rt = res.json().refresh_token
        progress.n++
      }
      progress.done++
      return { statuses, rt }
    }
    const waitFor = [0, 6, 20][round]!
    const disable = (async () => {
      // Until the chains made that many refreshes, or all stopped early (then the asserts below say why).
      while (progress.n < waitFor && progress.done < 4) await sleep(1)
      const res = await call(instances[round % 2]!, 'POST', `/admin/users/${username}/disable`, { token: admin })
      flag.answered = true
      return res
    })()
    const [disabled, ...chains] = await Promise.all([disable, ...[0, 1, 2, 3].map(chain)])
    t.equal(disabled!.statusCode, 200, `round ${round}: disable 200`)
    t.equal((disabled!.json() as Json).families_revoked, 4, `round ${round}: four families revoked`)
    for (const [i, c] of chains.entries()) {
      const { statuses, rt } = c as Awaited<ReturnType<typeof chain>>
      t.same(statuses.filter((s) => s.status !== 200 && s.status !== 400), [], `round ${round} chain ${i}: only 200 or 400`)
      t.same(statuses.filter((s) => s.after && s.status === 200), [], `round ${round} chain ${i}: nothing refreshed after the disable answered`)
      for (const inst of instances) t.equal((await tokenRequest(inst, { grant_type: 'refresh_token', refresh_token: rt }, web)).statusCode, 400, `round ${round} chain ${i}: refused on every instance`)
    }
    const live = await app.database.db.selectFrom('refresh_token_family as f').innerJoin('app_user as u', 'u.id', 'f.user_id').select('f.id').where('u.username', '=', username).where('f.revoked_at', 'is', null).execute()
    t.same(live, [], `round ${round}: no live family`)
    for (const inst of instances) t.equal((await tokenRequest(inst, { grant_type: 'password', username, password: PASSWORD, scope: 'openid' }, web)).statusCode, 400, `round ${round}: login refused`)
  }
})

t.test('disable ends SSO sessions too (issue 13), audited', async (t) => {
  const { app, api } = await setup(t)
  const user = await app.createUser('alice', PASSWORD)
  const now = new Date()
  await app.database.db.insertInto('sso_session').values({ token_hash: Buffer.alloc(32, 1), user_id: user.id, auth_time: now, idle_expires_at: new Date(now.getTime() + 3600_000), expires_at: new Date(now.getTime() + 7200_000) }).execute()
  const res = await api('POST', '/admin/users/alice/disable')
  t.equal(res.statusCode, 200)
  t.equal(res.json().sso_sessions_ended, 1)
  const rows = await app.database.db.selectFrom('sso_session').select(['revoked_at', 'revoked_reason']).execute()
  t.ok(rows[0]!.revoked_at)
  t.equal(rows[0]!.revoked_reason, 'user_disabled')
  t.equal((await auditOf(app, 'sso_session.ended')).length, 1)
})

t.test('setting a password ends the SSO sessions too (a reset after a compromise leaves no browser signed in); revoke_sessions: false keeps them', async (t) => {
  const { app, api } = await setup(t)
  const user = await app.createUser('alice', PASSWORD)
  const now = new Date()
  const sso = (n: number) => ({ token_hash: Buffer.alloc(32, n), user_id: user.id, auth_time: now, idle_expires_at: new Date(now.getTime() + 3600_000), expires_at: new Date(now.getTime() + 7200_000) })
  await app.database.db.insertInto('sso_session').values(sso(1)).execute()
  const kept = await api('PUT', '/admin/users/alice/password', { body: { password: NEW_PASSWORD, revoke_sessions: false } })
  t.equal(kept.statusCode, 200)
  t.equal(kept.json().sso_sessions_ended, 0)
  t.equal((await app.database.db.selectFrom('sso_session').select('revoked_at').executeTakeFirstOrThrow()).revoked_at, null, 'kept when asked')
  const res = await api('PUT', '/admin/users/alice/password', { body: { password: PASSWORD } })
  t.equal(res.statusCode, 200)
  t.equal(res.json().sso_sessions_ended, 1)
  const row = await app.database.db.selectFrom('sso_session').select(['revoked_at', 'revoked_reason']).executeTakeFirstOrThrow()
  t.ok(row.revoked_at)
  t.equal(row.revoked_reason, 'password_set')
  t.equal((await auditOf(app, 'sso_session.ended')).length, 1)
  t.match((await auditOf(app, 'user.password_set')).at(-1)?.detail, { sso_sessions_ended: 1, revoke_sessions: true })
})

t.test('usernames: a name created in any Unicode form is reached in that form; a UUID-shaped name is refused (ids have that form)', async (t) => {
  const { app, api } = await setup(t)
  const created = await api('POST', '/admin/users', { body: { username: 'Jose\u0301', password: PASSWORD } })
  t.equal(created.statusCode, 201, created.body)
  t.equal(created.json().username, 'jos\u00e9', 'stored NFKC, lower case')
  for (const form of ['Jose\u0301', 'JOS\u00c9', 'jos\u00e9']) {
    const res = await api('GET', `/admin/users/${encodeURIComponent(form)}`)
    t.equal(res.statusCode, 200, `GET by ${JSON.stringify(form)}`)
    t.equal((await api('GET', `/admin/users/${encodeURIComponent(form)}/sessions`)).statusCode, 200, `sessions by ${JSON.stringify(form)}`)
  }
  const before = await countUsers(app)
  const uuid = await api('POST', '/admin/users', { body: { username: '123E4567-E89B-12D3-A456-426614174000', password: PASSWORD } })
  t.equal(uuid.statusCode, 400)
  t.match(uuid.json().error_description, /username must not have the form of a UUID/)
  t.equal(await countUsers(app), before, 'nothing written')
})

t.test('PGlite: migration 0021, create, read, list, update', async (t) => {
  const { api } = await setup(t, 'pglite')
  const created = await api('POST', '/admin/users', { headers: { 'idempotency-key': 'p1' }, body: { username: 'Ｐaula', password: PASSWORD } })
  t.equal(created.statusCode, 201, created.body)
  t.equal(created.json().username, 'paula')
  const replay = await api('POST', '/admin/users', { headers: { 'idempotency-key': 'p1' }, body: { username: 'Ｐaula', password: PASSWORD } })
  t.equal(replay.headers['idempotency-replayed'], 'true')
  t.equal((await api('POST', '/admin/users', { body: { username: 'PAULA' } })).statusCode, 409)
  t.equal((await api('GET', '/admin/users/PAULA')).json().id, created.json().id)
  t.same((await api('GET', '/admin/users?prefix=p')).json().users.map((u: Json) => u.username), ['paula'])
  const patched = await api('PATCH', '/admin/users/paula', { headers: { 'if-match': '"v1"' }, body: { roles: ['r'] } })
  t.equal(patched.statusCode, 200)
  t.equal((await api('PATCH', '/admin/users/paula', { headers: { 'if-match': '"v1"' }, body: { roles: ['s'] } })).statusCode, 412)
})

t.test('migration 0021 re-normalises usernames, and refuses collisions naming them', async (t) => {
  const url = await freshDatabase(t)
  const config = loadConfig(testEnv({ DATABASE_URL: url }))
  const database = await openDatabase({ kind: 'postgres', url, poolSize: 2, acquireTimeoutMs: config.dbAcquireTimeoutMs, lockTimeoutMs: config.lockTimeoutMs })
  t.teardown(() => database.close())
  const db = database.db
  const r = await migrator(db).migrateTo('2026_12_04_0020_authorization_code')
  t.notOk(r.error)
  // Under NFC + lower case these were three users; under NFKC two of them are one.
  await db.insertInto('app_user').values([{ username: 'ａlice', password_hash: 'x' }, { username: 'alice', password_hash: 'x' }, { username: 'ｂob', password_hash: 'x' }]).execute()
  await t.rejects(migrateToLatest(db), /usernames collide under the new normalisation \(Unicode NFKC, lower case\): ("ａlice" and "alice"|"alice" and "ａlice") \(both "alice"\)/)
  t.same((await db.selectFrom('app_user').select('username').orderBy('username').execute()).map((u) => u.username), ['alice', 'ａlice', 'ｂob'], 'nothing changed')
  await db.deleteFrom('app_user').where('username', '=', 'ａlice').execute()
  await migrateToLatest(db)
  t.same((await db.selectFrom('app_user').select(['username', 'version']).orderBy('username').execute()), [{ username: 'alice', version: 1 }, { username: 'bob', version: 2 }], 'ｂob became bob (a new version)')
})

