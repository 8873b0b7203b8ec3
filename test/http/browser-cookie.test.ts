// Browser flow: the refresh token lives only in an HttpOnly cookie on /refresh and /logout
// (SECURITY G #105–#114, C #64, D #77–#78).
import t from 'tap'
import type { Test } from 'tap'
import { decodeProtectedHeader } from 'jose'
import { verifyAccessToken } from '../../src/tokens/access-token.js'
import { APP_ORIGIN, basic, form, FORM, ISSUER, passwordLogin, testApp, type TestApp } from '../helpers/app.js'

const COOKIE = '__Secure-tessera_rt'
const EVIL = 'https://evil.example'
const PASSWORD = 'correct horse battery'

interface SetCookie {
  name: string
  value: string
  /** Attribute names in lower case → value ('' for flags). */
  attrs: Map<string, string>
}

/** Every Set-Cookie header of a response, as an array (none → []). */
function setCookieHeaders(res: { headers: Record<string, unknown> }): string[] {
  const h = res.headers['set-cookie']
  if (h === undefined) return []
  return Array.isArray(h) ? (h as string[]) : [String(h)]
}

function parseSetCookie(header: string): SetCookie {
  const [pair, ...rest] = header.split(';').map((s) => s.trim())
  const eq = pair!.indexOf('=')
  const attrs = new Map<string, string>()
  for (const a of rest) {
    const i = a.indexOf('=')
    attrs.set((i < 0 ? a : a.slice(0, i)).toLowerCase(), i < 0 ? '' : a.slice(i + 1))
  }
  return { name: pair!.slice(0, eq), value: pair!.slice(eq + 1), attrs }
}

/** The refresh cookies of a response, keyed by Path. */
function refreshCookies(res: { headers: Record<string, unknown> }): Map<string, SetCookie> {
  const out = new Map<string, SetCookie>()
  for (const c of setCookieHeaders(res).map(parseSetCookie)) if (c.name === COOKIE) out.set(c.attrs.get('path') ?? '', c)
  return out
}

/** The one value both refresh cookies of a response carry. */
function cookieValue(t: Test, res: { headers: Record<string, unknown> }): string {
  const cookies = refreshCookies(res)
  const values = new Set([...cookies.values()].map((c) => c.value))
  t.equal(values.size, 1, 'both cookies carry one value')
  const value = [...values][0]
  if (!value) throw new Error(`no refresh cookie in ${JSON.stringify(res.headers['set-cookie'])}`)
  return value
}

async function browserApp(t: Test, env: Record<string, string> = {}) {
  const app = await testApp(t, { env })
  await app.createUser('alice', PASSWORD)
  const client = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'], refreshDelivery: 'cookie', allowedOrigins: [APP_ORIGIN] })
  return { app, client }
}

function login(app: TestApp, clientId: string, headers: Record<string, string> = { origin: APP_ORIGIN }) {
  return app.app.inject({ method: 'POST', url: '/login', headers, payload: { username: 'alice', password: PASSWORD, client_id: clientId } })
}

/** Logs in from the app's origin and returns the cookie value. */
async function loginCookie(t: Test, app: TestApp, clientId: string): Promise<string> {
  const res = await login(app, clientId)
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return cookieValue(t, res)
}

function post(app: TestApp, url: '/refresh' | '/logout', cookie: string | undefined, headers: Record<string, string> = { origin: APP_ORIGIN }) {
  return app.app.inject({ method: 'POST', url, headers: { ...headers, ...(cookie !== undefined ? { cookie: `${COOKIE}=${cookie}` } : {}) } })
}

async function tokenRows(app: TestApp) {
  return app.database.db.selectFrom('refresh_token').select(['id', 'used_at', 'parent_id']).orderBy('created_at').execute()
}

async function families(app: TestApp) {
  return app.database.db.selectFrom('refresh_token_family').select(['id', 'revoked_at', 'revoked_reason']).execute()
}

const forbidden = { error: 'access_denied', error_description: 'this request must come from an allowed origin' }
const invalidGrant = { error: 'invalid_grant', error_description: 'refresh token is invalid' }

t.test('#105 login sets the refresh cookie twice, HttpOnly; Secure; SameSite=Strict, narrow paths, no Domain', async (t) => {
  const { app, client } = await browserApp(t)
  t.equal(app.config.cookieName, COOKIE)
  const res = await login(app, client.id)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const headers = setCookieHeaders(res)
  t.equal(headers.length, 2, 'exactly two Set-Cookie headers')
  const cookies = refreshCookies(res)
  t.same([...cookies.keys()].sort(), ['/logout', '/refresh'])
  const abs = app.config.refreshTokenAbsoluteTtlSeconds
  for (const [path, c] of cookies) {
    t.match(c.value, /^tsr_[A-Za-z0-9_-]{43}$/, `${path}: the refresh token`)
    t.same([...c.attrs.keys()].sort(), ['httponly', 'max-age', 'path', 'samesite', 'secure'], `${path}: exactly these attributes, no Domain`)
    t.equal(c.attrs.get('httponly'), '')
    t.equal(c.attrs.get('secure'), '')
    t.equal(c.attrs.get('samesite'), 'Strict')
    const maxAge = Number(c.attrs.get('max-age'))
    t.ok(maxAge <= abs && maxAge >= abs - 10, `${path}: Max-Age ${maxAge} is the family's absolute lifetime (${abs})`)
  }
  for (const h of headers) t.ok(Buffer.byteLength(h) < 4096, 'cookie under 4096 bytes')
  t.equal(new Set([...cookies.values()].map((c) => c.value)).size, 1, 'one value on both paths')
})

t.test('#106 no refresh_token in the login JSON of a cookie client', async (t) => {
  const { app, client } = await browserApp(t)
  const res = await login(app, client.id)
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'id_token', 'scope', 'token_type'])
  t.equal(body.token_type, 'Bearer')
  t.equal(body.scope, 'openid read write')
  const value = cookieValue(t, res)
  t.notOk(res.body.includes(value), 'the cookie value appears nowhere in the body')
  t.notOk(res.body.includes('tsr_'), 'no refresh token in the body')
})

t.test('#113 login of a cookie client from a foreign origin → 403, no cookie, no family', async (t) => {
  const { app, client } = await browserApp(t)
  for (const headers of [{ origin: EVIL }, {} as Record<string, string>]) {
    const res = await login(app, client.id, headers)
    t.equal(res.statusCode, 403)
    t.same(res.json(), forbidden)
    t.equal(res.headers['set-cookie'], undefined)
  }
  t.equal((await families(app)).length, 0)
})

t.test('#105 #106 POST /refresh with cookie and allowed Origin → 200, new access token, the cookie follows the rotation', async (t) => {
  const { app, client } = await browserApp(t)
  const loginRes = await login(app, client.id)
  const first = cookieValue(t, loginRes)
  const firstMaxAge = Number(refreshCookies(loginRes).get('/refresh')!.attrs.get('max-age'))
  const res = await post(app, '/refresh', first)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers['access-control-allow-origin'], APP_ORIGIN)
  t.equal(res.headers['access-control-allow-credentials'], 'true')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'id_token', 'scope', 'token_type'], '#106 no refresh_token on /refresh either')
  t.notOk(res.body.includes('tsr_'))
  t.not(body.access_token, loginRes.json().access_token, 'a new access token')
  t.equal(decodeProtectedHeader(body.access_token).typ, 'at+jwt')
  const claims = await verifyAccessToken(app.services.keyring, ISSUER, undefined, body.access_token, Math.floor(Date.now() / 1000))
  t.equal(claims.client_id, client.id)
  t.equal(claims.scope, 'openid read write')

  const cookies = refreshCookies(res)
  t.same([...cookies.keys()].sort(), ['/logout', '/refresh'], 'both paths get the rotated cookie')
  const next = cookieValue(t, res)
  t.not(next, first, 'a NEW value')
  t.notOk(res.body.includes(next))
  for (const c of cookies.values()) {
    t.same([...c.attrs.keys()].sort(), ['httponly', 'max-age', 'path', 'samesite', 'secure'])
    t.equal(c.attrs.get('samesite'), 'Strict')
    const maxAge = Number(c.attrs.get('max-age'))
    t.ok(maxAge <= firstMaxAge && maxAge >= firstMaxAge - 10, 'Max-Age keeps the family absolute expiry (not reset)')
  }
  const rows = await tokenRows(app)
  t.equal(rows.length, 2)
  t.not(rows[0]!.used_at, null, 'the old token is used')
  t.equal(rows[1]!.parent_id, rows[0]!.id)

  const again = await post(app, '/refresh', next)
  t.equal(again.statusCode, 200, 'the new cookie refreshes in turn')
  t.not(cookieValue(t, again), next)
})

t.test('#50 replaying an old cookie value (older than the last retry) → 400 invalid_grant and the family is revoked', async (t) => {
  const { app, client } = await browserApp(t)
  const first = await loginCookie(t, app, client.id)
  const res = await post(app, '/refresh', first)
  t.equal(res.statusCode, 200)
  const next = cookieValue(t, res)
  const second = await post(app, '/refresh', next)
  t.equal(second.statusCode, 200)
  const latest = cookieValue(t, second)
  const reuse = await post(app, '/refresh', first)
  t.equal(reuse.statusCode, 400)
  t.same(reuse.json(), invalidGrant)
  t.equal(reuse.headers['cache-control'], 'no-store')
  const fams = await families(app)
  t.equal(fams.length, 1)
  t.equal(fams[0]!.revoked_reason, 'reuse_detected')
  t.not(fams[0]!.revoked_at, null)
  const successor = await post(app, '/refresh', latest)
  t.equal(successor.statusCode, 400, 'the newest token died with its family')
  t.same(successor.json(), invalidGrant)
  t.equal(successor.headers['set-cookie'], undefined)
})

t.test('#107 POST /refresh from a foreign Origin → 403 access_denied; the cookie is not consumed', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  const res = await post(app, '/refresh', value, { origin: EVIL })
  t.equal(res.statusCode, 403)
  t.same(res.json(), forbidden)
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers['set-cookie'], undefined)
  t.equal(res.headers['access-control-allow-origin'], undefined)
  const rows = await tokenRows(app)
  t.equal(rows.length, 1)
  t.equal(rows[0]!.used_at, null, 'token not used')
  t.equal((await families(app))[0]!.revoked_at, null, 'family live')
  const legit = await post(app, '/refresh', value)
  t.equal(legit.statusCode, 200, 'the same cookie still refreshes from the app')
})

t.test('#107 an Origin differing only by scheme, port or trailing slash is foreign', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  for (const origin of ['http://app.example.com', 'https://app.example.com:8443', `${APP_ORIGIN}/`, 'https://APP.example.com', 'https://app.example.com.evil.example']) {
    const res = await post(app, '/refresh', value, { origin })
    t.equal(res.statusCode, 403, origin)
    t.same(res.json(), forbidden)
  }
  t.equal((await tokenRows(app))[0]!.used_at, null)
})

t.test('#108 POST /refresh without Origin, with Origin: null, or cross-site without Origin → 403', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  const cases: Record<string, Record<string, string>> = {
    'no Origin': {},
    'Origin: null': { origin: 'null' },
    'sec-fetch-site: cross-site, no Origin': { 'sec-fetch-site': 'cross-site' },
    'sec-fetch-site: same-origin, no Origin': { 'sec-fetch-site': 'same-origin' },
  }
  for (const [name, headers] of Object.entries(cases)) {
    const res = await post(app, '/refresh', value, headers)
    t.equal(res.statusCode, 403, name)
    t.same(res.json(), forbidden, name)
    t.equal(res.headers['set-cookie'], undefined, name)
  }
  t.equal((await tokenRows(app))[0]!.used_at, null, 'the cookie was never consumed')
  t.equal((await post(app, '/refresh', value)).statusCode, 200)
})

t.test('#110 GET /refresh and HEAD /refresh → 405 with Allow: POST', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await app.app.inject({ method, url: '/refresh', headers: { origin: APP_ORIGIN, cookie: `${COOKIE}=${value}` } })
    t.equal(res.statusCode, 405, method)
    t.equal(res.headers.allow, 'POST', method)
    t.equal(res.headers['set-cookie'], undefined, method)
    if (method === 'GET') t.same(res.json(), { error: 'invalid_request', error_description: 'method not allowed: use POST' })
    else t.equal(res.body, '', 'HEAD has no body')
  }
  t.equal((await tokenRows(app))[0]!.used_at, null, 'nothing consumed')
})

t.test('#111 POST /refresh without a cookie → 400 invalid_grant', async (t) => {
  const { app, client } = await browserApp(t)
  await loginCookie(t, app, client.id)
  for (const cookie of [undefined, 'other=1', `${COOKIE}=`]) {
    const res = await app.app.inject({ method: 'POST', url: '/refresh', headers: { origin: APP_ORIGIN, ...(cookie ? { cookie } : {}) } })
    t.equal(res.statusCode, 400, String(cookie))
    t.equal(res.json().error, 'invalid_grant')
    t.same(Object.keys(res.json()).sort(), ['error', 'error_description'])
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(res.headers['set-cookie'], undefined)
  }
})

t.test('#61 a garbage or unknown cookie → 400 invalid_grant, no 500', async (t) => {
  const { app, client } = await browserApp(t)
  await loginCookie(t, app, client.id)
  for (const value of ['garbage', 'tsr_' + 'A'.repeat(43), '%E2%82%AC', 'x'.repeat(3000)]) {
    const res = await post(app, '/refresh', value)
    t.equal(res.statusCode, 400, value.slice(0, 20))
    t.same(res.json(), invalidGrant)
  }
  t.equal((await families(app))[0]!.revoked_at, null)
})

t.test("a body client's refresh token sent as the cookie → 400 invalid_grant, not consumed", async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const api = await app.createClient({ allowedOrigins: [APP_ORIGIN] })
  const tokens = await passwordLogin(app, api, 'alice', PASSWORD)
  const res = await post(app, '/refresh', tokens.refresh_token)
  t.equal(res.statusCode, 400)
  t.same(res.json(), invalidGrant)
  t.equal(res.headers['set-cookie'], undefined)
  t.equal((await tokenRows(app))[0]!.used_at, null)
})

t.test('#114 two refresh cookies of the same name → 400 invalid_request, nothing consumed', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  for (const cookie of [`${COOKIE}=${value}; ${COOKIE}=${value}`, `${COOKIE}=tsr_${'B'.repeat(43)}; ${COOKIE}=${value}`, `${COOKIE}=${value}; other=1; ${COOKIE}=injected`]) {
    const res = await app.app.inject({ method: 'POST', url: '/refresh', headers: { origin: APP_ORIGIN, cookie } })
    t.equal(res.statusCode, 400)
    t.same(res.json(), { error: 'invalid_request', error_description: 'more than one refresh cookie was sent' })
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(res.headers['set-cookie'], undefined)
  }
  t.equal((await tokenRows(app))[0]!.used_at, null)
  t.equal((await families(app))[0]!.revoked_at, null)
  t.equal((await post(app, '/refresh', value)).statusCode, 200)
})

t.test('#64 parallel /refresh with one cookie: one rotation, every tab gets the same new cookie', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  const results = await Promise.all(Array.from({ length: 10 }, () => post(app, '/refresh', value)))
  t.same(results.map((r) => r.statusCode), Array(10).fill(200), 'all 200: the others are retries within the grace window')
  const values = new Set(results.map((r) => cookieValue(t, r)))
  t.equal(values.size, 1, 'one new cookie value for all')
  t.not([...values][0], value, 'the cookie rotated')
  const successors = await app.database.db.selectFrom('refresh_token').select('id').where('parent_id', 'is not', null).execute()
  t.equal(successors.length, 1, 'one successor row')
})

t.test('#64 parallel /refresh with one cookie and no grace window: exactly one 200; losers send no Set-Cookie at all', async (t) => {
  const { app, client } = await browserApp(t, { REFRESH_GRACE_SECONDS: '0' })
  const value = await loginCookie(t, app, client.id)
  const results = await Promise.all(Array.from({ length: 10 }, () => post(app, '/refresh', value)))
  const statuses = results.map((r) => r.statusCode)
  t.equal(statuses.filter((s) => s >= 500).length, 0, 'no 5xx')
  t.equal(statuses.filter((s) => s === 200).length, 1, 'exactly one winner')
  const winner = results.find((r) => r.statusCode === 200)!
  t.not(cookieValue(t, winner), value, 'the winner rotates the cookie')
  for (const loser of results.filter((r) => r.statusCode !== 200)) {
    t.equal(loser.statusCode, 400)
    t.same(loser.json(), invalidGrant)
    t.equal(loser.headers['set-cookie'], undefined, 'no Set-Cookie header, not even a clearing one')
  }
  const successors = await app.database.db.selectFrom('refresh_token').select('id').where('parent_id', 'is not', null).execute()
  t.equal(successors.length, 1, 'one successor row')
})

t.test('#77 POST /logout with cookie and Origin → 204, both cookies cleared, family revoked, old cookie dead', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  const res = await post(app, '/logout', value)
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.equal(res.headers['cache-control'], 'no-store')
  const cookies = refreshCookies(res)
  t.same([...cookies.keys()].sort(), ['/logout', '/refresh'], 'cleared on both paths')
  for (const [path, c] of cookies) {
    t.equal(c.value, '', `${path}: empty value`)
    t.equal(c.attrs.get('max-age'), '0', `${path}: Max-Age=0`)
    t.ok(c.attrs.has('httponly') && c.attrs.has('secure'), `${path}: same attributes`)
    t.equal(c.attrs.get('samesite'), 'Strict')
    t.notOk(c.attrs.has('domain'))
  }
  const fams = await families(app)
  t.not(fams[0]!.revoked_at, null, 'family revoked in the database')
  t.equal(fams[0]!.revoked_reason, 'logout')
  const events = await app.database.db.selectFrom('audit_event').select('type').where('type', '=', 'refresh_token.revoked').execute()
  t.equal(events.length, 1)
  const replay = await post(app, '/refresh', value)
  t.equal(replay.statusCode, 400)
  t.same(replay.json(), invalidGrant)
  t.equal(replay.headers['set-cookie'], undefined)
})

t.test('#77 logout revokes only its own family (another login of the same user keeps working)', async (t) => {
  const { app, client } = await browserApp(t)
  const a = await loginCookie(t, app, client.id)
  const b = await loginCookie(t, app, client.id)
  t.equal((await post(app, '/logout', a)).statusCode, 204)
  t.equal((await post(app, '/refresh', b)).statusCode, 200)
})

t.test('#78 /logout with a foreign, null or missing Origin → 403 and the family stays live', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  for (const headers of [{ origin: EVIL }, { origin: 'null' }, {}, { 'sec-fetch-site': 'cross-site' }] as Record<string, string>[]) {
    const res = await post(app, '/logout', value, headers)
    t.equal(res.statusCode, 403, JSON.stringify(headers))
    t.same(res.json(), forbidden)
    t.equal(res.headers['set-cookie'], undefined, 'the cookie is not cleared')
  }
  const fams = await families(app)
  t.equal(fams[0]!.revoked_at, null, 'family live')
  t.equal((await post(app, '/refresh', value)).statusCode, 200, 'and still refreshes')
})

t.test('#110 GET /logout → 405 with Allow: POST', async (t) => {
  const { app, client } = await browserApp(t)
  const value = await loginCookie(t, app, client.id)
  const res = await app.app.inject({ method: 'GET', url: '/logout', headers: { origin: APP_ORIGIN, cookie: `${COOKIE}=${value}` } })
  t.equal(res.statusCode, 405)
  t.equal(res.headers.allow, 'POST')
  t.equal((await families(app))[0]!.revoked_at, null)
})

t.test('#112 CORS preflight on /refresh: the app origin gets itself back with credentials', async (t) => {
  const { app } = await browserApp(t)
  const res = await app.app.inject({
    method: 'OPTIONS',
    url: '/refresh',
    headers: { origin: APP_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
  })
  t.equal(res.statusCode, 204)
  t.equal(res.headers['access-control-allow-origin'], APP_ORIGIN)
  t.equal(res.headers['access-control-allow-credentials'], 'true')
  t.match(String(res.headers.vary), /Origin/)
  t.match(String(res.headers['access-control-allow-methods']), /POST/)
})

t.test('#112 CORS from a foreign origin: no Access-Control-Allow-Origin, never *', async (t) => {
  const { app, client } = await browserApp(t)
  const pre = await app.app.inject({ method: 'OPTIONS', url: '/refresh', headers: { origin: EVIL, 'access-control-request-method': 'POST' } })
  t.not(pre.statusCode, 204)
  t.equal(pre.headers['access-control-allow-origin'], undefined)
  t.equal(pre.headers['access-control-allow-credentials'], undefined)

  // Never `*` on a credentialed endpoint, whatever the origin.
  const value = await loginCookie(t, app, client.id)
  const responses = []
  for (const origin of [APP_ORIGIN, EVIL, 'null']) {
    for (const url of ['/login', '/refresh', '/logout', '/token', '/userinfo', '/revoke']) {
      responses.push({ origin, url, res: await app.app.inject({ method: 'OPTIONS', url, headers: { origin, 'access-control-request-method': 'POST' } }) })
    }
    responses.push({ origin, url: '/refresh POST', res: await post(app, '/refresh', 'tsr_' + 'C'.repeat(43), { origin }) })
  }
  for (const { origin, url, res } of responses) {
    const acao = res.headers['access-control-allow-origin']
    t.not(acao, '*', `${url} from ${origin}`)
    if (origin !== APP_ORIGIN) t.equal(acao, undefined, `${url} from ${origin}: no ACAO`)
    else t.equal(acao, APP_ORIGIN, `${url} from the app: its own origin`)
  }
  t.equal((await tokenRows(app))[0]!.used_at, null, 'the preflights consumed nothing')
  t.ok(value)
})

t.test('a body-delivery (API) client gets its refresh token in the JSON body and no Set-Cookie', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const api = await app.createClient()
  const viaLogin = await app.app.inject({ method: 'POST', url: '/login', payload: { username: 'alice', password: PASSWORD, client_id: api.id, client_secret: api.secret } })
  t.equal(viaLogin.statusCode, 200)
  t.equal(viaLogin.headers['set-cookie'], undefined)
  t.equal(viaLogin.headers['cache-control'], 'no-store')
  t.match(viaLogin.json().refresh_token, /^tsr_[A-Za-z0-9_-]{43}$/)
  const refreshed = await app.app.inject({
    method: 'POST',
    url: '/token',
    headers: { ...FORM, authorization: basic(api.id, api.secret!) },
    payload: form({ grant_type: 'refresh_token', refresh_token: viaLogin.json().refresh_token }),
  })
  t.equal(refreshed.statusCode, 200)
  t.equal(refreshed.headers['set-cookie'], undefined)
  t.match(refreshed.json().refresh_token, /^tsr_[A-Za-z0-9_-]{43}$/)
})
