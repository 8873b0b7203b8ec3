// POST /token (RFC 6749 §3.2): client_credentials, scope handling, and SECURITY.md rows #29–#45.
import t from 'tap'
import type { Test } from 'tap'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { disableClient } from '../../src/clients/disable-client.js'
import { basic, form, FORM, ISSUER, passwordLogin, testApp, tokenRequest, type TestApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

const API = 'https://api.example.com'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

type Reply = Awaited<ReturnType<TestApp['app']['inject']>>

/** POST /token with full control over URL, headers and body. */
function post(app: TestApp, opts: { url?: string; headers?: Record<string, string>; payload?: string | Buffer | object }) {
  return app.app.inject({ method: 'POST', url: opts.url ?? '/token', headers: opts.headers ?? {}, ...(opts.payload !== undefined ? { payload: opts.payload } : {}) })
}

/** RFC 6749 §5.1/§5.2 headers, on success and on error alike (#42). */
function checkTokenHeaders(t: Test, res: Reply): void {
  t.equal(res.headers['cache-control'], 'no-store', 'Cache-Control: no-store')
  t.equal(res.headers['pragma'], 'no-cache', 'Pragma: no-cache')
  t.match(res.headers['content-type'], /^application\/json(;|$)/, 'Content-Type: application/json')
}

/** An RFC 6749 §5.2 error: the status, exactly `error` + `error_description` (#44), no-store headers. */
function checkError(t: Test, res: Reply, status: number, error: string, description?: string | RegExp): void {
  t.equal(res.statusCode, status, `status ${status}`)
  checkTokenHeaders(t, res)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['error', 'error_description'], 'only error and error_description')
  t.equal(body.error, error)
  t.type(body.error_description, 'string')
  if (typeof description === 'string') t.equal(body.error_description, description)
  else if (description) t.match(body.error_description, description)
  t.notMatch(res.body, /"(access_token|refresh_token|id_token)"|\bat [^ ]+\.(ts|js):\d+/, 'no tokens, no stack trace')
}

/** Every 401 invalid_client after HTTP Basic carries a Basic challenge (RFC 6749 §5.2). */
function checkBasicChallenge(t: Test, res: Reply): void {
  checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  t.match(res.headers['www-authenticate'], /^Basic realm="tessera"/)
}

/** A verifier built from the published JWKS, the way a resource server would build it. */
async function jwks(app: TestApp) {
  const res = await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  if (res.statusCode !== 200) throw new Error(`GET /.well-known/jwks.json: ${res.statusCode}`)
  return createLocalJWKSet(res.json() as JSONWebKeySet)
}

t.test('client_credentials', async (t) => {
  t.test('Basic auth: an RFC 9068 access token that verifies against the published JWKS', async (t) => {
    const app = await testApp(t)
    const client = await app.createClient()
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
    t.equal(res.statusCode, 200)
    checkTokenHeaders(t, res)
    const body = res.json()
    // RFC 6749 §4.4.3: no refresh token; no id_token without a user.
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'scope', 'token_type'])
    t.equal(body.token_type, 'Bearer')
    t.equal(body.expires_in, 900)
    t.equal(body.scope, 'read write', 'default scope: everything the client may have, minus openid')

    const header = decodeProtectedHeader(body.access_token)
    t.equal(header.typ, 'at+jwt')
    t.equal(header.alg, 'ES256')
    t.type(header.kid, 'string')
    t.ok((header.kid as string).length > 0, 'kid present')

    const { payload, protectedHeader } = await jwtVerify(body.access_token, await jwks(app), {
      issuer: ISSUER,
      audience: API,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    })
    t.equal(protectedHeader.kid, header.kid)
    t.equal(payload.iss, ISSUER)
    t.equal(payload.sub, client.id, 'sub is the client itself')
    t.equal(payload.aud, API)
    t.equal(payload.client_id, client.id)
    t.equal(payload.scope, 'read write')
    t.match(payload.jti, UUID)
    t.type(payload.iat, 'number')
    t.equal(payload.exp! - payload.iat!, 900, 'lives 15 minutes')
    t.ok(Math.abs(payload.iat! - Date.now() / 1000) < 60, 'iat is now')
    t.notOk('roles' in payload)
  })

  t.test('client_secret_post works too, and every token gets its own jti', async (t) => {
    const app = await testApp(t)
    const client = await app.createClient()
    const post1 = await tokenRequest(app, { grant_type: 'client_credentials', client_id: client.id, client_secret: client.secret! })
    const post2 = await tokenRequest(app, { grant_type: 'client_credentials', client_id: client.id, client_secret: client.secret! })
    t.equal(post1.statusCode, 200)
    t.equal(post2.statusCode, 200)
    const keys = await jwks(app)
    const a = await jwtVerify(post1.json().access_token, keys, { issuer: ISSUER, audience: API })
    const b = await jwtVerify(post2.json().access_token, keys, { issuer: ISSUER, audience: API })
    t.not(a.payload.jti, b.payload.jti)
  })

  t.test('a client without an audience gets a token for the issuer', async (t) => {
    const app = await testApp(t)
    const client = await app.createClient({ audience: [] })
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
    t.equal(res.statusCode, 200)
    const { payload } = await jwtVerify(res.json().access_token, await jwks(app), { issuer: ISSUER, audience: ISSUER })
    t.equal(payload.aud, ISSUER)
  })
})

t.test('scope (#41)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()
  await app.createUser('alice', 'correct horse battery')

  t.test('a narrower scope is granted as asked, in the response and in the token', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, client)
    t.equal(res.statusCode, 200)
    t.equal(res.json().scope, 'read')
    const { payload } = await jwtVerify(res.json().access_token, await jwks(app), { issuer: ISSUER, audience: API })
    t.equal(payload.scope, 'read')
  })

  t.test('repeated scope values are granted once', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read  read write' }, client)
    t.equal(res.statusCode, 200)
    t.equal(res.json().scope, 'read write')
  })

  t.test('a scope the client does not have → invalid_scope', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read admin' }, client)
    checkError(t, res, 400, 'invalid_scope', 'scope not allowed: admin')
  })

  t.test('openid on client_credentials (no user) → invalid_scope', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'openid' }, client)
    checkError(t, res, 400, 'invalid_scope', 'scope not allowed: openid')
  })

  const illegal: Record<string, string> = {
    'double quote': 'read"',
    backslash: 'read\\write',
    'control character': 'read\x01',
    'tab separator': 'read\twrite',
    DEL: 'read\x7f',
    'non-ASCII': 'réad',
    'overlong scope token': 'r'.repeat(129),
  }
  for (const [name, scope] of Object.entries(illegal)) {
    t.test(`scope with an illegal ${name} → invalid_scope`, async (t) => {
      const res = await tokenRequest(app, { grant_type: 'client_credentials', scope }, client)
      checkError(t, res, 400, 'invalid_scope', 'the scope parameter is malformed')
    })
  }

  t.test('refresh: a narrower scope is granted, a wider one is invalid_scope and changes nothing', async (t) => {
    const first = await passwordLogin(app, client, 'alice', 'correct horse battery', 'openid read')
    const wider = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: first.refresh_token, scope: 'read write' }, client)
    checkError(t, wider, 400, 'invalid_scope', 'the requested scope exceeds the granted scope')
    const narrower = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: first.refresh_token, scope: 'read' }, client)
    t.equal(narrower.statusCode, 200, 'the token survived the refused request')
    t.equal(narrower.json().scope, 'read')
    t.notOk(narrower.json().id_token, 'no id_token without openid')
  })
})

t.test('GET /token → 405, no tokens (#29)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()
  const qs = new URLSearchParams({ grant_type: 'client_credentials', client_id: client.id, client_secret: client.secret! })
  for (const method of ['GET', 'PUT', 'DELETE'] as const) {
    t.test(method, async (t) => {
      const res = await app.app.inject({ method, url: `/token?${qs}` })
      checkError(t, res, 405, 'invalid_request', 'method not allowed: use POST')
      t.equal(res.headers.allow, 'POST')
    })
  }
})

t.test('grant_type (#30)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()

  t.test('missing → invalid_request', async (t) => {
    const res = await tokenRequest(app, { scope: 'read' }, client)
    checkError(t, res, 400, 'invalid_request', 'missing parameter: grant_type')
  })

  t.test('empty → invalid_request', async (t) => {
    const res = await tokenRequest(app, { grant_type: '' }, client)
    checkError(t, res, 400, 'invalid_request', 'missing parameter: grant_type')
  })

  t.test('unknown → unsupported_grant_type', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'foo' }, client)
    checkError(t, res, 400, 'unsupported_grant_type', 'unsupported grant_type: foo')
  })

  t.test('a grant Tessera does not serve (yet) → unsupported_grant_type', async (t) => {
    for (const grant_type of ['implicit', 'urn:ietf:params:oauth:grant-type:jwt-bearer']) {
      const res = await tokenRequest(app, { grant_type }, client)
      checkError(t, res, 400, 'unsupported_grant_type', `unsupported grant_type: ${grant_type}`)
    }
  })

  t.test('authorization_code for a client not registered for it → unauthorized_client (#31)', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'authorization_code', code: 'x' }, client)
    checkError(t, res, 400, 'unauthorized_client', 'this client may not use authorization_code')
  })

  t.test('a very long unknown grant_type is not echoed in full', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'x'.repeat(5000) }, client)
    checkError(t, res, 400, 'unsupported_grant_type')
    t.ok(res.json().error_description.length < 200)
  })
})

t.test('grant not allowed for the client → unauthorized_client (#31)', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', 'correct horse battery')

  t.test('password grant not enabled', async (t) => {
    const client = await app.createClient({ grantTypes: ['client_credentials'] })
    const res = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: 'correct horse battery' }, client)
    checkError(t, res, 400, 'unauthorized_client', 'this client may not use password')
    const events = await app.database.db.selectFrom('audit_event').select('type').where('client_id', '=', client.id).execute()
    t.same(events, [], 'the user was never looked at')
  })

  t.test('refresh_token grant not enabled', async (t) => {
    const client = await app.createClient({ grantTypes: ['client_credentials'] })
    const res = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: 'tsr_' + 'a'.repeat(43) }, client)
    checkError(t, res, 400, 'unauthorized_client', 'this client may not use refresh_token')
  })

  t.test('client_credentials not enabled for a confidential client', async (t) => {
    const client = await app.createClient({ grantTypes: ['password', 'refresh_token'] })
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
    checkError(t, res, 400, 'unauthorized_client', 'this client may not use client_credentials')
  })

  t.test('client_credentials for a public client', async (t) => {
    const client = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'] })
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
    checkError(t, res, 400, 'unauthorized_client', 'this client may not use client_credentials')
  })

  t.test('client_credentials for a public client, even if its row lists the grant (RFC 6749 §4.4)', async (t) => {
    const client = await app.createClient({ isPublic: true, grantTypes: ['client_credentials', 'password'] })
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
    checkError(t, res, 400, 'unauthorized_client', 'public clients cannot use client_credentials')
  })
})

t.test('duplicated and query-string parameters (#32, #45)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()
  const auth = { ...FORM, authorization: basic(client.id, client.secret!) }

  t.test('grant_type twice → invalid_request', async (t) => {
    const res = await post(app, { headers: auth, payload: 'grant_type=client_credentials&grant_type=client_credentials' })
    checkError(t, res, 400, 'invalid_request', 'parameter sent more than once: grant_type')
  })

  t.test('grant_type twice with different values → invalid_request', async (t) => {
    const res = await post(app, { headers: auth, payload: 'grant_type=client_credentials&grant_type=password' })
    checkError(t, res, 400, 'invalid_request', 'parameter sent more than once: grant_type')
  })

  t.test('refresh_token twice → invalid_request', async (t) => {
    const res = await post(app, { headers: auth, payload: `grant_type=refresh_token&refresh_token=tsr_${'a'.repeat(43)}&refresh_token=tsr_${'b'.repeat(43)}` })
    checkError(t, res, 400, 'invalid_request', 'parameter sent more than once: refresh_token')
  })

  t.test('scope twice → invalid_request', async (t) => {
    const res = await post(app, { headers: auth, payload: 'grant_type=client_credentials&scope=read&scope=write' })
    checkError(t, res, 400, 'invalid_request', 'parameter sent more than once: scope')
  })

  t.test('grant_type in the query and in the body → invalid_request', async (t) => {
    const res = await post(app, { url: '/token?grant_type=client_credentials', headers: auth, payload: 'grant_type=client_credentials' })
    checkError(t, res, 400, 'invalid_request', 'parameters must be sent in the request body, not the URL')
  })

  t.test('client credentials in the query string → invalid_request, no token', async (t) => {
    const qs = new URLSearchParams({ client_id: client.id, client_secret: client.secret! })
    const res = await post(app, { url: `/token?${qs}`, headers: FORM, payload: 'grant_type=client_credentials' })
    checkError(t, res, 400, 'invalid_request', 'parameters must be sent in the request body, not the URL')
    t.notOk(app.logs.some((l) => l.includes(client.secret!)), 'the secret is not logged')
  })

  t.test('refresh_token in the query → 400, and never logged', async (t) => {
    const app = await testApp(t)
    await app.createUser('alice', 'correct horse battery')
    const client = await app.createClient()
    const { refresh_token } = await passwordLogin(app, client, 'alice', 'correct horse battery')
    const headers = { ...FORM, authorization: basic(client.id, client.secret!) }

    const queryOnly = await post(app, { url: `/token?refresh_token=${refresh_token}`, headers, payload: 'grant_type=refresh_token' })
    checkError(t, queryOnly, 400, 'invalid_request', 'parameters must be sent in the request body, not the URL')
    const everythingInQuery = await post(app, { url: `/token?grant_type=refresh_token&refresh_token=${refresh_token}`, headers, payload: '' })
    t.equal(everythingInQuery.statusCode, 400)
    t.equal(everythingInQuery.json().error, 'invalid_request')
    const viaGet = await app.app.inject({ method: 'GET', url: `/token?grant_type=refresh_token&refresh_token=${refresh_token}`, headers: { authorization: basic(client.id, client.secret!) } })
    t.equal(viaGet.statusCode, 405)
    for (const res of [queryOnly, everythingInQuery, viaGet]) t.notOk(res.body.includes(refresh_token), 'the token is not echoed')

    const requestLines = app.logs.filter((l) => l.includes('"path":"/token"'))
    t.ok(requestLines.length >= 3, 'the requests were logged')
    t.notOk(app.logs.some((l) => l.includes(refresh_token)), 'no log line contains the refresh token')
    t.notOk(app.logs.some((l) => l.includes('refresh_token=')), 'no log line contains the query string')

    // A refused request changes nothing: the token still refreshes once, from the body.
    const ok = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token }, client)
    t.equal(ok.statusCode, 200)
    t.notOk(app.logs.some((l) => l.includes(refresh_token) || l.includes(ok.json().refresh_token)), 'nor after a successful refresh')
  })
})

t.test('empty and unknown parameters (#33, #34)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()

  t.test('scope= is treated as absent: the default scope', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: '' }, client)
    t.equal(res.statusCode, 200)
    t.equal(res.json().scope, 'read write')
  })

  t.test('scope of spaces only is treated as absent', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: '   ' }, client)
    t.equal(res.statusCode, 200)
    t.equal(res.json().scope, 'read write')
  })

  // RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted."

  t.test('client_id= (empty) next to Basic auth is treated as absent', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', client_id: '' }, client)
    t.equal(res.statusCode, 200, `got ${res.body}`)
  })

  t.test('client_secret= (empty) next to Basic auth is treated as absent', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', client_secret: '' }, client)
    t.equal(res.statusCode, 200, `got ${res.body}`)
  })

  t.test('client_secret= (empty) from a public client is treated as absent', async (t) => {
    const app = await testApp(t)
    await app.createUser('alice', 'correct horse battery')
    const publicClient = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'] })
    const res = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: 'correct horse battery', client_id: publicClient.id, client_secret: '' })
    t.equal(res.statusCode, 200, `got ${res.body}`)
  })

  t.test('client_secret= (empty) from a confidential client is no authentication → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', client_id: client.id, client_secret: '' })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('unknown extra parameters are ignored', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', foo: 'bar', resource_hint: 'x', nonce: 'n', 'weird[]': '1' }, client)
    t.equal(res.statusCode, 200)
    t.equal(res.json().scope, 'read write')
  })

  t.test('a parameter without a value (`&foo`) is ignored', async (t) => {
    const res = await post(app, { headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: 'grant_type=client_credentials&foo&bar=' })
    t.equal(res.statusCode, 200)
  })
})

t.test('content types (#35): form only, else 400 invalid_request (RFC 6749 §5.2)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()
  const authz = { authorization: basic(client.id, client.secret!) }
  const params = { grant_type: 'client_credentials' }

  t.test('JSON body → 400 invalid_request', async (t) => {
    const res = await post(app, { headers: { ...authz, 'content-type': 'application/json' }, payload: JSON.stringify(params) })
    checkError(t, res, 400, 'invalid_request', 'the body must be application/x-www-form-urlencoded')
  })

  t.test('text/plain → 400 invalid_request', async (t) => {
    const res = await post(app, { headers: { ...authz, 'content-type': 'text/plain' }, payload: form(params) })
    checkError(t, res, 400, 'invalid_request', 'the body must be application/x-www-form-urlencoded')
  })

  t.test('multipart/form-data → 400', async (t) => {
    const boundary = 'tessera-boundary'
    const payload = `--${boundary}\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nclient_credentials\r\n--${boundary}--\r\n`
    const res = await post(app, { headers: { ...authz, 'content-type': `multipart/form-data; boundary=${boundary}` }, payload })
    checkError(t, res, 400, 'invalid_request', 'unsupported content type')
  })

  t.test('no Content-Type → 400', async (t) => {
    const res = await post(app, { headers: authz, payload: Buffer.from(form(params)) })
    checkError(t, res, 400, 'invalid_request', 'unsupported content type')
  })

  t.test('no body at all → 400 invalid_request', async (t) => {
    const res = await post(app, { headers: authz })
    checkError(t, res, 400, 'invalid_request')
  })

  t.test('a form in a charset other than UTF-8 → 400', async (t) => {
    const res = await post(app, { headers: { ...authz, 'content-type': 'application/x-www-form-urlencoded; charset=iso-8859-1' }, payload: form(params) })
    checkError(t, res, 400, 'invalid_request', 'only UTF-8 form bodies are accepted')
  })

  t.test('a form with charset=UTF-8 is fine', async (t) => {
    const res = await post(app, { headers: { ...authz, 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' }, payload: form(params) })
    t.equal(res.statusCode, 200)
  })
})

t.test('body limits (#36)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()
  const headers = { ...FORM, authorization: basic(client.id, client.secret!) }

  t.test('a body over 64 KiB → 413', async (t) => {
    const payload = `grant_type=client_credentials&pad=${'a'.repeat(64 * 1024)}`
    const started = Date.now()
    const res = await post(app, { headers, payload })
    checkError(t, res, 413, 'invalid_request', 'the request body is too large')
    t.ok(Date.now() - started < 5000, 'answered quickly')
  })

  t.test('a 10 MB body → 413', async (t) => {
    const res = await post(app, { headers, payload: Buffer.alloc(10 * 1024 * 1024, 'a') })
    checkError(t, res, 413, 'invalid_request', 'the request body is too large')
  })

  t.test('10,000 parameters (inside the size limit) → 400', async (t) => {
    const payload = 'grant_type=client_credentials&' + Array.from({ length: 10_000 }, (_, i) => `${i.toString(36)}=`).join('&')
    t.ok(Buffer.byteLength(payload) < 64 * 1024, 'the body itself is small enough')
    const started = Date.now()
    const res = await post(app, { headers, payload })
    checkError(t, res, 400, 'invalid_request', 'too many parameters')
    t.ok(Date.now() - started < 5000, 'answered quickly')
  })

  t.test('a body just under the limit is parsed normally', async (t) => {
    const res = await post(app, { headers, payload: `grant_type=client_credentials&pad=${'a'.repeat(60 * 1024)}` })
    t.equal(res.statusCode, 200)
  })
})

t.test('client authentication (#37, #38, #39)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()
  const other = await app.createClient()
  const publicClient = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'] })

  t.test('#37 Basic and client_secret in the body (double auth) → 400', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', client_secret: client.secret! }, client)
    checkError(t, res, 400, 'invalid_request', 'use exactly one client authentication method')
  })

  t.test('#37 Basic and the same client_id in the body is fine', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', client_id: client.id }, client)
    t.equal(res.statusCode, 200)
  })

  t.test('#37 Basic client id ≠ body client_id → 400', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', client_id: other.id }, client)
    checkError(t, res, 400, 'invalid_request', 'client_id does not match the authenticated client')
  })

  t.test('#37 Basic of one client with the body credentials of another → refused', async (t) => {
    const res = await post(app, {
      headers: { ...FORM, authorization: basic(client.id, client.secret!) },
      payload: form({ grant_type: 'client_credentials', client_id: other.id, client_secret: other.secret! }),
    })
    t.equal(res.statusCode, 400)
    t.equal(res.json().error, 'invalid_request')
  })

  const b64 = (s: string) => Buffer.from(s).toString('base64')
  const malformed: Record<string, () => string> = {
    'no colon': () => `Basic ${b64(client.id + client.secret!)}`,
    'not base64': () => 'Basic !!!not*base64!!!',
    'colon sent percent-encoded (%3A)': () => `Basic ${b64(`${client.id}%3A${client.secret!}`)}`,
    'bad percent-encoding': () => `Basic ${b64(`${client.id}:%E0%A4%A`)}`,
    'empty user': () => `Basic ${b64(`:${client.secret!}`)}`,
    'Basic without credentials': () => 'Basic',
    'Basic and a space without credentials': () => 'Basic ',
    'two credentials': () => `Basic ${b64(`${client.id}:${client.secret!}`)} ${b64('x:y')}`,
    'lowercase scheme with a wrong secret': () => `basic ${b64(`${client.id}:nope`)}`,
  }
  for (const [name, header] of Object.entries(malformed)) {
    t.test(`#38 malformed Basic: ${name} → 401 invalid_client with a Basic challenge`, async (t) => {
      const res = await post(app, { headers: { ...FORM, authorization: header() }, payload: form({ grant_type: 'client_credentials' }) })
      checkBasicChallenge(t, res)
    })
  }

  t.test('#38 a form-encoded id and secret in Basic are decoded (RFC 6749 §2.3.1)', async (t) => {
    const special = await app.createClient({ id: 'c:with space+plus' })
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, special)
    t.equal(res.statusCode, 200)
    const { payload } = await jwtVerify(res.json().access_token, await jwks(app), { issuer: ISSUER, audience: API })
    t.equal(payload.client_id, 'c:with space+plus')
  })

  t.test('#39 wrong secret (Basic) → 401 with a Basic challenge', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, { id: client.id, secret: other.secret! })
    checkBasicChallenge(t, res)
    t.notOk(res.body.includes(other.secret!), 'the secret is not echoed')
  })

  t.test('#39 wrong secret (client_secret_post) → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', client_id: client.id, client_secret: 'tessera_cs_wrong' })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('#39 empty secret → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, { id: client.id, secret: '' })
    checkBasicChallenge(t, res)
  })

  t.test('#39 unknown client (Basic) → 401 with a Basic challenge, same body as a wrong secret', async (t) => {
    const unknown = await tokenRequest(app, { grant_type: 'client_credentials' }, { id: 'c_does_not_exist', secret: client.secret! })
    const wrong = await tokenRequest(app, { grant_type: 'client_credentials' }, { id: client.id, secret: 'tessera_cs_wrong' })
    checkBasicChallenge(t, unknown)
    t.equal(unknown.body, wrong.body)
    t.equal(unknown.headers['www-authenticate'], wrong.headers['www-authenticate'])
  })

  t.test('#39 unknown client (client_secret_post) → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials', client_id: 'c_does_not_exist', client_secret: 'x' })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('#39 unknown client with no secret (as if public) → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'password', username: 'a', password: 'b' }, { id: 'c_does_not_exist' })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('#39 overlong client id → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, { id: 'c'.repeat(5000), secret: 'x' })
    checkBasicChallenge(t, res)
  })

  t.test('#39 public client sending a secret (Basic) → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'password', username: 'a', password: 'b' }, { id: publicClient.id, secret: 'anything' })
    checkBasicChallenge(t, res)
  })

  t.test('#39 public client sending a secret (body) → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'password', username: 'a', password: 'b', client_id: publicClient.id, client_secret: 'anything' })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('a confidential client sending only its client_id → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, { id: client.id })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })

  t.test('no client authentication at all → 401', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials' })
    checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  })
})

t.test('a disabled client is refused once the client cache has refreshed', async (t) => {
  const clock = new ManualClock()
  const app = await testApp(t, { clock, env: { CACHE_REFRESH_SECONDS: '1' } })
  const client = await app.createClient()
  const before = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
  t.equal(before.statusCode, 200, 'works while enabled (and is now cached)')
  t.equal(await disableClient(app.database.db, client.id, CLI_CONTEXT), true)
  clock.advance(1100) // past the cache entry's life
  const basicAuth = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
  checkBasicChallenge(t, basicAuth)
  const postAuth = await tokenRequest(app, { grant_type: 'client_credentials', client_id: client.id, client_secret: client.secret! })
  checkError(t, postAuth, 401, 'invalid_client', 'client authentication failed')
})

t.test('a disabled public client is refused', async (t) => {
  const app = await testApp(t, { env: { CACHE_REFRESH_SECONDS: '1' } })
  await app.createUser('alice', 'correct horse battery')
  const client = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'] })
  t.equal(await disableClient(app.database.db, client.id, CLI_CONTEXT), true)
  const res = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: 'correct horse battery' }, client)
  checkError(t, res, 401, 'invalid_client', 'client authentication failed')
  const families = await app.database.db.selectFrom('refresh_token_family').select('id').execute()
  t.same(families, [], 'no session was created')
})

t.test('token response headers on success and error (#42) and error bodies (#44)', async (t) => {
  const app = await testApp(t)
  const client = await app.createClient()
  const ok = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
  t.equal(ok.statusCode, 200)
  checkTokenHeaders(t, ok)
  const errors: [string, Promise<Reply>, number][] = [
    ['invalid_request', tokenRequest(app, {}, client), 400],
    ['invalid_client', tokenRequest(app, { grant_type: 'client_credentials' }, { id: client.id, secret: 'wrong' }), 401],
    ['unsupported_grant_type', tokenRequest(app, { grant_type: 'foo' }, client), 400],
    ['invalid_scope', tokenRequest(app, { grant_type: 'client_credentials', scope: 'admin' }, client), 400],
    ['invalid_grant', tokenRequest(app, { grant_type: 'refresh_token', refresh_token: 'tsr_' + 'x'.repeat(43) }, client), 400],
    ['invalid_request', app.app.inject({ method: 'GET', url: '/token' }), 405],
  ]
  for (const [code, pending, status] of errors) {
    t.test(`${code} ${status}`, async (t) => checkError(t, await pending, status, code))
  }
})

t.test('password grant on /token', async (t) => {
  const app = await testApp(t)
  const alice = await app.createUser('alice', 'correct horse battery', ['admin'])
  const client = await app.createClient()

  t.test('success: access token for the user, refresh token and id_token in the body', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: 'correct horse battery', scope: 'openid read' }, client)
    t.equal(res.statusCode, 200)
    checkTokenHeaders(t, res)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'id_token', 'refresh_token', 'scope', 'token_type'])
    t.equal(body.scope, 'openid read')
    t.match(body.refresh_token, /^tsr_[A-Za-z0-9_-]{43}$/)
    t.equal(res.headers['set-cookie'], undefined, 'a body-delivery client gets no cookie')
    const keys = await jwks(app)
    const { payload } = await jwtVerify(body.access_token, keys, { issuer: ISSUER, audience: [API, ISSUER], typ: 'at+jwt' })
    t.equal(payload.sub, alice.id)
    t.equal(payload.client_id, client.id)
    t.same(payload.aud, [API, ISSUER], 'openid adds the issuer to the audience')
    t.same(payload.roles, ['admin'])
    const family = await app.database.db.selectFrom('refresh_token_family').select(['id', 'user_id', 'client_id', 'scope']).executeTakeFirstOrThrow()
    t.equal(payload.sid, family.id)
    t.match(family, { user_id: alice.id, client_id: client.id, scope: 'openid read' })
    const id = await jwtVerify(body.id_token, keys, { issuer: ISSUER, audience: client.id })
    t.equal(id.payload.sub, alice.id)
    t.same([id.payload.iat, id.payload.exp], [payload.iat, payload.exp], 'one response, one issue time: the ID token and the access token share iat and exp')
  })

  t.test('wrong password → 400 invalid_grant, no session', async (t) => {
    const before = await app.database.db.selectFrom('refresh_token_family').select('id').execute()
    const res = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: 'wrong horse battery' }, client)
    checkError(t, res, 400, 'invalid_grant', 'invalid username or password')
    const after = await app.database.db.selectFrom('refresh_token_family').select('id').execute()
    t.equal(after.length, before.length)
  })

  t.test('unknown user → the same 400 invalid_grant', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'password', username: 'mallory', password: 'correct horse battery' }, client)
    checkError(t, res, 400, 'invalid_grant', 'invalid username or password')
  })

  t.test('missing password → 400 invalid_request', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'password', username: 'alice' }, client)
    checkError(t, res, 400, 'invalid_request', 'missing parameter: password')
  })

  t.test('missing username → 400 invalid_request', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'password', password: 'correct horse battery' }, client)
    checkError(t, res, 400, 'invalid_request', 'missing parameter: username')
  })

  t.test('a password over 1,024 bytes → 400 invalid_request before hashing', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: 'é'.repeat(600) }, client)
    checkError(t, res, 400, 'invalid_request', 'password is too long')
  })
})
