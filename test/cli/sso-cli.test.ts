// `tessera sso-sessions` and `tessera consents` (in-process), and the hosted login form's answers for
// unknown, wrong-password and disabled users (SECURITY #158, #94).
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createLocalJWKSet, jwtVerify } from 'jose'
import t from 'tap'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { disableUser } from '../../src/users/disable-user.js'
import { testApp, testEnv } from '../helpers/app.js'
import { action, authorize, authorizeUrl, Browser, codeClient, field, location, PASSWORD, pkce, REDIRECT } from '../helpers/authcode.js'
import { runTessera } from '../helpers/cli.js'

t.test('sso-sessions list|revoke|revoke-all and consents list|revoke', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await codeClient(app)
  const env = testEnv({ DATABASE_URL: app.databaseUrl! })
  const cli = (args: string[]) => runTessera(args, env)
  for (let i = 0; i < 2; i++) await authorize(new Browser(app), client.id, { challenge: pkce().challenge })
  const list = await cli(['sso-sessions', 'list', '--username', 'alice'])
  t.equal(list.code, 0, list.err)
  const sessions = list.json()
  t.equal(sessions.length, 2)
  t.match(sessions[0], { state: 'active', revoked_at: null })
  const one = await cli(['sso-sessions', 'revoke', '--id', sessions[0].id])
  t.match(one.json(), { id: sessions[0].id, ended: true, revoked_families: 0 })
  t.match((await cli(['sso-sessions', 'revoke', '--id', sessions[0].id])).json(), { ended: false })
  t.equal((await cli(['sso-sessions', 'revoke', '--id', '00000000-0000-4000-8000-000000000000'])).code, 2)
  t.equal((await cli(['sso-sessions', 'revoke'])).code, 2)
  t.equal((await cli(['sso-sessions', 'list', '--username', 'nobody'])).code, 2)
  t.same((await cli(['sso-sessions', 'revoke-all', '--username', 'alice'])).json(), { username: 'alice', ended: 1, backchannel: [] })
  t.equal((await cli(['sso-sessions', 'list', '--username', 'alice'])).json().length, 0)
  t.equal((await cli(['sso-sessions', 'list', '--username', 'alice', '--all'])).json().length, 2)
  const consents = (await cli(['consents', 'list', '--username', 'alice'])).json()
  t.match(consents, [{ client_id: client.id, scopes: ['openid', 'profile'] }])
  t.same((await cli(['consents', 'revoke', '--username', 'alice'])).json(), { username: 'alice', revoked: 1 })
  t.same((await cli(['consents', 'list', '--username', 'alice'])).json(), [])
  const events = await app.database.db.selectFrom('audit_event').select('type').where('type', 'in', ['sso_session.started', 'sso_session.ended', 'consent.granted', 'consent.revoked']).execute()
  t.same([...new Set(events.map((e) => e.type))].sort(), ['consent.granted', 'consent.revoked', 'sso_session.ended', 'sso_session.started'])
})

t.test('sso-sessions revoke and revoke-all tell the clients over the back channel, as the server does (#167)', async (t) => {
  const hits: { path: string; body: string }[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      hits.push({ path: req.url!, body })
      res.writeHead(req.url === '/down' ? 503 : 200).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  const rp = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const ok = await codeClient(app, { firstParty: true, backchannelLogoutUri: `${rp}/ok` })
  const down = await codeClient(app, { firstParty: true, backchannelLogoutUri: `${rp}/down` })
  const env = testEnv({ DATABASE_URL: app.databaseUrl!, BACKCHANNEL_LOGOUT_RETRIES: '1', BACKCHANNEL_LOGOUT_TIMEOUT_MS: '2000' })
  const cli = (args: string[]) => runTessera(args, env)

  const b = new Browser(app)
  await authorize(b, ok.id, { challenge: pkce().challenge })
  const [session] = (await cli(['sso-sessions', 'list', '--username', 'alice'])).json()
  const one = await cli(['sso-sessions', 'revoke', '--id', session.id])
  t.equal(one.code, 0, one.err)
  t.same(one.json().backchannel, [{ client_id: ok.id, ok: true, attempts: 1, status: 200 }])
  t.equal(hits.length, 1)
  const token = new URLSearchParams(hits[0]!.body).get('logout_token')!
  const jwks = createLocalJWKSet((await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json())
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: app.config.issuer, audience: ok.id, typ: 'logout+jwt' })
  t.equal(payload.sid, session.id, 'the ended session')
  t.same(payload.events, { 'http://schemas.openid.net/event/backchannel-logout': {} })
  t.equal(protectedHeader.alg, 'RS256', "the client's ID-token algorithm")

  // Two sessions, one client that answers and one that does not: both are tried, the failure is reported.
  const b2 = new Browser(app)
  await authorize(b2, ok.id, { challenge: pkce().challenge })
  await authorize(b2, down.id, { challenge: pkce().challenge })
  const all = await cli(['sso-sessions', 'revoke-all', '--username', 'alice'])
  t.equal(all.code, 0, all.err)
  const sent = all.json().backchannel as { client_id: string; ok: boolean; attempts: number }[]
  t.same(sent.map((d) => [d.client_id, d.ok, d.attempts]).sort(), [[ok.id, true, 1], [down.id, false, 2]].sort())
  t.equal(hits.filter((h) => h.path === '/down').length, 2, 'one try and one retry')
})

t.test('the hosted form answers unknown user, wrong password and disabled user alike (#158, #94)', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  await app.createUser('dave', PASSWORD)
  await disableUser(app.database.db, 'dave', CLI_CONTEXT)
  const client = await codeClient(app)
  const pages: { status: number; body: string }[] = []
  for (const [username, password] of [['nobody', PASSWORD], ['alice', 'wrong password'], ['dave', PASSWORD]] as const) {
    const b = new Browser(app)
    const page = await b.get(location(await b.get(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: REDIRECT, scope: 'openid', code_challenge: pkce().challenge, code_challenge_method: 'S256' }))))
    const csrf = field(page.body, 'csrf_token')!
    const res = await b.post(action(page.body), { csrf_token: csrf, username, password })
    pages.push({ status: res.statusCode, body: res.body.replaceAll(csrf, 'CSRF').replace(/interaction\/[A-Za-z0-9_-]+/g, 'interaction/ID').replace(`value="${username}"`, 'value="USER"') })
    t.equal(b.cookies.has('__Host-tessera_sso'), false, `no session for ${username}`)
  }
  t.equal(pages[0]!.status, 400)
  t.same(pages[1], pages[0], 'wrong password = unknown user')
  t.same(pages[2], pages[0], 'disabled user = unknown user')
  const failed = await app.database.db.selectFrom('audit_event').select('type').where('type', '=', 'login.failed').execute()
  t.equal(failed.length, 3, 'each failure audited')
  // Empty fields: the form again, no password check.
  const b = new Browser(app)
  const page = await b.get(location(await b.get(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: REDIRECT, scope: 'openid', code_challenge: pkce().challenge, code_challenge_method: 'S256' }))))
  const empty = await b.post(action(page.body), { csrf_token: field(page.body, 'csrf_token')!, username: 'alice', password: '' })
  t.equal(empty.statusCode, 400)
  t.match(empty.body, /Enter your username and password/)
  const long = await b.post(action(page.body), { csrf_token: field(page.body, 'csrf_token')!, username: 'a'.repeat(300), password: 'x' })
  t.equal(long.statusCode, 400)
  t.match(long.body, /username is too long/)
})
