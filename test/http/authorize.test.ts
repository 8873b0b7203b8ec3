// /authorize, the hosted pages, codes at /token, PAR and logout, black-box: SECURITY.md rows #146–#170.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import type { Test } from 'tap'
import { decodeJwt } from 'jose'
import { basic, form, FORM, ISSUER, testApp, type TestApp } from '../helpers/app.js'
import { action, authorize, authorizeUrl, Browser, callback, codeClient, field, location, PASSWORD, pkce, redeem, REDIRECT, type Reply } from '../helpers/authcode.js'

const base = (challenge: string, extra: Record<string, string> = {}) => ({ response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: challenge, code_challenge_method: 'S256', state: 'xyz', ...extra })

// Cheaper argon2id parameters: these tests log in a few hundred times; the hashing itself is tested elsewhere.
const FAST_HASH = { ARGON2_MEMORY_KIB: '8192', ARGON2_TIME_COST: '1' }

async function setup(t: Test, opts: Parameters<typeof testApp>[1] = {}) {
  const app = await testApp(t, { ...opts, env: { ...FAST_HASH, ...opts.env } })
  const user = await app.createUser('alice', PASSWORD)
  const client = await codeClient(app)
  return { app, user, client }
}

/** An error page: its status, HTML, no redirect anywhere. */
function checkErrorPage(t: Test, res: Reply, status: number, text?: RegExp) {
  t.equal(res.statusCode, status, `status ${status}`)
  t.equal(res.headers.location, undefined, 'no redirect')
  t.match(res.headers['content-type'], /^text\/html/)
  t.equal(res.headers['cache-control'], 'no-store')
  if (text) t.match(res.body, text)
}

/** An error sent back to the client: 303 to the redirect URI with error, state and iss (RFC 9207). */
function checkRedirectError(t: Test, res: Reply, error: string, state = 'xyz') {
  const cb = callback(res)
  t.ok(location(res).startsWith(`${REDIRECT}?`), 'back to the registered redirect URI')
  t.equal(cb.get('error'), error)
  t.equal(cb.get('state'), state)
  t.equal(cb.get('iss'), ISSUER)
  t.equal(cb.get('code'), null)
}

t.test('unknown client and unregistered redirect_uri: an error page, never a redirect (#146)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  checkErrorPage(t, await b.get(authorizeUrl({ ...base(challenge), client_id: 'nope' })), 400, /unknown client/)
  checkErrorPage(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, redirect_uri: 'https://evil.example/cb' })), 400, /not registered/)
  checkErrorPage(t, await b.get(authorizeUrl({ ...base(challenge), client_id: '' })), 400)
  checkErrorPage(t, await b.get('/authorize?client_id=a&client_id=b'), 400, /more than once/)
  const two = await codeClient(app, { redirectUris: [REDIRECT, 'https://rp.example.com/cb2'] })
  const { redirect_uri: _, ...noRedirect } = base(challenge)
  checkErrorPage(t, await b.get(authorizeUrl({ ...noRedirect, client_id: two.id })), 400, /redirect_uri parameter is missing/)
  // Exactly one registered: redirect_uri may be left out (OAuth 2.1 §2.3.2).
  const res = await b.get(authorizeUrl({ ...noRedirect, client_id: client.id }))
  t.equal(res.statusCode, 303)
  t.match(location(res), /^\/interaction\//)
})

t.test('redirect_uri variants are refused as unregistered: exact string match (#147)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  const variants = [
    'https://evil.example/cb', 'https://rp.example.com.evil.example/cb', 'https://evil.example@rp.example.com/cb', 'https://rp.example.com@evil.example/cb',
    'https://RP.example.com/cb', 'https://rp.example.com/CB', 'https://rp.example.com./cb', 'https://rp.example.com/cb/', 'https://rp.example.com/cb/.',
    'https://rp.example.com/cb%2F..%2F', 'https://rp.example.com/%63b', 'https://rp.example.com/cb#frag', 'https://rp.example.com/cb?x=1', 'https://rp.example.com/cb?',
    'http://rp.example.com/cb', 'https://rp.example.com:443/cb', 'https://rp.example.com:8443/cb', 'https://rp.example.com/cb/../cb', 'https://rp.example.com\\@evil.example/cb',
    '//evil.example/cb', 'https:/rp.example.com/cb', ' https://rp.example.com/cb', 'https://rp.example.com/cb ', 'https://rp.example.com/cbx', 'https://rp.example.com/c', 'javascript:alert(1)//https://rp.example.com/cb',
    'https://rp.example.com/cb%00', 'https://rp.example.com/cb;x', 'HTTPS://rp.example.com/cb', 'https://xn--rp-example.com/cb',
  ]
  t.ok(variants.length >= 20)
  for (const v of variants) {
    const res = await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, redirect_uri: v }))
    t.equal(res.statusCode, 400, v)
    t.equal(res.headers.location, undefined, `no redirect for ${v}`)
  }
})

t.test('implicit and hybrid response types: unsupported_response_type, back to the client (#148)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  for (const rt of ['token', 'id_token', 'code id_token', 'code token', 'none']) {
    checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, response_type: rt })), 'unsupported_response_type')
  }
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, response_type: '' })), 'invalid_request')
})

t.test('PKCE: missing, plain, no method, malformed challenge → invalid_request to the client (#149)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  const cases: Record<string, string>[] = [
    { code_challenge: '' }, { code_challenge_method: 'plain' }, { code_challenge_method: '' }, { code_challenge_method: 's256' },
    { code_challenge: challenge.slice(0, 42) }, { code_challenge: challenge + 'A' }, { code_challenge: challenge.slice(0, 42) + '=' }, { code_challenge: challenge.slice(0, 42) + '+' },
  ]
  for (const c of cases) checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, ...c })), 'invalid_request')
  const noChallenge = base(challenge) as Record<string, string>
  delete noChallenge.code_challenge
  delete noChallenge.code_challenge_method
  checkRedirectError(t, await b.get(authorizeUrl({ ...noChallenge, client_id: client.id })), 'invalid_request')
})

t.test('other request errors go back to the client; an overlong state is not echoed', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, scope: 'openid admin' })), 'invalid_scope')
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, prompt: 'none login' })), 'invalid_request')
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, prompt: 'select_account' })), 'invalid_request')
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, max_age: '-1' })), 'invalid_request')
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, response_mode: 'fragment' })), 'invalid_request')
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, login_hint: 'x'.repeat(300) })), 'invalid_request')
  const res = await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, state: 'x'.repeat(5000) }))
  const cb = callback(res)
  t.equal(cb.get('error'), 'invalid_request')
  t.equal(cb.get('state'), null)
  const cc = await app.createClient({ grantTypes: ['client_credentials'], redirectUris: [REDIRECT] })
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: cc.id })), 'unauthorized_client')
})

t.test('state with markup and 4 KB of data is echoed exactly (#154); iss on every response (#153)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  const state = `<script>alert("x")</script>&'` + 'z'.repeat(4000)
  const cb = await authorize(b, client.id, { challenge, extra: { state } })
  t.equal(cb.get('state'), state)
  t.equal(cb.get('iss'), ISSUER)
  t.ok(cb.get('code'))
})

t.test('the redirect URI keeps its own query; form_post answers with a self-submitting form', async (t) => {
  const { app } = await setup(t)
  const withQuery = `${REDIRECT}?tenant=a`
  const client = await codeClient(app, { redirectUris: [withQuery] })
  const b = new Browser(app)
  const { challenge } = pkce()
  await authorize(b, client.id, { challenge, extra: { redirect_uri: withQuery } }).catch(() => undefined)
  const res = await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, redirect_uri: withQuery, prompt: 'none' }))
  t.equal(res.statusCode, 303)
  const url = new URL(location(res))
  t.equal(url.searchParams.get('tenant'), 'a')
  t.ok(url.searchParams.get('code'))
  const fp = await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, redirect_uri: withQuery, response_mode: 'form_post', prompt: 'none' }))
  t.equal(fp.statusCode, 200)
  t.equal(action(fp.body), withQuery)
  t.match(field(fp.body, 'code'), /^tsac_/)
  t.equal(field(fp.body, 'state'), 'xyz')
  t.equal(field(fp.body, 'iss'), ISSUER)
  t.match(fp.body, /<script src="\/assets\/form-post\.js"><\/script>/)
  t.notMatch(fp.body, /<script>/, 'no inline script')
  t.match(fp.headers['content-security-policy'], /script-src 'self'/)
  const js = await app.app.inject('/assets/form-post.js')
  t.equal(js.statusCode, 200)
  t.match(js.headers['content-type'], /javascript/)
  const errorFp = await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, redirect_uri: withQuery, response_mode: 'form_post', response_type: 'token' }))
  t.equal(errorFp.statusCode, 200)
  t.equal(field(errorFp.body, 'error'), 'unsupported_response_type')
})

t.test('the hosted pages: strict CSP, no framing, no referrer, no caching (#156), accessible login form', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  const page = await b.get(location(await b.get(authorizeUrl({ ...base(challenge), client_id: client.id }))))
  t.equal(page.statusCode, 200)
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, /default-src 'none'/)
  t.match(csp, /frame-ancestors 'none'/)
  t.notMatch(csp, /unsafe-inline|unsafe-eval/)
  t.equal(page.headers['x-frame-options'], 'DENY')
  t.equal(page.headers['referrer-policy'], 'no-referrer')
  t.equal(page.headers['cache-control'], 'no-store')
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.match(page.body, /<label for="username">/)
  t.match(page.body, /<label for="password">/)
  t.match(page.body, /autocomplete="username"/)
  t.match(page.body, /autocomplete="current-password"/)
  t.match(page.body, /<html lang="en">/)
  t.notMatch(page.body, /<script|style=/, 'no inline script or style')
  const css = await app.app.inject('/assets/pages.css')
  t.match(css.body, /#2f5d8a/, 'the configured colour')
})

t.test('XSS probes in login_hint, client name and state are escaped (#157)', async (t) => {
  const { app } = await setup(t)
  const probe = `"><script>alert(1)</script><img src=x onerror=alert(1)>'`
  const client = await codeClient(app, { name: `Evil ${probe}` })
  const b = new Browser(app)
  const { challenge } = pkce()
  const page = await b.get(location(await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, login_hint: probe, state: probe }))))
  t.equal(page.statusCode, 200)
  t.notMatch(page.body, /<script>alert/)
  t.notMatch(page.body, /<img src=x/)
  t.match(page.body, /&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;/)
  t.equal(field(page.body, 'username'), undefined)
  t.match(page.body, /value="&quot;&gt;&lt;script&gt;/, 'login_hint prefilled, escaped')
  // A wrong password re-renders the form with the username escaped too.
  const again = await b.post(action(page.body), { csrf_token: field(page.body, 'csrf_token')!, username: probe, password: 'wrong' })
  t.equal(again.statusCode, 400)
  t.notMatch(again.body, /<script>alert/)
  t.match(again.body, /role="alert"/)
  t.match(again.body, /Incorrect username or password/)
  // An error page with an unknown client id echoes nothing raw.
  const err = await b.get(authorizeUrl({ ...base(challenge), client_id: probe }))
  t.notMatch(err.body, /<script>alert/)
})

t.test('the hosted form is throttled like /login: after the free failures a 429 page with Retry-After, even for the right password (#31 #158)', async (t) => {
  const { app, client } = await setup(t, { env: { LOGIN_ADDRESS_ACCOUNT_FREE_FAILURES: '2', LOGIN_BACKOFF_BASE_SECONDS: '60' } })
  const b = new Browser(app)
  const { challenge } = pkce()
  let page = await b.get(location(await b.get(authorizeUrl({ ...base(challenge), client_id: client.id }))))
  const url = action(page.body)
  const post = (password: string) => b.post(url, { csrf_token: field(page.body, 'csrf_token')!, username: 'alice', password })
  // Two free failures, then a third that is judged too, and locks.
  for (let i = 0; i < 3; i++) {
    page = await post('wrong')
    t.equal(page.statusCode, 400, `failure ${i + 1} is judged`)
    t.match(page.body, /Incorrect username or password/)
  }
  const locked = await post(PASSWORD)
  t.equal(locked.statusCode, 429, 'the right password waits too: the lock says nothing about the password')
  t.match(locked.headers['content-type'], /^text\/html/)
  t.equal(locked.headers['cache-control'], 'no-store')
  const wait = Number(locked.headers['retry-after'])
  t.ok(wait >= 1 && wait <= 60, `Retry-After ${locked.headers['retry-after']}`)
  t.match(locked.body, /Too many failed sign-in attempts\. Try again in \d+ seconds?\./)
  t.match(locked.body, /role="alert"/)
  t.equal(field(locked.body, 'csrf_token'), field(page.body, 'csrf_token'), 'the form is shown again, for the same request')
  t.equal(b.cookies.has('__Host-tessera_sso'), false, 'no session')
  const rows = await app.database.db.selectFrom('login_throttle').selectAll().execute()
  t.ok(rows.some((r) => r.blocked_until !== null && r.blocked_until > new Date()), 'the lock is in the database, for every instance')
})

t.test('CSRF: every form needs the token of its own pending request, in the browser that started it (#155)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  const first = await b.get(location(await b.get(authorizeUrl({ ...base(challenge), client_id: client.id }))))
  const second = await b.get(location(await b.get(authorizeUrl({ ...base(challenge), client_id: client.id }))))
  const url = action(first.body)
  const creds = { username: 'alice', password: PASSWORD }
  for (const csrf of [undefined, '', 'x'.repeat(32), field(second.body, 'csrf_token')!]) {
    const res = await b.post(url, { ...(csrf !== undefined ? { csrf_token: csrf } : {}), ...creds })
    checkErrorPage(t, res, 403, /did not come from this page/)
    t.equal(b.cookies.has('__Host-tessera_sso'), false, 'no session')
  }
  // The right token from another browser (no binding cookie).
  const other = new Browser(app)
  checkErrorPage(t, await other.post(url, { csrf_token: field(first.body, 'csrf_token')!, ...creds }), 403, /another browser/)
  // A form posted twice completes once.
  const ok = await b.post(url, { csrf_token: field(first.body, 'csrf_token')!, ...creds })
  t.equal(ok.statusCode, 303)
  t.ok(b.cookies.has('__Host-tessera_sso'))
  const consent = await b.get(location(ok))
  const consentUrl = action(consent.body)
  checkErrorPage(t, await b.post(consentUrl, { decision: 'allow' }), 403)
  checkErrorPage(t, await b.post(consentUrl, { decision: 'allow', csrf_token: field(second.body, 'csrf_token')! }), 403)
  const done = await b.post(consentUrl, { decision: 'allow', csrf_token: field(consent.body, 'csrf_token')! })
  t.ok(callback(done).get('code'))
  checkErrorPage(t, await b.post(consentUrl, { decision: 'allow', csrf_token: field(consent.body, 'csrf_token')! }), 400, /expired or was completed/)
})

t.test('the SSO cookie: __Host-, HttpOnly, Secure, SameSite=Lax; a new session on every login (#162)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  b.cookies.set('__Host-tessera_sso', 'A'.repeat(43))
  const page = await b.get(location(await b.get(authorizeUrl({ ...base(challenge), client_id: client.id }))))
  const res = await b.post(action(page.body), { csrf_token: field(page.body, 'csrf_token')!, username: 'alice', password: PASSWORD })
  const set = ([] as string[]).concat(res.headers['set-cookie'] as string[]).find((c) => c.startsWith('__Host-tessera_sso='))!
  t.match(set, /; Path=\//)
  t.match(set, /HttpOnly/)
  t.match(set, /Secure/)
  t.match(set, /SameSite=Lax/)
  t.notMatch(set, /Domain=/)
  const cookie = b.cookies.get('__Host-tessera_sso')!
  t.not(cookie, 'A'.repeat(43))
  const rows = await app.database.db.selectFrom('sso_session').select(['token_hash']).execute()
  t.equal(rows.length, 1)
  t.notOk(JSON.stringify(rows).includes(cookie), 'only the hash is stored')
  // Log in again with prompt=login: another new session id.
  const cb1 = await authorize(b, client.id, { challenge, extra: { prompt: 'login' } })
  t.not(b.cookies.get('__Host-tessera_sso'), cookie)
  t.ok(cb1.get('code'))
})

t.test('codes: redeemed once; a second redemption revokes what the first issued (#151)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { verifier, challenge } = pkce()
  const code = (await authorize(b, client.id, { challenge })).get('code')!
  const first = await redeem(app, client, code, verifier)
  t.equal(first.statusCode, 200)
  const tokens = first.json()
  const second = await redeem(app, client, code, verifier)
  t.equal(second.statusCode, 400)
  t.same(second.json(), { error: 'invalid_grant', error_description: 'the authorization code is invalid' })
  const userinfo = await app.app.inject({ url: '/userinfo', headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(userinfo.statusCode, 401, 'the access token is revoked')
  const refresh = await app.app.inject({ method: 'POST', url: '/token', headers: FORM, payload: form({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: client.id, client_secret: client.secret! }) })
  t.equal(refresh.statusCode, 400, 'the refresh family is revoked')
  const events = await app.database.db.selectFrom('audit_event').select('type').where('type', '=', 'authorization_code.reuse_detected').execute()
  t.equal(events.length, 1)
})

t.test('codes redeemed in parallel: exactly one success (#151)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  for (let i = 0; i < 3; i++) {
    const { verifier, challenge } = pkce()
    const code = (await authorize(b, client.id, { challenge })).get('code')!
    const answers = await Promise.all(Array.from({ length: 5 }, () => redeem(app, client, code, verifier)))
    t.equal(answers.filter((a) => a.statusCode === 200).length, 1)
    t.equal(answers.filter((a) => a.statusCode === 400).length, 4)
  }
})

t.test('PKCE at /token: wrong, missing or malformed verifier → invalid_grant, and the code is spent (#150)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  for (const bad of [pkce().verifier, '', 'short', `${pkce().verifier}!`]) {
    const { verifier, challenge } = pkce()
    const code = (await authorize(b, client.id, { challenge })).get('code')!
    const res = await redeem(app, client, code, verifier, { code_verifier: bad })
    t.equal(res.statusCode, 400)
    t.equal(res.json().error, 'invalid_grant')
    t.equal((await redeem(app, client, code, verifier)).statusCode, 400, 'spent')
  }
})

t.test("another client's code, another redirect_uri, an expired code → invalid_grant (#152)", async (t) => {
  let now = Date.now()
  const { app, client } = await setup(t, { now: () => now })
  const other = await codeClient(app)
  const b = new Browser(app)
  {
    const { verifier, challenge } = pkce()
    const code = (await authorize(b, client.id, { challenge })).get('code')!
    const res = await redeem(app, other, code, verifier)
    t.equal(res.statusCode, 400)
    t.equal(res.json().error, 'invalid_grant')
  }
  {
    const { verifier, challenge } = pkce()
    const code = (await authorize(b, client.id, { challenge })).get('code')!
    t.equal((await redeem(app, client, code, verifier, { redirect_uri: 'https://rp.example.com/other' })).statusCode, 400)
  }
  {
    const { verifier, challenge } = pkce()
    const code = (await authorize(b, client.id, { challenge })).get('code')!
    // The test's clock stands still while the test runs: set it from the wall clock.
    now = Date.now() + 61_000
    const res = await redeem(app, client, code, verifier)
    t.equal(res.statusCode, 400)
    t.equal(res.json().error, 'invalid_grant')
    now = Date.now()
  }
  {
    const { verifier, challenge } = pkce()
    const code = (await authorize(b, client.id, { challenge })).get('code')!
    now = Date.now() + 55_000
    t.equal((await redeem(app, client, code, verifier)).statusCode, 200, 'within 60 s it works')
  }
  for (const garbage of ['x', 'tsac_' + 'A'.repeat(43), 'tsac_' + 'A'.repeat(4000)]) {
    t.equal((await redeem(app, client, garbage, pkce().verifier)).statusCode, 400)
  }
  const noVerifier = await app.app.inject({ method: 'POST', url: '/token', headers: FORM, payload: form({ grant_type: 'authorization_code', code: 'x', client_id: client.id, client_secret: client.secret! }) })
  t.equal(noVerifier.json().error, 'invalid_grant')
})

t.test('prompt=none: login_required without a session, consent_required without consent (#159)', async (t) => {
  const { app, client } = await setup(t)
  const first = await codeClient(app, { firstParty: true })
  const b = new Browser(app)
  const { challenge } = pkce()
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, prompt: 'none' })), 'login_required')
  await authorize(b, first.id, { challenge })
  t.equal(b.cookies.has('__Host-tessera_sso'), true)
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, prompt: 'none' })), 'consent_required')
  const ok = await b.get(authorizeUrl({ ...base(challenge), client_id: first.id, prompt: 'none' }))
  t.ok(callback(ok).get('code'), 'first-party: no consent, no UI')
})

t.test('max_age=0 and prompt=login force a fresh login; auth_time moves (#160); consent asked for new scopes only (#163); nonce per request (#164)', async (t) => {
  let now = Date.now()
  const { app, client } = await setup(t, { now: () => now })
  const b = new Browser(app)
  const p1 = pkce()
  const t1 = (await redeem(app, client, (await authorize(b, client.id, { challenge: p1.challenge, extra: { scope: 'openid profile', nonce: 'one' } })).get('code')!, p1.verifier)).json()
  const id1 = decodeJwt(t1.id_token)
  t.equal(id1.nonce, 'one')
  // Same scopes again: no page at all.
  const p2 = pkce()
  const silent = await b.get(authorizeUrl({ ...base(p2.challenge), client_id: client.id, scope: 'openid profile', nonce: 'two' }))
  const id2 = decodeJwt((await redeem(app, client, callback(silent).get('code')!, p2.verifier)).json().id_token)
  t.equal(id2.nonce, 'two')
  t.equal(id2.auth_time, id1.auth_time)
  // A new scope: the consent page lists only it.
  const p3 = pkce()
  const consent = await b.get(location(await b.get(authorizeUrl({ ...base(p3.challenge), client_id: client.id, scope: 'openid profile email' }))))
  t.match(consent.body, /See your e-mail address/)
  t.notMatch(consent.body, /See your name/)
  // prompt=consent lists everything.
  const all = await b.get(location(await b.get(authorizeUrl({ ...base(p3.challenge), client_id: client.id, scope: 'openid profile', prompt: 'consent' }))))
  t.match(all.body, /See your name/)
  // max_age=0: the login page again, and a later auth_time.
  await new Promise((r) => setTimeout(r, 1100))
  now += 5000
  const login = await b.get(location(await b.get(authorizeUrl({ ...base(p3.challenge), client_id: client.id, scope: 'openid profile', max_age: '0' }))))
  t.match(login.body, /name="password"/)
  const p4 = pkce()
  const cb = await authorize(b, client.id, { challenge: p4.challenge, extra: { scope: 'openid profile', prompt: 'login' } })
  const id4 = decodeJwt((await redeem(app, client, cb.get('code')!, p4.verifier)).json().id_token)
  t.ok((id4.auth_time as number) > (id1.auth_time as number), 'auth_time moved')
  t.not(id4.sid, id1.sid, 'a new session')
})

t.test('consent: deny → access_denied; revoked through the admin API, asked again', async (t) => {
  const { app, client, user } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  const page = await b.get(location(await b.get(authorizeUrl({ ...base(challenge), client_id: client.id }))))
  const consent = await b.get(location(await b.post(action(page.body), { csrf_token: field(page.body, 'csrf_token')!, username: 'alice', password: PASSWORD })))
  checkRedirectError(t, await b.post(action(consent.body), { csrf_token: field(consent.body, 'csrf_token')!, decision: 'deny' }), 'access_denied')
  await authorize(b, client.id, { challenge })
  const admin = await app.createClient({ grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [ISSUER] })
  const token = (await app.app.inject({ method: 'POST', url: '/token', headers: { ...FORM, authorization: basic(admin.id, admin.secret!) }, payload: form({ grant_type: 'client_credentials', scope: 'tessera:admin' }) })).json().access_token
  const auth = { authorization: `Bearer ${token}` }
  const list = await app.app.inject({ url: `/admin/users/${user.id}/consents`, headers: auth })
  t.equal(list.statusCode, 200)
  t.same(list.json().consents.map((c: { client_id: string; scopes: string[] }) => [c.client_id, c.scopes]), [[client.id, ['openid', 'profile']]])
  const del = await app.app.inject({ method: 'DELETE', url: `/admin/users/alice/consents?client=${client.id}`, headers: auth })
  t.same(del.json(), { revoked: 1 })
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, prompt: 'none' })), 'consent_required')
  // SSO sessions: listed, ended by the admin → SSO stops at once (#161).
  const sessions = await app.app.inject({ url: '/admin/users/alice/sso-sessions', headers: auth })
  t.equal(sessions.json().sso_sessions.length, 1)
  const sid = sessions.json().sso_sessions[0].id
  t.same((await app.app.inject({ method: 'DELETE', url: `/admin/sso-sessions/${sid}`, headers: auth })).json(), { ended: true })
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: client.id, prompt: 'none' })), 'login_required')
  t.equal((await app.app.inject({ method: 'DELETE', url: `/admin/sso-sessions/${sid}`, headers: auth })).json().ended, false)
  t.equal((await app.app.inject({ method: 'DELETE', url: '/admin/users/alice/sso-sessions', headers: auth })).statusCode, 200)
  t.equal((await app.app.inject({ url: '/admin/users/alice/sso-sessions?include=all', headers: auth })).json().sso_sessions[0].state, 'revoked')
})

t.test('PAR: authenticated push, single-use request_uri, per-client requirement (#169)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { verifier, challenge } = pkce()
  const push = (auth: Record<string, string>, params: Record<string, string>) => app.app.inject({ method: 'POST', url: '/par', headers: { ...FORM, ...auth }, payload: form(params) })
  const noAuth = await push({}, { ...base(challenge), client_id: client.id })
  t.equal(noAuth.statusCode, 401)
  t.equal(noAuth.json().error, 'invalid_client')
  const bad = await push({ authorization: basic(client.id, client.secret!) }, { ...base(challenge), redirect_uri: 'https://evil.example/cb' })
  t.equal(bad.statusCode, 400)
  const plain = await push({ authorization: basic(client.id, client.secret!) }, { ...base(challenge), code_challenge_method: 'plain' })
  t.equal(plain.statusCode, 400)
  const ok = await push({ authorization: basic(client.id, client.secret!) }, base(challenge))
  t.equal(ok.statusCode, 201)
  t.equal(ok.headers['cache-control'], 'no-store')
  const { request_uri: requestUri, expires_in: expiresIn } = ok.json()
  t.match(requestUri, /^urn:ietf:params:oauth:request_uri:[A-Za-z0-9_-]{43}$/)
  t.equal(expiresIn, 60)
  const other = await codeClient(app)
  checkErrorPage(t, await b.get(authorizeUrl({ client_id: other.id, request_uri: requestUri })), 400, /request_uri is invalid/)
  const cb = await authorize(b, client.id, { challenge, extra: { request_uri: requestUri, client_id: client.id } }).catch((e) => e)
  // authorize() adds its own parameters; PAR uses only the pushed ones (state 'xyz').
  t.equal((cb as URLSearchParams).get('state'), 'xyz')
  t.equal((await redeem(app, client, (cb as URLSearchParams).get('code')!, verifier)).statusCode, 200)
  checkErrorPage(t, await b.get(authorizeUrl({ client_id: client.id, request_uri: requestUri })), 400, /request_uri is invalid/)
  checkErrorPage(t, await b.get(authorizeUrl({ client_id: client.id, request_uri: 'urn:x' })), 400)
  const withRequestUri = await push({ authorization: basic(client.id, client.secret!) }, { ...base(challenge), request_uri: requestUri })
  t.equal(withRequestUri.statusCode, 400)
  const required = await codeClient(app, { requirePushedAuthorizationRequests: true })
  checkRedirectError(t, await b.get(authorizeUrl({ ...base(challenge), client_id: required.id })), 'invalid_request')
})

t.test('RP-initiated logout: hint verified, registered URIs only, confirmation without a hint (#165, #166, #17)', async (t) => {
  const { app, client } = await setup(t)
  const rp = await codeClient(app, { postLogoutRedirectUris: ['https://rp.example.com/bye'] })
  const b = new Browser(app)
  const { verifier, challenge } = pkce()
  const tokens = (await redeem(app, rp, (await authorize(b, rp.id, { challenge })).get('code')!, verifier)).json()
  // Unregistered post_logout_redirect_uri, forged hint, an access token as hint: pages, no redirect.
  checkErrorPage(t, await b.get(`/session/end?${new URLSearchParams({ id_token_hint: tokens.id_token, post_logout_redirect_uri: 'https://evil.example/bye' })}`), 400)
  checkErrorPage(t, await b.get(`/session/end?${new URLSearchParams({ client_id: client.id, post_logout_redirect_uri: 'https://rp.example.com/bye' })}`), 400)
  checkErrorPage(t, await b.get(`/session/end?${new URLSearchParams({ id_token_hint: tokens.access_token })}`), 400, /id_token_hint is invalid/)
  const forged = tokens.id_token.slice(0, -4) + 'AAAA'
  checkErrorPage(t, await b.get(`/session/end?${new URLSearchParams({ id_token_hint: forged })}`), 400)
  checkErrorPage(t, await b.get(`/session/end?${new URLSearchParams({ id_token_hint: tokens.id_token, client_id: client.id })}`), 400)
  t.ok(b.cookies.has('__Host-tessera_sso'), 'still signed in')
  // No hint: a confirmation page whose form needs its CSRF token.
  const confirm = await b.get(`/session/end?${new URLSearchParams({ client_id: rp.id, post_logout_redirect_uri: 'https://rp.example.com/bye', state: '<s>' })}`)
  t.equal(confirm.statusCode, 200)
  t.match(confirm.body, /Sign out\?/)
  t.match(confirm.headers['content-security-policy'], /frame-ancestors 'none'/)
  const fields = { post_logout_redirect_uri: 'https://rp.example.com/bye', client_id: rp.id, state: '<s>', decision: 'logout' }
  checkErrorPage(t, await b.post(action(confirm.body), fields), 403)
  checkErrorPage(t, await b.post(action(confirm.body), { ...fields, csrf_token: 'A'.repeat(43) }), 403)
  const stay = await b.post(action(confirm.body), { ...fields, decision: 'stay', csrf_token: field(confirm.body, 'csrf_token')! })
  t.match(stay.body, /still signed in/)
  const out = await b.post(action(confirm.body), { ...fields, csrf_token: field(confirm.body, 'csrf_token')! })
  t.equal(out.statusCode, 303)
  t.equal(location(out), 'https://rp.example.com/bye?state=%3Cs%3E')
  t.equal(b.cookies.has('__Host-tessera_sso'), false, 'cookie cleared')
  const refresh = await app.app.inject({ method: 'POST', url: '/token', headers: FORM, payload: form({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: rp.id, client_secret: rp.secret! }) })
  t.equal(refresh.statusCode, 400, 'the families of the session are revoked')
  // Without a session: straight to the registered URI; with a hint, no question.
  const again = await b.get(`/session/end?${new URLSearchParams({ id_token_hint: tokens.id_token, post_logout_redirect_uri: 'https://rp.example.com/bye' })}`)
  t.equal(location(again), 'https://rp.example.com/bye')
  const page = await b.get('/session/end')
  t.match(page.body, /You are signed out/)
})

t.test('back-channel logout: bounded retries, no redirects followed, the logout completes (#167, #168)', async (t) => {
  const hits: { path: string; body: string }[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      hits.push({ path: req.url!, body })
      if (req.url === '/500') res.writeHead(500).end()
      else if (req.url === '/redirect') res.writeHead(302, { location: '/ok' }).end()
      else if (req.url === '/slow') setTimeout(() => res.writeHead(200).end(), 2000)
      else res.writeHead(200).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  const rp = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const app = await testApp(t, { env: { ...FAST_HASH, BACKCHANNEL_LOGOUT_TIMEOUT_MS: '200', BACKCHANNEL_LOGOUT_RETRIES: '2' } })
  await app.createUser('alice', PASSWORD)
  const b = new Browser(app)
  const clients = []
  for (const path of ['/ok', '/500', '/redirect', '/slow']) {
    const c = await codeClient(app, { firstParty: true, backchannelLogoutUri: `${rp}${path}` })
    clients.push(c)
    await authorize(b, c.id, { challenge: pkce().challenge })
  }
  const confirm = await b.get('/session/end')
  const out = await b.post(action(confirm.body), { csrf_token: field(confirm.body, 'csrf_token')!, decision: 'logout' })
  t.equal(out.statusCode, 200, 'the logout answered')
  await app.services.backchannel.idle()
  const count = (p: string) => hits.filter((h) => h.path === p).length
  t.equal(count('/ok'), 1)
  t.equal(count('/500'), 3, 'one try and two retries')
  t.equal(count('/redirect'), 3)
  t.equal(count('/slow'), 3, 'timed out each time')
  t.equal(hits.filter((h) => h.path === '/ok' && h.body.startsWith('logout_token=')).length, 1)
  const token = new URLSearchParams(hits.find((h) => h.path === '/ok')!.body).get('logout_token')!
  const claims = decodeJwt(token)
  t.equal(claims.aud, clients[0]!.id)
  t.equal(claims.iss, ISSUER)
  t.ok(claims.sid && claims.sub && claims.jti && claims.iat)
  t.same(claims.events, { 'http://schemas.openid.net/event/backchannel-logout': {} })
  t.equal(claims.nonce, undefined)
})

t.test('discovery advertises the flow truthfully', async (t) => {
  const app = await testApp(t)
  const d = (await app.app.inject('/.well-known/openid-configuration')).json()
  t.equal(d.authorization_endpoint, `${ISSUER}/authorize`)
  t.equal(d.pushed_authorization_request_endpoint, `${ISSUER}/par`)
  t.equal(d.end_session_endpoint, `${ISSUER}/session/end`)
  t.same(d.response_types_supported, ['code'])
  t.same(d.code_challenge_methods_supported, ['S256'])
  t.equal(d.authorization_response_iss_parameter_supported, true)
  t.equal(d.backchannel_logout_supported, true)
  t.same(d.prompt_values_supported, ['none', 'login', 'consent'])
  t.ok(d.grant_types_supported.includes('authorization_code'))
  t.ok(d.claims_supported.includes('email_verified'))
})

t.test('GET /par, PUT /authorize and friends: 405', async (t) => {
  const app: TestApp = await testApp(t)
  t.equal((await app.app.inject({ method: 'GET', url: '/par' })).statusCode, 405)
  t.equal((await app.app.inject({ method: 'PUT', url: '/authorize' })).statusCode, 405)
  t.equal((await app.app.inject({ method: 'POST', url: '/authorize?client_id=x', headers: FORM, payload: 'a=b' })).statusCode, 400)
  t.equal((await app.app.inject({ method: 'POST', url: '/authorize', headers: { 'content-type': 'application/json' }, payload: '{}' })).statusCode, 400)
  t.equal((await app.app.inject({ method: 'GET', url: '/interaction/short' })).statusCode, 400)
  // HEAD is GET without a body, whatever headers come with it (the fuzzer found a 500 here).
  for (const url of ['/session/end', '/authorize', '/authorize?client_id=x']) {
    const head = await app.app.inject({ method: 'HEAD', url, headers: FORM })
    const get = await app.app.inject({ method: 'GET', url, headers: FORM })
    t.equal(head.statusCode, get.statusCode, `HEAD ${url}: as GET (${get.statusCode})`)
    t.ok(head.statusCode < 500)
    t.equal(head.body, '', 'no body')
  }
  const post = await app.app.inject({ method: 'POST', url: '/session/end', headers: FORM })
  t.equal(post.statusCode, 200, 'a form POST with no body at all: no parameters')
})

t.test('housekeeping deletes expired requests and codes and ended SSO sessions (#170)', async (t) => {
  const { app, client } = await setup(t)
  const b = new Browser(app)
  const { challenge } = pkce()
  await b.get(authorizeUrl({ ...base(challenge), client_id: client.id }))
  await authorize(b, client.id, { challenge })
  const db = app.database.db
  await db.updateTable('authorization_request').set({ expires_at: new Date(Date.now() - 1000) }).execute()
  await db.updateTable('authorization_code').set({ expires_at: new Date(Date.now() - 30 * 86_400_000) }).execute()
  await db.updateTable('sso_session').set({ revoked_at: new Date(Date.now() - 30 * 86_400_000) }).execute()
  const { runHousekeeping, housekeepingSettings } = await import('../../src/housekeeping/housekeeping.js')
  const deleted = await runHousekeeping(db, housekeepingSettings(app.config))
  t.match(deleted, { authorization_request: 2, authorization_code: 1, sso_session: 1 })
  for (const table of ['authorization_request', 'authorization_code', 'sso_session', 'sso_session_client'] as const) {
    t.equal((await db.selectFrom(table).selectAll().execute()).length, 0, `${table} is empty`)
  }
})
