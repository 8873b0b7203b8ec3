// Issue 11: only registered error codes at the OAuth endpoints (RFC 6749 §5.2, RFC 7009 §2.2.1,
// RFC 7662 §2.3), for wrong methods and content types (SECURITY.md #29, #35, #44); and introspection
// of refresh tokens by the client that holds them (RFC 7662 §2.1–2.2, SECURITY.md #82).
import { sql } from 'kysely'
import t from 'tap'
import type { Test } from 'tap'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { OAuthError } from '../../src/errors.js'
import { hashRefreshToken } from '../../src/tokens/refresh-token.js'
import { disableUser } from '../../src/users/disable-user.js'
import { APP_ORIGIN, basic, FORM, form, passwordLogin, testApp, tokenRequest, type Backend, type TestApp } from '../helpers/app.js'
import { sqlClient } from '../helpers/processes.js'

const PASSWORD = 'correct horse battery'
const ENDPOINTS = ['/token', '/revoke', '/introspect'] as const
type Endpoint = (typeof ENDPOINTS)[number]
type ClientCreds = { id: string; secret: string | undefined }
type Reply = Awaited<ReturnType<TestApp['app']['inject']>>

/** Every code RFC 6749 §5.2 / §4.1.2.1, RFC 6750 §3.1 and RFC 7009 §2.2.1 define; nothing else may appear. */
const RFC_CODES = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'access_denied', 'unsupported_response_type', 'server_error', 'temporarily_unavailable',
  'invalid_token', 'insufficient_scope', 'unsupported_token_type',
])

/** An RFC 6749 §5.2 error: the status, exactly `error` + `error_description`, no-store. */
function checkError(t: Test, res: Reply, status: number, error: string, description?: string) {
  t.equal(res.statusCode, status, `status ${status}`)
  t.equal(res.headers['cache-control'], 'no-store', 'Cache-Control: no-store')
  t.equal(res.headers.pragma, 'no-cache', 'Pragma: no-cache')
  t.match(res.headers['content-type'], /^application\/json(;|$)/)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['error', 'error_description'], 'only error and error_description')
  t.equal(body.error, error)
  t.ok(RFC_CODES.has(body.error), `${body.error} is a registered code`)
  if (description !== undefined) t.equal(body.error_description, description)
}

/** Every row a request to these endpoints could change. */
async function snapshot(app: TestApp) {
  const db = app.database.db
  return {
    families: await db.selectFrom('refresh_token_family').selectAll().orderBy('id').execute(),
    tokens: await db.selectFrom('refresh_token').selectAll().orderBy('id').execute(),
    denylist: await db.selectFrom('revoked_access_token').selectAll().orderBy('jti').execute(),
    audit: await db.selectFrom('audit_event').selectAll().orderBy('id').execute(),
  }
}

async function setup(t: Test, backend: Backend) {
  const app = await testApp(t, { backend })
  const alice = await app.createUser('alice', PASSWORD)
  // Its origin is allowed, so CORS answers preflights from it on /token and /revoke.
  const client = await app.createClient({ allowedOrigins: [APP_ORIGIN] })
  const tokens = await passwordLogin(app, client, 'alice', PASSWORD)
  return { app, alice, client, tokens }
}

/** Parameters that would succeed at each endpoint, were the request well-formed. */
function goodParams(endpoint: Endpoint, refreshToken: string): Record<string, string> {
  if (endpoint === '/token') return { grant_type: 'refresh_token', refresh_token: refreshToken }
  return { token: refreshToken, token_type_hint: 'refresh_token' }
}

for (const backend of ['postgres', 'pglite'] as const) {
  t.test(`${backend}: a wrong method → 405, Allow: POST, invalid_request, no-store; nothing changes (#29)`, async (t) => {
    const { app, client, tokens } = await setup(t, backend)
    const before = await snapshot(app)
    const auth = { authorization: basic(client.id, client.secret!) }
    for (const url of ENDPOINTS) {
      // The parameters ride in the query string and in a form body: neither may do anything.
      const qs = new URLSearchParams(goodParams(url, tokens.refresh_token)).toString()
      for (const method of ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'TRACE', 'OPTIONS'] as const) {
        const withBody = method === 'PUT' || method === 'PATCH' || method === 'DELETE'
        const res = await app.app.inject({ method, url: `${url}?${qs}`, headers: { ...auth, ...(withBody ? FORM : {}) }, ...(withBody ? { payload: qs } : {}) })
        const name = `${method} ${url}`
        t.equal(res.statusCode, 405, `${name}: 405`)
        t.equal(res.headers.allow, 'POST', `${name}: Allow: POST`)
        t.equal(res.headers['cache-control'], 'no-store', `${name}: no-store`)
        if (method === 'HEAD') t.equal(res.body, '', `${name}: no body`)
        else t.strictSame(res.json(), { error: 'invalid_request', error_description: 'method not allowed: use POST' }, `${name}: body`)
        t.notOk(res.body.includes(tokens.refresh_token), `${name}: the token is not echoed`)
      }
    }
    t.strictSame(await snapshot(app), before, 'no row changed')
    t.equal((await tokenRequest(app, goodParams('/token', tokens.refresh_token), client)).statusCode, 200, 'the refresh token was never spent')
  })

  t.test(`${backend}: a missing or wrong Content-Type → 400 invalid_request, no-store; nothing changes (#35)`, async (t) => {
    const { app, client, tokens } = await setup(t, backend)
    const before = await snapshot(app)
    const auth = { authorization: basic(client.id, client.secret!) }
    for (const url of ENDPOINTS) {
      const body = form(goodParams(url, tokens.refresh_token))
      const cases: [string, Record<string, string>, string | Buffer, string][] = [
        ['no Content-Type', {}, Buffer.from(body), 'unsupported content type'],
        ['application/json', { 'content-type': 'application/json' }, JSON.stringify(goodParams(url, tokens.refresh_token)), 'the body must be application/x-www-form-urlencoded'],
        ['text/plain', { 'content-type': 'text/plain' }, body, 'the body must be application/x-www-form-urlencoded'],
        ['multipart/form-data', { 'content-type': 'multipart/form-data; boundary=b' }, Object.entries(goodParams(url, tokens.refresh_token)).map(([k, v]) => `--b\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`).join('') + '--b--\r\n', 'unsupported content type'],
        ['application/xml', { 'content-type': 'application/xml' }, '<token/>', 'unsupported content type'],
        ['a form in ISO-8859-1', { 'content-type': 'application/x-www-form-urlencoded; charset=iso-8859-1' }, body, 'only UTF-8 form bodies are accepted'],
      ]
      for (const [name, headers, payload, description] of cases) {
        t.test(`${url}, ${name}`, async (t) => {
          const res = await app.app.inject({ method: 'POST', url, headers: { ...auth, ...headers }, payload })
          checkError(t, res, 400, 'invalid_request', description)
        })
      }
      t.test(`${url}, no body at all`, async (t) => {
        checkError(t, await app.app.inject({ method: 'POST', url, headers: auth }), 400, 'invalid_request', 'the body must be application/x-www-form-urlencoded')
      })
    }
    t.test('nothing changed, and the refresh token still rotates', async (t) => {
      t.strictSame(await snapshot(app), before, 'no row changed')
      t.equal((await tokenRequest(app, goodParams('/token', tokens.refresh_token), client)).statusCode, 200)
    })
  })
}

t.test('OPTIONS: an allowed origin gets its CORS preflight on /token and /revoke; any other OPTIONS is a 405', async (t) => {
  const { app } = await setup(t, 'postgres')
  const preflight = (url: Endpoint, origin: string) =>
    app.app.inject({ method: 'OPTIONS', url, headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } })
  for (const url of ['/token', '/revoke'] as const) {
    const res = await preflight(url, APP_ORIGIN)
    t.equal(res.statusCode, 204, `${url}: preflight from the app`)
    t.equal(res.headers['access-control-allow-origin'], APP_ORIGIN)
    t.match(String(res.headers['access-control-allow-methods']), /POST/)
  }
  // /introspect is for back ends (confidential clients): no CORS there at all.
  for (const [url, origin] of [['/token', 'https://evil.example'], ['/revoke', 'https://evil.example'], ['/introspect', APP_ORIGIN]] as const) {
    const res = await preflight(url, origin)
    t.equal(res.statusCode, 405, `${url} from ${origin}: 405`)
    t.equal(res.headers.allow, 'POST')
    t.equal(res.headers['access-control-allow-origin'], undefined, `${url} from ${origin}: no CORS`)
    t.strictSame(res.json(), { error: 'invalid_request', error_description: 'method not allowed: use POST' })
  }
})

t.test('no private error code anywhere: oversized bodies, unknown paths, unknown clients', async (t) => {
  const { app, client } = await setup(t, 'postgres')
  for (const url of ENDPOINTS) {
    const big = await app.app.inject({ method: 'POST', url, headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: `token=${'a'.repeat(70 * 1024)}` })
    checkError(t, big, 413, 'invalid_request', 'the request body is too large')
    const stranger: ClientCreds = { id: 'c_nobody', secret: 'nope' }
    checkError(t, await app.app.inject({ method: 'POST', url, headers: { ...FORM, authorization: basic(stranger.id, stranger.secret!) }, payload: form({ token: 'x', grant_type: 'client_credentials' }) }), 401, 'invalid_client')
  }
  checkError(t, await app.app.inject({ method: 'GET', url: '/token/extra' }), 404, 'invalid_request', 'no such endpoint')
  checkError(t, await app.app.inject({ method: 'POST', url: '/nowhere', headers: FORM, payload: 'a=b' }), 404, 'invalid_request', 'no such endpoint')
})

t.test('the error codes are a closed union: a private code does not compile (checked by `npm run typecheck`)', async (t) => {
  const typeOnly = () => [
    // @ts-expect-error not an RFC 6749 code
    new OAuthError('method_not_allowed', 'x'),
    // @ts-expect-error not an RFC 6749 code
    new OAuthError('unsupported_media_type', 'x'),
    // @ts-expect-error not an RFC 6749 code
    new OAuthError('not_found', 'x'),
    // @ts-expect-error not an RFC 6749 code
    new OAuthError('payload_too_large', 'x'),
    // @ts-expect-error only the HTTP-level statuses may override a code's own
    new OAuthError('invalid_request', 'x').withStatus(415),
  ]
  t.type(typeOnly, 'function')
  t.equal(new OAuthError('invalid_request', 'x').withStatus(405).status, 405)
  t.equal(new OAuthError('invalid_request', 'x').status, 400)
})

// ---------------------------------------------------------------------------------------------
// Refresh-token introspection

/** Every `token_type_hint` a caller might send: none, the two RFC 7662 ones, one we do not know, empty. */
const HINTS = [undefined, 'refresh_token', 'access_token', 'urn:example:unknown', ''] as const

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>

function introspect(app: TestApp, client: ClientCreds, token: string, hint?: string) {
  return app.app.inject({
    method: 'POST',
    url: '/introspect',
    headers: { ...FORM, authorization: basic(client.id, client.secret!) },
    payload: form({ token, ...(hint !== undefined ? { token_type_hint: hint } : {}) }),
  })
}

/** Introspects `token` with every hint and expects the same `expected` body each time. */
async function expectIntrospection(t: Test, app: TestApp, client: ClientCreds, token: string, expected: object, what: string) {
  for (const hint of HINTS) {
    const res = await introspect(app, client, token, hint)
    const name = `${what}, hint ${hint === undefined ? '(none)' : JSON.stringify(hint)}`
    t.equal(res.statusCode, 200, `${name}: 200`)
    t.equal(res.headers['cache-control'], 'no-store', `${name}: no-store`)
    t.strictSame(res.json(), expected, name)
  }
}

const expectInactive = (t: Test, app: TestApp, client: ClientCreds, token: string, what: string) => expectIntrospection(t, app, client, token, { active: false }, what)

const refresh = (app: TestApp, client: ClientCreds, refreshToken: string) => tokenRequest(app, { grant_type: 'refresh_token', refresh_token: refreshToken }, client)

/** The RFC 7662 answer for a live refresh token, from its rows. */
async function expectedActive(t: Test, app: TestApp, client: ClientCreds, userId: string, refreshToken: string, accessToken: string) {
  const row = await app.database.db
    .selectFrom('refresh_token as t')
    .innerJoin('refresh_token_family as f', 'f.id', 't.family_id')
    .select(['t.created_at', 't.expires_at as token_expires_at', 'f.expires_at as family_expires_at', 'f.id', 'f.scope'])
    .where('t.token_hash', '=', hashRefreshToken(refreshToken))
    .executeTakeFirstOrThrow()
  const expires = Math.min(row.token_expires_at.getTime(), row.family_expires_at.getTime())
  const sid = claimsOf(accessToken).sid
  t.equal(sid, row.id, 'the family id is the sid of its access tokens')
  return {
    active: true,
    token_type: 'refresh_token',
    scope: row.scope,
    client_id: client.id,
    sub: userId,
    exp: Math.floor(expires / 1000),
    iat: Math.floor(row.created_at.getTime() / 1000),
    sid,
  }
}

/** Moves a token's idle limit, or its family's absolute one, to just before the database's now(). */
async function expire(app: TestApp, refreshToken: string, which: 'idle' | 'absolute') {
  const db = app.database.db
  const hash = hashRefreshToken(refreshToken)
  if (which === 'idle') await db.updateTable('refresh_token').set({ expires_at: sql`now() - interval '1 second'` }).where('token_hash', '=', hash).execute()
  else {
    const familyId = db.selectFrom('refresh_token').select('family_id').where('token_hash', '=', hash)
    await db.updateTable('refresh_token_family').set({ expires_at: sql`now() - interval '1 second'` }).where('id', '=', familyId).execute()
  }
}

for (const backend of ['postgres', 'pglite'] as const) {
  t.test(`${backend}: refresh-token introspection, state by state, with every hint (#82)`, async (t) => {
    // The app's own time (JWT claims, caches), which a test moves; timers stay the wall clock's.
    let appClockOffsetMs = 0
    const app = await testApp(t, { backend, now: () => Date.now() + appClockOffsetMs })
    const alice = await app.createUser('alice', PASSWORD)
    const bob = await app.createUser('bob', PASSWORD)
    const client = await app.createClient()
    const login = (user = 'alice') => passwordLogin(app, client, user, PASSWORD)

    t.test('live: active, with the claims of the token and its family', async (t) => {
      const tokens = await login()
      const expected = await expectedActive(t, app, client, alice.id, tokens.refresh_token, tokens.access_token)
      t.equal(expected.scope, 'openid read')
      t.ok(expected.exp > expected.iat, 'exp after iat')
      await expectIntrospection(t, app, client, tokens.refresh_token, expected, 'live')
      // The access token of the same login, with every hint: the hint only orders the search.
      for (const hint of HINTS) {
        const res = await introspect(app, client, tokens.access_token, hint)
        t.equal(res.json().active, true, `its access token, hint ${String(hint)}`)
        t.equal(res.json().token_type, 'Bearer')
        t.equal(res.json().sid, expected.sid, 'the same sid')
      }
    })

    t.test("the successor is live; the rotated parent is not, even inside the grace window", async (t) => {
      const first = await login()
      const next = await refresh(app, client, first.refresh_token)
      t.equal(next.statusCode, 200)
      const second = next.json() as { access_token: string; refresh_token: string }
      await expectInactive(t, app, client, first.refresh_token, 'used parent')
      const expected = await expectedActive(t, app, client, alice.id, second.refresh_token, second.access_token)
      t.equal(expected.sid, claimsOf(first.access_token).sid, 'same family, same sid')
      await expectIntrospection(t, app, client, second.refresh_token, expected, 'successor')
    })

    t.test('revoked family (RFC 7009 /revoke)', async (t) => {
      const tokens = await login()
      const res = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token: tokens.refresh_token }) })
      t.equal(res.statusCode, 200)
      await expectInactive(t, app, client, tokens.refresh_token, 'revoked family')
    })

    t.test('past its idle limit, or its family past the absolute limit (by the database clock)', async (t) => {
      for (const which of ['idle', 'absolute'] as const) {
        const tokens = await login()
        await expire(app, tokens.refresh_token, which)
        await expectInactive(t, app, client, tokens.refresh_token, `${which}-expired`)
        t.equal((await refresh(app, client, tokens.refresh_token)).statusCode, 400, `${which}-expired: rotation agrees`)
      }
    })

    t.test("the app's clock does not decide: a year ahead, a live token is still active and still rotates", async (t) => {
      const tokens = await login()
      const expected = await expectedActive(t, app, client, alice.id, tokens.refresh_token, tokens.access_token)
      appClockOffsetMs = 366 * 24 * 3600 * 1000
      t.teardown(() => {
        appClockOffsetMs = 0
      })
      await expectIntrospection(t, app, client, tokens.refresh_token, expected, 'app clock a year ahead')
      t.equal((await refresh(app, client, tokens.refresh_token)).statusCode, 200, 'rotation agrees')
    })

    t.test("another client's token: inactive, also for a client its access tokens name in their audience", async (t) => {
      const tokens = await login()
      const stranger = await app.createClient()
      await expectInactive(t, app, stranger, tokens.refresh_token, 'a stranger')
      const api = await app.createClient({ audience: [], grantTypes: ['client_credentials'] })
      const frontend = await app.createClient({ audience: [api.id], grantTypes: ['password', 'refresh_token'] })
      const forApi = await passwordLogin(app, frontend, 'alice', PASSWORD, 'read')
      t.equal((await introspect(app, api, forApi.access_token)).json().active, true, 'the API may introspect the access token')
      await expectInactive(t, app, api, forApi.refresh_token, 'the API, for the refresh token')
      t.equal((await introspect(app, frontend, forApi.refresh_token)).json().active, true, 'its holder may')
    })

    t.test("a disabled user's token", async (t) => {
      const tokens = await login('bob')
      // The user row alone (as rotation checks it), without the family revocations disableUser adds.
      await app.database.db.updateTable('app_user').set({ disabled_at: sql`now()` }).where('id', '=', bob.id).execute()
      await expectInactive(t, app, client, tokens.refresh_token, 'user disabled')
      await app.database.db.updateTable('app_user').set({ disabled_at: null }).where('id', '=', bob.id).execute()
      t.equal((await introspect(app, client, tokens.refresh_token)).json().active, true, 'active again once re-enabled')
      t.equal(await disableUser(app.database.db, 'bob', CLI_CONTEXT), true)
      await expectInactive(t, app, client, tokens.refresh_token, 'user disabled (families revoked)')
    })

    t.test('unknown strings', async (t) => {
      for (const token of ['garbage', 'tsr_' + 'A'.repeat(43), 'tsr_short', 'tsr_' + 'A'.repeat(43) + '.x.y', 'a.b.c']) await expectInactive(t, app, client, token, JSON.stringify(token))
    })
  })
}

t.test('introspection writes nothing, spends nothing; the token still rotates afterwards', async (t) => {
  const app = await testApp(t)
  const alice = await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const tokens = await passwordLogin(app, client, 'alice', PASSWORD)
  const stranger = await app.createClient()
  const before = await snapshot(app)
  const expected = await expectedActive(t, app, client, alice.id, tokens.refresh_token, tokens.access_token)
  for (let i = 0; i < 3; i++) {
    await expectIntrospection(t, app, client, tokens.refresh_token, expected, `round ${i + 1}`)
    await expectInactive(t, app, stranger, tokens.refresh_token, `round ${i + 1}, another client`)
  }
  // In parallel, too: reads only, so no answer differs and nothing waits.
  const parallel = await Promise.all(Array.from({ length: 10 }, () => introspect(app, client, tokens.refresh_token, 'refresh_token')))
  for (const res of parallel) t.strictSame(res.json(), expected)
  t.strictSame(await snapshot(app), before, 'no row changed: tokens, families (last use), denylist, audit')

  const next = await refresh(app, client, tokens.refresh_token)
  t.equal(next.statusCode, 200, 'the introspected token rotates')
  t.equal(next.json().refresh_token === tokens.refresh_token, false)
  await expectInactive(t, app, client, tokens.refresh_token, 'after its rotation')
  t.equal((await introspect(app, client, next.json().refresh_token)).json().active, true, 'its successor is active')
})

t.test('introspection takes no row lock: it answers while a transaction holds the token and its family', async (t) => {
  const app = await testApp(t, { env: { DB_LOCK_TIMEOUT_MS: '200' } })
  const alice = await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const tokens = await passwordLogin(app, client, 'alice', PASSWORD)
  const expected = await expectedActive(t, app, client, alice.id, tokens.refresh_token, tokens.access_token)
  const other = await sqlClient(t, app.databaseUrl!)
  await other.query('begin')
  const locked = await other.query('select t.id from refresh_token t join refresh_token_family f on f.id = t.family_id where t.token_hash = $1 for update of t, f', [hashRefreshToken(tokens.refresh_token)])
  t.equal(locked.rowCount, 1, 'the token and its family are locked')
  await expectIntrospection(t, app, client, tokens.refresh_token, expected, 'while locked')
  // Rotation does lock: it gives up after lock_timeout (503), which shows the lock was real.
  const blocked = await refresh(app, client, tokens.refresh_token)
  t.equal(blocked.statusCode, 503, 'a refresh waits for the lock and gives up')
  await other.query('rollback')
  t.equal((await refresh(app, client, tokens.refresh_token)).statusCode, 200, 'and rotates once the lock is gone')
})
