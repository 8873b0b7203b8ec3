// The authorization-code flow in a real browser: Debian's chromium driven by playwright-core, with
// openid-client as the relying party (two RPs: a third-party one that gets the consent page, and a
// first-party one that uses PAR). Login (keyboard only), consent, callback, token exchange,
// userinfo, refresh, SSO into the second client, prompt=none with and without a session,
// RP-initiated logout and the back-channel logout token. Screenshots of the login and consent pages
// go to docs/screenshots/ (shown in the README).
import { existsSync, mkdirSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import * as oidc from 'openid-client'
import { chromium, type Browser } from 'playwright-core'
import { testApp } from '../helpers/app.js'
import { updateUserProfile } from '../../src/users/users.store.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const PASSWORD = 'correct horse battery'
const SHOTS = new URL('../../docs/screenshots/', import.meta.url)

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address() as AddressInfo
  await new Promise((r) => s.close(r))
  return port
}

const body = (req: IncomingMessage) => new Promise<string>((resolve) => {
  let b = ''
  req.on('data', (c) => (b += c))
  req.on('end', () => resolve(b))
})

interface RpResult { client: 'one' | 'two'; error?: string; claims?: Record<string, unknown>; userinfo?: Record<string, unknown>; refreshed?: boolean; idToken?: string }

t.test('a real browser signs in through two relying parties and signs out', { timeout: 120_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`chromium not found at ${CHROMIUM}: apt-get install -y chromium (.ci/run does this)`)
    return
  }
  const port = await freePort()
  const issuer = `http://localhost:${port}`
  const app = await testApp(t, { env: { ISSUER: issuer, PRODUCT_NAME: 'Example Corp', BRAND_COLOR: '#6a1b9a' } })
  await app.app.listen({ port, host: '127.0.0.1' })
  await app.createUser('alice', PASSWORD)
  await updateUserProfile(app.database.db, 'alice', { name: 'Alice Liddell', email: 'alice@example.com', emailVerified: true })

  // The relying parties: one small HTTP server.
  const results: RpResult[] = []
  const logoutTokens: Record<string, unknown>[] = []
  const rpServer: Server = createServer()
  await new Promise<void>((r) => rpServer.listen(0, '127.0.0.1', r))
  const rp = `http://127.0.0.1:${(rpServer.address() as AddressInfo).port}`
  const one = await app.createClient({ name: 'Photo Album', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'email'], redirectUris: [`${rp}/one/cb`], postLogoutRedirectUris: [`${rp}/bye`], backchannelLogoutUri: `${rp}/one/backchannel` })
  const two = await app.createClient({ name: 'Intranet', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile'], redirectUris: [`${rp}/two/cb`], firstParty: true, requirePushedAuthorizationRequests: true, backchannelLogoutUri: `${rp}/two/backchannel` })
  const insecure = { execute: [oidc.allowInsecureRequests] }
  const configs = {
    one: await oidc.discovery(new URL(issuer), one.id, one.secret!, undefined, insecure),
    two: await oidc.discovery(new URL(issuer), two.id, two.secret!, undefined, insecure),
  }
  const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`))
  const pending = new Map<string, { verifier: string; nonce: string; client: 'one' | 'two' }>()
  let lastIdToken: string | undefined

  rpServer.on('request', async (req, res) => {
    const url = new URL(req.url!, rp)
    try {
      const [, name, step] = url.pathname.split('/') as [string, 'one' | 'two', string]
      if (step === 'start') {
        const verifier = oidc.randomPKCECodeVerifier()
        const state = oidc.randomState()
        const nonce = oidc.randomNonce()
        pending.set(state, { verifier, nonce, client: name })
        const params: Record<string, string> = {
          redirect_uri: `${rp}/${name}/cb`, scope: name === 'one' ? 'openid profile email' : 'openid profile', state, nonce,
          code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
          ...(url.searchParams.get('prompt') ? { prompt: url.searchParams.get('prompt')! } : {}),
        }
        const target = name === 'two' ? await oidc.buildAuthorizationUrlWithPAR(configs.two, params) : oidc.buildAuthorizationUrl(configs.one, params)
        res.writeHead(302, { location: target.href }).end()
      } else if (step === 'cb') {
        const state = url.searchParams.get('state')!
        const p = pending.get(state)!
        try {
          const tokens = await oidc.authorizationCodeGrant(configs[name], url, { pkceCodeVerifier: p.verifier, expectedState: state, expectedNonce: p.nonce, idTokenExpected: true })
          const claims = tokens.claims()!
          const userinfo = await oidc.fetchUserInfo(configs[name], tokens.access_token, claims.sub)
          const refreshed = await oidc.refreshTokenGrant(configs[name], tokens.refresh_token!)
          lastIdToken = tokens.id_token
          results.push({ client: name, claims: { ...claims }, userinfo: { ...userinfo }, refreshed: typeof refreshed.access_token === 'string', idToken: tokens.id_token! })
          res.writeHead(200, { 'content-type': 'text/html' }).end(`<h1 id="done">Signed in to ${name} as ${String(userinfo.name)}</h1>`)
        } catch (err) {
          results.push({ client: name, error: err instanceof oidc.AuthorizationResponseError ? err.error : String(err) })
          res.writeHead(200, { 'content-type': 'text/html' }).end(`<h1 id="done">Error: ${err instanceof oidc.AuthorizationResponseError ? err.error : 'failed'}</h1>`)
        }
      } else if (step === 'backchannel') {
        const token = new URLSearchParams(await body(req)).get('logout_token')!
        const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer, audience: name === 'one' ? one.id : two.id, typ: 'logout+jwt' })
        logoutTokens.push({ ...payload, typ: protectedHeader.typ, rp: name })
        res.writeHead(200).end()
      } else if (url.pathname === '/logout') {
        const target = oidc.buildEndSessionUrl(configs.one, { id_token_hint: lastIdToken!, post_logout_redirect_uri: `${rp}/bye`, state: 'bye-state' })
        res.writeHead(302, { location: target.href }).end()
      } else if (url.pathname === '/bye') {
        res.writeHead(200, { 'content-type': 'text/html' }).end(`<h1 id="done">Bye ${url.searchParams.get('state')}</h1>`)
      } else {
        res.writeHead(404).end()
      }
    } catch (err) {
      res.writeHead(500).end(String(err))
    }
  })
  t.teardown(() => new Promise((r) => rpServer.close(r)))

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
  t.teardown(() => browser.close())
  const page = await (await browser.newContext({ viewport: { width: 720, height: 640 } })).newPage()
  mkdirSync(SHOTS, { recursive: true })

  // prompt=none before any login: login_required back at the RP.
  await page.goto(`${rp}/one/start?prompt=none`)
  await page.waitForSelector('#done')
  t.same(results.pop(), { client: 'one', error: 'login_required' }, 'prompt=none without a session → login_required (#159)')

  // Login with the keyboard only: the username field has the focus, Tab moves to the password, Enter submits.
  await page.goto(`${rp}/one/start`)
  await page.waitForSelector('input[autocomplete="username"]')
  t.equal(await page.evaluate('document.activeElement?.id'), 'username', 'the username field has the focus')
  t.match(await page.textContent('main'), /to continue to Photo Album/, 'the login page names the client')
  await page.screenshot({ path: new URL('login.png', SHOTS).pathname })
  await page.keyboard.type('alice')
  await page.keyboard.press('Tab')
  t.equal(await page.evaluate('document.activeElement?.id'), 'password', 'Tab reaches the password field')
  await page.keyboard.type(PASSWORD)
  await page.keyboard.press('Enter')
  await page.waitForSelector('button[value="allow"]')
  t.match(await page.textContent('main'), /See your e-mail address/, 'the consent page says what is asked, in words')
  await page.screenshot({ path: new URL('consent.png', SHOTS).pathname })
  await page.click('button[value="allow"]')
  await page.waitForSelector('#done')
  const first = results.pop()!
  t.equal(first.error, undefined, String(first.error))
  t.equal(first.claims!.email, 'alice@example.com')
  t.equal(first.userinfo!.name, 'Alice Liddell')
  t.equal(first.userinfo!.email_verified, true)
  t.equal(first.refreshed, true, 'the refresh token works')
  const sid = first.claims!.sid as string

  // SSO into the second (first-party, PAR) client: no login page, no consent page.
  await page.goto(`${rp}/two/start`)
  await page.waitForSelector('#done')
  const second = results.pop()!
  t.equal(second.error, undefined, String(second.error))
  t.equal(second.claims!.sid, sid, 'the same SSO session')
  t.equal(second.claims!.auth_time, first.claims!.auth_time, 'no second login')

  // prompt=none with a session: a code, silently.
  await page.goto(`${rp}/one/start?prompt=none`)
  await page.waitForSelector('#done')
  const silent = results.pop()!
  t.equal(silent.error, undefined, 'prompt=none with a session and consent → a code')

  // RP-initiated logout with id_token_hint: no confirmation, back to the registered URI with state.
  await page.goto(`${rp}/logout`)
  await page.waitForSelector('#done')
  t.equal(await page.textContent('#done'), 'Bye bye-state')
  await app.services.backchannel.idle()
  t.equal(logoutTokens.length, 2, 'both clients got a logout token')
  for (const lt of logoutTokens) {
    t.equal(lt.typ, 'logout+jwt')
    t.equal(lt.sid, sid)
    t.same(lt.events, { 'http://schemas.openid.net/event/backchannel-logout': {} })
    t.equal(lt.nonce, undefined)
    t.type(lt.jti, 'string')
  }
  // The session is gone: prompt=none → login_required again.
  await page.goto(`${rp}/one/start?prompt=none`)
  await page.waitForSelector('#done')
  t.same(results.pop(), { client: 'one', error: 'login_required' }, 'after logout, prompt=none → login_required')
})
