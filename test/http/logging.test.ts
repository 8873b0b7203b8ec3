import { setTimeout as sleep } from 'node:timers/promises'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { QUIET_ROUTES } from '../../src/app.js'
import { APP_ORIGIN, basic, FORM, form, TEST_KEK, testApp, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery staple'
const WRONG_PASSWORDS = ['correct horse battery stapler', 'Tr0ub4dor&3-guess', 'hunter2-but-longer']
const INJECTED_USERNAME = 'alice\r\n{"level":"error","msg":"forged"}'

interface Sent {
  method: string
  path: string
  status: number
}

/** Runs a realistic session and returns every secret it saw, every request it made, and the app. */
async function session(t: Test) {
  const app = await testApp(t)
  const sent: Sent[] = []
  const secrets = new Map<string, string>()
  const keep = (name: string, value: string | undefined) => {
    if (!value) throw new Error(`no ${name}`)
    secrets.set(name, value)
  }
  const send = async (opts: InjectOptions & { method: string; url: string }): Promise<LightMyRequestResponse> => {
    const res = await app.app.inject(opts)
    sent.push({ method: opts.method, path: opts.url.split('?')[0]!, status: res.statusCode })
    return res
  }
  const token = (params: Record<string, string>, headers: Record<string, string> = {}) => send({ method: 'POST', url: '/token', headers: { ...FORM, ...headers }, payload: form(params) })
  const expect = (res: LightMyRequestResponse, status: number | number[], what: string) => {
    if (![status].flat().includes(res.statusCode)) throw new Error(`${what}: ${res.statusCode} ${res.body}`)
    return res
  }
  const keepTokens = (prefix: string, body: { access_token?: string; refresh_token?: string; id_token?: string }) => {
    keep(`${prefix} access token`, body.access_token)
    if (body.refresh_token !== undefined) keep(`${prefix} refresh token`, body.refresh_token)
    if (body.id_token !== undefined) keep(`${prefix} id token`, body.id_token)
  }

  keep('password', PASSWORD)
  WRONG_PASSWORDS.forEach((p, i) => keep(`wrong password ${i}`, p))
  keep('KEK', TEST_KEK)
  keep('KEK base64 part', TEST_KEK.slice(TEST_KEK.indexOf(':') + 1))

  await app.createUser('alice', PASSWORD)
  const api = await app.createClient()
  const service = await app.createClient({ grantTypes: ['client_credentials'], scopes: ['read'] })
  const spa = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'], refreshDelivery: 'cookie', allowedOrigins: [APP_ORIGIN] })
  keep('api client secret', api.secret)
  keep('service client secret', service.secret)
  const apiAuth = { authorization: basic(api.id, api.secret!) }

  // Password login and refresh, Basic auth.
  const login = expect(await token({ grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'openid read' }, apiAuth), 200, 'password login').json()
  keepTokens('login', login)
  const refreshed = expect(await token({ grant_type: 'refresh_token', refresh_token: login.refresh_token }, apiAuth), 200, 'refresh').json()
  keepTokens('refreshed', refreshed)

  // client_credentials with Basic and with client_secret_post.
  keepTokens('cc basic', expect(await token({ grant_type: 'client_credentials' }, { authorization: basic(service.id, service.secret!) }), 200, 'cc basic').json())
  keepTokens('cc post', expect(await token({ grant_type: 'client_credentials', client_id: service.id, client_secret: service.secret! }), 200, 'cc post').json())

  // Browser login: JSON, Origin, refresh token only in the cookie.
  const spaLogin = expect(
    await send({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json', origin: APP_ORIGIN }, payload: { username: 'alice', password: PASSWORD, client_id: spa.id, scope: 'openid read' } }),
    200,
    '/login',
  )
  keepTokens('spa login', spaLogin.json())
  const cookie1 = spaLogin.cookies.find((c) => c.value !== '')!
  keep('first cookie value', cookie1.value)
  const cookieName = cookie1.name
  const spaRefresh = expect(await send({ method: 'POST', url: '/refresh', headers: { origin: APP_ORIGIN, cookie: `${cookieName}=${cookie1.value}` } }), 200, '/refresh')
  keepTokens('spa refresh', spaRefresh.json())
  const cookie2 = spaRefresh.cookies.find((c) => c.value !== '')!
  keep('second cookie value', cookie2.value)

  // Bearer and client-authenticated endpoints.
  expect(await send({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${refreshed.access_token}` } }), 200, '/userinfo')
  const forged = refreshed.access_token.slice(0, -4) + (refreshed.access_token.endsWith('AAAA') ? 'BBBB' : 'AAAA')
  keep('forged access token', forged)
  expect(await send({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${forged}` } }), 401, '/userinfo forged')
  expect(await send({ method: 'POST', url: '/introspect', headers: { ...FORM, ...apiAuth }, payload: form({ token: refreshed.access_token }) }), 200, '/introspect')
  expect(await send({ method: 'POST', url: '/introspect', headers: FORM, payload: form({ token: refreshed.access_token, client_id: api.id, client_secret: api.secret! }) }), 200, '/introspect post')
  expect(await send({ method: 'POST', url: '/revoke', headers: { ...FORM, ...apiAuth }, payload: form({ token: login.access_token, token_type_hint: 'access_token' }) }), 200, '/revoke AT')
  expect(await send({ method: 'POST', url: '/revoke', headers: { ...FORM, ...apiAuth }, payload: form({ token: refreshed.refresh_token }) }), 200, '/revoke RT')

  // Failures: wrong passwords, unknown user, a wrong client secret, reuse, credentials in the URL.
  expect(await token({ grant_type: 'password', username: 'alice', password: WRONG_PASSWORDS[0]! }, apiAuth), 400, 'wrong password')
  expect(await token({ grant_type: 'password', username: 'mallory', password: WRONG_PASSWORDS[1]! }, apiAuth), 400, 'unknown user')
  expect(
    await send({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json', origin: APP_ORIGIN }, payload: { username: 'alice', password: WRONG_PASSWORDS[2]!, client_id: spa.id } }),
    400,
    '/login wrong password',
  )
  expect(
    await send({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json', origin: APP_ORIGIN }, payload: { username: INJECTED_USERNAME, password: PASSWORD, client_id: spa.id } }),
    400,
    '/login injected username',
  )
  expect(await token({ grant_type: 'password', username: INJECTED_USERNAME, password: WRONG_PASSWORDS[0]! }, apiAuth), 400, 'injected username on /token')
  const wrongSecret = api.secret!.slice(0, -6) + 'XXXXXX'
  keep('wrong client secret', wrongSecret)
  expect(await token({ grant_type: 'client_credentials' }, { authorization: basic(api.id, wrongSecret) }), 401, 'wrong client secret')
  expect(await token({ grant_type: 'refresh_token', refresh_token: login.refresh_token }, apiAuth), 400, 'reuse')
  expect(
    await send({ method: 'POST', url: `/token?refresh_token=${refreshed.refresh_token}&client_secret=${api.secret}`, headers: FORM, payload: form({ grant_type: 'refresh_token', client_id: api.id }) }),
    400,
    'refresh token in the query',
  )
  expect(await send({ method: 'POST', url: `/login?password=${encodeURIComponent(PASSWORD)}`, headers: { 'content-type': 'application/json', origin: APP_ORIGIN }, payload: { username: 'alice', password: PASSWORD, client_id: spa.id } }), 400, 'password in the /login query')
  // Refused either way (no Bearer header); the status is the userinfo tests' business.
  expect(await send({ method: 'GET', url: `/userinfo?access_token=${refreshed.access_token}` }), [400, 401], 'access token in the query')
  expect(await send({ method: 'GET', url: '/x%0D%0A%7B%22level%22%3A%22error%22%7D' }), 404, 'CRLF in the path')

  expect(await send({ method: 'POST', url: '/logout', headers: { origin: APP_ORIGIN, cookie: `${cookieName}=${cookie2.value}` } }), 204, '/logout')
  expect(await send({ method: 'GET', url: '/healthz' }), 200, '/healthz')
  expect(await send({ method: 'GET', url: '/readyz' }), 200, '/readyz')

  // The request line is written in onResponse; let the last one land.
  await sleep(50)
  return { app, sent, secrets }
}

/** Every piece of a secret worth looking for: the whole value and its random parts. */
function needles(secrets: Map<string, string>): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const [name, value] of secrets) {
    out.push([name, value])
    const parts = value.split('.')
    if (parts.length === 3) out.push([`${name} signature`, parts[2]!], [`${name} payload`, parts[1]!])
    const m = /^(?:tsr_|tessera_cs_)([A-Za-z0-9_-]{43})$/.exec(value)
    if (m) out.push([`${name} random part`, m[1]!])
  }
  return out
}

function parsed(app: TestApp): Array<Record<string, unknown>> {
  return app.logs.map((l) => JSON.parse(l) as Record<string, unknown>)
}

t.test('no secret of a whole session appears in any log line (#121, #45)', async (t) => {
  const { app, secrets } = await session(t)
  t.ok(secrets.size >= 20, `${secrets.size} secrets collected`)
  t.ok(app.logs.length > 20, 'the app did log')
  const all = app.logs.join('\n')
  for (const [name, needle] of needles(secrets)) t.notOk(all.includes(needle), `no ${name} in the logs`)
  t.notOk(/tsr_[A-Za-z0-9_-]{43}/.test(all), 'nothing shaped like a refresh token')
  t.notOk(/tessera_cs_[A-Za-z0-9_-]{20,}/.test(all), 'nothing shaped like a client secret')
  t.notOk(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(all), 'nothing shaped like a JWT')
})

t.test('every request writes exactly one "request" line with method, path, status and ms', async (t) => {
  const { app, sent: all } = await session(t)
  // Successful JWKS, discovery, probe and metrics hits are logged at debug (test below).
  const sent = all.filter((s) => !(QUIET_ROUTES.has(String(s.path)) && Number(s.status) < 400))
  t.ok(all.length - sent.length >= 2, 'the session did hit quiet routes')
  const lines = parsed(app).filter((l) => l.msg === 'request')
  t.equal(lines.length, sent.length, `${sent.length} requests, ${lines.length} request lines`)
  for (const l of lines) {
    t.type(l.method, 'string')
    t.type(l.path, 'string')
    t.type(l.status, 'number')
    t.type(l.ms, 'number')
    t.notOk(String(l.path).includes('?'), `no query string in ${String(l.path)}`)
  }
  const key = (s: { method?: unknown; path?: unknown; status?: unknown }) => `${String(s.method)} ${String(s.path)} ${String(s.status)}`
  t.same(lines.map(key).sort(), sent.map(key).sort(), 'one line per request, with its outcome')
})

t.test('JWKS, discovery, probes and metrics: successes logged at debug, failures at info', async (t) => {
  const quietGets = ['/.well-known/jwks.json', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/healthz', '/readyz', '/metrics']
  for (const level of ['info', 'debug']) {
    const app = await testApp(t, { env: { LOG_LEVEL: level } })
    for (const url of quietGets) t.equal((await app.app.inject({ method: 'GET', url })).statusCode, 200, `${level}: GET ${url}`)
    t.equal((await app.app.inject({ method: 'POST', url: '/.well-known/jwks.json' })).statusCode, 405)
    t.equal((await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'if-none-match': '"x"' } })).statusCode, 200)
    const lines = app.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request')
    const logged = lines.map((l) => `${String(l.method)} ${String(l.path)} ${String(l.status)}`)
    t.ok(logged.includes('POST /.well-known/jwks.json 405'), `${level}: a failure on a quiet route is logged`)
    const quiet = lines.filter((l) => l.status === 200)
    if (level === 'info') t.same(quiet, [], 'info: no line for successful quiet requests')
    else {
      t.equal(quiet.length, quietGets.length + 1, 'debug: every successful request has its line')
      t.ok(quiet.every((l) => l.level === 20), 'at debug level')
    }
  }
})

t.test('every log line is one JSON object: a username with CR LF cannot forge a line (#123)', async (t) => {
  const { app } = await session(t)
  for (const line of app.logs) {
    let obj: unknown
    t.doesNotThrow(() => {
      obj = JSON.parse(line)
    }, `parses: ${line.slice(0, 80)}`)
    t.type(obj, 'object')
    t.type((obj as { level?: unknown }).level, 'number', 'pino levels are numbers; a forged "level":"error" is not a line')
  }
  t.notOk(app.logs.some((l) => l.startsWith('{"level":"error"')), 'no forged line')
  t.notOk(app.logs.some((l) => l.includes('"msg":"forged"') && !l.includes('\\r\\n')), 'if the username is logged, CR LF is escaped')
  t.notOk(parsed(app).some((l) => l.msg === 'forged'), 'no line carries the forged message')
  t.equal(parsed(app).filter((l) => (l.level as number) >= 50).length, 0, 'a normal session logs no errors')
})

t.test('/healthz and /readyz bodies hold no secrets and no configuration (#125)', async (t) => {
  const { app, secrets } = await session(t)
  const healthz = await app.app.inject({ method: 'GET', url: '/healthz' })
  const readyz = await app.app.inject({ method: 'GET', url: '/readyz' })
  t.equal(healthz.statusCode, 200)
  t.same(healthz.json(), { status: 'ok' })
  t.equal(healthz.headers['cache-control'], 'no-store')
  t.equal(readyz.statusCode, 200)
  t.same(readyz.json(), { status: 'ready' })
  t.equal(readyz.headers['cache-control'], 'no-store')
  for (const body of [healthz.body, readyz.body]) {
    for (const [name, needle] of needles(secrets)) t.notOk(body.includes(needle), `no ${name}`)
    t.notOk(body.includes(new URL(app.databaseUrl!).host), 'no database address')
    t.notOk(body.includes('alice'), 'no user data')
  }
})
