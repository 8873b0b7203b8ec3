// GET /userinfo and SECURITY.md section A: Tessera's own access-token verifier under attack.
//
// Forged tokens come in two kinds. Tokens signed with an attacker's key (or none) must fail
// whatever they claim. Tokens signed with the server's REAL private key (decrypted from its
// `signing_key` row with the test KEK) prove that the claim and header checks are checks of
// their own, not signature failures in disguise: a control token forged that way is accepted.
import { constants, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, X509Certificate, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { connect } from 'node:net'
import t from 'tap'
import type { Test } from 'tap'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { open, parseKek } from '../../src/keys/kek.js'
import { generateSigningKey } from '../../src/keys/key-material.js'
import { rotateKey } from '../../src/keys/lifecycle.js'
import { basic, FORM, form, ISSUER, keyOptions, passwordLogin, TEST_KEK, testApp, tokenRequest, type TestApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

const PASSWORD = 'correct horse battery'
const INVALID_TOKEN_BODY = { error: 'invalid_token', error_description: 'the access token is invalid' }
const INVALID_TOKEN_CHALLENGE = 'Bearer realm="tessera", error="invalid_token", error_description="the access token is invalid"'

type Claims = Record<string, unknown>
type Header = Record<string, unknown>

const b64u = (s: string | Buffer) => Buffer.from(s).toString('base64url')
const segment = (token: string, i: number) => token.split('.')[i]!
const decode = (token: string, i: number) => JSON.parse(Buffer.from(segment(token, i), 'base64url').toString('utf8')) as Claims

/** A JWS signature over `input` with a node KeyObject, in the JOSE encoding (raw r‖s for ECDSA). */
function signature(alg: string, key: KeyObject, input: string): Buffer {
  const data = Buffer.from(input, 'ascii')
  switch (alg) {
    case 'ES256':
      return sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' })
    case 'ES384':
      return sign('sha384', data, { key, dsaEncoding: 'ieee-p1363' })
    case 'RS256':
      return sign('sha256', data, key)
    case 'PS256':
      return sign('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
    case 'EdDSA':
      return sign(null, data, key)
    default:
      throw new Error(`no signer for ${alg}`)
  }
}

/** A compact JWS from raw JSON text, so duplicate keys, `1e400` and `__proto__` reach the server as written. */
function compactRaw(headerJson: string, payloadJson: string, key: KeyObject, alg: string): string {
  const input = `${b64u(headerJson)}.${b64u(payloadJson)}`
  return `${input}.${signature(alg, key, input).toString('base64url')}`
}

/** Object overrides; a key set to `undefined` is removed (JSON.stringify drops it). */
const compact = (header: Header, claims: Claims, key: KeyObject, alg = header.alg as string) => compactRaw(JSON.stringify(header), JSON.stringify(claims), key, alg)

/** Replaces one segment of a compact JWS. */
function withSegment(token: string, i: number, value: string): string {
  const parts = token.split('.')
  parts[i] = value
  return parts.join('.')
}

interface RealKey {
  kid: string
  alg: string
  privateKey: KeyObject
  publicJwk: JWK
}

/** The private key of a `signing_key` row, decrypted as the keyring does (AAD = kid). */
async function keyFromRow(app: TestApp, kid: string): Promise<RealKey> {
  const row = await app.database.db.selectFrom('signing_key').selectAll().where('kid', '=', kid).executeTakeFirstOrThrow()
  const jwk = JSON.parse(open(parseKek(TEST_KEK), Buffer.from(row.private_key_enc), row.kid).toString('utf8')) as JWK
  return { kid: row.kid, alg: row.alg, privateKey: createPrivateKey({ key: jwk as never, format: 'jwk' }), publicJwk: row.public_jwk as unknown as JWK }
}

async function activeKey(app: TestApp): Promise<RealKey> {
  const row = await app.database.db.selectFrom('signing_key').select('kid').where('state', '=', 'active').executeTakeFirstOrThrow()
  return keyFromRow(app, row.kid)
}

/** An attacker's own P-256 key pair with its public JWK and thumbprint. */
async function attackerKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const publicJwk = publicKey.export({ format: 'jwk' }) as JWK
  return { privateKey, publicKey, publicJwk, kid: await calculateJwkThumbprint(publicJwk) }
}

function userinfo(app: TestApp, token: string) {
  return app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${token}` } })
}

type Reply = Awaited<ReturnType<typeof userinfo>>

function assertInvalidToken(t: Test, res: Reply, what: string) {
  t.equal(res.statusCode, 401, `${what}: 401`)
  t.same(res.json(), INVALID_TOKEN_BODY, `${what}: invalid_token body`)
  t.equal(res.headers['www-authenticate'], INVALID_TOKEN_CHALLENGE, `${what}: Bearer challenge`)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: no-store`)
}

/**
 * The `detail` (logs only) of the last `invalid_token` the app logged: why it refused.
 * Consumes the captured log, so a later call never sees a stale refusal.
 */
function lastRefusal(app: TestApp): string | undefined {
  let detail: string | undefined
  for (const raw of app.logs) {
    const line = JSON.parse(raw) as { code?: string; detail?: string }
    if (line.code === 'invalid_token') detail = line.detail
  }
  app.logs.length = 0
  return detail
}

/** Asserts the last refusal was logged and was not a signature failure (the token was genuinely signed). */
function refusedForClaim(t: Test, app: TestApp, what: string) {
  const detail = lastRefusal(app)
  t.ok(detail !== undefined && detail !== 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', `${what} (${detail})`)
}

interface Setup {
  app: TestApp
  alice: { id: string; username: string }
  client: { id: string; secret: string | undefined }
  login: Awaited<ReturnType<typeof passwordLogin>>
  real: RealKey
  /** Header and claims of alice's genuine access token, to forge variants of. */
  header: Header
  claims: Claims
  /** A token with the genuine header and claims (new jti), signed with the real key. */
  forge(header?: Header, claims?: Claims): string
}

async function setup(t: Test, opts: Parameters<typeof testApp>[1] = {}): Promise<Setup> {
  const app = await testApp(t, opts)
  const alice = await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const real = await activeKey(app)
  const header = decode(login.access_token, 0)
  const claims = decode(login.access_token, 1)
  const forge = (h: Header = {}, c: Claims = {}) => compact({ ...header, ...h }, { ...claims, jti: randomUUID(), ...c }, real.privateKey, (h.alg as string | undefined) ?? real.alg)
  return { app, alice, client, login, real, header, claims, forge }
}

t.test('GET /userinfo with a valid access token: the user, no-store', async (t) => {
  const { app, alice, login } = await setup(t)
  const res = await userinfo(app, login.access_token)
  t.equal(res.statusCode, 200)
  t.same(res.json(), { sub: alice.id, preferred_username: 'alice' })
  t.equal(res.headers['cache-control'], 'no-store')
  t.match(res.headers['content-type'], /^application\/json/)
  const post = await app.app.inject({ method: 'POST', url: '/userinfo', headers: { authorization: `Bearer ${login.access_token}` } })
  t.equal(post.statusCode, 200, 'POST works too (OIDC Core §5.3.1)')
  t.same(post.json(), { sub: alice.id, preferred_username: 'alice' })
})

t.test('GET /userinfo without Authorization: 401 and a challenge without an error code (RFC 6750 §3.1)', async (t) => {
  const { app } = await setup(t)
  const res = await app.app.inject({ method: 'GET', url: '/userinfo' })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="tessera"')
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test('GET /userinfo with a token without the openid scope: 403 insufficient_scope', async (t) => {
  const { app } = await setup(t)
  // A client with no resource servers of its own gets tokens for Tessera itself (aud = issuer).
  const client = await app.createClient({ audience: [] })
  const login = await passwordLogin(app, client, 'alice', PASSWORD, 'read')
  t.equal(login.scope, 'read')
  t.equal(decode(login.access_token, 1).aud, ISSUER)
  const res = await userinfo(app, login.access_token)
  t.equal(res.statusCode, 403)
  t.same(res.json(), { error: 'insufficient_scope', error_description: 'the openid scope is required' })
  t.equal(res.headers['www-authenticate'], 'Bearer realm="tessera", error="insufficient_scope", error_description="the openid scope is required"')
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test('GET /userinfo with a token for another audience only (no openid): 401 invalid_token', async (t) => {
  // Without openid, an API client's token names only its API: it is not a token for Tessera.
  const { app, client } = await setup(t)
  const login = await passwordLogin(app, client, 'alice', PASSWORD, 'read')
  t.equal(decode(login.access_token, 1).aud, 'https://api.example.com')
  assertInvalidToken(t, await userinfo(app, login.access_token), 'token for another audience')
})

t.test('control: a token forged with the real key and the genuine claims is accepted', async (t) => {
  // Everything below that is signed with the real key fails for its one changed header or claim.
  const { app, alice, forge } = await setup(t)
  const res = await userinfo(app, forge())
  t.equal(res.statusCode, 200)
  t.same(res.json(), { sub: alice.id, preferred_username: 'alice' })
})

t.test('A#1 alg none (any case), empty signature: 401', async (t) => {
  const { app, login, header, claims } = await setup(t)
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const forged = `${b64u(JSON.stringify({ ...header, alg }))}.${segment(login.access_token, 1)}.`
    assertInvalidToken(t, await userinfo(app, forged), `alg ${alg}`)
    const noKid = `${b64u(JSON.stringify({ alg, typ: 'at+jwt' }))}.${b64u(JSON.stringify(claims))}.`
    assertInvalidToken(t, await userinfo(app, noKid), `alg ${alg} without kid`)
  }
})

t.test('A#2 signature stripped: 401', async (t) => {
  const { app, login } = await setup(t)
  const [h, p] = login.access_token.split('.')
  assertInvalidToken(t, await userinfo(app, `${h}.${p}.`), 'header.payload.')
  assertInvalidToken(t, await userinfo(app, `${h}.${p}`), 'header.payload')
})

t.test('A#3 HS256 keyed with the public key (PEM, DER, JWK JSON): 401', async (t) => {
  const { app, header, claims } = await setup(t)
  const jwks = await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  const published = (JSON.parse(jwks.body) as { keys: JWK[] }).keys[0]!
  const pub = createPublicKey({ key: published as never, format: 'jwk' })
  const pem = pub.export({ type: 'spki', format: 'pem' }) as string
  const secrets: [string, Buffer][] = [
    ['PEM', Buffer.from(pem)],
    ['PEM without trailing newline', Buffer.from(pem.trimEnd())],
    ['DER', pub.export({ type: 'spki', format: 'der' })],
    ['JWK JSON', Buffer.from(JSON.stringify(published))],
    ['JWKS document', Buffer.from(jwks.body)],
  ]
  for (const [name, secret] of secrets) {
    for (const h of [{ ...header, alg: 'HS256' }, { alg: 'HS256', typ: 'at+jwt' }] as Header[]) {
      const input = `${b64u(JSON.stringify(h))}.${b64u(JSON.stringify({ ...claims, jti: randomUUID() }))}`
      const forged = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
      assertInvalidToken(t, await userinfo(app, forged), `HS256 with the ${name}${h.kid ? '' : ', no kid'}`)
    }
  }
  // The same forgery with jose: the public JWK's bytes as a symmetric secret.
  const joseForged = await new SignJWT({ ...claims, jti: randomUUID() }).setProtectedHeader({ ...header, alg: 'HS256' } as never).sign(Buffer.from(JSON.stringify(published)))
  assertInvalidToken(t, await userinfo(app, joseForged), 'jose SignJWT HS256 with the JWK JSON')
})

t.test('A#4 alg switched on a valid kid (the key pins its one algorithm): 401', async (t) => {
  const { app, real, forge } = await setup(t)
  t.equal(real.alg, 'ES256')
  // A genuine ECDSA signature by the real P-256 key, but over SHA-384 and labelled ES384.
  assertInvalidToken(t, await userinfo(app, forge({ alg: 'ES384' })), 'ES256 key, header ES384')
  refusedForClaim(t, app, 'refused for the algorithm, not the signature')
})

t.test('A#4 RS256 key, header PS256 with a genuine PSS signature by the same key: 401', async (t) => {
  const { app, alice, real, forge } = await setup(t, { env: { SIGNING_ALG: 'RS256' } })
  t.equal(real.alg, 'RS256')
  const control = await userinfo(app, forge())
  t.equal(control.statusCode, 200, 'control: RS256 forged with the real key is accepted')
  t.same(control.json(), { sub: alice.id, preferred_username: 'alice' })
  assertInvalidToken(t, await userinfo(app, forge({ alg: 'PS256' })), 'RS256 key, header PS256')
  t.match(lastRefusal(app), /alg/, 'refused by the key lookup (alg pinned by kid), not by the signature')
})

t.test('A#5 embedded jwk header with the attacker key: 401, the key never comes from the token', async (t) => {
  const { app, real, claims } = await setup(t)
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk = await exportJWK(publicKey)
  const thumbprint = await calculateJwkThumbprint(jwk)
  const headers: [string, Record<string, unknown>][] = [
    ['no kid', { alg: 'ES256', typ: 'at+jwt', jwk }],
    ['the real kid', { alg: 'ES256', typ: 'at+jwt', kid: real.kid, jwk }],
    ["the attacker's thumbprint as kid", { alg: 'ES256', typ: 'at+jwt', kid: thumbprint, jwk: { ...jwk, kid: thumbprint } }],
  ]
  for (const [name, header] of headers) {
    const forged = await new SignJWT({ ...claims, jti: randomUUID() }).setProtectedHeader(header as never).sign(privateKey)
    assertInvalidToken(t, await userinfo(app, forged), `jwk header, ${name}`)
  }
})

t.test('A#6 jku / x5u headers: 401 and nothing is fetched', async (t) => {
  const { app, real, claims } = await setup(t)
  const attacker = await attackerKey()
  // An attacker JWKS server that would vouch for the attacker key: it must never be asked.
  const hits: string[] = []
  const spy: Server = createServer((req, res) => {
    hits.push(req.url ?? '')
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [{ ...attacker.publicJwk, kid: attacker.kid, alg: 'ES256', use: 'sig' }] }))
  })
  await new Promise<void>((resolve) => spy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => spy.close(() => resolve())))
  const port = (spy.address() as { port: number }).port
  for (const base of ['http://127.0.0.1:1', `http://127.0.0.1:${port}`]) {
    for (const param of ['jku', 'x5u']) {
      for (const kid of [attacker.kid, real.kid]) {
        const header = { alg: 'ES256', typ: 'at+jwt', kid, [param]: `${base}/jwks.json` }
        const forged = compact(header, { ...claims, jti: randomUUID() }, attacker.privateKey)
        assertInvalidToken(t, await userinfo(app, forged), `${param} ${base}, ${kid === real.kid ? 'real' : 'attacker'} kid`)
      }
    }
  }
  t.same(hits, [], 'the attacker URL was never fetched')
})

// The attacker's throwaway self-signed certificate (CN=attacker) and its key, test fixtures made with
// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=attacker` (DER, base64).
const ATTACKER_CERT =
  'MIIBfDCCASOgAwIBAgIUMqi1RElriq45oRhPBHIcmY3vW74wCgYIKoZIzj0EAwIwEzERMA8GA1UEAwwIYXR0YWNrZXIwIBcNMjYxMTIzMTY1MzE1WhgPMjEyNjEwMzAxNjUzMTVaMBMxETAPBgNVBAMMCGF0dGFja2VyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqdjhTnnqlCgIRqmsZvrIE618sJ1vNtkfoytUG2QeF0K6l5n2zelsIj1mL3ciVDtwc9P0EBL0pwf822aFgX2X36NTMFEwHQYDVR0OBBYEFKcwbpcV6yI5dAXHlTJS5Q86RZuBMB8GA1UdIwQYMBaAFKcwbpcV6yI5dAXHlTJS5Q86RZuBMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgazYtjG2GuE36rld88mfmjNl5kwAUIkESfUQY8Vs59CYCIA2vCkYYoZML4ITD8jeKsVsehhY8p1XC+LVtAABBt7PW'
const ATTACKER_CERT_KEY_PKCS8 =
  'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6qg7c0koXTuJM0FO3L5Sq1/e7X+IqDhpR5DY6eCCkjyhRANCAASp2OFOeeqUKAhGqaxm+sgTrXywnW822R+jK1QbZB4XQrqXmfbN6WwiPWYvdyJUO3Bz0/QQEvSnB/zbZoWBfZff'

t.test('A#7 x5c header with a self-signed certificate: 401', async (t) => {
  const { app, real, claims } = await setup(t)
  const cert = new X509Certificate(Buffer.from(ATTACKER_CERT, 'base64'))
  const certKey = createPrivateKey({ key: Buffer.from(ATTACKER_CERT_KEY_PKCS8, 'base64'), format: 'der', type: 'pkcs8' })
  t.ok(cert.checkPrivateKey(certKey), 'fixture: the key belongs to the certificate')
  const certKid = await calculateJwkThumbprint(cert.publicKey.export({ format: 'jwk' }) as JWK)
  for (const [name, kid] of [['absent', undefined], ["the certificate key's thumbprint", certKid], ['real', real.kid]] as const) {
    const header = { alg: 'ES256', typ: 'at+jwt', kid, x5c: [ATTACKER_CERT] }
    const forged = compact(header, { ...claims, jti: randomUUID() }, certKey)
    assertInvalidToken(t, await userinfo(app, forged), `x5c, kid ${name}`)
  }
})

t.test('A#8 malicious kid values: 401, no 5xx', async (t) => {
  const { app, real, claims } = await setup(t)
  const attacker = await attackerKey()
  const kids: unknown[] = [
    '../../../../dev/null',
    "' OR '1'='1",
    "x'; drop table signing_key; --",
    'k'.repeat(10_240),
    'k'.repeat(200),
    123,
    {},
    [],
    [real.kid],
    { toString: real.kid },
    null,
    true,
    '',
    ' ' + real.kid,
    real.kid.toUpperCase(),
    '__proto__',
    'constructor',
    'hasOwnProperty',
  ]
  for (const kid of kids) {
    const forged = compact({ alg: 'ES256', typ: 'at+jwt', kid }, { ...claims, jti: randomUUID() }, attacker.privateKey)
    assertInvalidToken(t, await userinfo(app, forged), `kid ${JSON.stringify(kid).slice(0, 40)}`)
  }
  const keys = await app.database.db.selectFrom('signing_key').select('kid').execute()
  t.equal(keys.length, 2, 'the signing_key table is intact (one key per line)')
  t.equal((await userinfo(app, (await passwordLogin(app, await app.createClient(), 'alice', PASSWORD)).access_token)).statusCode, 200, 'genuine tokens still work')
})

t.test('A#9 unknown kid: 401, and unknown kids do not cause a key reload storm', async (t) => {
  const clock = new ManualClock()
  const { app, claims } = await setup(t, { clock })
  const attacker = await attackerKey()
  const keyring = app.services.keyring
  let reloads = 0
  const reload = keyring.reload.bind(keyring)
  keyring.reload = () => {
    reloads++
    return reload()
  }
  // 30 forged tokens, one every 100 ms of the app's clock: three seconds of traffic.
  const started = clock.nowMs()
  for (let i = 0; i < 30; i++) {
    clock.advance(100)
    const forged = compact({ alg: 'ES256', typ: 'at+jwt', kid: randomUUID() }, { ...claims, jti: randomUUID() }, attacker.privateKey)
    assertInvalidToken(t, await userinfo(app, forged), `unknown kid #${i}`)
  }
  const seconds = (clock.nowMs() - started) / 1000
  t.ok(reloads <= Math.ceil(seconds) + 1, `at most one reload a second (${reloads} reloads in ${seconds.toFixed(2)} s)`)
  assertInvalidToken(t, await userinfo(app, compact({ alg: 'ES256', typ: 'at+jwt', kid: attacker.kid }, claims, attacker.privateKey)), 'attacker thumbprint as kid')
})

t.test('A#10 a token whose key was revoked: 401', async (t) => {
  const { app, login } = await setup(t)
  const kek = parseKek(TEST_KEK)
  const { kid: fresh } = await rotateKey(app.database.db, keyOptions(app), app.config.signingAlg)
  const old = decode(login.access_token, 0).kid as string
  await app.database.db.updateTable('signing_key').set({ state: 'revoked', revoked_at: new Date() }).where('kid', '=', old).execute()
  await app.services.keyring.reload()
  assertInvalidToken(t, await userinfo(app, login.access_token), 'kid of a revoked key')
  const again = await passwordLogin(app, await app.createClient(), 'alice', PASSWORD)
  t.equal(decode(again.access_token, 0).kid, fresh)
  t.equal((await userinfo(app, again.access_token)).statusCode, 200, 'the new key signs and verifies')
})

t.test('A#12 ES256 signature with r = s = 0, and r, s >= n: 401', async (t) => {
  const { app, login } = await setup(t)
  // The P-256 group order n.
  const n = Buffer.from('FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551', 'hex')
  const nPlus1 = Buffer.from('FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632552', 'hex')
  const sig = Buffer.from(segment(login.access_token, 2), 'base64url')
  const variants: [string, Buffer][] = [
    ['r = s = 0', Buffer.alloc(64)],
    ['r = n, s = n', Buffer.concat([n, n])],
    ['r = n, genuine s', Buffer.concat([n, sig.subarray(32)])],
    ['genuine r, s = n + 1', Buffer.concat([sig.subarray(0, 32), nPlus1])],
    ['all 0xff', Buffer.alloc(64, 0xff)],
  ]
  for (const [name, value] of variants) assertInvalidToken(t, await userinfo(app, withSegment(login.access_token, 2, value.toString('base64url'))), name)
})

/** DER (ASN.1 SEQUENCE of two INTEGERs) of a raw r‖s ECDSA signature. */
function rawToDer(raw: Buffer): Buffer {
  const int = (b: Buffer) => {
    let i = 0
    while (i < b.length - 1 && b[i] === 0) i++
    let v = b.subarray(i)
    if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v])
    return Buffer.concat([Buffer.from([0x02, v.length]), v])
  }
  const body = Buffer.concat([int(raw.subarray(0, 32)), int(raw.subarray(32))])
  return Buffer.concat([Buffer.from([0x30, body.length]), body])
}

t.test('A#13 signature of the wrong length, and a DER-encoded ECDSA signature: 401', async (t) => {
  const { app, login } = await setup(t)
  const sig = Buffer.from(segment(login.access_token, 2), 'base64url')
  t.equal(sig.length, 64)
  const der = rawToDer(sig)
  const variants: [string, Buffer][] = [
    ['truncated to 63 bytes', sig.subarray(0, 63)],
    ['truncated to 32 bytes', sig.subarray(0, 32)],
    ['padded to 65 bytes', Buffer.concat([sig, Buffer.from([0])])],
    ['doubled', Buffer.concat([sig, sig])],
    ['DER-encoded (the same r and s)', der],
    ['DER-encoded, cut to 64 bytes', der.subarray(0, 64)],
  ]
  for (const [name, value] of variants) assertInvalidToken(t, await userinfo(app, withSegment(login.access_token, 2, value.toString('base64url'))), name)
  t.equal((await userinfo(app, login.access_token)).statusCode, 200, 'the genuine signature still verifies')
})

t.test('A#14 crit headers (signed with the real key): 401', async (t) => {
  const { app, forge } = await setup(t)
  const variants: [string, Header][] = [
    ['crit ["exp"]', { crit: ['exp'], exp: 1 }],
    ['crit ["urn:x"] with the unknown extension', { crit: ['urn:x'], 'urn:x': true }],
    ['crit ["urn:x"] without the extension', { crit: ['urn:x'] }],
    ['crit []', { crit: [] }],
    ['crit "b64" (not an array)', { crit: 'b64', b64: true }],
    ['crit [""]', { crit: [''] }],
    ['crit ["alg"]', { crit: ['alg'] }],
  ]
  for (const [name, h] of variants) assertInvalidToken(t, await userinfo(app, forge(h)), name)
})

t.test('A#15 b64: false (signed with the real key): 401 for JWTs', async (t) => {
  const { app, forge } = await setup(t)
  // The payload segment is signed as is, which is also what b64:false means: only the header decides.
  assertInvalidToken(t, await userinfo(app, forge({ b64: false, crit: ['b64'] })), 'b64 false with crit')
  assertInvalidToken(t, await userinfo(app, forge({ b64: false })), 'b64 false without crit')
})

t.test('A#16 typ JWT or missing on an access token, and an id_token as Bearer: 401', async (t) => {
  const { app, login, forge } = await setup(t)
  assertInvalidToken(t, await userinfo(app, forge({ typ: 'JWT' })), 'typ JWT')
  assertInvalidToken(t, await userinfo(app, forge({ typ: undefined })), 'typ missing')
  assertInvalidToken(t, await userinfo(app, forge({ typ: 'at+jwt+x' })), 'typ at+jwt+x')
  assertInvalidToken(t, await userinfo(app, forge({ typ: ['at+jwt'] })), 'typ as an array')
  t.equal((await userinfo(app, forge({ typ: 'application/at+jwt' }))).statusCode, 200, 'application/at+jwt is the same type (RFC 9068 §4)')
  t.ok(login.id_token, 'the openid login returned an id_token')
  t.equal(decode(login.id_token!, 0).typ, 'JWT')
  assertInvalidToken(t, await userinfo(app, login.id_token!), 'id_token presented as Bearer')
})

t.test('A#18 expiry and not-before on the controllable clock', async (t) => {
  let now = Date.now()
  const { app, login, claims, forge } = await setup(t, { now: () => now })
  const exp = claims.exp as number
  t.equal(exp, Math.floor(now / 1000) + app.config.accessTokenTtlSeconds)
  now = (exp + 4) * 1000
  t.equal((await userinfo(app, login.access_token)).statusCode, 200, 'inside the 5 s leeway')
  now = (exp + 6) * 1000
  assertInvalidToken(t, await userinfo(app, login.access_token), 'expired by 1 s beyond the leeway')
  t.equal(lastRefusal(app), 'ERR_JWT_EXPIRED')

  now = Date.now()
  const sec = Math.floor(now / 1000)
  assertInvalidToken(t, await userinfo(app, forge({}, { nbf: sec + 60 })), 'nbf a minute ahead')
  assertInvalidToken(t, await userinfo(app, forge({}, { iat: sec + 60 })), 'iat a minute ahead')
  t.equal((await userinfo(app, forge({}, { nbf: sec + 3 }))).statusCode, 200, 'nbf inside the leeway')
  now += 61_000
  t.equal((await userinfo(app, forge({}, { nbf: sec + 60 }))).statusCode, 200, 'the same nbf once the clock has passed it')
})

t.test('A#19 exp, iat and nbf that are not sane NumericDates (signed with the real key): 401', async (t) => {
  const { app, claims, header, real, forge } = await setup(t)
  const sec = Math.floor(Date.now() / 1000)
  const variants: [string, Claims][] = [
    ['exp as a string', { exp: '9999999999' }],
    ['exp as a numeric string of a valid time', { exp: String(sec + 600) }],
    ['exp in milliseconds', { exp: (sec + 600) * 1000 }],
    ['exp negative', { exp: -1 }],
    ['exp null', { exp: null }],
    ['exp true', { exp: true }],
    ['exp missing', { exp: undefined }],
    ['iat as a string', { iat: String(sec) }],
    ['iat missing', { iat: undefined }],
    ['nbf as a string', { nbf: String(sec) }],
  ]
  for (const [name, c] of variants) {
    assertInvalidToken(t, await userinfo(app, forge({}, c)), name)
    refusedForClaim(t, app, `${name}: refused for the claim, not the signature`)
  }
  // 1e400 is Infinity to JSON.parse; JSON.stringify cannot write it, so the text is built by hand.
  const payload = JSON.stringify({ ...claims, jti: randomUUID(), exp: 0 }).replace('"exp":0', '"exp":1e400')
  assertInvalidToken(t, await userinfo(app, compactRaw(JSON.stringify(header), payload, real.privateKey, real.alg)), 'exp 1e400')
})

t.test('A#20 issuer variants (signed with the real key): 401, exact match only', async (t) => {
  const { app, forge } = await setup(t)
  t.equal(ISSUER, 'https://tessera.test')
  const issuers: unknown[] = ['https://tessera.test/', 'https://TESSERA.TEST', 'HTTPS://tessera.test', 'http://tessera.test', 'https://tessera.test:443', ' https://tessera.test', 'https://tessera.test.evil.example', [ISSUER], undefined, null]
  for (const iss of issuers) {
    assertInvalidToken(t, await userinfo(app, forge({}, { iss })), `iss ${JSON.stringify(iss)}`)
    refusedForClaim(t, app, `iss ${JSON.stringify(iss)}: a claim check`)
  }
})

t.test('A#21 audience variants (signed with the real key)', async (t) => {
  const { app, claims, forge } = await setup(t)
  t.same(claims.aud, ['https://api.example.com', ISSUER], 'a genuine openid token names the API and Tessera')
  const audiences: unknown[] = ['https://api.example.com', [], undefined, 'https://tessera.test/', ['https://api.example.com', 'https://evil.example'], claims.client_id, null, 42]
  for (const aud of audiences) {
    assertInvalidToken(t, await userinfo(app, forge({}, { aud })), `aud ${JSON.stringify(aud)}`)
    refusedForClaim(t, app, `aud ${JSON.stringify(aud)}: a claim check`)
  }
  // Policy: an audience array that contains Tessera is accepted (that is what Tessera issues).
  t.equal((await userinfo(app, forge({}, { aud: ISSUER }))).statusCode, 200, 'aud = issuer')
  t.equal((await userinfo(app, forge({}, { aud: ['https://evil.example', ISSUER] }))).statusCode, 200, 'aud array containing the issuer')
})

t.test('required claims missing or of the wrong type (signed with the real key): 401', async (t) => {
  const { app, forge } = await setup(t)
  const variants: [string, Claims][] = [
    ['sub missing', { sub: undefined }],
    ['sub a number', { sub: 42 }],
    ['sub not a user', { sub: randomUUID() }],
    ['jti missing', { jti: undefined }],
    ['jti a number', { jti: 1 }],
    ['client_id missing', { client_id: undefined }],
    ['client_id an array', { client_id: ['x'] }],
    ['sid not a UUID', { sid: 'nope' }],
    ['sid of an unknown family', { sid: randomUUID() }],
  ]
  for (const [name, c] of variants) assertInvalidToken(t, await userinfo(app, forge({}, c)), name)
})

t.test('A#22 a revoked access token: 401', async (t) => {
  const { app, client, login } = await setup(t)
  t.equal((await userinfo(app, login.access_token)).statusCode, 200)
  const revoke = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token: login.access_token }) })
  t.equal(revoke.statusCode, 200)
  assertInvalidToken(t, await userinfo(app, login.access_token), 'revoked access token')
})

t.test('A#23 the access tokens of a family revoked by reuse detection: 401', async (t) => {
  const { app, client, login } = await setup(t)
  const next = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: login.refresh_token }, client)
  t.equal(next.statusCode, 200)
  const successorAt = next.json().access_token as string
  t.equal((await userinfo(app, successorAt)).statusCode, 200)
  // Replaying the grandparent (a retry of the parent would be answered within the grace window).
  t.equal((await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: next.json().refresh_token }, client)).statusCode, 200)
  const reuse = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: login.refresh_token }, client)
  t.equal(reuse.json().error, 'invalid_grant')
  assertInvalidToken(t, await userinfo(app, login.access_token), 'the first access token')
  assertInvalidToken(t, await userinfo(app, successorAt), "the successor's access token")
  const other = await passwordLogin(app, client, 'alice', PASSWORD)
  t.equal((await userinfo(app, other.access_token)).statusCode, 200, "the user's other family is untouched")
})

t.test('A#24 malformed compact JWS: 401, never 5xx', async (t) => {
  const { app, login, header, claims, real } = await setup(t)
  const [h, p, s] = login.access_token.split('.') as [string, string, string]
  const signedRaw = (payloadJson: string) => compactRaw(JSON.stringify(header), payloadJson, real.privateKey, real.alg)
  const variants: [string, string][] = [
    ['2 segments', `${h}.${p}`],
    ['4 segments', `${h}.${p}.${s}.${s}`],
    ['5 segments', `${h}.${p}.${s}.${s}.${s}`],
    ['empty segments', '..'],
    ['a single segment', h],
    ['"+" and "/" (base64, not base64url)', `${h}.${p}.${s.replace(/-/g, '+').replace(/_/g, '/')}+/`],
    ['non-base64url characters', `${h}.${p}.${s.slice(0, -2)}!*`],
    ['padding "=" on the signature', `${h}.${p}.${s}=`],
    ['padding "=" on the header', `${h}=.${p}.${s}`],
    ['whitespace inside', `${h}. ${p}.${s}`],
    ['trailing whitespace', `${login.access_token} `],
    ['a tab', `${h}.${p}\t.${s}`],
    ['header null', `${b64u('null')}.${p}.${s}`],
    ['header []', `${b64u('[]')}.${p}.${s}`],
    ['header "x"', `${b64u('"x"')}.${p}.${s}`],
    ['header 123', `${b64u('123')}.${p}.${s}`],
    ['header not JSON', `${b64u('{alg')}.${p}.${s}`],
    ['header invalid UTF-8', `${Buffer.from([0xff, 0xfe, 0x7b]).toString('base64url')}.${p}.${s}`],
    ['payload [] (real key)', signedRaw('[]')],
    ['payload "x" (real key)', signedRaw('"x"')],
    ['payload null (real key)', signedRaw('null')],
    ['payload 1 (real key)', signedRaw('1')],
    ['payload not JSON (real key)', signedRaw('{"sub":')],
    ['payload invalid UTF-8 (real key)', `${h}.${Buffer.from([0xff, 0xfe, 0xfd]).toString('base64url')}.x`],
    ['payload empty (real key)', signedRaw('')],
  ]
  for (const [name, token] of variants) {
    const res = await userinfo(app, token)
    t.equal(res.statusCode, 401, `${name}: 401`)
    t.same(res.json(), INVALID_TOKEN_BODY, `${name}: invalid_token`)
  }
  const schemes = ['Bearer', 'Bearer ', 'Basic abc', 'Token abc', `bearer${login.access_token}`, `Bearer ${login.access_token} extra`]
  for (const authorization of schemes) {
    const res = await app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization } })
    t.equal(res.statusCode, 401, `Authorization ${JSON.stringify(authorization.slice(0, 20))}: 401`)
  }
  t.equal((await userinfo(app, claims.jti as string)).statusCode, 401, 'a bare jti')
})

t.test('A#25 a 1 MB Authorization header: 4xx, never 5xx, and the server stays up', async (t) => {
  const { app } = await setup(t)
  const huge = 'A'.repeat(1 << 20)
  const accepted = [400, 401, 413, 431]
  const injected = await userinfo(app, huge)
  t.ok(accepted.includes(injected.statusCode), `inject: ${injected.statusCode}`)
  const dotted = await userinfo(app, `${'A'.repeat(1 << 19)}.${'B'.repeat(1 << 19)}.C`)
  t.ok(accepted.includes(dotted.statusCode), `inject, three huge segments: ${dotted.statusCode}`)

  // Over a real socket Node's own header limit answers before any route runs.
  await app.app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.app.server.address() as { port: number }).port
  const status = await new Promise<number | 'reset'>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (chunk) => (data += chunk.toString('latin1')))
    socket.on('error', () => resolve(/^HTTP\/1\.1 (\d{3})/.test(data) ? Number(/^HTTP\/1\.1 (\d{3})/.exec(data)![1]) : 'reset'))
    socket.on('close', () => resolve(/^HTTP\/1\.1 (\d{3})/.test(data) ? Number(/^HTTP\/1\.1 (\d{3})/.exec(data)![1]) : 'reset'))
    socket.write(`GET /userinfo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${huge}\r\nConnection: close\r\n\r\n`)
  })
  t.ok(status === 'reset' || accepted.includes(status), `socket: ${status}`)
  const health = await fetch(`http://127.0.0.1:${port}/healthz`)
  t.equal(health.status, 200, 'the server is still up')
})

t.test('A#26 duplicate JSON keys cannot downgrade (signed with the real key)', async (t) => {
  const { app, header, claims, real } = await setup(t)
  const body = (extra: string) => JSON.stringify({ ...claims, jti: randomUUID() }).replace(/^\{/, `{${extra}`)
  const hdr = JSON.stringify(header).slice(1, -1)
  const raw = (headerJson: string, payloadJson: string) => compactRaw(headerJson, payloadJson, real.privateKey, real.alg)
  // JSON.parse keeps the last value: each token below ends with the weaker or wrong value.
  assertInvalidToken(t, await userinfo(app, raw(`{${hdr},"alg":"none"}`, body(''))), 'header alg ES256 then none')
  assertInvalidToken(t, await userinfo(app, raw(`{${hdr},"typ":"JWT"}`, body(''))), 'header typ at+jwt then JWT')
  assertInvalidToken(t, await userinfo(app, raw(`{${hdr},"kid":"other"}`, body(''))), 'header kid real then other')
  assertInvalidToken(t, await userinfo(app, raw(JSON.stringify(header), JSON.stringify({ ...claims, jti: randomUUID() }).replace(/\}$/, ',"aud":"https://evil.example"}'))), 'claims aud twice, foreign last')
  assertInvalidToken(t, await userinfo(app, raw(JSON.stringify(header), JSON.stringify({ ...claims, jti: randomUUID() }).replace(/\}$/, ',"exp":1}'))), 'claims exp twice, past last')
  const scope = await userinfo(app, raw(JSON.stringify(header), JSON.stringify({ ...claims, jti: randomUUID() }).replace(/\}$/, ',"scope":"read"}')))
  t.equal(scope.statusCode, 403, 'claims scope twice, narrower last: the narrower scope counts')
  // The other order ends with the genuine values: accepted or refused, never 5xx.
  const harmless = await userinfo(app, raw(`{"alg":"none",${hdr}}`, body('"sub":"someone-else",')))
  t.ok([200, 401].includes(harmless.statusCode), `genuine values last: ${harmless.statusCode}`)
})

t.test('A#27 __proto__ and constructor claims are data, never prototypes', async (t) => {
  const { app, alice, claims, header, real } = await setup(t)
  const raw = (payloadJson: string) => compactRaw(JSON.stringify(header), payloadJson, real.privateKey, real.alg)
  const { scope: _scope, ...noScope } = claims
  // Without its own scope claim, a scope on the "prototype" must not grant openid.
  const viaProto = await userinfo(app, raw(`{"__proto__":{"scope":"openid read","admin":true},${JSON.stringify({ ...noScope, jti: randomUUID() }).slice(1)}`))
  t.equal(viaProto.statusCode, 403, 'scope under __proto__ is not the scope')
  t.equal(viaProto.json().error, 'insufficient_scope')
  const withProto = await userinfo(app, raw(`{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},${JSON.stringify({ ...claims, jti: randomUUID() }).slice(1)}`))
  t.equal(withProto.statusCode, 200, 'the odd claims are just data')
  t.same(withProto.json(), { sub: alice.id, preferred_username: 'alice' })
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched')
  t.equal(({} as Record<string, unknown>).admin, undefined, 'Object.prototype is untouched')
  t.equal(({} as Record<string, unknown>).scope, undefined, 'Object.prototype is untouched')
})

t.test('A#28 a tampered payload of an expired token fails on the signature, not on expiry', async (t) => {
  let now = Date.now()
  const { app, login, claims } = await setup(t, { now: () => now })
  now = ((claims.exp as number) + 3600) * 1000
  const tampered = withSegment(login.access_token, 1, b64u(JSON.stringify({ ...claims, exp: (claims.exp as number) + 86_400 })))
  assertInvalidToken(t, await userinfo(app, tampered), 'tampered, expiry extended')
  t.equal(lastRefusal(app), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'the signature is checked before any claim')
  const stillExpired = withSegment(login.access_token, 1, b64u(JSON.stringify({ ...claims, sub: randomUUID() })))
  assertInvalidToken(t, await userinfo(app, stillExpired), 'tampered, still expired')
  t.equal(lastRefusal(app), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'no expiry verdict on an unverified payload')
})

t.test('a token signed by a retired key still verifies after rotation', async (t) => {
  const { app, alice, client, login, real } = await setup(t)
  const { kid, retired } = await rotateKey(app.database.db, keyOptions(app), app.config.signingAlg)
  t.same(retired, [real.kid])
  await app.services.keyring.reload()
  const res = await userinfo(app, login.access_token)
  t.equal(res.statusCode, 200, 'the retired key still verifies')
  t.same(res.json(), { sub: alice.id, preferred_username: 'alice' })
  const fresh = await passwordLogin(app, client, 'alice', PASSWORD)
  t.equal(decode(fresh.access_token, 0).kid, kid, 'new tokens are signed with the new key')
  t.equal((await userinfo(app, fresh.access_token)).statusCode, 200)
})

t.test('a token naming a pending key is refused (Tessera never signs with one)', async (t) => {
  const { app, claims } = await setup(t)
  const kek = parseKek(TEST_KEK)
  const pending = await generateSigningKey(app.config.signingAlg, kek)
  await app.database.db
    .insertInto('signing_key')
    .values({ kid: pending.kid, alg: pending.alg, state: 'pending', public_jwk: JSON.stringify(pending.publicJwk), private_key_enc: pending.privateKeyEnc, kek_id: pending.kekId })
    .execute()
  await app.services.keyring.reload()
  const jwks = JSON.parse((await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).body) as { keys: JWK[] }
  t.ok(jwks.keys.some((k) => k.kid === pending.kid), 'the pending key is published')
  const key = await keyFromRow(app, pending.kid)
  const forged = compact({ alg: key.alg, kid: key.kid, typ: 'at+jwt' }, { ...claims, jti: randomUUID() }, key.privateKey)
  assertInvalidToken(t, await userinfo(app, forged), 'signed with the pending key')
  await app.database.db.updateTable('signing_key').set({ state: 'retired' }).where('state', '=', 'active').execute()
  await app.database.db.updateTable('signing_key').set({ state: 'active' }).where('kid', '=', pending.kid).execute()
  await app.services.keyring.reload()
  t.equal((await userinfo(app, forged)).statusCode, 200, 'the same token verifies once the key is active')
})
