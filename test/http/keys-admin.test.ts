// The signing-key admin API: GET /admin/keys, POST /admin/keys/rotate, /admin/keys/{kid}/revoke,
// /admin/keys/import, /admin/keys/rewrap (SECURITY E #84 #87 #90 #93, H #115, K #139).
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql, type KyselyPlugin } from 'kysely'
import { decodeProtectedHeader, type JWK } from 'jose'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp, type Tessera } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config.js'
import { openDatabase } from '../../src/db/connect.js'
import { asDb } from '../../src/db/schema.js'
import { open, parseKek } from '../../src/keys/kek.js'
import { TEST_KEK, testApp, testEnv, tokenRequest, type TestApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

type App = { app: TestApp['app'] }
type Creds = { id: string; secret: string | undefined }

async function mintAdmin(app: App, client: Creds): Promise<string> {
  const res = await tokenRequest(app as TestApp, { grant_type: 'client_credentials', scope: 'tessera:admin' }, client)
  if (res.statusCode !== 200) throw new Error(`admin token: ${res.statusCode} ${res.body}`)
  return res.json().access_token
}

function caller(app: App, token: () => string) {
  return (method: 'GET' | 'POST', url: string, payload?: unknown, tok = token()) =>
    app.app.inject({ method, url, headers: { authorization: `Bearer ${tok}`, ...(payload !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}) })
}

async function setup(t: Test, opts: Parameters<typeof testApp>[1] = {}) {
  const app = await testApp(t, opts)
  const admin = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  let token = await mintAdmin(app, admin)
  // After a revoke of the key that signed it, a new admin token is minted.
  const refresh = async () => (token = await mintAdmin(app, admin))
  return { app, admin, call: caller(app, () => token), refresh }
}

/** An answer without its `propagation` member (checked on its own where it matters). */
const changeOf = (res: { json(): any }) => { // eslint-disable-line @typescript-eslint/no-explicit-any
  const { propagation, ...rest } = res.json()
  return rest
}

/** The published kids of a line (default: the access-token line). */
const jwksKids = async (app: App, line = 'ES256') => (JSON.parse((await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).body) as { keys: JWK[] }).keys.filter((k) => k.alg === line).map((k) => k.kid!).sort()
/** The active key of a line (default: the access-token line). */
const activeKid = async (app: TestApp, line = 'ES256') => (await app.database.db.selectFrom('signing_key').select('kid').where('state', '=', 'active').where('alg', '=', line).executeTakeFirstOrThrow()).kid
const stateOf = async (app: TestApp, kid: string) => (await app.database.db.selectFrom('signing_key').select('state').where('kid', '=', kid).executeTakeFirstOrThrow()).state

/** Every column of every signing_key row as text, for grepping. */
async function dumpKeys(app: TestApp): Promise<string> {
  const rows = await sql<{ j: string }>`select row_to_json(k)::text as j from signing_key k`.execute(app.database.db)
  return rows.rows.map((r) => r.j).join('\n')
}

/** Another instance on the same database, with its own configuration and pool. */
async function instance(t: Test, app: TestApp, config: Config, clock?: ManualClock): Promise<Tessera> {
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 2, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  t.teardown(() => database.close())
  const quiet = new Writable({ write: (_c, _e, cb) => cb() })
  const tessera = await buildApp({ config, database, logStream: quiet, ...(clock ? { clock } : {}) })
  t.teardown(() => tessera.close())
  return tessera
}

t.test('the admin key API needs an admin token: 401 without, 403 without the scope; wrong methods 405', async (t) => {
  const { app, call } = await setup(t)
  const plain = await app.createClient({ name: 'plain', grantTypes: ['client_credentials'], scopes: ['read'], audience: [] })
  const weak = (await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, plain)).json().access_token as string
  const kid = await activeKid(app)
  const endpoints: ['GET' | 'POST', string][] = [['GET', '/admin/keys'], ['POST', '/admin/keys/rotate'], ['POST', `/admin/keys/${kid}/revoke`], ['POST', '/admin/keys/import'], ['POST', '/admin/keys/rewrap']]
  for (const [method, url] of endpoints) {
    const none = await app.app.inject({ method, url })
    t.equal(none.statusCode, 401, `${method} ${url} without a token`)
    t.equal(none.headers['www-authenticate'], 'Bearer realm="tessera"')
    const res = await call(method, url, method === 'POST' ? {} : undefined, weak)
    t.equal(res.statusCode, 403, `${method} ${url} without the scope`)
    t.equal(res.json().error, 'insufficient_scope')
  }
  t.same(await jwksKids(app), [kid], 'nothing changed')
  t.equal((await app.app.inject({ method: 'DELETE', url: '/admin/keys' })).statusCode, 405)
  t.equal((await app.app.inject({ method: 'GET', url: '/admin/keys/rotate' })).statusCode, 405)
  t.equal((await app.app.inject({ method: 'GET', url: `/admin/keys/${kid}/revoke` })).statusCode, 405)
})

t.test('GET /admin/keys lists state and dates, never key material', async (t) => {
  const { app, call } = await setup(t)
  const res = await call('GET', '/admin/keys')
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const keys = res.json().keys as Record<string, unknown>[]
  t.same(keys.map((k) => k.alg).sort(), ['ES256', 'RS256'], 'one key per line')
  for (const k of keys) t.same(Object.keys(k).sort(), ['activate_at', 'activated_at', 'alg', 'created_at', 'kek_id', 'kid', 'remove_at', 'removed_at', 'retired_at', 'revoked_at', 'revoked_reason', 'state'])
  t.match(keys.find((k) => k.alg === 'ES256'), { kid: await activeKid(app), alg: 'ES256', state: 'active', activated_at: String, kek_id: 'test' })
  t.match(keys.find((k) => k.alg === 'RS256'), { kid: await activeKid(app, 'RS256'), state: 'active' })
  t.notOk(/"d"|private/.test(res.body), 'no private member, no ciphertext')
})

t.test('POST /admin/keys/rotate: scheduled by default (pending, idempotent), immediate on request; bad input 400', async (t) => {
  const now = Date.now()
  const { app, call, refresh } = await setup(t, { now: () => now })
  const first = await activeKid(app)
  const r1 = await call('POST', '/admin/keys/rotate')
  t.equal(r1.statusCode, 200, r1.body)
  t.equal(r1.headers['cache-control'], 'no-store')
  const pending = r1.json()
  t.match(pending, { alg: 'ES256', state: 'pending', created: true })
  t.equal(Date.parse(pending.activate_at), now + app.services.keyring.policy.publishLeadSeconds * 1000, 'activates after the publish lead')
  t.same(await jwksKids(app), [first, pending.kid].sort(), 'published at once on this instance')
  t.match((await call('POST', '/admin/keys/rotate', { alg: 'ES256' })).json(), { kid: pending.kid, created: false }, 'a rotation is scheduled already: the same key')
  const rs = (await call('POST', '/admin/keys/rotate', { alg: 'RS256' })).json()
  t.match(rs, { alg: 'RS256', state: 'pending', created: true }, 'alg names the line: the RS256 line schedules its own rotation')
  t.equal(await stateOf(app, pending.kid), 'pending', 'the ES256 pending key is untouched')
  t.same(await jwksKids(app), [first, pending.kid].sort())
  t.ok((await jwksKids(app, 'RS256')).includes(rs.kid), 'published at once')

  const rsActive = await activeKid(app, 'RS256')
  const r3 = await call('POST', '/admin/keys/rotate', { immediate: true, alg: 'RS256' })
  t.same(changeOf(r3), { kid: rs.kid, alg: 'RS256', state: 'active', retired: [rsActive], prepublished: false }, "immediate: the line's pending key is promoted (published just now: not every cache has it)")
  t.equal(decodeProtectedHeader(await refresh()).kid, first, 'access tokens are still signed by the ES256 key')
  const r4 = await call('POST', '/admin/keys/rotate', { immediate: true })
  t.same(changeOf(r4), { kid: pending.kid, alg: 'ES256', state: 'active', retired: [first], prepublished: false }, 'without alg: the SIGNING_ALG line, its pending key promoted')
  t.equal(decodeProtectedHeader(await refresh()).kid, pending.kid, 'and signs at once')
  for (const bad of [{ alg: 'HS256' }, { alg: 5 }, { immediate: 'yes' }, [1], 'x']) {
    const res = await call('POST', '/admin/keys/rotate', bad)
    t.equal(res.statusCode, 400, `${JSON.stringify(bad)}: 400`)
    t.equal(res.json().error, 'invalid_request')
  }
})

t.test('POST /admin/keys/{kid}/revoke (#87): out of the JWKS at once, a successor at once, idempotent, 404 for unknown', async (t) => {
  const { app, call, refresh } = await setup(t)
  const first = await activeKid(app)
  const pending = (await call('POST', '/admin/keys/rotate')).json().kid as string

  // Revoke the pending key: gone from the JWKS, the active key is untouched.
  const rp = await call('POST', `/admin/keys/${pending}/revoke`)
  t.same(changeOf(rp), { kid: pending, alg: 'ES256', state: 'revoked', already_revoked: false, successor: null, successor_prepublished: null })
  t.same(await jwksKids(app), [first])

  // Schedule another, then revoke the active key: the pending one is promoted at once.
  const next = (await call('POST', '/admin/keys/rotate')).json().kid as string
  const ra = await call('POST', `/admin/keys/${first}/revoke`, { reason: 'leaked in a log' })
  t.equal(ra.statusCode, 200)
  t.same(changeOf(ra), { kid: first, alg: 'ES256', state: 'revoked', already_revoked: false, successor: next, successor_prepublished: false }, 'published a moment ago: not every cache has it')
  t.same(ra.json().propagation, {
    version: ra.json().propagation.version,
    confirmed: [{ instance: app.services.changes.identity.instanceId, host: app.services.changes.identity.host, pid: process.pid, change_version: ra.json().propagation.version }],
    unconfirmed: [],
    stale: [],
    waited_ms: ra.json().propagation.waited_ms,
  }, 'the one instance applied the revoke before it answered')
  t.same(await jwksKids(app), [next], 'the revoked key left the JWKS at once')
  t.equal((await call('GET', '/admin/keys')).statusCode, 401, 'the admin token signed by the revoked key is refused')
  t.equal(decodeProtectedHeader(await refresh()).kid, next, 'the successor signs')
  const row = await app.database.db.selectFrom('signing_key').selectAll().where('kid', '=', first).executeTakeFirstOrThrow()
  t.match(row, { state: 'revoked', revoked_reason: 'leaked in a log' })
  t.equal(row.private_key_enc.length, 0, 'the private part is destroyed')
  // SECURITY #122: audited with who, what and when, and counted.
  const audit = await app.database.db.selectFrom('audit_event').selectAll().where('type', '=', 'signing_key.revoked').orderBy('id').execute()
  t.equal(audit.length, 2, 'both revocations are in the audit trail')
  t.match(audit[1], { client_id: String, detail: { kid: first, previous_state: 'active', successor: next, reason: 'leaked in a log', via: 'admin_api' } })
  t.type(audit[1]!.at, Date)
  const metrics = await app.app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /^tessera_signing_keys_revoked_total 2$/m, 'counted in /metrics')

  t.same(changeOf(await call('POST', `/admin/keys/${first}/revoke`)), { kid: first, alg: 'ES256', state: 'revoked', already_revoked: true, successor: null, successor_prepublished: null }, 'twice: nothing more happens')
  // Revoking the active key with nothing pending makes a new key.
  const rn = (await call('POST', `/admin/keys/${next}/revoke`)).json()
  t.ok(rn.successor && rn.successor !== next && rn.successor !== first, 'a brand-new successor')
  await refresh()
  t.equal(await stateOf(app, rn.successor), 'active')

  for (const kid of ['nope', 'x'.repeat(43), '..%2F..%2Fetc', "'or'1'='1"]) {
    const res = await call('POST', `/admin/keys/${kid}/revoke`)
    t.equal(res.statusCode, 404, `${kid}: 404`)
    t.same(res.json(), { error: 'invalid_request', error_description: 'no such key' })
  }
  const long = await call('POST', `/admin/keys/${rn.successor}/revoke`, { reason: 'r'.repeat(201) })
  t.equal(long.statusCode, 400)
  t.equal(await stateOf(app, rn.successor), 'active', 'a refused request changes nothing')
})

t.test('#139 a revoke through one instance reaches another within about a second', async (t) => {
  const { app, call } = await setup(t)
  const clock = new ManualClock()
  const other = await instance(t, app, app.config, clock)
  const first = await activeKid(app)
  const client = await app.createClient()
  const at = (await tokenRequest(app, { grant_type: 'client_credentials', scope: 'read' }, client)).json().access_token as string
  const introspect = () => other.app.inject({ method: 'POST', url: '/introspect', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` }, payload: `token=${at}` }).then((r) => r.json().active as boolean)
  t.equal(await introspect(), true)
  t.equal((await call('POST', `/admin/keys/${first}/revoke`)).statusCode, 200)
  // One poll of the other instance's key sync (every second of its clock), nothing else.
  clock.advance(1000)
  await other.jobs.keySync.idle()
  t.equal(await introspect(), false, 'the other instance refused the token after one poll (1 s)')
  t.notOk((await jwksKids(other)).includes(first), 'and dropped the key from its JWKS')
  t.not(other.services.keyring.activeSigner().kid, first, 'and signs with the successor')
})

t.test('POST /admin/keys/import: PEM and JWK, private or public-only; only signing key types; no plaintext stored (#90 #115)', async (t) => {
  const now = Date.now()
  const { app, call } = await setup(t, { now: () => now })
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const ecPem = ec.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const ecD = (ec.privateKey.export({ format: 'jwk' }) as JWK).d!
  const imported = await call('POST', '/admin/keys/import', { pem: ecPem })
  t.equal(imported.statusCode, 201, imported.body)
  const ecKid = imported.json().kid as string
  t.same(changeOf(imported), { kid: ecKid, alg: 'ES256', state: 'pending', retired: [] }, 'pending by default')
  const row = await app.database.db.selectFrom('signing_key').selectAll().where('kid', '=', ecKid).executeTakeFirstOrThrow()
  t.equal(row.activate_at!.getTime(), now + app.services.keyring.policy.publishLeadSeconds * 1000)
  t.same(Object.keys(row.public_jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'])
  t.equal(JSON.parse(open(parseKek(TEST_KEK), Buffer.from(row.private_key_enc), ecKid).toString('utf8')).d, ecD, 'sealed under the KEK, AAD = kid')
  t.ok((await jwksKids(app)).includes(ecKid), 'published')

  // An RSA private JWK used with PS256, imported as active: signs at once.
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const rsaJwk = rsa.privateKey.export({ format: 'jwk' }) as JWK
  const ra = await call('POST', '/admin/keys/import', { jwk: { ...rsaJwk, kid: 'from-the-old-server' }, alg: 'PS256', state: 'active' })
  t.equal(ra.statusCode, 201, ra.body)
  t.match(ra.json(), { alg: 'PS256', state: 'active', retired: [] }, 'the first key of a new PS256 line: no other line is touched')
  t.not(ra.json().kid, 'from-the-old-server', 'the kid is the RFC 7638 thumbprint, not the one supplied')

  // Public keys of another server, published for verification only.
  // JSON null is an absent state (pending), as it always was.
  const nullState = await call('POST', '/admin/keys/import', { jwk: generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }), state: null })
  t.equal(nullState.statusCode, 400, 'a public key cannot be pending')
  t.match(nullState.json().error_description, /a pending key signs/, 'state null was read as pending')

  const ed = generateKeyPairSync('ed25519')
  const rp = await call('POST', '/admin/keys/import', { pem: ed.publicKey.export({ type: 'spki', format: 'pem' }), state: 'retired' })
  t.equal(rp.statusCode, 201, rp.body)
  t.match(rp.json(), { alg: 'EdDSA', state: 'retired' })
  t.ok((await jwksKids(app, 'EdDSA')).includes(rp.json().kid))

  const bad: [string, unknown][] = [
    ['nothing', {}],
    ['both pem and jwk', { pem: ecPem, jwk: rsaJwk }],
    ['garbage PEM', { pem: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----' }],
    ['pem not a string', { pem: 5 }],
    ['jwk not an object', { jwk: 'x' }],
    ['oct key', { jwk: { kty: 'oct', k: randomBytes(32).toString('base64url') } }],
    ['encryption key', { jwk: { ...(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }) as JWK), use: 'enc' } }],
    ['RSA 1024', { jwk: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'jwk' }) }],
    ['P-384', { jwk: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'jwk' }) }],
    ['EC key with RS256', { pem: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }), alg: 'RS256' }],
    ['JWK alg unsupported', { jwk: { ...(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }) as JWK), alg: 'ES384' } }],
    ['JWK alg disagrees with alg', { jwk: { ...rsaJwk, alg: 'RS256' }, alg: 'PS256' }],
    ['public key as pending', { pem: ec.publicKey.export({ type: 'spki', format: 'pem' }) }],
    ['a key that exists', { pem: ecPem, state: 'retired' }],
    ['a second pending key', { jwk: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }) }],
    ['unknown state', { pem: ecPem, state: 'removed' }],
    ['unknown alg', { pem: ecPem, alg: 'none' }],
  ]
  const before = (await app.database.db.selectFrom('signing_key').select('kid').execute()).length
  for (const [what, payload] of bad) {
    const res = await call('POST', '/admin/keys/import', payload)
    t.equal(res.statusCode, 400, `${what}: 400 (${res.body})`)
    t.equal(res.json().error, 'invalid_request')
    t.notOk(res.body.includes(ecD) || res.body.includes(rsaJwk.d!), `${what}: no key material in the answer`)
  }
  t.equal((await app.database.db.selectFrom('signing_key').select('kid').execute()).length, before, 'nothing was stored')

  // The database holds no plaintext private key: not the imported ones, not the generated ones.
  const dump = await dumpKeys(app)
  for (const [name, d] of [['EC d', ecD], ['RSA d', rsaJwk.d!], ['RSA p', rsaJwk.p!], ['RSA q', rsaJwk.q!]] as const) {
    t.notOk(dump.includes(d), `no ${name} (base64url)`)
    t.notOk(dump.includes(Buffer.from(d, 'base64url').toString('hex')), `no ${name} (hex)`)
  }
  t.notOk(dump.includes('PRIVATE KEY'), 'no PEM')
})

t.test('KEK rotation: a new KEY_ENCRYPTION_KEY with the old one in KEY_ENCRYPTION_KEYS_PREVIOUS; POST /admin/keys/rewrap re-seals every key (#93 #118)', async (t) => {
  const { app, call } = await setup(t)
  await call('POST', '/admin/keys/rotate') // a pending key too
  const newKek = `kek-2027:${randomBytes(32).toString('base64url')}`
  const rotatedConfig = loadConfig(testEnv({ DATABASE_URL: app.databaseUrl!, KEY_ENCRYPTION_KEY: newKek, KEY_ENCRYPTION_KEYS_PREVIOUS: TEST_KEK }))
  const second = await instance(t, app, rotatedConfig)
  t.ok(second.services.keyring.canSign(), 'the new instance opens keys sealed under the previous KEK')
  const admin = await app.createClient({ name: 'admin2', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const token2 = await mintAdmin(second, admin)
  const call2 = caller(second, () => token2)
  const res = await call2('POST', '/admin/keys/rewrap')
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json(), { kek_id: 'kek-2027', unchanged: 0, failed: [] })
  t.equal(res.json().rewrapped.length, 3, 'the active key of each line and the pending key')
  const rows = await app.database.db.selectFrom('signing_key').select(['kid', 'kek_id', 'private_key_enc']).execute()
  t.ok(rows.every((r) => r.kek_id === 'kek-2027'))
  t.same(changeOf(await call2('POST', '/admin/keys/rewrap')), { kek_id: 'kek-2027', rewrapped: [], unchanged: 3, failed: [] }, 'idempotent')

  // Now the old KEK can go: an instance with only the new one starts and signs.
  const onlyNew = await instance(t, app, loadConfig(testEnv({ DATABASE_URL: app.databaseUrl!, KEY_ENCRYPTION_KEY: newKek })))
  t.ok(onlyNew.services.keyring.canSign())
  // And one with only the old KEK refuses to start (it could never sign).
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 2, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  t.teardown(() => database.close())
  await t.rejects(buildApp({ config: app.config, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }) }), /cannot decrypt the active signing key/)

  // A row sealed under a KEK nobody configured is reported, not changed.
  await app.database.db.updateTable('signing_key').set({ kek_id: 'stray' }).where('state', '=', 'pending').execute()
  const partial = await call2('POST', '/admin/keys/rewrap')
  t.equal(partial.json().failed.length, 1, 'the stray row is reported')
})

t.test('#87 a revoke answered by an instance whose keyring was mid-reload: the answer comes only after a fresh load, so the instance refuses the key and never signs with it', async (t) => {
  const { app, admin } = await setup(t)
  // The instance under test: its key loads can be held back after they have read the rows, so a
  // load that read the key set BEFORE the revoke committed is still running when the revoke answers.
  let hold: { ms: number; read: () => void } | undefined
  const slow: KyselyPlugin = {
    transformQuery: (args) => {
      const node = args.node as { kind: string }
      if (hold && node.kind === 'SelectQueryNode' && JSON.stringify(node).includes('SelectAllNode') && JSON.stringify(node).includes('"signing_key"')) held.add(args.queryId)
      return args.node
    },
    transformResult: async (args) => {
      if (held.delete(args.queryId) && hold) {
        const h = hold
        hold = undefined
        h.read()
        await sleep(h.ms)
      }
      return args.result
    },
  }
  const held = new Set<unknown>()
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 4, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  t.teardown(() => database.close())
  const b = await buildApp({ config: app.config, database: { ...database, db: asDb(database.db.withPlugin(slow)) }, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
  t.teardown(() => b.close())
  const token = await mintAdmin(b, admin)
  const call = caller(b, () => token)
  const first = await activeKid(app)
  const client = await app.createClient()
  const old = (await tokenRequest(b as unknown as TestApp, { grant_type: 'client_credentials', scope: 'read' }, client)).json().access_token as string
  t.equal(decodeProtectedHeader(old).kid, first)

  // A periodic reload starts and reads the rows; while it is held, the revoke comes in.
  const read = new Promise<void>((resolve) => (hold = { ms: 600, read: resolve }))
  const periodic = b.services.keyring.reload()
  await read
  const res = await call('POST', `/admin/keys/${first}/revoke`, { reason: 'race' })
  t.equal(res.statusCode, 200, res.body)
  const successor = res.json().successor as string
  // Right after the answer, before anything else can run: the instance has the revoke.
  t.not(b.services.keyring.activeSigner().kid, first, 'the instance no longer signs with the revoked key')
  t.equal(b.services.keyring.activeSigner().kid, successor)
  await t.rejects(b.services.keyring.verificationKey({ alg: 'ES256', kid: first }), /unknown kid/, 'and refuses it')
  await periodic
  const fresh = (await tokenRequest(b as unknown as TestApp, { grant_type: 'client_credentials', scope: 'read' }, client)).json().access_token as string
  t.equal(decodeProtectedHeader(fresh).kid, successor, 'tokens minted afterwards carry the successor')
  const introspected = await b.app.inject({ method: 'POST', url: '/introspect', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` }, payload: `token=${old}` })
  t.equal(introspected.json().active, false, 'a token of the revoked key is inactive there')
})

t.test('Keyring.reload: callers during a running load share ONE follow-up load that starts after it', async (t) => {
  const { app } = await setup(t)
  const ring = app.services.keyring
  let loads = 0
  const original = (ring as unknown as { load: () => Promise<void> }).load.bind(ring)
  ;(ring as unknown as { load: () => Promise<void> }).load = async () => {
    loads++
    await sleep(50)
    return original()
  }
  const a = ring.reload()
  const b = ring.reload()
  const c = ring.reload()
  t.not(a, b, 'a call during a load does not get the running load')
  t.equal(b, c, 'later callers share the queued one')
  await Promise.all([a, b, c])
  t.equal(loads, 2, 'two loads, one after the other')
  await ring.reload()
  t.equal(loads, 3)
})

t.test('POST /admin/keys/lines/{alg}/retire ends a line started by hand; configured lines and bad algs are 400; audited with the admin', async (t) => {
  const { app, admin, call } = await setup(t)
  const started = await call('POST', '/admin/keys/rotate', { immediate: true, alg: 'PS256' })
  t.equal(started.statusCode, 200, started.body)
  t.match(started.json(), { alg: 'PS256', state: 'active', retired: [] }, 'a new PS256 line')
  const res = await call('POST', '/admin/keys/lines/PS256/retire')
  t.equal(res.statusCode, 200, res.body)
  t.same(changeOf(res), { alg: 'PS256', retired: [started.json().kid], withdrawn: [] })
  t.match(res.json().propagation, { confirmed: [{ instance: app.services.changes.identity.instanceId }], unconfirmed: [] }, 'applied by this instance before it answered')
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(await stateOf(app, started.json().kid), 'retired')
  t.ok((await jwksKids(app, 'PS256')).includes(started.json().kid), 'still published for the retention')
  for (const [url, re] of [['/admin/keys/lines/RS256/retire', /RS256 line is one this configuration signs with/], ['/admin/keys/lines/ES256/retire', /cannot be retired/], ['/admin/keys/lines/HS256/retire', /alg must be one of/]] as const) {
    const bad = await call('POST', url)
    t.equal(bad.statusCode, 400, url)
    t.equal(bad.json().error, 'invalid_request')
    t.match(bad.json().error_description, re)
  }
  const audit = await app.database.db.selectFrom('audit_event').select(['client_id', 'detail']).where('type', '=', 'signing_key.line_retired').execute()
  t.match(audit, [{ client_id: admin.id, detail: { alg: 'PS256', via: 'admin_api' } }])
  t.equal((await call('GET', '/admin/keys/lines/PS256/retire')).statusCode, 405)
})
