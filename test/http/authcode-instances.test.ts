// The authorization-code flow across three real `tessera serve` processes on one PostgreSQL
// (SECURITY #151, #170): login on A, code redeemed at B, SSO recognised at C; a pending request
// started on one instance and continued on another; one code redeemed on two instances at once.
import { createHash, randomBytes } from 'node:crypto'
import { decodeJwt } from 'jose'
import t from 'tap'
import { freshDatabase } from '../helpers/app.js'
import { ALICE_PASSWORD, freePort, runCli, sharedDatabaseEnv, startServer, token, waitReady, type Body } from '../helpers/processes.js'

const REDIRECT = 'https://rp.example.com/cb'

/** A cookie-keeping HTTP client that does not follow redirects. */
class Agent {
  cookies = new Map<string, string>()
  async send(url: string, init: { method?: string; body?: Record<string, string> } = {}) {
    const res = await fetch(url, {
      method: init.method ?? 'GET',
      redirect: 'manual',
      headers: { cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '), ...(init.body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      ...(init.body ? { body: new URLSearchParams(init.body).toString() } : {}),
    })
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';')
      const i = pair!.indexOf('=')
      if (/max-age=0/i.test(c)) this.cookies.delete(pair!.slice(0, i))
      else this.cookies.set(pair!.slice(0, i), pair!.slice(i + 1))
    }
    return { status: res.status, location: res.headers.get('location'), text: await res.text() }
  }
}

const csrfOf = (html: string) => /name="csrf_token" value="([^"]+)"/.exec(html)![1]!

t.test('login on A, code redeemed at B, SSO at C; a pending request continues on another instance', async (t) => {
  const url = await freshDatabase(t)
  const env = sharedDatabaseEnv(t, url)
  t.equal((await runCli(t, ['migrate'], env)).code, 0, 'migrate')
  const user = await runCli(t, ['users', 'create', '--username', 'alice', '--password-stdin', '--name', 'Alice Liddell', '--email', 'alice@example.com', '--email-verified'], env, ALICE_PASSWORD + '\n')
  t.equal(user.code, 0, user.stderr)
  t.match(JSON.parse(user.stdout), { username: 'alice', name: 'Alice Liddell', email: 'alice@example.com', email_verified: true })
  const mk = async (name: string, extra: string[]) => {
    const r = await runCli(t, ['clients', 'create', '--name', name, '--grant-types', 'authorization_code,refresh_token', '--scopes', 'openid,profile,email', '--redirect-uris', REDIRECT, ...extra], env)
    t.equal(r.code, 0, r.stderr)
    const b = JSON.parse(r.stdout) as Body
    return { id: b.client_id as string, secret: b.client_secret as string, body: b }
  }
  const one = await mk('one', ['--first-party', '--post-logout-redirect-uris', 'https://rp.example.com/bye', '--backchannel-logout-uri', 'https://rp.example.com/bc'])
  t.match(one.body, { redirect_uris: [REDIRECT], post_logout_redirect_uris: ['https://rp.example.com/bye'], first_party: true, backchannel_logout_uri: 'https://rp.example.com/bc', require_pushed_authorization_requests: false })
  const two = await mk('two', ['--first-party', '--require-par'])
  t.equal(two.body.require_pushed_authorization_requests, true)

  const ports = new Set<number>()
  while (ports.size < 3) ports.add(await freePort())
  const [a, b, c] = [...ports].map((port, i) => startServer(t, 'ABC'[i]!, env, port))
  await Promise.all([a!, b!, c!].map((s) => waitReady(s, 60_000)))

  const verifier = randomBytes(32).toString('base64url')
  const challenge = createHash('sha256').update(verifier).digest('base64url')
  const q = (client: string, extra: Record<string, string> = {}) => new URLSearchParams({ response_type: 'code', client_id: client, redirect_uri: REDIRECT, scope: 'openid profile email', code_challenge: challenge, code_challenge_method: 'S256', state: 's', nonce: 'n', ...extra }).toString()

  // The request starts on A; its login page is shown by B and the form posted to C (#170).
  const browser = new Agent()
  const start = await browser.send(`${a!.url}/authorize?${q(one.id)}`)
  t.equal(start.status, 303)
  const page = await browser.send(`${b!.url}${start.location}`)
  t.equal(page.status, 200)
  const login = await browser.send(`${c!.url}${start.location}/login`, { method: 'POST', body: { csrf_token: csrfOf(page.text), username: 'alice', password: ALICE_PASSWORD } })
  t.equal(login.status, 303, login.text.slice(0, 300))
  const cb = new URL(login.location!)
  t.equal(cb.searchParams.get('iss'), 'https://tessera.test')
  const code = cb.searchParams.get('code')!

  // Redeemed at B.
  const tokens = await token(b!.url, one, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT })
  t.equal(tokens.status, 200, JSON.stringify(tokens.body))
  const id = decodeJwt(tokens.body.id_token as string)
  t.equal(id.email, 'alice@example.com')
  t.equal(id.nonce, 'n')

  // SSO at C for the second client (PAR pushed to A): no login page.
  const pushed = await fetch(`${a!.url}/par`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${two.id}:${two.secret}`).toString('base64')}` }, body: q(two.id) })
  t.equal(pushed.status, 201)
  const { request_uri: requestUri } = (await pushed.json()) as { request_uri: string }
  const sso = await browser.send(`${c!.url}/authorize?${new URLSearchParams({ client_id: two.id, request_uri: requestUri })}`)
  t.equal(sso.status, 303)
  const code2 = new URL(sso.location!).searchParams.get('code')!
  t.ok(code2, 'SSO recognised on C')
  const reuseUri = await browser.send(`${b!.url}/authorize?${new URLSearchParams({ client_id: two.id, request_uri: requestUri })}`)
  t.equal(reuseUri.status, 400, 'the request_uri is single-use across instances')

  // One code redeemed on two instances at once: exactly one success; the loser revokes the winner's tokens.
  const results = await Promise.all([a!, b!].map((s) => token(s.url, two, { grant_type: 'authorization_code', code: code2, code_verifier: verifier, redirect_uri: REDIRECT })))
  t.same(results.map((r) => r.status).sort(), [200, 400])
  const winner = results.find((r) => r.status === 200)!
  const refresh = await token(c!.url, two, { grant_type: 'refresh_token', refresh_token: winner.body.refresh_token as string })
  t.equal(refresh.status, 400, 'the refresh family of the reused code is revoked')
  t.equal(decodeJwt(winner.body.id_token as string).sid, id.sid, 'one SSO session across the instances')

  // The CLI lists and revokes SSO sessions and consents.
  const list = await runCli(t, ['sso-sessions', 'list', '--username', 'alice'], env)
  t.equal(list.code, 0, list.stderr)
  const sessions = JSON.parse(list.stdout) as Body[]
  t.equal(sessions.length, 1)
  t.equal(sessions[0].id, id.sid)
  const revoke = await runCli(t, ['sso-sessions', 'revoke', '--id', id.sid as string], env)
  t.equal(revoke.code, 0, revoke.stderr)
  t.match(JSON.parse(revoke.stdout), { id: id.sid, ended: true })
  const none = await browser.send(`${a!.url}/authorize?${q(one.id, { prompt: 'none' })}`)
  t.equal(new URL(none.location!).searchParams.get('error'), 'login_required', 'the revoked session is gone on every instance')
  const consents = await runCli(t, ['consents', 'list', '--username', 'alice'], env)
  t.equal(consents.code, 0, consents.stderr)
  t.same(JSON.parse(consents.stdout), [], 'first-party clients leave no consent')
  const rc = await runCli(t, ['consents', 'revoke', '--username', 'alice', '--client', one.id], env)
  t.equal(rc.code, 0, rc.stderr)
  t.same(JSON.parse(rc.stdout), { username: 'alice', revoked: 0 })
})
