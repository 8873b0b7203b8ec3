// Interoperability over real HTTP with real client libraries: openid-client v6 (discovery,
// grants, userinfo, revocation, introspection) and jose's remote JWKS verifier.
import t from 'tap'
import type { Test } from 'tap'
import { createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify } from 'jose'
import * as oidc from 'openid-client'
import { parseKek } from '../../src/keys/kek.js'
import { rotateKey, scheduleRotation } from '../../src/keys/lifecycle.js'
import { keyOptions, TEST_KEK, testApp, type TestApp } from '../helpers/app.js'
import { freePort } from '../helpers/processes.js'

const API = 'https://api.example.com'
const PASSWORD = 'correct horse battery'

/** Tessera listening on 127.0.0.1 with an issuer that is its own URL, a client, and openid-client configured by discovery. */
async function served(t: Test) {
  const port = await freePort()
  const issuer = `http://127.0.0.1:${port}`
  const app = await testApp(t, { env: { ISSUER: issuer } })
  await app.app.listen({ port, host: '127.0.0.1' })
  const client = await app.createClient()
  const secret = client.secret!
  const config = await oidc.discovery(new URL(issuer), client.id, secret, oidc.ClientSecretBasic(secret), { execute: [oidc.allowInsecureRequests] })
  return { app, issuer, client, config }
}

/** A jose remote JWKS that counts its fetches. */
function remoteJwks(issuer: string, opts: { cooldownDuration?: number } = {}) {
  const counter = { fetches: 0 }
  const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`), {
    ...opts,
    [customFetch]: (url: string, init: RequestInit) => {
      counter.fetches++
      return fetch(url, init)
    },
  })
  return { jwks, counter }
}

const verifyAt = (token: string, jwks: ReturnType<typeof createRemoteJWKSet>, issuer: string) =>
  jwtVerify(token, jwks, { issuer, audience: API, typ: 'at+jwt' })

async function activeKid(app: TestApp): Promise<string> {
  const row = await app.database.db.selectFrom('signing_key').select('kid').where('state', '=', 'active').where('alg', '=', 'ES256').executeTakeFirstOrThrow()
  return row.kid
}

t.test('openid-client discovers Tessera and runs client_credentials; jose verifies the access token through the JWKS (#92)', async (t) => {
  const { app, issuer, client, config } = await served(t)
  const meta = config.serverMetadata()
  t.equal(meta.issuer, issuer, 'issuer is exact, no trailing slash')
  t.equal(meta.token_endpoint, `${issuer}/token`)
  t.equal(meta.jwks_uri, `${issuer}/.well-known/jwks.json`)
  t.same(meta.id_token_signing_alg_values_supported, ['ES256', 'RS256'], 'the algorithms with an active key: the access-token line and RS256')

  const tokens = await oidc.clientCredentialsGrant(config, { scope: 'read' })
  t.equal(tokens.token_type, 'bearer')
  t.equal(tokens.expires_in, 900)
  t.equal(tokens.scope, 'read')
  t.equal(tokens.refresh_token, undefined, 'RFC 6749 §4.4.3: no refresh token for client_credentials')
  t.equal(tokens.id_token, undefined)

  const { jwks } = remoteJwks(issuer)
  const { payload, protectedHeader } = await verifyAt(tokens.access_token, jwks, issuer)
  t.same(protectedHeader, { alg: 'ES256', kid: await activeKid(app), typ: 'at+jwt' })
  t.match(payload, { iss: issuer, sub: client.id, aud: API, client_id: client.id, scope: 'read' })
  t.type(payload.jti, 'string')
  t.equal(payload.exp! - payload.iat!, 900)
})

t.test('after a key rotation, tokens of the old and the new key both verify through one cached remote JWKS (#86)', async (t) => {
  const { app, issuer, config } = await served(t)
  // No cooldown: jose may re-fetch at once when a token names an unknown kid.
  const { jwks, counter } = remoteJwks(issuer, { cooldownDuration: 0 })
  const a = (await oidc.clientCredentialsGrant(config, { scope: 'read' })).access_token
  await verifyAt(a, jwks, issuer)
  t.equal(counter.fetches, 1, 'the JWKS was fetched and cached')
  const oldKid = await activeKid(app)

  const rotated = await rotateKey(app.database.db, keyOptions(app), 'ES256')
  t.same(rotated.retired, [oldKid])
  await app.services.keyring.reload()
  const b = (await oidc.clientCredentialsGrant(config, { scope: 'read' })).access_token

  const kidA = decodeProtectedHeader(a).kid
  const kidB = decodeProtectedHeader(b).kid
  t.equal(kidA, oldKid)
  t.equal(kidB, rotated.kid)
  t.not(kidA, kidB, 'the new token is signed by the new key')

  const vb = await verifyAt(b, jwks, issuer)
  t.equal(vb.protectedHeader.kid, rotated.kid)
  t.equal(counter.fetches, 2, 'the unknown kid made jose re-fetch the JWKS once')
  const va = await verifyAt(a, jwks, issuer)
  t.equal(va.protectedHeader.kid, oldKid, 'the retired key is still published: the old token still verifies')
  t.equal(counter.fetches, 2, 'no further fetch for a known kid')

  const published = (await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as { keys: { kid: string; alg: string }[] }
  t.same(published.keys.filter((k) => k.alg === 'ES256').map((k) => k.kid).sort(), [oldKid, rotated.kid].sort())
})

t.test('a token minted right after `keys rotate` verifies with jose defaults: a new key is published before it signs (#85)', async (t) => {
  const { app, issuer, config } = await served(t)
  // jose's defaults: a 30 s cooldown between fetches, so an unknown kid right after a fetch fails.
  const { jwks, counter } = remoteJwks(issuer)
  await verifyAt((await oidc.clientCredentialsGrant(config, { scope: 'read' })).access_token, jwks, issuer)
  const oldKid = await activeKid(app)
  // What `tessera keys rotate` does: the new key is published as pending and signs later.
  const rotated = await scheduleRotation(app.database.db, keyOptions(app), 'ES256')
  t.equal(rotated.state, 'pending')
  await app.services.keyring.reload()
  const b = (await oidc.clientCredentialsGrant(config, { scope: 'read' })).access_token
  t.equal(decodeProtectedHeader(b).kid, oldKid, 'the active key still signs')
  const outcome = await verifyAt(b, jwks, issuer).then(
    () => 'verified',
    (err: Error & { code?: string }) => err.code ?? err.message,
  )
  t.equal(outcome, 'verified', 'a resource server with a cached JWKS accepts the new token')
  t.equal(counter.fetches, 1, 'without fetching the JWKS again')
  const published = (await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as { keys: { kid: string; alg: string }[] }
  t.same(published.keys.filter((k) => k.alg === 'ES256').map((k) => k.kid).sort(), [oldKid, rotated.kid].sort(), 'the pending key is published already')
})

t.test('openid-client: password grant, refresh rotation with a new refresh token, and userinfo for the expected sub', async (t) => {
  const { app, issuer, client, config } = await served(t)
  const alice = await app.createUser('alice', PASSWORD)
  const first = await oidc.genericGrantRequest(config, 'password', { username: 'alice', password: PASSWORD, scope: 'openid read' })
  t.equal(first.token_type, 'bearer')
  t.equal(first.scope, 'openid read')
  t.match(first.refresh_token, /^tsr_[A-Za-z0-9_-]{43}$/)
  // openid-client validated the ID token (iss, aud, exp, iat, alg from discovery).
  const idClaims = first.claims()!
  t.match(idClaims, { iss: issuer, sub: alice.id, aud: client.id, azp: client.id, preferred_username: 'alice' })

  const next = await oidc.refreshTokenGrant(config, first.refresh_token!)
  t.match(next.refresh_token, /^tsr_[A-Za-z0-9_-]{43}$/)
  t.not(next.refresh_token, first.refresh_token, 'rotation: a new refresh token')
  t.not(next.access_token, first.access_token)
  t.equal(next.scope, 'openid read')
  const nextClaims = next.claims()!
  t.equal(nextClaims.sub, alice.id)
  t.equal(nextClaims.auth_time, idClaims.auth_time, 'OIDC Core §12.2: the original auth_time (#69)')

  const info = await oidc.fetchUserInfo(config, next.access_token, alice.id)
  t.same(info, { sub: alice.id, preferred_username: 'alice' })
  await t.rejects(oidc.fetchUserInfo(config, next.access_token, '00000000-0000-4000-8000-000000000000'), 'openid-client refuses a sub other than the expected one')

  const { jwks } = remoteJwks(issuer)
  const { payload } = await verifyAt(next.access_token, jwks, issuer)
  t.match(payload, { sub: alice.id, client_id: client.id, scope: 'openid read', sid: String })
  t.same(payload.aud, [API, issuer], 'openid adds the issuer (userinfo) to the audience')
})

t.test('ID tokens are RS256 by default: openid-client with no algorithm configured (its RS256 fallback) accepts them, jose verifies them through the JWKS; a client registered for ES256 gets ES256 (OIDC Core §15.1)', async (t) => {
  const { app, issuer, client } = await served(t)
  const alice = await app.createUser('alice', PASSWORD)
  // Metadata without id_token_signing_alg_values_supported, client metadata without an alg: openid-client's last fallback is RS256.
  const bare = (clientId: string, secret: string, metadata: Partial<oidc.ClientMetadata> = {}) =>
    new oidc.Configuration({ issuer, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/.well-known/jwks.json` }, clientId, { client_secret: secret, ...metadata }, oidc.ClientSecretBasic(secret))
  const defaults = bare(client.id, client.secret!)
  oidc.allowInsecureRequests(defaults)
  const tokens = await oidc.genericGrantRequest(defaults, 'password', { username: 'alice', password: PASSWORD, scope: 'openid' })
  t.match(tokens.claims(), { iss: issuer, sub: alice.id, aud: client.id })
  const rsJwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`))
  const { protectedHeader } = await jwtVerify(tokens.id_token!, rsJwks, { issuer, audience: client.id, algorithms: ['RS256'] })
  t.equal(protectedHeader.alg, 'RS256')
  const rsKid = (await app.database.db.selectFrom('signing_key').select('kid').where('state', '=', 'active').where('alg', '=', 'RS256').executeTakeFirstOrThrow()).kid
  t.equal(protectedHeader.kid, rsKid, 'signed by the RS256 line')
  t.equal(decodeProtectedHeader(tokens.access_token).alg, 'ES256', 'the access token keeps SIGNING_ALG')

  const es = await app.createClient({ idTokenSignedResponseAlg: 'ES256' })
  const esTokens = await tokenRequestJson(issuer, es, { grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'openid' })
  t.equal(decodeProtectedHeader(esTokens.id_token).alg, 'ES256', 'a client registered for ES256 gets ES256 ID tokens')
  const esDefault = bare(es.id, es.secret!)
  oidc.allowInsecureRequests(esDefault)
  const refused = await oidc.genericGrantRequest(esDefault, 'password', { username: 'alice', password: PASSWORD, scope: 'openid' }).then(
    () => undefined,
    (err: Error & { cause?: { message?: string; cause?: { message?: string } } }) => [err.message, err.cause?.message, err.cause?.cause?.message].join(' | '),
  )
  t.match(refused, /unexpected JWT "alg"/, 'openid-client with its defaults refuses an ES256 ID token: the check is real')
  const esConfigured = bare(es.id, es.secret!, { id_token_signed_response_alg: 'ES256' })
  oidc.allowInsecureRequests(esConfigured)
  const ok = await oidc.genericGrantRequest(esConfigured, 'password', { username: 'alice', password: PASSWORD, scope: 'openid' })
  t.equal(ok.claims()!.sub, alice.id, 'and accepts it when configured for ES256')
})

async function tokenRequestJson(issuer: string, client: { id: string; secret?: string | undefined }, params: Record<string, string>) {
  const res = await fetch(`${issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`${client.id}:${client.secret}`).toString('base64') }, body: new URLSearchParams(params) })
  if (res.status !== 200) throw new Error(`token: ${res.status} ${await res.text()}`)
  return (await res.json()) as { id_token: string; access_token: string }
}

t.test('openid-client tokenRevocation of a refresh token: the refresh then fails with invalid_grant (#71)', async (t) => {
  const { app, config } = await served(t)
  await app.createUser('alice', PASSWORD)
  const login = await oidc.genericGrantRequest(config, 'password', { username: 'alice', password: PASSWORD, scope: 'openid read' })
  await oidc.tokenRevocation(config, login.refresh_token!)

  const err = await oidc.refreshTokenGrant(config, login.refresh_token!).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof oidc.ResponseBodyError, 'an OAuth error response')
  const rbe = err as oidc.ResponseBodyError
  t.equal(rbe.status, 400)
  t.equal(rbe.error, 'invalid_grant')
  t.same(rbe.cause, { error: 'invalid_grant', error_description: 'refresh token is invalid' })

  const fam = await app.database.db.selectFrom('refresh_token_family').select(['revoked_at', 'revoked_reason']).executeTakeFirstOrThrow()
  t.not(fam.revoked_at, null)
  t.equal(fam.revoked_reason, 'revoked_by_client')
  // The family's access token is refused by Tessera's own endpoints too.
  t.same(await oidc.tokenIntrospection(config, login.access_token), { active: false })
  await t.rejects(oidc.fetchUserInfo(config, login.access_token, oidc.skipSubjectCheck))
})

t.test('openid-client tokenIntrospection: a live access token is active with its claims; once revoked it is inactive (#72, #82)', async (t) => {
  const { app, issuer, client, config } = await served(t)
  const alice = await app.createUser('alice', PASSWORD)
  const login = await oidc.genericGrantRequest(config, 'password', { username: 'alice', password: PASSWORD, scope: 'openid read' })
  const { payload } = await verifyAt(login.access_token, remoteJwks(issuer).jwks, issuer)

  const active = await oidc.tokenIntrospection(config, login.access_token)
  t.same(active, {
    active: true,
    token_type: 'Bearer',
    scope: 'openid read',
    client_id: client.id,
    sub: alice.id,
    aud: [API, issuer],
    iss: issuer,
    exp: payload.exp,
    iat: payload.iat,
    jti: payload.jti,
    sid: payload.sid,
  })

  const cc = await oidc.clientCredentialsGrant(config, { scope: 'read write' })
  const ccInfo = await oidc.tokenIntrospection(config, cc.access_token)
  t.match(ccInfo, { active: true, client_id: client.id, sub: client.id, scope: 'read write', aud: API })

  t.match(await oidc.tokenIntrospection(config, login.refresh_token!, { token_type_hint: 'refresh_token' }), { active: true, token_type: 'refresh_token', client_id: client.id, scope: 'openid read' }, "the holder's live refresh token introspects as active (RFC 7662 §2.1)")
  t.same(await oidc.tokenIntrospection(config, 'not.a.token'), { active: false })

  await oidc.tokenRevocation(config, login.access_token)
  t.same(await oidc.tokenIntrospection(config, login.access_token), { active: false }, 'the revoked jti is denylisted')
  const denied = await app.database.db.selectFrom('revoked_access_token').select('jti').execute()
  t.same(denied, [{ jti: payload.jti }])
  t.match(await oidc.tokenIntrospection(config, cc.access_token), { active: true }, 'other tokens stay active')
})
