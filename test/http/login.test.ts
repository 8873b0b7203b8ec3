// POST /login (first-party password login) and the password grant: SECURITY.md rows #46–#47,
// #94–#106 and #113.
import t from 'tap'
import type { Test } from 'tap'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import { APP_ORIGIN, basic, form, FORM, ISSUER, testApp, tokenRequest, type TestApp } from '../helpers/app.js'
import { PasswordHasher } from '../../src/users/passwords.js'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { disableUser } from '../../src/users/disable-user.js'
import { createUser } from '../../src/users/users.store.js'

const PASSWORD = 'correct horse battery'
const COOKIE = '__Secure-tessera_rt'
const RT = /^tsr_[A-Za-z0-9_-]{43}$/
const CURRENT_HASH = /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/
const BAD_LOGIN = { error: 'invalid_grant', error_description: 'invalid username or password' }

type Reply = Awaited<ReturnType<TestApp['app']['inject']>>
type Client = { id: string; secret: string | undefined }
type Encoding = 'json' | 'form'

/** POST /login with a JSON (default) or form body; `fields` may hold any JSON value. */
function login(app: TestApp, fields: unknown, opts: { as?: Encoding; headers?: Record<string, string>; url?: string } = {}) {
  const as = opts.as ?? 'json'
  return app.app.inject({
    method: 'POST',
    url: opts.url ?? '/login',
    headers: { ...(as === 'form' ? FORM : { 'content-type': 'application/json' }), ...opts.headers },
    payload: as === 'form' ? form(fields as Record<string, string>) : JSON.stringify(fields),
  })
}

/** The login fields for `client`: its secret too when it is confidential. */
function credentials(client: Client, username: string, password: string, extra: Record<string, string> = {}) {
  return { username, password, client_id: client.id, ...(client.secret !== undefined ? { client_secret: client.secret } : {}), ...extra }
}

/** A confidential API/native-style client: refresh token in the body. */
function bodyClient(app: TestApp) {
  return app.createClient({ grantTypes: ['password', 'refresh_token'] })
}

/** A public browser client: refresh token only in the HttpOnly cookie, Origin allow-list. */
function cookieClient(app: TestApp) {
  return app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'read'], allowedOrigins: [APP_ORIGIN] })
}

/** An RFC 6749 §5.2 error with no-store headers and nothing but `error` + `error_description`. */
function checkError(t: Test, res: Reply, status: number, error: string, description?: string | RegExp): void {
  t.equal(res.statusCode, status, `status ${status}`)
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers['pragma'], 'no-cache')
  t.match(res.headers['content-type'], /^application\/json(;|$)/)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['error', 'error_description'])
  t.equal(body.error, error)
  if (typeof description === 'string') t.equal(body.error_description, description)
  else if (description) t.match(body.error_description, description)
  t.equal(res.headers['set-cookie'], undefined, 'no cookie on an error')
}

interface SetCookie {
  name: string
  value: string
  attributes: string[]
  raw: string
}

function setCookies(res: Reply): SetCookie[] {
  const header = res.headers['set-cookie']
  const list = header === undefined ? [] : Array.isArray(header) ? header : [header]
  return list.map((raw) => {
    const [pair, ...attributes] = raw.split(';').map((s) => s.trim())
    const eq = pair!.indexOf('=')
    return { name: pair!.slice(0, eq), value: pair!.slice(eq + 1), attributes, raw }
  })
}

async function jwks(app: TestApp) {
  const res = await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  if (res.statusCode !== 200) throw new Error(`GET /.well-known/jwks.json: ${res.statusCode}`)
  return createLocalJWKSet(res.json() as JSONWebKeySet)
}

const families = (app: TestApp) => app.database.db.selectFrom('refresh_token_family').select(['id', 'user_id', 'client_id', 'scope', 'revoked_at']).orderBy('created_at').execute()
const auditOf = (app: TestApp, type: string) => app.database.db.selectFrom('audit_event').select(['type', 'user_id', 'client_id', 'detail']).where('type', '=', type).orderBy('id').execute()
const storedHash = async (app: TestApp, username: string) =>
  (await app.database.db.selectFrom('app_user').select('password_hash').where('username', '=', username).executeTakeFirstOrThrow()).password_hash

for (const as of ['json', 'form'] as const) {
  t.test(`${as} body, body-delivery client: tokens and the refresh token in the body`, async (t) => {
    const app = await testApp(t)
    const alice = await app.createUser('alice', PASSWORD)
    const client = await bodyClient(app)
    const res = await login(app, credentials(client, 'alice', PASSWORD, { scope: 'openid read' }), { as })
    t.equal(res.statusCode, 200, res.body)
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(res.headers['pragma'], 'no-cache')
    t.match(res.headers['content-type'], /^application\/json(;|$)/)
    t.equal(res.headers['set-cookie'], undefined, 'no cookie for a body-delivery client')
    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'id_token', 'refresh_token', 'scope', 'token_type'])
    t.equal(body.token_type, 'Bearer')
    t.equal(body.expires_in, 900)
    t.equal(body.scope, 'openid read')
    t.match(body.refresh_token, RT)
    const { payload } = await jwtVerify(body.access_token, await jwks(app), { issuer: ISSUER, audience: 'https://api.example.com', typ: 'at+jwt' })
    t.equal(payload.sub, alice.id)
    t.equal(payload.client_id, client.id)
    const fams = await families(app)
    t.equal(fams.length, 1)
    t.match(fams[0], { user_id: alice.id, client_id: client.id, scope: 'openid read', revoked_at: null })
    t.equal(payload.sid, fams[0]!.id)

    // The refresh token in the body is live.
    const refreshed = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: body.refresh_token }, client)
    t.equal(refreshed.statusCode, 200)

    const succeeded = await auditOf(app, 'login.succeeded')
    t.match(succeeded, [{ user_id: alice.id, client_id: client.id }])
  })

  t.test(`${as} body, cookie client: the refresh token only in the Set-Cookie (#105, #106)`, async (t) => {
    const app = await testApp(t)
    await app.createUser('alice', PASSWORD)
    const client = await cookieClient(app)
    const res = await login(app, credentials(client, 'alice', PASSWORD), { as, headers: { origin: APP_ORIGIN } })
    t.equal(res.statusCode, 200, res.body)
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(res.headers['access-control-allow-origin'], APP_ORIGIN)
    t.equal(res.headers['access-control-allow-credentials'], 'true')

    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'id_token', 'scope', 'token_type'], 'no refresh_token in the body (#106)')
    t.equal(body.scope, 'openid read')

    const cookies = setCookies(res)
    t.equal(cookies.length, 2, 'one cookie for /refresh, one for /logout')
    t.same(cookies.map((c) => c.attributes.find((a) => /^path=/i.test(a))).sort(), ['Path=/logout', 'Path=/refresh'])
    for (const c of cookies) {
      t.equal(c.name, COOKIE, '__Secure- prefix')
      t.match(c.value, RT)
      t.equal(c.value, cookies[0]!.value, 'the same token on both paths')
      t.ok(c.attributes.includes('HttpOnly'), `${c.raw}: HttpOnly`)
      t.ok(c.attributes.includes('Secure'), `${c.raw}: Secure`)
      t.ok(c.attributes.includes('SameSite=Strict'), `${c.raw}: SameSite=Strict`)
      t.notOk(c.attributes.some((a) => /^domain/i.test(a)), `${c.raw}: no Domain`)
      const maxAge = Number(c.attributes.find((a) => /^max-age=/i.test(a))?.split('=')[1])
      t.ok(maxAge > 0 && maxAge <= 30 * 86_400, `Max-Age ${maxAge}: the family's absolute lifetime at most`)
      t.ok(c.raw.length < 4096)
    }
    t.notOk(res.body.includes(cookies[0]!.value), 'the refresh token appears nowhere in the body')

    // The cookie carries a live refresh token.
    const refreshed = await app.app.inject({ method: 'POST', url: '/refresh', headers: { origin: APP_ORIGIN, cookie: `${COOKIE}=${cookies[0]!.value}` } })
    t.equal(refreshed.statusCode, 200, refreshed.body)
    t.notOk('refresh_token' in refreshed.json())
  })
}

t.test('login for a cookie client needs an allowed Origin (#113)', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await cookieClient(app)
  const cases: Record<string, Record<string, string>> = {
    'no Origin': {},
    'a foreign Origin': { origin: 'https://evil.example' },
    'Origin: null': { origin: 'null' },
    'a look-alike Origin': { origin: `${APP_ORIGIN}.evil.example` },
    'the right host over http': { origin: APP_ORIGIN.replace('https:', 'http:') },
    'no Origin and Sec-Fetch-Site: cross-site': { 'sec-fetch-site': 'cross-site' },
  }
  for (const [name, headers] of Object.entries(cases)) {
    for (const as of ['json', 'form'] as const) {
      t.test(`${name} (${as}) → 403 access_denied`, async (t) => {
        const res = await login(app, credentials(client, 'alice', PASSWORD), { as, headers })
        checkError(t, res, 403, 'access_denied', 'this request must come from an allowed origin')
        t.equal(res.headers['access-control-allow-origin'], undefined)
      })
    }
  }
  t.test('nothing happened: no session, no password check', async (t) => {
    t.same(await families(app), [])
    t.same(await auditOf(app, 'login.succeeded'), [])
    t.same(await auditOf(app, 'login.failed'), [])
  })
})

t.test('id_token with the openid scope', async (t) => {
  const app = await testApp(t)
  const alice = await app.createUser('alice', PASSWORD, ['admin'])
  const client = await bodyClient(app)
  const keys = await jwks(app)

  t.test('openid: an id_token for the client', async (t) => {
    const before = Math.floor(Date.now() / 1000)
    const res = await login(app, credentials(client, 'alice', PASSWORD, { scope: 'openid' }))
    t.equal(res.statusCode, 200, res.body)
    const { id_token, access_token } = res.json()
    const header = decodeProtectedHeader(id_token)
    t.equal(header.alg, 'RS256', 'RS256 by default (OIDC Core §15.1), from its own key line')
    t.equal(decodeProtectedHeader(access_token).alg, 'ES256', 'access tokens keep SIGNING_ALG')
    t.type(header.kid, 'string')
    t.not(header.typ, 'at+jwt', 'an id_token is not an access token')
    const { payload } = await jwtVerify(id_token, keys, { issuer: ISSUER, audience: client.id, algorithms: ['RS256'] })
    t.equal(payload.aud, client.id, 'aud is the client id')
    t.equal(payload.azp, client.id)
    t.equal(payload.sub, alice.id)
    t.equal(payload.preferred_username, 'alice')
    t.type(payload.auth_time, 'number')
    t.ok(Math.abs((payload.auth_time as number) - before) <= 5, 'auth_time is the login time')
    t.ok((payload.auth_time as number) <= payload.iat! + 1)
    const [family] = await families(app)
    t.equal(payload.sid, family!.id, 'sid is the session (family)')
    const at = await jwtVerify(access_token, keys, { issuer: ISSUER, audience: ISSUER, typ: 'at+jwt' })
    t.equal(at.payload.sid, family!.id)
    t.same(at.payload.roles, ['admin'])
    t.ok((at.payload.aud as string[]).includes(ISSUER), 'openid puts the issuer in the access token audience')
  })

  t.test('no scope asked: the client default, which includes openid', async (t) => {
    const res = await login(app, credentials(client, 'alice', PASSWORD))
    t.equal(res.statusCode, 200)
    t.equal(res.json().scope, 'openid read write')
    t.ok(res.json().id_token)
  })

  t.test('scope "" is treated as absent', async (t) => {
    const res = await login(app, credentials(client, 'alice', PASSWORD, { scope: '' }))
    t.equal(res.statusCode, 200)
    t.equal(res.json().scope, 'openid read write')
  })

  t.test('without openid: no id_token', async (t) => {
    const res = await login(app, credentials(client, 'alice', PASSWORD, { scope: 'read' }))
    t.equal(res.statusCode, 200)
    t.equal(res.json().scope, 'read')
    t.notOk('id_token' in res.json())
  })

  t.test('a scope the client does not have → invalid_scope', async (t) => {
    const res = await login(app, credentials(client, 'alice', PASSWORD, { scope: 'openid admin' }))
    checkError(t, res, 400, 'invalid_scope', 'scope not allowed: admin')
  })
})

t.test('#46 JSON injection shapes and schema violations → 400 invalid_request', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await bodyClient(app)
  const good = credentials(client, 'alice', PASSWORD)
  const shapes: Record<string, unknown> = {
    'username {"$ne": null}': { ...good, username: { $ne: null } },
    'password {"$ne": null}': { ...good, password: { $ne: null } },
    'password {"$gt": ""}': { ...good, password: { $gt: '' } },
    'username as an array': { ...good, username: ['alice'] },
    'password as an array': { ...good, password: [PASSWORD] },
    'username as a number': { ...good, username: 1 },
    'password as a number': { ...good, password: 12345678 },
    'username as a boolean': { ...good, username: true },
    'username null': { ...good, username: null },
    'password null': { ...good, password: null },
    'client_id {"$ne": null}': { ...good, client_id: { $ne: null } },
    'client_id as a number': { ...good, client_id: 42 },
    'client_secret as an object': { ...good, client_secret: { $ne: null } },
    'scope as an array': { ...good, scope: ['openid'] },
    'overlong username (257)': { ...good, username: 'a'.repeat(257) },
    'overlong password (4,097)': { ...good, password: 'p'.repeat(4097) },
    'overlong client_id (129)': { ...good, client_id: 'c'.repeat(129) },
    'empty username': { ...good, username: '' },
    'missing username': { password: PASSWORD, client_id: client.id, client_secret: client.secret },
    'missing password': { username: 'alice', client_id: client.id, client_secret: client.secret },
    'missing client_id': { username: 'alice', password: PASSWORD },
    'a JSON array body': [good],
    'a JSON string body': 'alice',
    'a JSON null body': null,
  }
  for (const [name, body] of Object.entries(shapes)) {
    t.test(name, async (t) => {
      const res = await login(app, body)
      checkError(t, res, 400, 'invalid_request')
    })
  }

  t.test('deeply nested JSON (#36) → 400 quickly', async (t) => {
    const depth = 20_000
    const payload = `{"username": ${'['.repeat(depth)}${']'.repeat(depth)}, "password": ${JSON.stringify(PASSWORD)}, "client_id": ${JSON.stringify(client.id)}, "client_secret": ${JSON.stringify(client.secret)}}`
    t.ok(payload.length < 64 * 1024)
    const started = Date.now()
    const res = await app.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json' }, payload })
    checkError(t, res, 400, 'invalid_request')
    t.ok(Date.now() - started < 5000, 'answered quickly')
  })

  t.test('__proto__ in the body', async (t) => {
    const res = await app.app.inject({
      method: 'POST',
      url: '/login',
      headers: { 'content-type': 'application/json' },
      payload: `{"__proto__": {"username": "alice"}, "password": ${JSON.stringify(PASSWORD)}, "client_id": ${JSON.stringify(client.id)}, "client_secret": ${JSON.stringify(client.secret)}}`,
    })
    checkError(t, res, 400, 'invalid_request')
  })

  t.test('malformed JSON', async (t) => {
    const res = await app.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json' }, payload: '{"username": "alice",' })
    checkError(t, res, 400, 'invalid_request')
  })

  t.test('schema first: a bad shape with an unknown client is still 400', async (t) => {
    const res = await login(app, { ...good, username: { $ne: null }, client_id: 'c_does_not_exist' })
    checkError(t, res, 400, 'invalid_request')
  })

  t.test('credentials in the query string → 400', async (t) => {
    const res = await login(app, good, { url: `/login?username=alice&password=${encodeURIComponent(PASSWORD)}` })
    checkError(t, res, 400, 'invalid_request', 'credentials must be sent in the request body, not the URL')
    t.notOk(app.logs.some((l) => l.includes('correct') && l.includes('battery')), 'the password is not logged')
  })

  t.test('nothing was looked up: no audit events, no session', async (t) => {
    t.same(await auditOf(app, 'login.failed'), [])
    t.same(await auditOf(app, 'login.succeeded'), [])
    t.same(await families(app), [])
  })
})

t.test('content types and methods on /login', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await bodyClient(app)
  const fields = credentials(client, 'alice', PASSWORD)

  t.test('text/plain → 400', async (t) => {
    const res = await app.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'text/plain' }, payload: JSON.stringify(fields) })
    checkError(t, res, 400, 'invalid_request')
  })

  t.test('multipart/form-data → 400', async (t) => {
    const payload = Object.entries(fields).map(([k, v]) => `--b\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`).join('') + '--b--\r\n'
    const res = await app.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'multipart/form-data; boundary=b' }, payload })
    checkError(t, res, 400, 'invalid_request', 'unsupported content type')
  })

  t.test('a form with a parameter sent twice → 400', async (t) => {
    const res = await app.app.inject({ method: 'POST', url: '/login', headers: FORM, payload: `${form(fields)}&username=bob` })
    checkError(t, res, 400, 'invalid_request', 'parameter sent more than once: username')
  })

  t.test('GET /login → 405', async (t) => {
    const res = await app.app.inject({ method: 'GET', url: '/login' })
    checkError(t, res, 405, 'invalid_request', 'method not allowed: use POST')
    t.equal(res.headers.allow, 'POST')
  })
})

t.test('#47 client authentication on /login', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await bodyClient(app)

  t.test('unknown client_id → 401 invalid_client', async (t) => {
    const res = await login(app, { username: 'alice', password: PASSWORD, client_id: 'c_does_not_exist' })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('unknown client_id with a secret → 401 invalid_client', async (t) => {
    const res = await login(app, { username: 'alice', password: PASSWORD, client_id: 'c_does_not_exist', client_secret: client.secret })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('confidential client without its secret → 401 invalid_client', async (t) => {
    const res = await login(app, { username: 'alice', password: PASSWORD, client_id: client.id })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('confidential client with a wrong secret → 401 invalid_client', async (t) => {
    const res = await login(app, { username: 'alice', password: PASSWORD, client_id: client.id, client_secret: 'tessera_cs_wrong' })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('confidential client with a wrong secret in Basic → 401 with a Basic challenge', async (t) => {
    const res = await login(app, { username: 'alice', password: PASSWORD, client_id: client.id }, { headers: { authorization: basic(client.id, 'wrong') } })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
    t.match(res.headers['www-authenticate'], /^Basic realm="tessera"/)
  })

  t.test('confidential client with its secret in Basic → 200', async (t) => {
    const res = await login(app, { username: 'alice', password: PASSWORD, client_id: client.id }, { headers: { authorization: basic(client.id, client.secret!) } })
    t.equal(res.statusCode, 200, res.body)
  })

  t.test('client failures happen before the password is checked', async (t) => {
    t.same(await auditOf(app, 'login.failed'), [])
    t.equal((await families(app)).length, 1, 'only the successful login made a session')
  })
})

t.test('#94 unknown user, wrong password, empty password, disabled user: one answer', async (t) => {
  const app = await testApp(t)
  const alice = await app.createUser('alice', PASSWORD)
  const bob = await app.createUser('bob', PASSWORD)
  t.equal(await disableUser(app.database.db, 'bob', CLI_CONTEXT), true)
  const client = await bodyClient(app)

  const attempts = {
    unknown_user: credentials(client, 'mallory', PASSWORD),
    wrong_password: credentials(client, 'alice', 'wrong horse battery'),
    empty_password: credentials(client, 'alice', ''),
    disabled_user: credentials(client, 'bob', PASSWORD),
  }
  const replies: Record<string, Reply> = {}
  for (const [name, body] of Object.entries(attempts)) {
    const res = await login(app, body)
    replies[name] = res
    t.test(name, async (t) => {
      checkError(t, res, 400, 'invalid_grant')
      t.same(res.json(), BAD_LOGIN)
    })
  }
  const sig = (r: Reply) => ({
    status: r.statusCode,
    body: r.body,
    'content-type': r.headers['content-type'],
    'cache-control': r.headers['cache-control'],
    'www-authenticate': r.headers['www-authenticate'],
  })
  const reference = sig(replies.unknown_user!)
  for (const [name, res] of Object.entries(replies)) t.same(sig(res), reference, `${name}: same status, body and headers as an unknown user`)

  const failed = await auditOf(app, 'login.failed')
  t.equal(failed.length, 4, 'one login.failed row per attempt')
  t.same(
    failed.map((e) => e.detail.reason),
    ['unknown_user', 'bad_password', 'bad_password', 'disabled'],
  )
  t.same(
    failed.map((e) => e.user_id),
    [null, alice.id, alice.id, bob.id],
  )
  t.ok(failed.every((e) => e.client_id === client.id))
  t.same(await families(app), [], 'no session')
  t.same(await auditOf(app, 'login.succeeded'), [])

  t.test('the same through the password grant on /token', async (t) => {
    // (On /token `password=` is an absent parameter, RFC 6749 §3.2: invalid_request before any
    // lookup, for known and unknown users alike; see the password grant tests below.)
    const { empty_password: _, ...rest } = attempts
    for (const [name, body] of Object.entries(rest)) {
      const { client_id: _id, client_secret: _secret, ...params } = body
      const res = await tokenRequest(app, { grant_type: 'password', ...params }, client)
      t.equal(res.statusCode, 400, name)
      t.same(res.json(), BAD_LOGIN, name)
    }
    t.equal((await auditOf(app, 'login.failed')).length, 7)
  })
})

t.test('#98 password length', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await bodyClient(app)

  t.test('a 1 MB password → 413 or 400, quickly, before any hashing', async (t) => {
    for (const as of ['json', 'form'] as const) {
      const started = Date.now()
      const res = await login(app, credentials(client, 'alice', 'p'.repeat(1024 * 1024)), { as })
      t.ok([400, 413].includes(res.statusCode), `${as}: got ${res.statusCode}`)
      checkError(t, res, res.statusCode, 'invalid_request')
      t.ok(Date.now() - started < 5000, `${as}: answered quickly`)
    }
  })

  t.test('a password over 1,024 bytes but under the body limit → 400 before hashing', async (t) => {
    const res = await login(app, credentials(client, 'alice', 'é'.repeat(513)))
    checkError(t, res, 400, 'invalid_request', 'password is too long')
  })

  t.test('nothing reached the password check', async (t) => {
    t.same(await auditOf(app, 'login.failed'), [])
  })

  t.test('a 64-character password works', async (t) => {
    const long = 'Tr0ub4dor&3-correct-horse-battery-staple-' + 'x'.repeat(23)
    t.equal(long.length, 64)
    await app.createUser('carol', long)
    const res = await login(app, credentials(client, 'carol', long))
    t.equal(res.statusCode, 200, res.body)
    const wrong = await login(app, credentials(client, 'carol', long.slice(0, 63)))
    t.equal(wrong.statusCode, 400, 'the whole password counts')
  })

  t.test('a 1,024-byte password works', async (t) => {
    const max = 'ü'.repeat(512)
    t.equal(Buffer.byteLength(max), 1024)
    await app.createUser('dave', max)
    const res = await login(app, credentials(client, 'dave', max))
    t.equal(res.statusCode, 200, res.body)
  })
})

t.test('#101 stored password hashes', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  await app.createUser('bob', PASSWORD)

  t.test('argon2id, v=19, m=19456, t=2, p=1, per-user salt', async (t) => {
    const a = await storedHash(app, 'alice')
    const b = await storedHash(app, 'bob')
    t.match(a, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
    t.match(a, CURRENT_HASH)
    t.match(b, CURRENT_HASH)
    t.not(a.split('$')[4], b.split('$')[4], 'different salts for the same password')
    t.notOk(a.includes(PASSWORD))
  })

  t.test('rehash on login when the parameters changed', async (t) => {
    const weak = await new PasswordHasher({ memoryKib: 8192, timeCost: 1, parallelism: 1 }).hash(PASSWORD)
    t.match(weak, /^\$argon2id\$v=19\$m=8192,t=1,p=1\$/)
    t.ok(await createUser(app.database.db, { username: 'carol', passwordHash: weak }))
    const client = await bodyClient(app)

    const failed = await login(app, credentials(client, 'carol', 'wrong horse battery'))
    t.equal(failed.statusCode, 400)
    t.equal(await storedHash(app, 'carol'), weak, 'a failed login does not touch the hash')

    const res = await login(app, credentials(client, 'carol', PASSWORD))
    t.equal(res.statusCode, 200, res.body)
    const upgraded = await storedHash(app, 'carol')
    t.match(upgraded, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
    t.match(upgraded, CURRENT_HASH)
    t.not(upgraded.split('$')[4], weak.split('$')[4], 'a fresh salt')

    const again = await login(app, credentials(client, 'carol', PASSWORD))
    t.equal(again.statusCode, 200, 'the upgraded hash verifies')
    t.equal(await storedHash(app, 'carol'), upgraded, 'no rehash when the parameters are current')
  })
})

t.test('#102 every login creates a new family', async (t) => {
  const app = await testApp(t)
  const alice = await app.createUser('alice', PASSWORD)

  t.test('body client: two logins, two families, both live', async (t) => {
    const client = await bodyClient(app)
    const first = await login(app, credentials(client, 'alice', PASSWORD))
    const second = await login(app, credentials(client, 'alice', PASSWORD))
    t.equal(first.statusCode, 200)
    t.equal(second.statusCode, 200)
    t.not(first.json().refresh_token, second.json().refresh_token)
    const fams = (await families(app)).filter((f) => f.client_id === client.id)
    t.equal(fams.length, 2)
    t.not(fams[0]!.id, fams[1]!.id)
    t.ok(fams.every((f) => f.user_id === alice.id && f.revoked_at === null), 'the first login is untouched')
  })

  t.test('cookie client: a login that sends a valid refresh cookie still gets a new family', async (t) => {
    const client = await cookieClient(app)
    const headers = { origin: APP_ORIGIN }
    const first = await login(app, credentials(client, 'alice', PASSWORD), { headers })
    t.equal(first.statusCode, 200)
    const firstCookie = setCookies(first)[0]!.value
    const second = await login(app, credentials(client, 'alice', PASSWORD), { headers: { ...headers, cookie: `${COOKIE}=${firstCookie}` } })
    t.equal(second.statusCode, 200)
    const secondCookie = setCookies(second)[0]!.value
    t.not(secondCookie, firstCookie, 'a new refresh token, not the presented one')
    const fams = (await families(app)).filter((f) => f.client_id === client.id)
    t.equal(fams.length, 2, 'no fixation: the cookie family was not reused')
    const [a, b] = await Promise.all(
      [firstCookie, secondCookie].map((value) => app.app.inject({ method: 'POST', url: '/refresh', headers: { ...headers, cookie: `${COOKIE}=${value}` } })),
    )
    t.equal(a!.statusCode, 200, 'the first session still refreshes')
    t.equal(b!.statusCode, 200, 'the second session refreshes')
  })
})

t.test('#104 20 parallel logins of one user within the throttle budget: all succeed, 20 families', async (t) => {
  // Every password check counts as a failure until it succeeds (docs/security.md "Brute force and abuse"),
  // so 20 at once fit only in a budget of 20 in-flight checks per account and address.
  const app = await testApp(t, { env: { LOGIN_ADDRESS_ACCOUNT_FREE_FAILURES: '20', LOGIN_ACCOUNT_FREE_FAILURES: '20' } })
  const alice = await app.createUser('alice', PASSWORD)
  const client = await bodyClient(app)
  const results = await Promise.all(Array.from({ length: 20 }, () => login(app, credentials(client, 'alice', PASSWORD))))
  t.same(
    results.map((r) => r.statusCode),
    Array(20).fill(200),
  )
  t.equal(new Set(results.map((r) => r.json().refresh_token)).size, 20, '20 distinct refresh tokens')
  const fams = await families(app)
  t.equal(fams.length, 20)
  t.equal(new Set(fams.map((f) => f.id)).size, 20, '20 distinct families')
  t.ok(fams.every((f) => f.user_id === alice.id && f.revoked_at === null))
  t.equal((await auditOf(app, 'login.succeeded')).length, 20)
})

t.test('#104 (#12) 20 parallel logins beyond the budget: each answer is 200 with its own family or 429 with Retry-After, never an error', async (t) => {
  const app = await testApp(t)
  const alice = await app.createUser('alice', PASSWORD)
  const client = await bodyClient(app)
  const results = await Promise.all(Array.from({ length: 20 }, () => login(app, credentials(client, 'alice', PASSWORD))))
  const ok = results.filter((r) => r.statusCode === 200)
  const throttled = results.filter((r) => r.statusCode === 429)
  t.equal(ok.length + throttled.length, 20, `every answer is 200 or 429 (${ok.length} / ${throttled.length})`)
  t.ok(ok.length >= 5, 'at least the free budget of in-flight checks succeeds')
  for (const r of throttled) {
    t.same(r.json(), { error: 'temporarily_unavailable', error_description: 'too many failed attempts; retry later' })
    t.match(r.headers['retry-after'], /^[1-9]\d*$/)
  }
  const fams = await families(app)
  t.equal(fams.length, ok.length, 'one family per success, none for a refused check')
  t.ok(fams.every((f) => f.user_id === alice.id && f.revoked_at === null))
  // Successes gave their counts back: alice logs in at once afterwards.
  t.equal((await login(app, credentials(client, 'alice', PASSWORD))).statusCode, 200, 'a success reset the account: the next login works at once')
})

t.test('a client without the password grant → 400 unauthorized_client', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)

  t.test('confidential client_credentials-only client', async (t) => {
    const client = await app.createClient({ grantTypes: ['client_credentials'] })
    const res = await login(app, credentials(client, 'alice', PASSWORD))
    checkError(t, res, 400, 'unauthorized_client', 'this client may not log users in with a password')
  })

  t.test('public refresh-only cookie client', async (t) => {
    const client = await app.createClient({ isPublic: true, grantTypes: ['refresh_token'], allowedOrigins: [APP_ORIGIN] })
    const res = await login(app, credentials(client, 'alice', PASSWORD), { headers: { origin: APP_ORIGIN } })
    checkError(t, res, 400, 'unauthorized_client', 'this client may not log users in with a password')
  })

  t.test('the user was never checked and no session exists', async (t) => {
    t.same(await auditOf(app, 'login.failed'), [])
    t.same(await auditOf(app, 'login.succeeded'), [])
    t.same(await families(app), [])
  })
})

t.test('a password client without the refresh_token grant: tokens but no refresh token', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await app.createClient({ grantTypes: ['password'] })
  const res = await login(app, credentials(client, 'alice', PASSWORD, { scope: 'read' }))
  t.equal(res.statusCode, 200, res.body)
  t.same(Object.keys(res.json()).sort(), ['access_token', 'expires_in', 'scope', 'token_type'])
  t.same(await families(app), [])
})

t.test('usernames are case-insensitive: ALICE logs in as alice', async (t) => {
  const app = await testApp(t)
  const alice = await app.createUser('alice', PASSWORD)
  const client = await bodyClient(app)
  for (const username of ['ALICE', 'Alice', 'alice']) {
    const res = await login(app, credentials(client, username, PASSWORD, { scope: 'openid' }))
    t.equal(res.statusCode, 200, `${username}: ${res.body}`)
    const { payload } = await jwtVerify(res.json().id_token, await jwks(app), { issuer: ISSUER, audience: client.id })
    t.equal(payload.sub, alice.id, `${username} is alice`)
    t.equal(payload.preferred_username, 'alice')
  }
  t.test('but the password is case-sensitive', async (t) => {
    const res = await login(app, credentials(client, 'alice', PASSWORD.toUpperCase()))
    t.same(res.json(), BAD_LOGIN)
  })
})

t.test('password grant on /token', async (t) => {
  const app = await testApp(t)
  const alice = await app.createUser('alice', PASSWORD)

  t.test('success for a body client: refresh token in the body', async (t) => {
    const client = await bodyClient(app)
    const res = await tokenRequest(app, { grant_type: 'password', username: 'Alice', password: PASSWORD, scope: 'openid read' }, client)
    t.equal(res.statusCode, 200, res.body)
    t.equal(res.headers['cache-control'], 'no-store')
    const body = res.json()
    t.match(body.refresh_token, RT)
    t.equal(body.scope, 'openid read')
    const { payload } = await jwtVerify(body.id_token, await jwks(app), { issuer: ISSUER, audience: client.id })
    t.equal(payload.sub, alice.id)
    const fam = (await families(app)).find((f) => f.client_id === client.id)
    t.equal(payload.sid, fam?.id)
  })

  t.test('success for a public cookie client from its origin: the refresh token only as a cookie', async (t) => {
    const client = await cookieClient(app)
    const res = await app.app.inject({
      method: 'POST',
      url: '/token',
      headers: { ...FORM, origin: APP_ORIGIN },
      payload: form({ grant_type: 'password', username: 'alice', password: PASSWORD, client_id: client.id }),
    })
    t.equal(res.statusCode, 200, res.body)
    t.notOk('refresh_token' in res.json())
    t.equal(setCookies(res).length, 2)
  })

  // #113: /login refuses a cookie session started from a foreign origin, but the password
  // grant on /token sets the same cookie without looking at Origin (a cross-site form POST
  // is a simple request), so login CSRF is still possible through /token.
  for (const [name, headers] of Object.entries({ 'a foreign Origin': { origin: 'https://evil.example' }, 'no Origin': {} })) {
    t.test(`password grant for a cookie client with ${name} → 403 (#113)`, async (t) => {
      const client = await cookieClient(app)
      const res = await app.app.inject({
        method: 'POST',
        url: '/token',
        headers: { ...FORM, ...headers },
        payload: form({ grant_type: 'password', username: 'alice', password: PASSWORD, client_id: client.id }),
      })
      checkError(t, res, 403, 'access_denied')
    })
  }

  t.test('wrong password → 400 invalid_grant, audited', async (t) => {
    const client = await bodyClient(app)
    const res = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: 'wrong horse battery' }, client)
    checkError(t, res, 400, 'invalid_grant', 'invalid username or password')
    const failed = (await auditOf(app, 'login.failed')).filter((e) => e.client_id === client.id)
    t.match(failed, [{ user_id: alice.id, detail: { reason: 'bad_password' } }])
  })

  t.test('empty password is an absent one (RFC 6749 §3.2), for known and unknown users alike', async (t) => {
    const client = await bodyClient(app)
    const known = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: '' }, client)
    const unknown = await tokenRequest(app, { grant_type: 'password', username: 'mallory', password: '' }, client)
    checkError(t, known, 400, 'invalid_request', 'missing parameter: password')
    t.equal(unknown.body, known.body, 'does not tell whether the user exists')
  })

  t.test('an overlong username → 400 invalid_request', async (t) => {
    const client = await bodyClient(app)
    const res = await tokenRequest(app, { grant_type: 'password', username: 'a'.repeat(257), password: PASSWORD }, client)
    checkError(t, res, 400, 'invalid_request', 'username is too long')
  })
})
