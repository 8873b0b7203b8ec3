// Property-based fuzzing of every endpoint (issue #12; SECURITY.md #24, #25, #32, #35, #36, #44,
// #46, #61, #124): fast-check generates requests — methods, paths, headers, content types, bodies,
// parameters, cookies, bearer strings, with real credentials mixed in — and every one goes
// through `app.inject` into a real database. For each:
//   - the status is below 500;
//   - an error body is the documented JSON, `{"error": <a code of OAuthErrorCode>, "error_description": <string>}`,
//     with `Cache-Control: no-store`;
//   - a failed request wrote nothing: when a transaction id was used up meanwhile (PostgreSQL
//     assigns one to any write, committed or not: a cheap first look), the content of every table
//     is compared with what it was. The one documented exception is a failed password check, which
//     writes its audit event and its throttle counters (docs/security.md "Brute force and abuse"): after
//     those, every other table must be as it was.
// The seed is printed; replay a failure with TESSERA_FUZZ_SEED=<seed>. The default budget keeps
// `npm test` fast; TESSERA_FUZZ=long runs many more requests (the benchmark machine);
// TESSERA_FUZZ_SCALE=0.1 a tenth of them (while developing).
import fc from 'fast-check'
import { sql } from 'kysely'
import t from 'tap'
import type { Test } from 'tap'
import { APP_ORIGIN, basic, testApp, tokenRequest, type Backend, type TestApp } from '../helpers/app.js'

const LONG = process.env.TESSERA_FUZZ === 'long'
/** Requests per backend: at least 10,000 in all by default. */
const SCALE = process.env.TESSERA_FUZZ_SCALE !== undefined ? Number(process.env.TESSERA_FUZZ_SCALE) : 1
const RUNS: Record<Backend, number> = Object.fromEntries(Object.entries(LONG ? { postgres: 200_000, pglite: 20_000 } : { postgres: 9_000, pglite: 1_000 }).map(([k, n]) => [k, Math.max(1, Math.round(n * SCALE))])) as Record<Backend, number>
// npm test replays one fixed seed (a CI gate must be deterministic); the long mode, or
// TESSERA_FUZZ_SEED=random, explores new ones. Either way the seed is printed.
const DEFAULT_SEED = 20261204
const seedSetting = process.env.TESSERA_FUZZ_SEED ?? (LONG ? 'random' : String(DEFAULT_SEED))
const SEED = seedSetting === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedSetting)

const CODES = new Set(['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope', 'invalid_token', 'insufficient_scope', 'access_denied', 'temporarily_unavailable', 'server_error', 'unsupported_response_type', 'login_required', 'consent_required', 'interaction_required', 'invalid_request_uri'])
const REDIRECT = 'https://rp.example.com/cb'
/** The hosted pages answer errors with an HTML page (issue 13), not JSON. */
const isPage = (url: string) => /^\/(authorize|interaction\/|session\/end)/.test(url)
const PASSWORD = 'correct horse battery'

type Creds = { id: string; secret: string | undefined }

async function setup(t: Test, backend: Backend) {
  const app = await testApp(t, {
    backend,
    // Cheap hashes (this is not a test of argon2id), no background writers, and throttling tight
    // enough that the fuzzer meets locks too.
    env: { ARGON2_MEMORY_KIB: '8192', ARGON2_TIME_COST: '1', HOUSEKEEPING_INTERVAL_SECONDS: '0', LOGIN_ACCOUNT_FREE_FAILURES: '20', LOGIN_ADDRESS_FREE_FAILURES: '200', LOG_LEVEL: 'warn', CLIENT_RATE_LIMIT_PER_SECOND: '0' },
  })
  await app.createUser('alice', PASSWORD)
  const confidential = await app.createClient({ grantTypes: ['client_credentials', 'refresh_token', 'password'], scopes: ['openid', 'read', 'write'] })
  const browser = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'read'], allowedOrigins: [APP_ORIGIN] })
  const admin = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  // The authorization-code flow (issue 13): a client with a redirect URI, so /authorize gets past the client checks.
  const code = await app.createClient({ grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'read'], redirectUris: [REDIRECT] })
  const adminToken = (await tokenRequest(app, { grant_type: 'client_credentials', scope: 'tessera:admin' }, admin)).json().access_token as string
  const login = await tokenRequest(app, { grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'openid read' }, confidential)
  const userToken = login.json().access_token as string
  const kid = (await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json().keys[0].kid as string
  return { app, confidential, browser, admin, code, adminToken, userToken, kid }
}

/** A request as the fuzzer builds it. */
interface FuzzRequest {
  method: string
  url: string
  headers: Record<string, string>
  payload: string | undefined
}

function requests(c: Awaited<ReturnType<typeof setup>>): fc.Arbitrary<FuzzRequest> {
  const junk = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('', ' ', '\0', '%', '%zz', '..', '../../etc/passwd', "' OR '1'='1", '{"$ne":null}', '__proto__', 'null', 'tsr_' + 'A'.repeat(43), 'eyJhbGciOiJub25lIn0.e30.', 'x'.repeat(5000)),
  )
  const value = fc.oneof(
    { weight: 3, arbitrary: junk },
    { weight: 2, arbitrary: fc.constantFrom('alice', 'ALICE', 'nobody', PASSWORD, 'wrong', 'openid', 'openid read', 'read write admin', 'client_credentials', 'password', 'refresh_token', 'authorization_code', 'access_token', 'code', 'S256', 'plain', REDIRECT, 'none', 'login', 'consent', 'form_post', 'query', 'allow', 'deny', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM') },
    { weight: 2, arbitrary: fc.constantFrom(c.confidential.id, c.confidential.secret!, c.browser.id, c.admin.id, c.code.id, c.code.secret!, c.adminToken, c.userToken, c.kid) },
  )
  const keys = fc.constantFrom('grant_type', 'client_id', 'client_secret', 'username', 'password', 'scope', 'refresh_token', 'token', 'token_type_hint', 'code', 'redirect_uri', 'include', 'limit', 'cursor', 'type', 'user', 'since', 'account', 'address', 'alg', 'immediate', 'reason', 'state', 'response_type', 'code_challenge', 'code_challenge_method', 'code_verifier', 'nonce', 'prompt', 'max_age', 'login_hint', 'request_uri', 'response_mode', 'id_token_hint', 'post_logout_redirect_uri', 'csrf_token', 'decision', 'client', '__proto__', 'constructor')
  const params = fc.array(fc.tuple(fc.oneof({ weight: 4, arbitrary: keys }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }), value), { maxLength: 8 })
  const path = fc.oneof(
    fc.constantFrom('/token', '/login', '/refresh', '/revoke', '/introspect', '/userinfo', '/logout', '/.well-known/jwks.json', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/healthz', '/readyz', '/metrics', '/admin/audit', '/admin/keys', '/admin/keys/rotate', '/admin/keys/import', '/admin/keys/rewrap', '/admin/throttle', '/authorize', '/authorize', '/par', '/session/end', '/session/end/confirm', '/assets/pages.css', '/'),
    fc.constantFrom('00000000-0000-0000-0000-000000000000', 'x', '%00', 'a'.repeat(300)).chain((id) => fc.constantFrom(`/interaction/${id}`, `/interaction/${id}/login`, `/interaction/${id}/consent`)),
    fc.constantFrom('00000000-0000-0000-0000-000000000000', 'not-a-uuid').map((id) => `/admin/sso-sessions/${id}`),
    fc.constantFrom('alice', 'nobody').chain((u) => fc.constantFrom(`/admin/users/${u}/sso-sessions`, `/admin/users/${u}/consents`)),
    fc.constantFrom('alice', 'nobody', '00000000-0000-0000-0000-000000000000', '%00', 'a'.repeat(300)).map((u) => `/admin/users/${u}/sessions`),
    fc.constantFrom('00000000-0000-0000-0000-000000000000', 'not-a-uuid').map((id) => `/admin/sessions/${id}`),
    // Admin API (issue 14): users.
    fc.constantFrom('/admin/users', '/admin/users?limit=2&prefix=A', '/admin/users?cursor=%25&disabled=maybe'),
    fc.constantFrom('alice', 'Ａlice', 'nobody', '00000000-0000-0000-0000-000000000000', '%00', 'a'.repeat(300)).chain((u) => fc.constantFrom(`/admin/users/${u}`, `/admin/users/${u}/password`, `/admin/users/${u}/disable`, `/admin/users/${u}/enable`)),
    // Admin API (issue 14): clients (unknown ids only: the fuzz's own clients stay).
    fc.constantFrom('/admin/clients', '/admin/clients?limit=2&name_prefix=a', '/admin/clients?cursor=%25&disabled=maybe&grant_type=x', '/admin/clients?type=public&limit=0'),
    fc.constantFrom('c_nobody', '%00', '..%2f..', 'a'.repeat(300)).chain((id) => fc.constantFrom(`/admin/clients/${id}`, `/admin/clients/${id}/secret`, `/admin/clients/${id}/disable`, `/admin/clients/${id}/enable`)),
    fc.constantFrom(c.kid, 'unknown', '..%2f..').map((kid) => `/admin/keys/${kid}/revoke`),
    fc.constantFrom('EdDSA', 'RS256', 'none').map((alg) => `/admin/keys/lines/${alg}/retire`),
    fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)),
  )
  const query = fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: params.map((p) => '?' + new URLSearchParams(p).toString()) })
  const contentType = fc.option(
    fc.constantFrom('application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=utf-8', 'application/x-www-form-urlencoded; charset=latin1', 'application/json', 'application/json; charset=utf-8', 'text/plain', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream', 'garbage/', ''),
    { nil: undefined },
  )
  const authorization = fc.option(
    fc.oneof(
      fc.constantFrom(basic(c.confidential.id, c.confidential.secret!), basic(c.admin.id, c.admin.secret!), basic(c.confidential.id, 'wrong'), `Bearer ${c.adminToken}`, `Bearer ${c.userToken}`, 'Basic', 'Basic !!!', 'Bearer', 'Bearer a.b.c', 'Negotiate abc'),
      junk.map((s) => `Bearer ${s}`),
      junk.map((s) => `Basic ${Buffer.from(s).toString('base64')}`),
    ),
    { nil: undefined },
  )
  const cookie = fc.option(fc.oneof(junk.map((v) => `__Secure-tessera_rt=${encodeURIComponent(v)}`), fc.constant('__Secure-tessera_rt=a; __Secure-tessera_rt=b'), junk), { nil: undefined })
  const origin = fc.option(fc.constantFrom(APP_ORIGIN, 'https://evil.example', 'null'), { nil: undefined })
  const body = fc.oneof(
    params.map((p) => new URLSearchParams(p).toString()),
    params.map((p) => JSON.stringify(Object.fromEntries(p))),
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    fc.constant(JSON.stringify({ username: 'alice', password: PASSWORD, client_id: c.browser.id })),
    fc.constantFrom(JSON.stringify({ username: 'Ａlice', password: PASSWORD, roles: ['a'], profile: { name: null, email: 'a@b' } }), JSON.stringify({ profile: { email_verified: null }, roles: [] }), JSON.stringify({ password: PASSWORD, revoke_sessions: false })),
    fc.constantFrom(JSON.stringify({ name: 'fuzz', grant_types: ['client_credentials'], scopes: ['read'] }), JSON.stringify({ name: 'x', public: true, grant_types: ['authorization_code'], redirect_uris: ['http://x'] }), JSON.stringify({ overlap_seconds: -1 }), JSON.stringify({ rate_limit_per_second: null, public: 'yes' })),
    fc.constant(`response_type=code&client_id=${c.code.id}&redirect_uri=${encodeURIComponent(REDIRECT)}&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256`),
    fc.constant(`grant_type=password&username=alice&password=${encodeURIComponent(PASSWORD)}&client_id=${c.confidential.id}&client_secret=${c.confidential.secret}`),
    junk,
  )
  // Mostly well-formed OAuth requests with one or two fields off, so the fuzzer gets deep into
  // the grants, the throttle and the stores, not only into the parsers.
  const grant = fc.record({
    grant: fc.constantFrom('client_credentials', 'password', 'refresh_token', 'authorization_code', ''),
    extra: params,
    asJson: fc.boolean(),
    route: fc.constantFrom('/token', '/token', '/login', '/revoke', '/introspect'),
    auth: fc.constantFrom('basic', 'post', 'public', 'none'),
    username: fc.oneof(fc.constantFrom('alice', 'ALICE', 'nobody'), junk),
    password: fc.oneof(fc.constantFrom(PASSWORD, 'wrong', ''), junk),
    ip: fc.constantFrom('198.51.100.1', '198.51.100.2', '2001:db8::1'),
  }).map((g): FuzzRequest => {
    const fields: Record<string, string> = { grant_type: g.grant, username: g.username, password: g.password, token: c.userToken, scope: 'openid read' }
    if (g.auth === 'post') Object.assign(fields, { client_id: c.confidential.id, client_secret: c.confidential.secret! })
    if (g.auth === 'public') fields.client_id = c.browser.id
    for (const [k, v] of g.extra) fields[k] = v
    const headers: Record<string, string> = { 'content-type': g.asJson ? 'application/json' : 'application/x-www-form-urlencoded', 'x-fuzz-ip': g.ip }
    if (g.auth === 'basic') headers.authorization = basic(c.confidential.id, c.confidential.secret!)
    if (g.auth === 'public') headers.origin = APP_ORIGIN
    return { method: 'POST', url: g.route, headers, payload: g.asJson ? JSON.stringify(fields) : new URLSearchParams(fields).toString() }
  })
  // Mostly well-formed authorization requests (GET or POST /authorize, or pushed at /par) with fields off.
  const authz = fc.record({
    extra: params,
    method: fc.constantFrom('GET', 'POST', 'PAR'),
    ip: fc.constantFrom('198.51.100.1', '2001:db8::1'),
  }).map((a): FuzzRequest => {
    const fields: Record<string, string> = { response_type: 'code', client_id: c.code.id, redirect_uri: REDIRECT, scope: 'openid', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', state: 's' }
    for (const [k, v] of a.extra) fields[k] = v
    const q = new URLSearchParams(fields).toString()
    if (a.method === 'GET') return { method: 'GET', url: `/authorize?${q}`, headers: { 'x-fuzz-ip': a.ip }, payload: undefined }
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', 'x-fuzz-ip': a.ip }
    if (a.method === 'PAR') headers.authorization = basic(c.code.id, c.code.secret!)
    return { method: 'POST', url: a.method === 'PAR' ? '/par' : '/authorize', headers, payload: q }
  })
  const anything = fc.record({
    method: fc.constantFrom('GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
    path,
    query,
    contentType,
    authorization,
    cookie,
    origin,
    ip: fc.constantFrom('198.51.100.1', '198.51.100.2', '2001:db8::1', '::ffff:203.0.113.5'),
    body: fc.option(body, { nil: undefined }),
  }).map((r) => {
    const headers: Record<string, string> = {}
    if (r.contentType !== undefined) headers['content-type'] = r.contentType
    if (r.authorization !== undefined) headers.authorization = r.authorization
    if (r.cookie !== undefined) headers.cookie = r.cookie
    if (r.origin !== undefined) headers.origin = r.origin
    headers['x-fuzz-ip'] = r.ip
    const hasBody = r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD'
    return { method: r.method, url: r.path + r.query, headers, payload: hasBody ? r.body : undefined }
  })
  return fc.oneof({ weight: 4, arbitrary: anything }, { weight: 2, arbitrary: grant }, { weight: 1, arbitrary: authz })
}

/** The next transaction id PostgreSQL will assign: it moves on any write, committed or rolled back. */
async function nextXid(app: TestApp): Promise<string> {
  const { rows } = await sql<{ xid: string }>`select pg_snapshot_xmax(pg_current_snapshot())::text as xid`.execute(app.database.db)
  return rows[0]!.xid
}

/**
 * The content of every table a request can change: all of it (`whole`), and all but the audit trail
 * and the throttle counters (`kept`), which a failed password check writes by design.
 */
async function fingerprint(app: TestApp): Promise<{ kept: string; whole: string }> {
  const { rows } = await sql<{ kept: string; extra: string }>`select md5(concat_ws('|',
      (select string_agg(concat_ws(',', id, username, password_hash, disabled_at, updated_at), ';' order by id) from app_user),
      (select string_agg(concat_ws(',', id, disabled_at, updated_at, rate_limit_per_second), ';' order by id) from client),
      (select string_agg(concat_ws(',', id, revoked_at, last_used_at, last_ip), ';' order by id) from refresh_token_family),
      (select string_agg(concat_ws(',', id, used_at, successor_id), ';' order by id) from refresh_token),
      (select string_agg(concat_ws(',', kid, state, version), ';' order by kid) from signing_key),
      (select count(*) from revoked_access_token),
      (select string_agg(concat_ws(',', id, revoked_at, last_seen_at, idle_expires_at), ';' order by id) from sso_session),
      (select string_agg(concat_ws(',', user_id, client_id, scopes), ';' order by user_id, client_id) from consent),
      (select string_agg(concat_ws(',', id, user_id, session_id, used_at), ';' order by id) from authorization_request),
      (select string_agg(concat_ws(',', encode(code_hash, 'hex'), used_at, family_id), ';' order by code_hash) from authorization_code))) as kept,
    md5(concat_ws('|',
      (select concat_ws(',', count(*), max(id)) from audit_event),
      (select string_agg(concat_ws(',', kind, subject, failures, last_failure_at, blocked_until), ';' order by kind, subject) from login_throttle))) as extra`.execute(app.database.db)
  return { kept: rows[0]!.kept, whole: rows[0]!.kept + rows[0]!.extra }
}

const isPasswordCheck = (r: FuzzRequest) => r.url.startsWith('/login') || /^\/interaction\/[^/]*\/login/.test(r.url) || (r.url.startsWith('/token') && (r.payload ?? '').includes('password'))

for (const backend of ['postgres', 'pglite'] as const) {
  t.test(`(#12) fuzz: ${RUNS[backend]} generated requests on ${backend}: no 5xx, documented error bodies, nothing written by a failed request (seed ${SEED})`, async (t) => {
    t.comment(`fast-check seed ${SEED} (replay with TESSERA_FUZZ_SEED=${SEED}${LONG ? ' TESSERA_FUZZ=long' : ''})`)
    const c = await setup(t, backend)
    const statuses = new Map<number, number>()
    let xid = await nextXid(c.app)
    let print = await fingerprint(c.app)
    const started = performance.now()
    await fc.assert(
      fc.asyncProperty(requests(c), async (r) => {
        const { 'x-fuzz-ip': ip, ...headers } = r.headers
        const res = await c.app.app.inject({ method: r.method as 'GET', url: r.url, headers, remoteAddress: ip, ...(r.payload !== undefined ? { payload: r.payload } : {}) })
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
        if (res.statusCode >= 500 && res.statusCode !== 503) throw new Error(`${res.statusCode} for ${r.method} ${r.url.slice(0, 80)}: ${res.body.slice(0, 200)}`)
        if (res.statusCode === 503) throw new Error(`503 with the database up, for ${r.method} ${r.url.slice(0, 80)}: ${res.body.slice(0, 200)}`)
        const after = await nextXid(c.app)
        if (res.statusCode >= 400) {
          if (isPage(r.url) && /^text\/html/.test(String(res.headers['content-type']))) {
            // A page that says what went wrong (its escaping is tested in authorize.test.ts); a
            // wrong method is the documented JSON, as everywhere.
            if (r.method !== 'HEAD' && !res.body.includes('role="alert"')) throw new Error(`error page without its message (${res.statusCode} ${r.method} ${r.url.slice(0, 80)})`)
          } else if (r.method !== 'HEAD') {
            let body: unknown
            try { body = JSON.parse(res.body) } catch { throw new Error(`error body is not JSON (${res.statusCode} ${r.method} ${r.url.slice(0, 80)}): ${res.body.slice(0, 200)}`) }
            const keys = Object.keys(body as object).sort().join(',')
            const { error, error_description: description } = body as Record<string, unknown>
            if (keys !== 'error,error_description' || !CODES.has(error as string) || typeof description !== 'string') throw new Error(`undocumented error body ${res.statusCode}: ${res.body.slice(0, 200)}`)
            if (!/^application\/json/.test(String(res.headers['content-type']))) throw new Error(`error content-type ${String(res.headers['content-type'])}`)
          }
          if (res.headers['cache-control'] !== 'no-store') throw new Error(`error without Cache-Control: no-store (${res.statusCode} ${r.url.slice(0, 80)})`)
          if (after !== xid) {
            // Something used a transaction id: judge by content (PostgreSQL's own auto-analyze
            // uses ids too). Only a failed password check may write, and only its audit event
            // and counters.
            const now = await fingerprint(c.app)
            const changed = isPasswordCheck(r) ? now.kept !== print.kept : now.whole !== print.whole
            if (changed) throw new Error(`a failed request wrote (${res.statusCode} ${r.method} ${r.url.slice(0, 80)}): ${res.body.slice(0, 200)}`)
            print = now
          }
        } else if (after !== xid) {
          print = await fingerprint(c.app)
        }
        xid = after
      }),
      { numRuns: RUNS[backend], seed: SEED, endOnFailure: true },
    )
    const ms = Math.round(performance.now() - started)
    t.comment(`${RUNS[backend]} requests in ${ms} ms; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`)
    t.ok([...statuses.keys()].every((s) => s < 500), 'no status ≥ 500')
    t.ok((statuses.get(200) ?? 0) > 0 && [...statuses.keys()].some((s) => s >= 400), 'the fuzzer reached successes and failures')
  })
}
