// The authorization-code flow end to end through app.inject: /authorize, the hosted login and
// consent pages, the code at /token, the ID token, userinfo, refresh. SECURITY.md rows #146–#170.
import t from 'tap'
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose'
import { ISSUER, testApp } from '../helpers/app.js'
import { authorize, Browser, codeClient, PASSWORD, pkce, redeem } from '../helpers/authcode.js'
import { updateUserProfile } from '../../src/users/users.store.js'
import { atHash } from '../../src/tokens/access-token.js'

t.test('login, consent, code, tokens, userinfo and refresh', async (t) => {
  const app = await testApp(t)
  const user = await app.createUser('alice', PASSWORD)
  await updateUserProfile(app.database.db, 'alice', { name: 'Alice Liddell', email: 'alice@example.com', emailVerified: true })
  const client = await codeClient(app)
  const browser = new Browser(app)
  const { verifier, challenge } = pkce()
  const cb = await authorize(browser, client.id, { challenge })
  t.equal(cb.get('state'), 'st')
  t.equal(cb.get('iss'), ISSUER)
  const code = cb.get('code')!
  t.match(code, /^tsac_[A-Za-z0-9_-]{43}$/)
  const res = await redeem(app, client, code, verifier)
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.ok(body.refresh_token)
  const jwks = createLocalJWKSet((await app.app.inject('/.well-known/jwks.json')).json() as JSONWebKeySet)
  const { payload, protectedHeader } = await jwtVerify(body.id_token, jwks, { issuer: ISSUER, audience: client.id })
  t.equal(protectedHeader.alg, 'RS256')
  t.equal(payload.sub, user.id)
  t.equal(payload.nonce, 'n-1')
  t.equal(payload.azp, client.id)
  t.equal(payload.name, 'Alice Liddell')
  t.equal(payload.email, undefined, 'no email claim without the email scope')
  t.equal(payload.at_hash, atHash(body.access_token, 'RS256'))
  t.type(payload.auth_time, 'number')
  t.type(payload.sid, 'string')
  const info = await app.app.inject({ url: '/userinfo', headers: { authorization: `Bearer ${body.access_token}` } })
  t.same(info.json(), { sub: user.id, preferred_username: 'alice', name: 'Alice Liddell' })
  const refreshed = await app.app.inject({ method: 'POST', url: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: body.refresh_token, client_id: client.id, client_secret: client.secret! }).toString() })
  t.equal(refreshed.statusCode, 200, refreshed.body)
  const again = (await jwtVerify(refreshed.json().id_token, jwks, { issuer: ISSUER, audience: client.id })).payload
  t.equal(again.sid, payload.sid, 'a refreshed ID token keeps the SSO session id (OIDC Core §12.2, #69)')
  t.equal(again.auth_time, payload.auth_time)
  t.equal(again.nonce, undefined, 'no nonce on refresh')
})
