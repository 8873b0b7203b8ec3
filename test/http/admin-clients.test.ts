// The clients admin API (docs/admin-clients.md): POST/GET /admin/clients, GET/PATCH/DELETE
// /admin/clients/{id}, POST /admin/clients/{id}/secret|disable|enable. Each operation, each error,
// each authorisation boundary; secret rotation with an overlap on a ManualClock; a change and a
// disable seen by a second instance on the same database the moment the call returns.
import { Writable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { openDatabase } from '../../src/db/connect.js'
import { FORM, form, passwordLogin, testApp, tokenRequest, type TestApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

const PASSWORD = 'correct horse battery'
type Creds = { id: string; secret: string | undefined }
type Json = Record<string, any>

/** A client_credentials access token of `client` for `scope`. */
async function clientToken(app: Pick<TestApp, 'app'>, client: Creds, scope: string): Promise<string> {
  const res = await tokenRequest(app, { grant_type: 'client_credentials', scope }, client)
  if (res.statusCode !== 200) throw new Error(`client_credentials failed: ${res.statusCode} ${res.body}`)
  return res.json().access_token
}

interface CallOptions {
  body?: unknown
  headers?: Record<string, string>
}

/** An admin API call with a bearer token (or none). */
function call(app: Pick<TestApp, 'app'>, method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT', url: string, token: string | undefined, o: CallOptions = {}) {
  return app.app.inject({
    method,
    url,
    headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), 'user-agent': 'deploy-pipeline/2', ...o.headers },
    remoteAddress: '192.0.2.60',
    ...(o.body !== undefined ? { payload: JSON.stringify(o.body) } : {}),
  })
}

async function setup(t: Test, o: { env?: Record<string, string>; clock?: ManualClock } = {}) {
  const app = await testApp(t, { ...(o.env ? { env: o.env } : {}), ...(o.clock ? { clock: o.clock } : {}) })
  const adminClient = await app.createClient({ name: 'pipeline', grantTypes: ['client_credentials'], scopes: ['tessera:admin:clients', 'tessera:admin:clients:read', 'tessera:admin', 'tessera:admin:users', 'read'], audience: [] })
  const admin = await clientToken(app, adminClient, 'tessera:admin:clients')
  const db = app.database.db
  const audit = (type: string) => db.selectFrom('audit_event').selectAll().where('type', '=', type).orderBy('id').execute()
  const count = async (table: 'client' | 'audit_event' | 'idempotency_key') => Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)
  return { app, db, adminClient, admin, audit, count }
}

const API = { name: 'billing api', grant_types: ['client_credentials'], scopes: ['read', 'write'], audience: ['https://api.example.com'] }

t.test('POST /admin/clients: 201, Location, ETag, the secret once; GET shows the client without it; audited with the acting client', async (t) => {
  const { app, db, adminClient, admin, audit } = await setup(t)
  const res = await call(app, 'POST', '/admin/clients', admin, { body: API })
  t.equal(res.statusCode, 201, res.body)
  const body = res.json() as Json
  t.match(body.client_id, /^c_[A-Za-z0-9_-]{16}$/)
  t.equal(res.headers.location, `/admin/clients/${body.client_id}`)
  t.equal(res.headers.etag, '"v1"')
  t.equal(res.headers['cache-control'], 'no-store')
  t.match(body, { name: 'billing api', type: 'confidential', grant_types: ['client_credentials'], scopes: ['read', 'write'], audience: ['https://api.example.com'], refresh_delivery: 'body', id_token_signed_response_alg: 'RS256', rate_limit_per_second: null, disabled: false, version: 1, previous_secret_expires_at: null })
  t.match(body.client_secret, /^tessera_cs_[A-Za-z0-9_-]{43}$/, 'the secret, this once')
  t.match(body.propagation, { confirmed: [{ instance: app.services.changes.identity.instanceId }], unconfirmed: [] })

  const row = await db.selectFrom('client').selectAll().where('id', '=', body.client_id).executeTakeFirstOrThrow()
  t.notOk(Buffer.from(row.secret_hash!).toString('utf8').includes(body.client_secret), 'only a hash is stored')
  t.equal(row.secret_hash!.length, 32)

  const got = await call(app, 'GET', `/admin/clients/${body.client_id}`, admin)
  t.equal(got.statusCode, 200)
  t.equal(got.headers.etag, '"v1"')
  const { client_secret: _secret, propagation: _p, ...view } = body
  t.same(got.json(), view, 'GET: the same client, without the secret')
  t.notMatch(got.body, /tessera_cs_/)

  const [event] = await audit('client.created')
  t.match(event, { client_id: body.client_id, ip: '192.0.2.60', user_agent: 'deploy-pipeline/2', detail: { via: 'admin_api', admin_client_id: adminClient.id, name: 'billing api', type: 'confidential' } })
  t.notMatch(JSON.stringify(event), /tessera_cs_/, 'never the secret in the audit trail')

  const token = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, { id: body.client_id, secret: body.client_secret })
  t.equal(token.statusCode, 200, 'the new client authenticates at once')
})

t.test('POST /admin/clients takes every setting of `tessera clients create`; a public browser app gets cookie delivery and no secret', async (t) => {
  const { app, admin } = await setup(t)
  const full = {
    name: 'photos',
    grant_types: ['authorization_code', 'refresh_token'],
    scopes: ['openid', 'profile'],
    audience: ['https://photos-api.example.com'],
    refresh_delivery: 'body',
    allowed_origins: ['https://photos.example.com'],
    id_token_signed_response_alg: 'ES256',
    rate_limit_per_second: 25,
    redirect_uris: ['https://photos.example.com/cb', 'http://localhost:5173/cb'],
    post_logout_redirect_uris: ['https://photos.example.com/bye'],
    first_party: true,
    backchannel_logout_uri: 'https://photos.example.com/bc',
    require_pushed_authorization_requests: true,
  }
  const res = await call(app, 'POST', '/admin/clients', admin, { body: full })
  t.equal(res.statusCode, 201, res.body)
  const { name, grant_types, scopes, audience, refresh_delivery, allowed_origins, id_token_signed_response_alg, rate_limit_per_second, redirect_uris, post_logout_redirect_uris, first_party, backchannel_logout_uri, require_pushed_authorization_requests } = res.json() as Json
  t.same({ name, grant_types, scopes, audience, refresh_delivery, allowed_origins, id_token_signed_response_alg, rate_limit_per_second, redirect_uris, post_logout_redirect_uris, first_party, backchannel_logout_uri, require_pushed_authorization_requests }, full, 'every setting as given')
  const cached = await app.services.clients.get(res.json().client_id)
  t.match(cached, { firstParty: true, requirePushedAuthorizationRequests: true, rateLimitPerSecond: 25, idTokenSignedResponseAlg: 'ES256', backchannelLogoutUri: 'https://photos.example.com/bc' })

  const spa = await call(app, 'POST', '/admin/clients', admin, { body: { name: 'spa', public: true, grant_types: ['password', 'refresh_token'], scopes: ['openid'], allowed_origins: ['https://app.example.com'] } })
  t.equal(spa.statusCode, 201, spa.body)
  t.match(spa.json(), { type: 'public', refresh_delivery: 'cookie', allowed_origins: ['https://app.example.com'] })
  t.notOk('client_secret' in spa.json(), 'a public client has no secret')
})

t.test('POST /admin/clients: bad input is a 400 naming the field, and nothing is written', async (t) => {
  const { app, admin, count } = await setup(t)
  const before = { clients: await count('client'), audit: await count('audit_event') }
  const cases: [string, unknown, RegExp][] = [
    ['no name', { grant_types: ['password'] }, /body\/name is required/],
    ['no grant types', { name: 'x' }, /body\/grant_types is required/],
    ['unknown field', { ...API, scope: 'read' }, /body\/scope is not a known field/],
    ['grant_types not a list', { ...API, grant_types: 'password' }, /body\/grant_types must be array/],
    ['unknown grant type', { ...API, grant_types: ['implicit'] }, /body\/grant_types\/0 must be equal to constant|body\/grant_types/],
    ['empty grant types', { ...API, grant_types: [] }, /body\/grant_types must NOT have fewer than 1 items/],
    ['public + client_credentials', { ...API, public: true }, /^invalid request: body\/grant_types: a public client cannot use client_credentials$|body\/grant_types: a public client cannot use client_credentials/],
    ['cookie without origins', { ...API, grant_types: ['password'], refresh_delivery: 'cookie' }, /body\/allowed_origins: cookie delivery needs body\/allowed_origins/],
    ['not an origin', { ...API, allowed_origins: ['https://app.example.com/path'] }, /body\/allowed_origins: not an origin/],
    ['authorization_code without redirect URIs', { ...API, grant_types: ['authorization_code'] }, /body\/redirect_uris: authorization_code needs body\/redirect_uris/],
    ['http redirect URI', { ...API, grant_types: ['authorization_code'], redirect_uris: ['http://rp.example.com/cb'] }, /body\/redirect_uris must use https/],
    ['fragment', { ...API, grant_types: ['authorization_code'], redirect_uris: ['https://rp.example.com/cb#x'] }, /body\/redirect_uris must not have a fragment/],
    ['bad post-logout URI', { ...API, post_logout_redirect_uris: ['javascript:alert(1)'] }, /body\/post_logout_redirect_uris has a forbidden scheme/],
    ['back-channel not http', { ...API, backchannel_logout_uri: 'com.example.app:/bc' }, /body\/backchannel_logout_uri must be an http\(s\) URL/],
    ['scope token', { ...API, scopes: ['read "x"'] }, /body\/scopes: scopes must be RFC 6749 scope tokens/],
    ['rate limit too high', { ...API, rate_limit_per_second: 2_000_000 }, /body\/rate_limit_per_second/],
    ['rate limit not an integer', { ...API, rate_limit_per_second: 1.5 }, /body\/rate_limit_per_second/],
    ['unknown alg', { ...API, id_token_signed_response_alg: 'HS256' }, /body\/id_token_signed_response_alg/],
    ['a line that does not sign here', { ...API, id_token_signed_response_alg: 'EdDSA' }, /body\/id_token_signed_response_alg: no EdDSA key line signs here/],
    ['name of spaces', { ...API, name: '   ' }, /body\/name must be 1 to 200 characters/],
    ['not an object', [API], /body must be object/],
  ]
  for (const [what, body, message] of cases) {
    const res = await call(app, 'POST', '/admin/clients', admin, { body })
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.equal(res.json().error, 'invalid_request', what)
    t.match(res.json().error_description, message, `${what}: ${res.json().error_description}`)
  }
  const malformed = await app.app.inject({ method: 'POST', url: '/admin/clients', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, payload: '{"name":' })
  t.equal(malformed.statusCode, 400, 'malformed JSON')
  t.same({ clients: await count('client'), audit: await count('audit_event') }, before, 'no client, no audit event')
})

t.test('Idempotency-Key: a retry gets the same client WITHOUT the secret (never stored), replayed; the key with another body is 422', async (t) => {
  const { app, db, admin, adminClient, count, audit } = await setup(t)
  const headers = { 'idempotency-key': 'deploy-42' }
  const first = await call(app, 'POST', '/admin/clients', admin, { body: API, headers })
  t.equal(first.statusCode, 201, first.body)
  const created = first.json() as Json
  t.ok(created.client_secret, 'the first answer has the secret')
  t.notOk(first.headers['idempotency-replayed'])
  const clients = await count('client')

  const retry = await call(app, 'POST', '/admin/clients', admin, { body: { ...API }, headers })
  t.equal(retry.statusCode, 201)
  t.equal(retry.headers['idempotency-replayed'], 'true')
  t.equal(retry.headers.location, first.headers.location)
  t.equal(retry.headers.etag, '"v1"')
  t.equal(retry.json().client_id, created.client_id, 'the same client')
  t.notOk('client_secret' in retry.json(), 'no secret in a replay')
  t.notMatch(retry.body, /tessera_cs_/)
  t.equal(await count('client'), clients, 'one client')
  t.equal((await audit('client.created')).length, 1, 'one event')

  const rows = await db.selectFrom('idempotency_key').selectAll().execute()
  t.equal(rows.length, 1)
  t.equal(rows[0]!.actor, adminClient.id)
  t.notMatch(JSON.stringify(rows), /tessera_cs_/, 'the idempotency table never holds the secret')
  t.notMatch(JSON.stringify(rows), new RegExp(created.client_secret), 'nor any part of it')

  const reuse = await call(app, 'POST', '/admin/clients', admin, { body: { ...API, name: 'another' }, headers })
  t.equal(reuse.statusCode, 422)
  t.equal(reuse.json().error, 'invalid_request')
  t.equal(await count('client'), clients, 'nothing created')

  const bad = await call(app, 'POST', '/admin/clients', admin, { body: API, headers: { 'idempotency-key': '' } })
  t.equal(bad.statusCode, 400, 'an empty key')
})

t.test('GET /admin/clients: cursor pagination without gaps or duplicates, filters; 404 for an unknown id', async (t) => {
  const { app, admin } = await setup(t)
  const ids: string[] = []
  for (let i = 0; i < 7; i++) {
    const res = await call(app, 'POST', '/admin/clients', admin, { body: { ...API, name: `svc-${i}`, ...(i % 2 ? { public: true, grant_types: ['password'] } : {}) } })
    ids.push(res.json().client_id)
  }
  await call(app, 'POST', `/admin/clients/${ids[0]}/disable`, admin)
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await call(app, 'GET', `/admin/clients?limit=3${cursor ? `&cursor=${cursor}` : ''}`, admin)
    t.equal(res.statusCode, 200, res.body)
    const page = res.json() as { clients: Json[]; next_cursor: string | null }
    t.ok(page.clients.length <= 3)
    t.notMatch(res.body, /tessera_cs_/)
    seen.push(...page.clients.map((c) => c.client_id as string))
    cursor = page.next_cursor
    pages++
  } while (cursor !== null && pages < 10)
  t.equal(pages, 3, '8 clients (the admin client too), 3 per page')
  t.equal(new Set(seen).size, seen.length, 'no duplicates')
  t.ok(ids.every((id) => seen.includes(id)), 'no gaps')

  const names = async (q: string) => ((await call(app, 'GET', `/admin/clients?${q}`, admin)).json().clients as Json[]).map((c) => c.name as string)
  t.same(await names('name_prefix=svc-'), ['svc-0', 'svc-1', 'svc-2', 'svc-3', 'svc-4', 'svc-5', 'svc-6'])
  t.same(await names('name_prefix=svc-&disabled=true'), ['svc-0'])
  t.same(await names('name_prefix=svc-&disabled=false&type=public'), ['svc-1', 'svc-3', 'svc-5'])
  t.same(await names('name_prefix=svc-&grant_type=client_credentials'), ['svc-0', 'svc-2', 'svc-4', 'svc-6'])

  for (const [q, field] of [['limit=0', 'limit'], ['limit=abc', 'limit'], ['cursor=nonsense', 'cursor'], ['disabled=maybe', 'disabled'], ['type=secret', 'type']] as const) {
    const res = await call(app, 'GET', `/admin/clients?${q}`, admin)
    t.equal(res.statusCode, 400, q)
    t.match(res.json().error_description, new RegExp(`querystring/${field}`), `${q}: names the parameter`)
  }
  const missing = await call(app, 'GET', '/admin/clients/c_nosuchclient', admin)
  t.equal(missing.statusCode, 404)
  t.same(missing.json(), { error: 'invalid_request', error_description: 'no such client' })
  t.equal((await call(app, 'PUT', '/admin/clients', admin)).statusCode, 405)
})

t.test('PATCH /admin/clients/{id}: If-Match required (428), stale (412), any setting; checked as a whole; audited with the changed fields', async (t) => {
  const { app, admin, adminClient, audit, db } = await setup(t)
  const created = (await call(app, 'POST', '/admin/clients', admin, { body: API })).json() as Json
  const url = `/admin/clients/${created.client_id}`
  const patch = { name: 'billing', scopes: ['read'], rate_limit_per_second: 5, first_party: true }

  const noIfMatch = await call(app, 'PATCH', url, admin, { body: patch })
  t.equal(noIfMatch.statusCode, 428)
  t.equal(noIfMatch.json().error, 'invalid_request')
  t.equal((await call(app, 'PATCH', url, admin, { body: patch, headers: { 'if-match': '*' } })).statusCode, 428, 'If-Match: * is not accepted')
  t.equal((await call(app, 'PATCH', url, admin, { body: patch, headers: { 'if-match': '"v7"' } })).statusCode, 412, 'a stale ETag')
  t.equal((await call(app, 'PATCH', url, admin, { body: patch, headers: { 'if-match': 'W/"v1"' } })).statusCode, 412, 'a weak ETag never matches')
  t.equal((await db.selectFrom('client').select('version').where('id', '=', created.client_id).executeTakeFirstOrThrow()).version, 1, 'nothing changed')

  const ok = await call(app, 'PATCH', url, admin, { body: patch, headers: { 'if-match': '"v1"' } })
  t.equal(ok.statusCode, 200, ok.body)
  t.equal(ok.headers.etag, '"v2"')
  t.match(ok.json(), { name: 'billing', scopes: ['read'], rate_limit_per_second: 5, first_party: true, audience: ['https://api.example.com'], version: 2, propagation: { unconfirmed: [] } })
  t.notOk('client_secret' in ok.json())
  const [event] = await audit('client.updated')
  t.match(event, { client_id: created.client_id, detail: { via: 'admin_api', admin_client_id: adminClient.id, changed: ['name', 'scopes', 'rate_limit_per_second', 'first_party'] } })
  // The change is in force at once: `write` is no longer allowed.
  const refused = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'write' }, { id: created.client_id, secret: created.client_secret })
  t.equal(refused.statusCode, 400)
  t.equal(refused.json().error, 'invalid_scope')

  const again = await call(app, 'PATCH', url, admin, { body: patch, headers: { 'if-match': '"v1"' } })
  t.equal(again.statusCode, 412, 'the first reader\'s ETag is stale now: no silent overwrite')
  const same = await call(app, 'PATCH', url, admin, { body: { name: 'billing' }, headers: { 'if-match': '"v2"' } })
  t.equal(same.statusCode, 200)
  t.equal(same.headers.etag, '"v2"', 'a change that changes nothing keeps the version')
  t.equal((await audit('client.updated')).length, 1, 'and records nothing')
  const nullRate = await call(app, 'PATCH', url, admin, { body: { rate_limit_per_second: null, backchannel_logout_uri: 'https://billing.example.com/bc' }, headers: { 'if-match': '"v3", "v2"' } })
  t.equal(nullRate.statusCode, 200, 'a list of ETags: one matches')
  t.match(nullRate.json(), { rate_limit_per_second: null, backchannel_logout_uri: 'https://billing.example.com/bc', version: 3 })

  const errors: [unknown, number, RegExp][] = [
    [{ public: true }, 400, /body\/public cannot change/],
    [{ grant_types: ['authorization_code'] }, 400, /body\/redirect_uris: authorization_code needs body\/redirect_uris/],
    [{ refresh_delivery: 'cookie' }, 400, /body\/allowed_origins: cookie delivery needs/],
    [{ secret: 'x' }, 400, /body\/secret is not a known field/],
    [{}, 400, /body must NOT have fewer than 1 properties/],
    [{ allowed_origins: ['nope'] }, 400, /body\/allowed_origins: not an origin/],
  ]
  for (const [body, status, message] of errors) {
    const res = await call(app, 'PATCH', url, admin, { body, headers: { 'if-match': '"v3"' } })
    t.equal(res.statusCode, status, JSON.stringify(body))
    t.match(res.json().error_description, message, res.json().error_description)
  }
  t.equal((await call(app, 'GET', url, admin)).headers.etag, '"v3"', 'no refused change moved the version')
  const unknown = await call(app, 'PATCH', '/admin/clients/c_nosuchclient', admin, { body: { name: 'x' }, headers: { 'if-match': '"v1"' } })
  t.equal(unknown.statusCode, 404)
})

t.test('secret rotation: old and new authenticate during the overlap, only the new one after it (ManualClock); overlap 0 stops the old one at once', async (t) => {
  const clock = new ManualClock()
  const { app, admin: firstToken, adminClient, audit } = await setup(t, { clock, env: { CLIENT_SECRET_OVERLAP_SECONDS: '3600' } })
  let admin = firstToken
  const created = (await call(app, 'POST', '/admin/clients', admin, { body: { ...API, grant_types: ['client_credentials', 'password', 'refresh_token'], scopes: ['openid', 'read'] } })).json() as Json
  const id = created.client_id as string
  const old = created.client_secret as string
  const authenticates = async (secret: string) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, { id, secret })
    return res.statusCode
  }
  const post = async (secret: string) => {
    // client_secret_post too: the same comparison.
    const res = await app.app.inject({ method: 'POST', url: '/token', headers: FORM, payload: form({ grant_type: 'client_credentials', client_id: id, client_secret: secret }) })
    return res.statusCode
  }

  const rotated = await call(app, 'POST', `/admin/clients/${id}/secret`, admin)
  t.equal(rotated.statusCode, 200, rotated.body)
  const r = rotated.json() as Json
  t.match(r.client_secret, /^tessera_cs_/)
  t.not(r.client_secret, old)
  t.equal(r.overlap_seconds, 3600, 'CLIENT_SECRET_OVERLAP_SECONDS by default')
  t.equal(new Date(r.previous_secret_expires_at).getTime(), clock.nowMs() + 3600_000, 'the overlap ends by the injected clock')
  t.equal(rotated.headers.etag, '"v2"')
  const [event] = await audit('client.secret_rotated')
  t.match(event, { client_id: id, detail: { via: 'admin_api', admin_client_id: adminClient.id, overlap_seconds: 3600 } })
  t.notMatch(JSON.stringify(event), /tessera_cs_/)
  t.notMatch((await call(app, 'GET', `/admin/clients/${id}`, admin)).body, /tessera_cs_/, 'GET never shows it')

  t.equal(await authenticates(old), 200, 'during the overlap: the old secret (Basic)')
  t.equal(await post(old), 200, 'the old secret (client_secret_post)')
  t.equal(await authenticates(r.client_secret), 200, 'and the new one')
  clock.advance(3599_000)
  t.equal(await authenticates(old), 200, 'one second before its end: still')
  clock.advance(1000)
  t.equal(await authenticates(old), 401, 'at the end of the overlap: the old secret is refused')
  t.equal(await post(old), 401)
  t.equal(await authenticates(r.client_secret), 200, 'the new one goes on')
  t.equal(await authenticates('tessera_cs_wrong'), 401)

  // A per-call overlap, and a second rotation within it: the secret two rotations back stops.
  admin = await clientToken(app, adminClient, 'tessera:admin:clients') // the first one has expired meanwhile
  const secondRes = await call(app, 'POST', `/admin/clients/${id}/secret`, admin, { body: { overlap_seconds: 60 }, headers: { 'if-match': '"v2"' } })
  t.equal(secondRes.statusCode, 200, secondRes.body)
  const second = secondRes.json() as Json
  t.equal(second.overlap_seconds, 60)
  const third = (await call(app, 'POST', `/admin/clients/${id}/secret`, admin, { body: { overlap_seconds: 60 } })).json() as Json
  t.equal(await authenticates(r.client_secret), 401, 'the secret two rotations back: refused')
  t.equal(await authenticates(second.client_secret), 200, 'the one just replaced: within its overlap')
  t.equal(await authenticates(third.client_secret), 200)

  // Overlap 0: the replaced secret stops at once.
  const now = await call(app, 'POST', `/admin/clients/${id}/secret`, admin, { body: { overlap_seconds: 0 } })
  t.equal(now.statusCode, 200)
  t.equal(now.json().previous_secret_expires_at, null)
  t.equal(await authenticates(third.client_secret), 401, 'overlap 0: the old secret is refused at once')
  t.equal(await authenticates(second.client_secret), 401)
  t.equal(await authenticates(now.json().client_secret), 200)

  // Errors.
  const stale = await call(app, 'POST', `/admin/clients/${id}/secret`, admin, { headers: { 'if-match': '"v1"' } })
  t.equal(stale.statusCode, 412, 'a stale If-Match')
  for (const [body, message] of [[{ overlap_seconds: -1 }, /body\/overlap_seconds must be >= 0/], [{ overlap_seconds: 30 * 86400 + 1 }, /body\/overlap_seconds must be <= 2592000/], [{ overlap: 5 }, /body\/overlap is not a known field/]] as const) {
    const res = await call(app, 'POST', `/admin/clients/${id}/secret`, admin, { body })
    t.equal(res.statusCode, 400)
    t.match(res.json().error_description, message)
  }
  t.equal((await call(app, 'POST', '/admin/clients/c_nosuchclient/secret', admin)).statusCode, 404)
  const spa = (await call(app, 'POST', '/admin/clients', admin, { body: { name: 'spa', public: true, grant_types: ['password'] } })).json() as Json
  const pub = await call(app, 'POST', `/admin/clients/${spa.client_id}/secret`, admin)
  t.equal(pub.statusCode, 400)
  t.match(pub.json().error_description, /public client has no secret/)
})

t.test('overlap 0 from the configuration: the old secret stops when the rotation returns', async (t) => {
  const clock = new ManualClock()
  const { app, admin } = await setup(t, { clock, env: { CLIENT_SECRET_OVERLAP_SECONDS: '0' } })
  const created = (await call(app, 'POST', '/admin/clients', admin, { body: API })).json() as Json
  const r = (await call(app, 'POST', `/admin/clients/${created.client_id}/secret`, admin)).json() as Json
  t.equal(r.overlap_seconds, 0)
  t.equal((await tokenRequest(app, { grant_type: 'client_credentials' }, { id: created.client_id, secret: created.client_secret })).statusCode, 401)
  t.equal((await tokenRequest(app, { grant_type: 'client_credentials' }, { id: created.client_id, secret: r.client_secret })).statusCode, 200)
})

t.test('disable revokes the families (audited) and the client is refused; enable lets it in again; both idempotent', async (t) => {
  const { app, admin, adminClient, audit, db } = await setup(t)
  await app.createUser('alice', PASSWORD)
  const created = (await call(app, 'POST', '/admin/clients', admin, { body: { ...API, grant_types: ['password', 'refresh_token', 'client_credentials'], scopes: ['openid', 'read'] } })).json() as Json
  const creds = { id: created.client_id as string, secret: created.client_secret as string }
  const session = await passwordLogin(app, creds, 'alice', PASSWORD)
  const url = `/admin/clients/${creds.id}`

  t.equal((await call(app, 'POST', `${url}/disable`, admin, { headers: { 'if-match': '"v9"' } })).statusCode, 412, 'a stale If-Match')
  const off = await call(app, 'POST', `${url}/disable`, admin, { headers: { 'if-match': '"v1"' } })
  t.equal(off.statusCode, 200, off.body)
  t.match(off.json(), { disabled: true, version: 2, propagation: { unconfirmed: [] } })
  t.equal(off.headers.etag, '"v2"')
  t.match(await audit('client.disabled'), [{ client_id: creds.id, detail: { via: 'admin_api', admin_client_id: adminClient.id, families_revoked: 1 } }])
  t.match(await audit('refresh_token.revoked'), [{ client_id: creds.id, detail: { reason: 'client_disabled', admin_client_id: adminClient.id } }])
  t.equal((await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, creds)).statusCode, 401, 'refused at /token')
  const userinfo = await app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${session.access_token}` } })
  t.equal(userinfo.statusCode, 401, 'its access tokens are refused')
  const twice = await call(app, 'POST', `${url}/disable`, admin)
  t.equal(twice.statusCode, 200)
  t.equal(twice.json().version, 2, 'disabling again changes nothing')
  t.equal((await audit('client.disabled')).length, 1)

  const on = await call(app, 'POST', `${url}/enable`, admin, { headers: { 'if-match': '"v2"' } })
  t.equal(on.statusCode, 200, on.body)
  t.match(on.json(), { disabled: false, version: 3 })
  t.match(await audit('client.enabled'), [{ client_id: creds.id, detail: { via: 'admin_api', admin_client_id: adminClient.id } }])
  t.equal((await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, creds)).statusCode, 200, 'accepted again')
  const refresh = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: session.refresh_token }, creds)
  t.equal(refresh.statusCode, 400, 'its revoked families stay revoked')
  t.equal((await call(app, 'POST', `${url}/enable`, admin)).json().version, 3, 'enabling again changes nothing')
  t.equal((await audit('client.enabled')).length, 1)
  for (const action of ['disable', 'enable']) t.equal((await call(app, 'POST', `/admin/clients/c_nosuchclient/${action}`, admin)).statusCode, 404, action)
  t.equal((await db.selectFrom('refresh_token_family').select('revoked_reason').executeTakeFirstOrThrow()).revoked_reason, 'client_disabled')
})

t.test('DELETE /admin/clients/{id}: 204, revokes everything, later calls 404; the audit rows stay', async (t) => {
  const { app, admin, adminClient, audit, db } = await setup(t)
  await app.createUser('alice', PASSWORD)
  const created = (await call(app, 'POST', '/admin/clients', admin, { body: { ...API, grant_types: ['password', 'refresh_token', 'client_credentials'], scopes: ['openid', 'read'] } })).json() as Json
  const creds = { id: created.client_id as string, secret: created.client_secret as string }
  const session = await passwordLogin(app, creds, 'alice', PASSWORD)
  const url = `/admin/clients/${creds.id}`

  t.equal((await call(app, 'DELETE', url, admin, { headers: { 'if-match': '"v5"' } })).statusCode, 412, 'a stale If-Match')
  const res = await call(app, 'DELETE', url, admin, { headers: { 'if-match': '"v1"' } })
  t.equal(res.statusCode, 204, res.body)
  t.equal(res.body, '')
  t.equal((await call(app, 'GET', url, admin)).statusCode, 404)
  t.equal((await call(app, 'DELETE', url, admin)).statusCode, 404, 'deleting again: 404')
  t.equal((await call(app, 'PATCH', url, admin, { body: { name: 'x' }, headers: { 'if-match': '"v1"' } })).statusCode, 404)
  t.equal((await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, creds)).statusCode, 401, 'its secret is refused')
  t.equal((await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: session.refresh_token }, creds)).statusCode, 401, 'its refresh token with it')
  const userinfo = await app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${session.access_token}` } })
  t.equal(userinfo.statusCode, 401, 'its access tokens are refused')
  t.equal((await db.selectFrom('refresh_token_family').selectAll().where('client_id', '=', creds.id).execute()).length, 0, 'its families are gone')
  t.match(await audit('client.deleted'), [{ client_id: creds.id, detail: { via: 'admin_api', admin_client_id: adminClient.id, name: 'billing api', families_revoked: 1 } }])
  t.match(await audit('refresh_token.revoked'), [{ client_id: creds.id, detail: { reason: 'client_deleted' } }])
  t.ok((await audit('client.created')).some((e) => e.client_id === creds.id), 'the earlier audit rows stay')
  t.ok((await audit('refresh_token.issued')).some((e) => e.client_id === creds.id))
})

t.test('authorisation: 401 without a good token, 403 without a clients scope, read-only scope cannot write, a users scope or a user token cannot act on clients; nothing changes', async (t) => {
  const { app, adminClient, admin, count } = await setup(t)
  await app.createUser('alice', PASSWORD)
  const target = (await call(app, 'POST', '/admin/clients', admin, { body: API })).json() as Json
  const url = `/admin/clients/${target.client_id}`
  const full = await clientToken(app, adminClient, 'tessera:admin')
  const reader = await clientToken(app, adminClient, 'tessera:admin:clients:read')
  const usersAdmin = await clientToken(app, adminClient, 'tessera:admin:users')
  const plain = await clientToken(app, adminClient, 'read')
  const loginClient = await app.createClient({ name: 'console', grantTypes: ['password'], scopes: ['openid', 'tessera:admin', 'tessera:admin:clients'] })
  const userToken = (await passwordLogin(app, loginClient, 'alice', PASSWORD, 'openid tessera:admin:clients tessera:admin')).access_token

  const writes: [method: 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown][] = [
    ['POST', '/admin/clients', API],
    ['PATCH', url, { name: 'x' }],
    ['POST', `${url}/secret`],
    ['POST', `${url}/disable`],
    ['POST', `${url}/enable`],
    ['DELETE', url],
  ]
  const reads: [method: 'GET', url: string][] = [['GET', '/admin/clients'], ['GET', url]]
  const before = { clients: await count('client'), audit: await count('audit_event') }

  for (const [method, u, body] of [...writes, ...reads]) {
    const what = `${method} ${u}`
    const none = await call(app, method, u, undefined, { body: body ?? (method === 'POST' ? { bad: true } : undefined) })
    t.equal(none.statusCode, 401, `${what}: no token → 401 (before any body validation)`)
    t.match(none.headers['www-authenticate'], /^Bearer realm="tessera"$/)
    t.equal((await call(app, method, u, 'not.a.token', { body })).statusCode, 401, `${what}: a bad token → 401`)
    t.equal((await call(app, method, u, plain, { body })).statusCode, 403, `${what}: no admin scope → 403`)
    const users = await call(app, method, u, usersAdmin, { body })
    t.equal(users.statusCode, 403, `${what}: the users scope does not reach clients`)
    t.equal(users.json().error, 'insufficient_scope')
    const user = await call(app, method, u, userToken, { body })
    t.equal(user.statusCode, 403, `${what}: a user's token → 403, whatever its scopes`)
  }
  for (const [method, u, body] of writes) {
    const res = await call(app, method, u, reader, { body, headers: { 'if-match': '"v1"' } })
    t.equal(res.statusCode, 403, `${method} ${u}: the read-only scope cannot write`)
    t.match(res.json().error_description, /tessera:admin:clients/)
  }
  t.same({ clients: await count('client'), audit: await count('audit_event') }, before, 'nothing changed')

  for (const [method, u] of reads) {
    t.equal((await call(app, method, u, reader)).statusCode, 200, `${method} ${u}: the read-only scope reads`)
    t.equal((await call(app, method, u, full)).statusCode, 200, `${method} ${u}: tessera:admin reads`)
  }
  const byFull = await call(app, 'PATCH', url, full, { body: { name: 'renamed by the full admin' }, headers: { 'if-match': '"v1"' } })
  t.equal(byFull.statusCode, 200, 'tessera:admin writes')
})

t.test('a second instance on the same database: a settings change, a rotation with overlap 0 and a disable are in force there the moment the call returns', async (t) => {
  // Clients are cached for 10 minutes: only the propagation can explain what B refuses.
  const { app: a, admin } = await setup(t, { env: { CACHE_REFRESH_SECONDS: '600' } })
  const database = await openDatabase({ kind: 'postgres', url: a.databaseUrl!, poolSize: 2, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  const b = await buildApp({ config: a.config, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
  t.teardown(async () => {
    await b.close()
    await database.close()
  })
  const created = (await call(a, 'POST', '/admin/clients', admin, { body: API })).json() as Json
  t.same(created.propagation.confirmed.map((i: Json) => i.instance).sort(), [a.services.changes.identity.instanceId, b.services.changes.identity.instanceId].sort(), 'both instances confirmed the creation')
  const creds = { id: created.client_id as string, secret: created.client_secret as string }
  const onB = (scope: string, secret = creds.secret) => tokenRequest(b, { grant_type: 'client_credentials', scope }, { id: creds.id, secret })
  t.equal((await onB('write')).statusCode, 200, 'B knows the client and has it cached')

  const changed = await call(a, 'PATCH', `/admin/clients/${creds.id}`, admin, { body: { scopes: ['read'] }, headers: { 'if-match': '"v1"' } })
  t.equal(changed.statusCode, 200)
  t.equal(changed.json().propagation.confirmed.length, 2, 'both confirmed')
  t.equal((await onB('write')).json().error, 'invalid_scope', 'B applies the new scopes at once')
  t.equal((await onB('read')).statusCode, 200)

  const rotated = await call(a, 'POST', `/admin/clients/${creds.id}/secret`, admin, { body: { overlap_seconds: 0 } })
  t.equal(rotated.statusCode, 200)
  t.equal((await onB('read')).statusCode, 401, 'B refuses the replaced secret at once')
  t.equal((await onB('read', rotated.json().client_secret)).statusCode, 200, 'and takes the new one')

  const disabled = await call(a, 'POST', `/admin/clients/${creds.id}/disable`, admin)
  t.equal(disabled.json().propagation.confirmed.length, 2)
  t.equal((await onB('read', rotated.json().client_secret)).statusCode, 401, 'B refuses the disabled client at once')
})

t.test('the embedded database (PGlite): create, rotate with an overlap, list and delete', async (t) => {
  const clock = new ManualClock()
  const app = await testApp(t, { backend: 'pglite', clock })
  const adminClient = await app.createClient({ name: 'pipeline', grantTypes: ['client_credentials'], scopes: ['tessera:admin:clients'], audience: [] })
  const admin = await clientToken(app, adminClient, 'tessera:admin:clients')
  const created = (await call(app, 'POST', '/admin/clients', admin, { body: API, headers: { 'idempotency-key': 'k1' } })).json() as Json
  const rotated = await call(app, 'POST', `/admin/clients/${created.client_id}/secret`, admin, { body: { overlap_seconds: 30 }, headers: { 'if-match': '"v1"' } })
  t.equal(rotated.statusCode, 200, rotated.body)
  const auth = async (secret: string) => (await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, { id: created.client_id, secret })).statusCode
  t.equal(await auth(created.client_secret), 200, 'the old secret during the overlap')
  clock.advance(30_000)
  t.equal(await auth(created.client_secret), 401, 'not after it')
  t.equal(await auth(rotated.json().client_secret), 200)
  const list = await call(app, 'GET', '/admin/clients?limit=1', admin)
  t.equal(list.statusCode, 200)
  t.type(list.json().next_cursor, 'string')
  const next = await call(app, 'GET', `/admin/clients?limit=1&cursor=${list.json().next_cursor}`, admin)
  t.same(next.json().clients.map((c: Json) => c.client_id), [created.client_id])
  t.equal((await call(app, 'DELETE', `/admin/clients/${created.client_id}`, admin)).statusCode, 204)
})

t.test('no escalation: tessera:admin:clients cannot give a client an admin scope nor manage a client that has one; tessera:admin can', async (t) => {
  const { app, adminClient, admin, count } = await setup(t)
  const full = await clientToken(app, adminClient, 'tessera:admin')
  const before = { clients: await count('client'), audit: await count('audit_event') }
  for (const scopes of [['tessera:admin'], ['read', 'tessera:admin:users'], ['tessera:admin:clients:read']]) {
    const res = await call(app, 'POST', '/admin/clients', admin, { body: { ...API, scopes } })
    t.equal(res.statusCode, 403, `create with ${scopes.join(' ')} → 403`)
    t.same(res.json(), { error: 'insufficient_scope', error_description: 'only a tessera:admin token may give a client an admin scope or manage a client that has one' })
  }
  // The pipeline's own client holds tessera:admin: the clients scope cannot touch it (no taking over its secret).
  const own = `/admin/clients/${adminClient.id}`
  for (const [method, u, body] of [['PATCH', own, { name: 'x' }], ['POST', `${own}/secret`, {}], ['POST', `${own}/disable`, undefined], ['POST', `${own}/enable`, undefined], ['DELETE', own, undefined]] as const) {
    const res = await call(app, method, u, admin, { body, headers: { 'if-match': '"v1"' } })
    t.equal(res.statusCode, 403, `${method} ${u} on an admin client → 403`)
  }
  // Nor can it raise an ordinary client to admin.
  const plain = (await call(app, 'POST', '/admin/clients', admin, { body: API })).json() as Json
  t.equal((await call(app, 'PATCH', `/admin/clients/${plain.client_id}`, admin, { body: { scopes: ['read', 'tessera:admin'] }, headers: { 'if-match': '"v1"' } })).statusCode, 403)
  t.same({ clients: await count('client'), audit: await count('audit_event') }, { clients: before.clients + 1, audit: before.audit + 1 }, 'only the plain client was created')
  // The full admin scope may do all of it.
  t.equal((await call(app, 'POST', '/admin/clients', full, { body: { ...API, scopes: ['tessera:admin:users:read'] } })).statusCode, 201)
  t.equal((await call(app, 'PATCH', `/admin/clients/${plain.client_id}`, full, { body: { scopes: ['read', 'tessera:admin:users'] }, headers: { 'if-match': '"v1"' } })).statusCode, 200)
})
