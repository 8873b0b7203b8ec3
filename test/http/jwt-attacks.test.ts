// JWT attacks at each of Tessera's own verification points (SECURITY A #1–#11, E #87):
// GET /userinfo and the admin API answer 401 invalid_token; /introspect answers {"active": false}
// (RFC 7662 §2.2: an introspection caller learns only that the token is not active).
//
// Forgeries signed with the server's REAL private key (decrypted from its row with the test KEK)
// show that each refusal is for the one thing changed; a control forged the same way is accepted.
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import t from 'tap'
import type { Test } from 'tap'
import { calculateJwkThumbprint, type JWK } from 'jose'
import { open, parseKek } from '../../src/keys/kek.js'
import { basic, FORM, form, ISSUER, passwordLogin, TEST_KEK, testApp, tokenRequest, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'
type Json = Record<string, unknown>
const b64u = (s: string | Buffer) => Buffer.from(s).toString('base64url')
const decode = (token: string, i: number) => JSON.parse(Buffer.from(token.split('.')[i]!, 'base64url').toString('utf8')) as Json

function jws(header: Json, claims: Json, key: KeyObject, alg = header.alg as string): string {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`
  const data = Buffer.from(input, 'ascii')
  const sig = alg === 'ES256' ? sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }) : alg === 'RS256' ? sign('sha256', data, key) : sign(null, data, key)
  return `${input}.${sig.toString('base64url')}`
}

async function privateKeyOf(app: TestApp, kid: string): Promise<KeyObject> {
  const row = await app.database.db.selectFrom('signing_key').selectAll().where('kid', '=', kid).executeTakeFirstOrThrow()
  const jwk = JSON.parse(open(parseKek(TEST_KEK), Buffer.from(row.private_key_enc), row.kid).toString('utf8')) as JWK
  return createPrivateKey({ key: jwk as never, format: 'jwk' })
}

const activeKid = async (app: TestApp) => (await app.database.db.selectFrom('signing_key').select('kid').where('state', '=', 'active').executeTakeFirstOrThrow()).kid

interface Point {
  name: string
  /** A genuine token this point accepts. */
  token: string
  /** 'accepted' | 'refused' for `token`, with the status seen (for messages). */
  check(token: string): Promise<{ accepted: boolean; status: number; body: Json }>
}

async function setup(t: Test, opts: Parameters<typeof testApp>[1] = {}) {
  const app = await testApp(t, opts)
  await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const admin = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const mintAdmin = async () => (await tokenRequest(app, { grant_type: 'client_credentials', scope: 'tessera:admin' }, admin)).json().access_token as string
  const userToken = (await passwordLogin(app, client, 'alice', PASSWORD)).access_token
  const adminToken = await mintAdmin()
  const bearer = (url: string) => async (token: string) => {
    const res = await app.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } })
    return { accepted: res.statusCode === 200, status: res.statusCode, body: res.json() as Json }
  }
  const points: Point[] = [
    { name: '/userinfo', token: userToken, check: bearer('/userinfo') },
    { name: 'GET /admin/keys', token: adminToken, check: bearer('/admin/keys') },
    {
      name: '/introspect',
      token: userToken,
      check: async (token) => {
        const res = await app.app.inject({ method: 'POST', url: '/introspect', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token }) })
        const body = res.json() as Json
        return { accepted: body.active === true, status: res.statusCode, body }
      },
    },
  ]
  return { app, client, admin, points, mintAdmin }
}

/** Asserts the point refuses `token` the way it should: 401 invalid_token, or inactive at introspection. */
function refused(t: Test, p: Point, r: Awaited<ReturnType<Point['check']>>, what: string) {
  if (p.name === '/introspect') t.same({ status: r.status, body: r.body }, { status: 200, body: { active: false } }, `${p.name}: ${what} → active:false`)
  else t.same({ status: r.status, error: r.body.error }, { status: 401, error: 'invalid_token' }, `${p.name}: ${what} → 401 invalid_token`)
}

t.test('every attack at every verification point fails (A #1 #3 #5 #6 #8 #9, wrong iss/aud, expired)', async (t) => {
  let now = Date.now()
  const { app, points } = await setup(t, { now: () => now })
  const kid = await activeKid(app)
  const real = await privateKeyOf(app, kid)
  const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const attackerJwk = attacker.publicKey.export({ format: 'jwk' }) as JWK
  const attackerKid = await calculateJwkThumbprint(attackerJwk)
  const published = (JSON.parse((await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).body) as { keys: JWK[] }).keys[0]!
  const pem = createPublicKey({ key: published as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string
  // No outbound fetch may happen for jku / x5u.
  const hits: string[] = []
  const spy = createServer((req, res) => {
    hits.push(req.url ?? '')
    res.end(JSON.stringify({ keys: [{ ...attackerJwk, kid: attackerKid, alg: 'ES256' }] }))
  })
  await new Promise<void>((r) => spy.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => spy.close(() => r())))
  const spyUrl = `http://127.0.0.1:${(spy.address() as { port: number }).port}/jwks.json`

  for (const p of points) {
    const header = decode(p.token, 0)
    const claims = decode(p.token, 1)
    const forge = (h: Json = {}, c: Json = {}, key: KeyObject = real) => jws({ ...header, ...h }, { ...claims, jti: randomUUID(), ...c }, key)
    const hs256 = (secret: string | Buffer, h: Json = {}) => {
      const input = `${b64u(JSON.stringify({ ...header, alg: 'HS256', ...h }))}.${b64u(JSON.stringify({ ...claims, jti: randomUUID() }))}`
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
    }
    t.ok((await p.check(p.token)).accepted, `${p.name}: the genuine token is accepted`)
    t.ok((await p.check(forge())).accepted, `${p.name}: control, re-signed with the real key, is accepted`)
    const attacks: [string, string][] = [
      ['alg none', `${b64u(JSON.stringify({ ...header, alg: 'none' }))}.${p.token.split('.')[1]}.`],
      ['alg None, no kid', `${b64u(JSON.stringify({ alg: 'None', typ: 'at+jwt' }))}.${p.token.split('.')[1]}.`],
      ['HS256 keyed with the public key PEM', hs256(pem)],
      ['HS256 keyed with the public JWK JSON', hs256(JSON.stringify(published))],
      ['HS256 keyed with the public key PEM, no kid', hs256(pem, { kid: undefined })],
      ['unknown kid (attacker key)', forge({ kid: attackerKid }, {}, attacker.privateKey)],
      ['unknown kid, real signature', forge({ kid: 'x'.repeat(43) })],
      ['kid path traversal', forge({ kid: '../../../../dev/null' })],
      ['kid SQL', forge({ kid: "' OR '1'='1" })],
      ['kid 10 kB', forge({ kid: 'k'.repeat(10_240) })],
      ['kid a number', forge({ kid: 123 })],
      ['kid an object', forge({ kid: {} })],
      ['kid empty', forge({ kid: '' })],
      ['embedded jwk, attacker key, no kid', forge({ kid: undefined, jwk: attackerJwk }, {}, attacker.privateKey)],
      ['embedded jwk, attacker key, real kid', forge({ jwk: attackerJwk }, {}, attacker.privateKey)],
      ['jku to the attacker', forge({ kid: attackerKid, jku: spyUrl }, {}, attacker.privateKey)],
      ['x5u to the attacker', forge({ kid: attackerKid, x5u: spyUrl }, {}, attacker.privateKey)],
      ['jku with the real kid, attacker signature', forge({ jku: spyUrl }, {}, attacker.privateKey)],
      ['wrong issuer', forge({}, { iss: 'https://evil.example' })],
      ['issuer with a trailing slash', forge({}, { iss: `${ISSUER}/` })],
      // Introspection reports on any token of this server (RFC 7662); the audience is the resource server's to check.
      ...(p.name === '/introspect' ? [] : ([['wrong audience', forge({}, { aud: 'https://evil.example' })]] as [string, string][])),
      ['expired', forge({}, { iat: Math.floor(now / 1000) - 3600, exp: Math.floor(now / 1000) - 60 })],
      ['typ JWT (an ID-token-like header)', forge({ typ: 'JWT' })],
    ]
    for (const [what, token] of attacks) refused(t, p, await p.check(token), what)
  }
  t.same(hits, [], 'no jku / x5u URL was ever fetched')

  // The genuine tokens expire like any other.
  now += 2 * 3600 * 1000
  for (const p of points) refused(t, p, await p.check(p.token), 'the genuine token two hours later')
})

t.test('#10 #87 a revoked key: its tokens are refused everywhere at once, also tokens forged with its stolen private key', async (t) => {
  const { app, points, mintAdmin } = await setup(t)
  const kid = await activeKid(app)
  const stolen = await privateKeyOf(app, kid)
  for (const p of points) t.ok((await p.check(p.token)).accepted, `${p.name}: accepted before the revoke`)
  const res = await app.app.inject({ method: 'POST', url: `/admin/keys/${kid}/revoke`, headers: { authorization: `Bearer ${points[1]!.token}` }, payload: { reason: 'key leaked' } })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().state, 'revoked')
  for (const p of points) {
    refused(t, p, await p.check(p.token), 'a token of the revoked key')
    const header = decode(p.token, 0)
    const fresh = jws(header, { ...decode(p.token, 1), jti: randomUUID(), iat: Math.floor(Date.now() / 1000) }, stolen)
    refused(t, p, await p.check(fresh), 'a fresh token forged with the stolen key')
  }
  const jwks = JSON.parse((await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).body) as { keys: JWK[] }
  t.notOk(jwks.keys.some((k) => k.kid === kid), 'gone from the JWKS')
  const successor = await mintAdmin()
  t.not(decode(successor, 0).kid, kid, 'a successor signs')
  t.equal((await app.app.inject({ method: 'GET', url: '/admin/keys', headers: { authorization: `Bearer ${successor}` } })).statusCode, 200, "the successor's tokens work")
})

t.test('#11 a pending key (published, not yet active): a token signed with it is refused everywhere', async (t) => {
  const { app, points, mintAdmin } = await setup(t)
  const rotate = await app.app.inject({ method: 'POST', url: '/admin/keys/rotate', headers: { authorization: `Bearer ${await mintAdmin()}` }, payload: {} })
  t.equal(rotate.statusCode, 200, rotate.body)
  const pendingKid = rotate.json().kid as string
  t.equal(rotate.json().state, 'pending')
  const pendingKey = await privateKeyOf(app, pendingKid)
  for (const p of points) {
    const forged = jws({ ...decode(p.token, 0), kid: pendingKid }, { ...decode(p.token, 1), jti: randomUUID() }, pendingKey)
    refused(t, p, await p.check(forged), 'signed with the pending key')
  }
})

t.test('a removed key: a token forged with its private key (kept from before) is refused', async (t) => {
  let now = Date.now()
  const { app, points, mintAdmin } = await setup(t, { now: () => now })
  const kid = await activeKid(app)
  const kept = await privateKeyOf(app, kid)
  const rotate = await app.app.inject({ method: 'POST', url: '/admin/keys/rotate', headers: { authorization: `Bearer ${await mintAdmin()}` }, payload: { immediate: true } })
  t.equal(rotate.statusCode, 200, rotate.body)
  now += (app.services.keyring.policy.retentionSeconds + 1) * 1000
  await app.jobs.keySync.run()
  const row = await app.database.db.selectFrom('signing_key').select(['state', 'private_key_enc']).where('kid', '=', kid).executeTakeFirstOrThrow()
  t.equal(row.state, 'removed')
  t.equal(row.private_key_enc.length, 0, 'the private part is gone from the database')
  const fresh = { userinfo: points[0]!, admin: { ...points[1]!, token: await mintAdmin() }, introspect: points[2]! }
  for (const p of Object.values(fresh)) {
    const forged = jws({ ...decode(p.token, 0), kid }, { ...decode(p.token, 1), jti: randomUUID(), iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 600 }, kept)
    refused(t, p, await p.check(forged), 'signed with the removed key')
  }
})
