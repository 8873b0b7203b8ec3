// Discovery metadata and the JWKS (SECURITY E #83–#92, K #145).
import { Writable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose'
import { buildApp } from '../../src/app.js'
import { openDatabase } from '../../src/db/connect.js'
import { parseKek } from '../../src/keys/kek.js'
import { generateSigningKey } from '../../src/keys/key-material.js'
import { rotateKey } from '../../src/keys/lifecycle.js'
import { verifyAccessToken } from '../../src/tokens/access-token.js'
import { ISSUER, keyOptions, TEST_KEK, testApp, tokenRequest, type TestApp } from '../helpers/app.js'

const JWKS_PATH = '/.well-known/jwks.json'
const DISCOVERY_PATHS = ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']
const kek = parseKek(TEST_KEK)

function getJwks(app: TestApp | { app: TestApp['app'] }, headers: Record<string, string> = {}) {
  return app.app.inject({ method: 'GET', url: JWKS_PATH, headers })
}

/** The published keys; of one line (algorithm) when `line` is given. */
async function jwks(app: TestApp | { app: TestApp['app'] }, line?: string): Promise<JWK[]> {
  const res = await getJwks(app)
  if (res.statusCode !== 200) throw new Error(`JWKS: ${res.statusCode}`)
  return (res.json() as { keys: JWK[] }).keys.filter((k) => line === undefined || k.alg === line)
}

/** Rotates to a new active key and makes this instance see it. */
async function rotate(app: TestApp, alg: 'ES256' | 'RS256' | 'EdDSA' = 'ES256') {
  const out = await rotateKey(app.database.db, keyOptions(app), alg)
  await app.services.keyring.reload()
  return out
}

async function revokeKey(app: TestApp, kid: string) {
  await app.database.db.updateTable('signing_key').set({ state: 'revoked', revoked_at: new Date() }).where('kid', '=', kid).execute()
  await app.services.keyring.reload()
}

async function accessToken(app: TestApp): Promise<string> {
  const client = await app.createClient()
  const res = await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, client)
  if (res.statusCode !== 200) throw new Error(`token: ${res.statusCode} ${res.body}`)
  return res.json().access_token
}

const nowSeconds = () => Math.floor(Date.now() / 1000)
const b64len = (s: unknown) => Buffer.from(String(s), 'base64url').length

t.test('#92 both discovery documents: the same document, exact issuer, endpoints under the issuer, CORS *', async (t) => {
  const app = await testApp(t)
  const [oidc, rfc8414] = await Promise.all(DISCOVERY_PATHS.map((url) => app.app.inject({ method: 'GET', url })))
  for (const res of [oidc!, rfc8414!]) {
    t.equal(res.statusCode, 200)
    t.match(String(res.headers['content-type']), /^application\/json/)
    t.equal(res.headers['access-control-allow-origin'], '*')
    t.equal(res.headers['access-control-allow-credentials'], undefined, 'public: no credentials')
  }
  t.same(oidc!.json(), rfc8414!.json(), 'the same document')
  const doc = oidc!.json() as Record<string, unknown>
  t.equal(doc.issuer, ISSUER, 'issuer exactly, no trailing slash')
  t.notOk(String(doc.issuer).endsWith('/'))
  const urls = Object.entries(doc).filter(([k]) => k.endsWith('_endpoint') || k.endsWith('_uri'))
  t.ok(urls.length >= 5, 'endpoints are listed')
  for (const [k, v] of urls) {
    t.ok(typeof v === 'string' && v.startsWith(`${ISSUER}/`), `${k} starts with the issuer`)
    t.ok(String(v).startsWith('https://'), `${k} is https`)
  }
  t.equal(doc.jwks_uri, `${ISSUER}${JWKS_PATH}`)
  t.equal(doc.token_endpoint, `${ISSUER}/token`)
  // jwks_uri is reachable on this server.
  const jwksRes = await app.app.inject({ method: 'GET', url: new URL(String(doc.jwks_uri)).pathname })
  t.equal(jwksRes.statusCode, 200)
  const grants = doc.grant_types_supported as string[]
  for (const g of ['client_credentials', 'refresh_token', 'password']) t.ok(grants.includes(g), `grant_types_supported lists ${g}`)
  const algs = (jwksRes.json() as { keys: JWK[] }).keys.map((k) => k.alg).sort()
  t.same([...(doc.id_token_signing_alg_values_supported as string[])].sort(), [...new Set(algs)], 'signing algs are the JWKS key algs')
  t.same(algs, ['ES256', 'RS256'], 'one key per line: SIGNING_ALG for access tokens, RS256 for ID tokens')
  t.ok((doc.id_token_signing_alg_values_supported as string[]).includes('RS256'), 'RS256 is supported for ID tokens (OIDC Core §15.1, Discovery §3)')
})

t.test('one line per algorithm: SIGNING_ALG=RS256 makes one line that signs both kinds of token', async (t) => {
  const app = await testApp(t, { env: { SIGNING_ALG: 'RS256' } })
  t.same((await jwks(app)).map((k) => k.alg), ['RS256'])
  t.same((await app.app.inject({ method: 'GET', url: DISCOVERY_PATHS[0]! })).json().id_token_signing_alg_values_supported, ['RS256'])
  t.equal(decodeProtectedHeader(await accessToken(app)).alg, 'RS256')
})

t.test('#92 id_token_signing_alg_values_supported lists exactly the algorithms with an active key (a new EdDSA line, then its key revoked by hand)', async (t) => {
  const app = await testApp(t)
  const discovery = async () => (await app.app.inject({ method: 'GET', url: DISCOVERY_PATHS[0]! })).json().id_token_signing_alg_values_supported as string[]
  const keyAlgs = async () => [...new Set((await jwks(app)).map((k) => k.alg!))].sort()
  t.same(await discovery(), ['ES256', 'RS256'])
  const ed = await rotate(app, 'EdDSA')
  t.same(await keyAlgs(), ['ES256', 'EdDSA', 'RS256'])
  t.same(await discovery(), await keyAlgs())
  await revokeKey(app, ed.kid)
  t.same(await keyAlgs(), ['ES256', 'RS256'])
  t.same(await discovery(), ['ES256', 'RS256'])
})

t.test('#83 JWKS: public members only, kid = RFC 7638 thumbprint, alg, use sig, unique kids, jwk-set+json', async (t) => {
  const app = await testApp(t)
  await rotate(app, 'RS256')
  await rotate(app, 'ES256')
  const res = await getJwks(app)
  t.equal(res.statusCode, 200)
  t.match(String(res.headers['content-type']), /^application\/jwk-set\+json/)
  t.equal(res.headers['access-control-allow-origin'], '*')
  t.match(String(res.headers['cache-control']), /max-age=\d+/)
  const body = res.json() as { keys: JWK[] }
  t.same(Object.keys(body), ['keys'])
  t.equal(body.keys.length, 4, 'two lines, each with a retired and an active key')
  for (const key of body.keys) {
    for (const m of PRIVATE_MEMBERS) t.notOk(m in key, `${key.kid}: no ${m}`)
    t.not(key.kty, 'oct', 'no symmetric keys')
    const allowed = key.kty === 'RSA' ? ['alg', 'e', 'kid', 'kty', 'n', 'use'] : ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']
    t.same(Object.keys(key).sort(), allowed, `${key.kid}: exactly the public members`)
    t.equal(key.kid, await calculateJwkThumbprint(key, 'sha256'), 'kid is the RFC 7638 thumbprint')
    t.ok(key.alg === 'ES256' || key.alg === 'RS256', `alg ${key.alg}`)
    t.equal(key.use, 'sig')
  }
  t.equal(new Set(body.keys.map((k) => k.kid)).size, body.keys.length, 'kids are unique')
  const rows = await app.database.db.selectFrom('signing_key').select(['kid', 'alg']).execute()
  t.same(body.keys.map((k) => `${k.kid}:${k.alg}`).sort(), rows.map((r) => `${r.kid}:${r.alg}`).sort(), 'each key with its own alg')
})

t.test('#84 #86 after rotation both keys are published and a token signed before it still verifies', async (t) => {
  const app = await testApp(t)
  const before = await accessToken(app)
  const oldKid = decodeProtectedHeader(before).kid!
  t.same((await jwks(app, 'ES256')).map((k) => k.kid), [oldKid])
  const { kid: newKid, retired } = await rotate(app)
  t.same(retired, [oldKid])
  const keys = await jwks(app, 'ES256')
  t.same(keys.map((k) => k.kid).sort(), [oldKid, newKid].sort(), 'retired and active keys are both published')
  const set = createLocalJWKSet({ keys })
  const { payload, protectedHeader } = await jwtVerify(before, set, { issuer: ISSUER, typ: 'at+jwt' })
  t.equal(protectedHeader.kid, oldKid)
  t.equal(payload.iss, ISSUER)
  const claims = await verifyAccessToken(app.services.keyring, ISSUER, undefined, before, nowSeconds())
  t.equal(claims.jti, payload.jti, "Tessera's own verifier still accepts it")
  const after = await accessToken(app)
  t.equal(decodeProtectedHeader(after).kid, newKid, 'new tokens are signed by the new key')
  t.equal((await jwtVerify(after, set, { issuer: ISSUER, typ: 'at+jwt' })).protectedHeader.kid, newKid)
  const states = await app.database.db.selectFrom('signing_key').select(['kid', 'state']).where('alg', '=', 'ES256').execute()
  t.same(Object.fromEntries(states.map((r) => [r.kid, r.state])), { [oldKid]: 'retired', [newKid]: 'active' })
})

t.test('#84 #87 a revoked key disappears from the JWKS; tokens it signed no longer verify', async (t) => {
  const app = await testApp(t)
  const before = await accessToken(app)
  const oldKid = decodeProtectedHeader(before).kid!
  const { kid: newKid } = await rotate(app)
  await revokeKey(app, oldKid)
  const keys = await jwks(app)
  t.same(keys.filter((k) => k.alg === 'ES256').map((k) => k.kid), [newKid], 'only the live key of its line')
  await t.rejects(jwtVerify(before, createLocalJWKSet({ keys }), { issuer: ISSUER }), 'the revoked key cannot verify from the JWKS')
  await t.rejects(verifyAccessToken(app.services.keyring, ISSUER, undefined, before, nowSeconds()), { code: 'invalid_token' }, "Tessera's own verifier refuses it")
})

t.test('#84 a pending key is published before it signs', async (t) => {
  const app = await testApp(t)
  const activeKid = (await jwks(app, 'ES256'))[0]!.kid!
  const pending = await generateSigningKey('ES256', kek)
  await app.database.db
    .insertInto('signing_key')
    .values({ kid: pending.kid, alg: pending.alg, state: 'pending', public_jwk: JSON.stringify(pending.publicJwk), private_key_enc: pending.privateKeyEnc, kek_id: pending.kekId })
    .execute()
  await app.services.keyring.reload()
  t.same((await jwks(app, 'ES256')).map((k) => k.kid).sort(), [activeKid, pending.kid].sort())
  const token = await accessToken(app)
  t.equal(decodeProtectedHeader(token).kid, activeKid, 'the pending key does not sign')
})

t.test('#90 key sizes: RS256 n is 256 bytes (2048 bits) with e; ES256 x and y are 32 bytes each', async (t) => {
  const app = await testApp(t)
  await rotate(app, 'RS256')
  const keys = await jwks(app)
  const rsa = keys.find((k) => k.alg === 'RS256')!
  const ec = keys.find((k) => k.alg === 'ES256')!
  t.equal(rsa.kty, 'RSA')
  const n = Buffer.from(rsa.n!, 'base64url')
  t.equal(n.length, 256, 'n: 2048 bits')
  t.not(n[0], 0, 'n in minimal octets (no leading zero)')
  t.equal(rsa.e, 'AQAB')
  t.equal(ec.kty, 'EC')
  t.equal(ec.crv, 'P-256')
  t.equal(b64len(ec.x), 32)
  t.equal(b64len(ec.y), 32)
})

t.test('#89 JWKS ETag: strong; current → 304 with no body; stale → 200; * → 304; changes after rotation', async (t) => {
  const app = await testApp(t)
  const first = await getJwks(app)
  const etag = String(first.headers.etag)
  t.match(etag, /^"[^"]+"$/, 'a strong ETag')
  t.notOk(etag.startsWith('W/'))
  const same = await getJwks(app)
  t.equal(same.headers.etag, etag, 'stable')

  const notModified = await getJwks(app, { 'if-none-match': etag })
  t.equal(notModified.statusCode, 304)
  t.equal(notModified.body, '', 'no body')
  t.equal(notModified.rawPayload.length, 0)
  t.equal(notModified.headers.etag, etag)

  const stale = await getJwks(app, { 'if-none-match': '"stale"' })
  t.equal(stale.statusCode, 200)
  t.equal(stale.body, first.body)

  const star = await getJwks(app, { 'if-none-match': '*' })
  t.equal(star.statusCode, 304)
  t.equal(star.body, '')

  // RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and takes a list.
  t.equal((await getJwks(app, { 'if-none-match': `W/${etag}` })).statusCode, 304, 'weak form of the current tag')
  t.equal((await getJwks(app, { 'if-none-match': `"stale", ${etag}` })).statusCode, 304, 'current tag in a list')

  await rotate(app)
  const rotated = await getJwks(app)
  t.not(rotated.headers.etag, etag, 'the ETag changes with the key set')
  t.not(rotated.body, first.body)
  const old = await getJwks(app, { 'if-none-match': etag })
  t.equal(old.statusCode, 200, 'the pre-rotation ETag is stale now')
  t.equal(old.body, rotated.body)
  t.equal((await getJwks(app, { 'if-none-match': String(rotated.headers.etag) })).statusCode, 304)
})

t.test('#145 two instances on one database serve the same JWKS body and ETag', async (t) => {
  const app = await testApp(t)
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 2, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  const quiet = new Writable({ write: (_c, _e, cb) => cb() })
  const second = await buildApp({ config: app.config, database, logStream: quiet })
  t.teardown(async () => {
    await second.close()
    await database.close()
  })
  const compare = async (label: string) => {
    const [a, b] = await Promise.all([getJwks(app), getJwks(second)])
    t.equal(a.statusCode, 200)
    t.equal(b.statusCode, 200)
    t.equal(a.body, b.body, `${label}: same body`)
    t.equal(a.headers.etag, b.headers.etag, `${label}: same ETag`)
    t.equal((await getJwks(second, { 'if-none-match': String(a.headers.etag) })).statusCode, 304, `${label}: one instance's ETag is current on the other`)
    return a
  }
  const before = await compare('initial')
  t.equal(await app.database.db.selectFrom('signing_key').select('kid').execute().then((r) => r.length), 2, 'the second instance made no key of its own (one per line)')
  await rotate(app, 'RS256')
  await second.services.keyring.reload()
  const after = await compare('after rotation')
  t.not(after.headers.etag, before.headers.etag)
})

t.test('POST (and other methods) on the JWKS and discovery → 405 with Allow: GET', async (t) => {
  const app = await testApp(t)
  for (const url of [JWKS_PATH, ...DISCOVERY_PATHS]) {
    for (const method of ['POST', 'PUT', 'DELETE'] as const) {
      const res = await app.app.inject({ method, url })
      t.equal(res.statusCode, 405, `${method} ${url}`)
      t.equal(res.headers.allow, 'GET')
      t.same(res.json(), { error: 'invalid_request', error_description: 'method not allowed: use GET' })
    }
  }
})
