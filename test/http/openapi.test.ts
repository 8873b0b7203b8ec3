// GET /openapi.json (issue 14): the document validates as OpenAPI 3.1, lists every route the app
// registers (with a summary and responses), and real answers validate against the response schema
// the document gives for their status.
import { METHODS } from 'node:http'
import t, { type Test } from 'tap'
import { Validator } from '@seriousme/openapi-schema-validator'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { basic, FORM, form, ISSUER, testApp, tokenRequest, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'

type Operation = { summary?: string; tags?: string[]; responses?: Record<string, { description: string; content?: Record<string, { schema: unknown }> }> }
type Doc = { openapi: string; info: { title: string; version: string }; servers: { url: string }[]; paths: Record<string, Record<string, Operation>>; components: Record<string, Record<string, unknown>> }

const app = await testApp(t)
const docRes = await app.app.inject({ method: 'GET', url: '/openapi.json' })
const doc = docRes.json() as Doc
const pathOf = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')

// The document as a schema registry: response schemas are compiled by their JSON pointer.
const ajv = new Ajv2020({ strict: false, allErrors: true })
addFormats.default(ajv)
ajv.addSchema(doc, 'openapi')
const pointer = (...parts: string[]) => 'openapi#/' + parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')

type Reply = Awaited<ReturnType<TestApp['app']['inject']>>

/** Checks `res` against the document's response for (method, path template, status). */
function conforms(tt: Test, method: string, path: string, res: Reply, expectStatus: number) {
  tt.test(`${method} ${path} → ${expectStatus}`, async (tt) => {
    tt.equal(res.statusCode, expectStatus, res.statusCode === expectStatus ? 'status' : res.body.slice(0, 200))
    const op = doc.paths[path]?.[method.toLowerCase()]
    if (!op) return tt.fail(`no operation ${method} ${path}`)
    const response = op.responses?.[String(res.statusCode)]
    if (!response) return tt.fail(`${method} ${path} documents no ${res.statusCode}`)
    if (!response.content) return tt.equal(res.body, '', 'no body, as documented')
    const mediaType = String(res.headers['content-type'] ?? '').split(';')[0]!.trim()
    tt.ok(response.content[mediaType], `documents ${mediaType}`)
    if (!mediaType.endsWith('json')) return tt.type(res.body, 'string')
    const validate = ajv.getSchema(pointer('paths', path, method.toLowerCase(), 'responses', String(res.statusCode), 'content', mediaType, 'schema'))!
    tt.ok(validate(res.json()), `${res.body.slice(0, 200)} ${ajv.errorsText(validate.errors)}`)
  })
}

/** Checks an answer no operation lists (405, unknown path 404) against `#/components/schemas/Error`. */
function isError(tt: Test, res: Reply, status: number) {
  tt.equal(res.statusCode, status)
  const validate = ajv.getSchema('openapi#/components/schemas/Error')!
  tt.ok(validate(res.json()), res.body)
}

t.test('the document validates as OpenAPI 3.1', async (t) => {
  t.equal(docRes.statusCode, 200)
  t.match(docRes.headers['content-type'], /^application\/json/)
  t.equal(doc.openapi, '3.1.0')
  t.equal(doc.info.title, 'tessera')
  t.match(doc.info.version, /^\d+\.\d+\.\d+/)
  t.same(doc.servers, [{ url: ISSUER }])
  t.same(Object.keys(doc.components.securitySchemes!).sort(), ['bearer', 'client_basic'])
  const result = await new Validator().validate(doc as never)
  t.ok(result.valid, JSON.stringify(result.errors, null, 1)?.slice(0, 2000))
  // Documentation-only schemas are moved into place, never left under their own key.
  t.notMatch(docRes.body, /documentOnly/)
})

/**
 * Every (method, path) the app's router serves, from fastify's own route tree (`printRoutes`),
 * independent of @fastify/swagger's collection.
 */
function registeredRoutes(): { method: string; url: string }[] {
  const out: { method: string; url: string }[] = []
  const stack: string[] = []
  for (const line of app.app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^(.*?)(?:├── |└── )(\S+) \(([^)]+)\)$/.exec(line)
    if (!m) continue
    const depth = m[1]!.length / 4
    stack.length = depth
    const url = (stack[depth - 1] ?? '') + m[2]!
    stack[depth] = url
    for (const method of m[3]!.split(', ')) out.push({ method, url })
  }
  return out
}

t.test('every registered route is in the document, with a summary and its responses', async (t) => {
  const routes = registeredRoutes()
  t.ok(routes.length > 200, `${routes.length} routes`)
  const documented = new Map<string, string[]>()
  for (const [path, ops] of Object.entries(doc.paths)) documented.set(path, Object.keys(ops).map((m) => m.toUpperCase()))
  let checked = 0
  for (const { method, url } of routes) {
    // HEAD is the GET without a body; a method Node's HTTP parser does not know never reaches a route.
    if (method === 'HEAD' || !METHODS.includes(method)) continue
    const path = pathOf(url)
    const op = doc.paths[path]?.[method.toLowerCase()]
    if (op) {
      checked++
      t.ok(op.summary, `${method} ${url} has a summary`)
      t.ok(op.tags?.length, `${method} ${url} has tags`)
      const statuses = Object.keys(op.responses ?? {})
      t.ok(statuses.length > 0 && !statuses.every((s) => op.responses![s]!.description === 'Default Response'), `${method} ${url} documents its responses`)
      continue
    }
    // Not in the document: only the 405 catch-all (`methodNotAllowed`), whose Allow header names
    // exactly the documented methods. A real endpoint left out answers something else and fails.
    // (QUERY carries a body, parsed before the handler runs: an empty one would be refused first.)
    const body = method === 'QUERY' ? { headers: { 'content-type': 'application/json' }, payload: '{}' } : {}
    const res = await app.app.inject({ method: method as 'GET', url: url.replace(/:[A-Za-z0-9_]+/g, 'x'), ...body })
    t.equal(res.statusCode, 405, `${method} ${url} is in the document or answers 405`)
    const allowed = (documented.get(path) ?? []).filter((m) => m !== 'OPTIONS' || path !== '/.well-known/jwks.json')
    t.same(String(res.headers.allow).split(', ').sort(), allowed.sort(), `the Allow header of ${url} lists the documented methods`)
  }
  t.ok(checked >= 40, `${checked} operations`)
  // And nothing in the document that the app does not serve.
  const served = new Set(routes.map((r) => `${r.method} ${pathOf(r.url)}`))
  for (const [path, ops] of Object.entries(doc.paths)) for (const m of Object.keys(ops)) t.ok(served.has(`${m.toUpperCase()} ${path}`), `${m} ${path} is served`)
})

t.test('GET /openapi.json is public and cacheable with an ETag', async (t) => {
  t.match(docRes.headers['cache-control'], /^public, max-age=\d+$/)
  t.match(docRes.headers.etag, /^"[A-Za-z0-9_-]{32}"$/)
  const again = await app.app.inject({ method: 'GET', url: '/openapi.json', headers: { 'if-none-match': docRes.headers.etag as string } })
  t.equal(again.statusCode, 304)
  t.equal(again.body, '')
  const head = await app.app.inject({ method: 'HEAD', url: '/openapi.json' })
  t.equal(head.statusCode, 200)
  isError(t, await app.app.inject({ method: 'POST', url: '/openapi.json' }), 405)
})

t.test('real answers validate against the document', async (t) => {
  const user = await app.createUser('alice', PASSWORD)
  await app.createUser('bob', PASSWORD)
  const web = await app.createClient({ name: 'Web app', grantTypes: ['password', 'refresh_token', 'client_credentials', 'authorization_code'], redirectUris: ['https://app.example.com/cb'] })
  const pub = await app.createClient({ name: 'Public', isPublic: true, grantTypes: ['password', 'refresh_token'] })
  const adminClient = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const adminRes = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'tessera:admin' }, adminClient)
  conforms(t, 'POST', '/token', adminRes, 200)
  const admin = adminRes.json().access_token as string
  const pw = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'openid read' }, web)
  conforms(t, 'POST', '/token', pw, 200)
  const tokens = pw.json() as { access_token: string; refresh_token: string }
  conforms(t, 'POST', '/token', await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, web), 200)
  conforms(t, 'POST', '/token', await tokenRequest(app, { grant_type: 'magic' }, web), 400)
  conforms(t, 'POST', '/token', await tokenRequest(app, {}, web), 400)
  conforms(t, 'POST', '/token', await tokenRequest(app, { grant_type: 'client_credentials' }, { id: web.id, secret: 'wrong' }), 401)
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
  const login = await app.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json' }, payload: { username: 'alice', password: PASSWORD, client_id: web.id, client_secret: web.secret, scope: 'openid' } })
  conforms(t, 'POST', '/login', login, 200)
  conforms(t, 'POST', '/login', await app.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json' }, payload: { password: PASSWORD, client_id: web.id } }), 400)
  conforms(t, 'POST', '/login', await app.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json' }, payload: { username: 'alice', password: PASSWORD, client_id: 'nobody', client_secret: 'x' } }), 401)
  const fresh = (await tokenRequest(app, { grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'openid' }, web)).json() as { access_token: string }
  const introspect = (token: string, who: { id: string; secret?: string | undefined }) =>
    app.app.inject({ method: 'POST', url: '/introspect', headers: { ...FORM, ...(who.secret ? { authorization: basic(who.id, who.secret) } : {}) }, payload: form(who.secret ? { token } : { token, client_id: who.id }) })
  conforms(t, 'POST', '/introspect', await introspect(fresh.access_token, web), 200)
  conforms(t, 'POST', '/introspect', await introspect(tokens.refresh_token, web), 200)
  conforms(t, 'POST', '/introspect', await introspect('nonsense', web), 200)
  conforms(t, 'POST', '/introspect', await introspect('nonsense', pub), 401)
  conforms(t, 'GET', '/userinfo', await app.app.inject({ method: 'GET', url: '/userinfo', headers: bearer(fresh.access_token) }), 200)
  conforms(t, 'POST', '/userinfo', await app.app.inject({ method: 'POST', url: '/userinfo', headers: bearer(fresh.access_token) }), 200)
  conforms(t, 'GET', '/userinfo', await app.app.inject({ method: 'GET', url: '/userinfo' }), 401)
  conforms(t, 'POST', '/revoke', await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(web.id, web.secret!) }, payload: form({ token: fresh.access_token }) }), 200)
  conforms(t, 'POST', '/revoke', await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(web.id, web.secret!) }, payload: form({}) }), 400)
  conforms(t, 'POST', '/refresh', await app.app.inject({ method: 'POST', url: '/refresh' }), 400)
  conforms(t, 'POST', '/logout', await app.app.inject({ method: 'POST', url: '/logout' }), 400)
  const par = await app.app.inject({
    method: 'POST', url: '/par', headers: { ...FORM, authorization: basic(web.id, web.secret!) },
    payload: form({ response_type: 'code', redirect_uri: 'https://app.example.com/cb', scope: 'openid', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }),
  })
  conforms(t, 'POST', '/par', par, 201)
  conforms(t, 'POST', '/par', await app.app.inject({ method: 'POST', url: '/par', headers: { ...FORM, authorization: basic(web.id, web.secret!) }, payload: form({ response_type: 'code' }) }), 400)
  conforms(t, 'GET', '/authorize', await app.app.inject({ method: 'GET', url: `/authorize?client_id=${web.id}&request_uri=${encodeURIComponent(par.json().request_uri)}` }), 303)
  conforms(t, 'GET', '/authorize', await app.app.inject({ method: 'GET', url: '/authorize?client_id=nobody' }), 400)
  conforms(t, 'GET', '/session/end', await app.app.inject({ method: 'GET', url: '/session/end' }), 200)

  const discovery = await app.app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })
  conforms(t, 'GET', '/.well-known/openid-configuration', discovery, 200)
  // Response schemas document and never filter: members the schema does not list are still sent.
  t.equal(discovery.json().backchannel_logout_supported, true)
  t.equal(discovery.json().require_pushed_authorization_requests, false)
  conforms(t, 'GET', '/.well-known/oauth-authorization-server', await app.app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' }), 200)
  const jwks = await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  conforms(t, 'GET', '/.well-known/jwks.json', jwks, 200)
  conforms(t, 'GET', '/.well-known/jwks.json', await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'if-none-match': jwks.headers.etag as string } }), 304)
  conforms(t, 'GET', '/healthz', await app.app.inject({ method: 'GET', url: '/healthz' }), 200)
  conforms(t, 'GET', '/readyz', await app.app.inject({ method: 'GET', url: '/readyz' }), 200)
  conforms(t, 'GET', '/metrics', await app.app.inject({ method: 'GET', url: '/metrics' }), 200)
  conforms(t, 'GET', '/assets/pages.css', await app.app.inject({ method: 'GET', url: '/assets/pages.css' }), 200)

  const sessions = await app.app.inject({ method: 'GET', url: '/admin/users/alice/sessions?include=all', headers: bearer(admin) })
  conforms(t, 'GET', '/admin/users/{user}/sessions', sessions, 200)
  conforms(t, 'GET', '/admin/users/{user}/sessions', await app.app.inject({ method: 'GET', url: '/admin/users/alice/sessions' }), 401)
  conforms(t, 'GET', '/admin/users/{user}/sessions', await app.app.inject({ method: 'GET', url: '/admin/users/alice/sessions', headers: bearer(tokens.access_token) }), 403)
  conforms(t, 'GET', '/admin/users/{user}/sessions', await app.app.inject({ method: 'GET', url: '/admin/users/nobody/sessions', headers: bearer(admin) }), 404)
  conforms(t, 'GET', '/admin/users/{user}/sessions', await app.app.inject({ method: 'GET', url: '/admin/users/alice/sessions?limit=0', headers: bearer(admin) }), 400)
  const family = (sessions.json() as { sessions: { id: string }[] }).sessions[0]!.id
  conforms(t, 'DELETE', '/admin/sessions/{familyId}', await app.app.inject({ method: 'DELETE', url: `/admin/sessions/${family}`, headers: bearer(admin) }), 200)
  conforms(t, 'DELETE', '/admin/sessions/{familyId}', await app.app.inject({ method: 'DELETE', url: '/admin/sessions/00000000-0000-4000-8000-000000000000', headers: bearer(admin) }), 404)
  conforms(t, 'DELETE', '/admin/users/{user}/sessions', await app.app.inject({ method: 'DELETE', url: `/admin/users/${user.id}/sessions`, headers: bearer(admin) }), 200)
  conforms(t, 'GET', '/admin/audit', await app.app.inject({ method: 'GET', url: '/admin/audit?limit=50', headers: bearer(admin) }), 200)
  conforms(t, 'GET', '/admin/keys', await app.app.inject({ method: 'GET', url: '/admin/keys', headers: bearer(admin) }), 200)
  conforms(t, 'GET', '/admin/throttle', await app.app.inject({ method: 'GET', url: '/admin/throttle?account=alice', headers: bearer(admin) }), 200)
  conforms(t, 'GET', '/admin/throttle', await app.app.inject({ method: 'GET', url: '/admin/throttle', headers: bearer(admin) }), 400)
  conforms(t, 'GET', '/admin/users/{user}/sso-sessions', await app.app.inject({ method: 'GET', url: '/admin/users/alice/sso-sessions?include=all', headers: bearer(admin) }), 200)
  conforms(t, 'GET', '/admin/users/{user}/consents', await app.app.inject({ method: 'GET', url: '/admin/users/alice/consents', headers: bearer(admin) }), 200)

  // Answers no operation lists: another method (405), an unknown path (404).
  isError(t, await app.app.inject({ method: 'PUT', url: '/token' }), 405)
  isError(t, await app.app.inject({ method: 'GET', url: '/no/such/endpoint' }), 404)
  t.notOk(doc.paths['/token']!.put, 'a 405 catch-all is not an operation')
})
