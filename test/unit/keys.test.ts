import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { sql } from 'kysely'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { openDatabase } from '../../src/db/connect.js'
import { migrateToLatest, migrator } from '../../src/db/migrate.js'
import { loadConfig } from '../../src/config.js'
import { kekSet, open, parseKek, seal, type Kek } from '../../src/keys/kek.js'
import { ensureActiveKeys, rotateKey } from '../../src/keys/lifecycle.js'
import { generateSigningKey } from '../../src/keys/key-material.js'
import { keyPolicy } from '../../src/keys/policy.js'
import { basic, FORM, form, freshDatabase, keyOptions, passwordLogin, TEST_KEK, testApp, testEnv, tokenRequest, type TestApp } from '../helpers/app.js'

const kek = parseKek(TEST_KEK)
const otherKek: Kek = { id: 'other', key: Buffer.alloc(32, 8) }
const PLAINTEXT = Buffer.from('{"kty":"EC","d":"private"}', 'utf8')

/** `buf` with one byte flipped at `index`. */
function flip(buf: Buffer, index: number): Buffer {
  const copy = Buffer.from(buf)
  copy[index] = copy[index]! ^ 0x01
  return copy
}

t.test('seal/open round trip; the output is nonce ‖ ciphertext ‖ tag and not the plaintext', async (t) => {
  const sealed = seal(kek, PLAINTEXT, 'kid-1')
  t.equal(sealed.length, 12 + PLAINTEXT.length + 16)
  t.equal(sealed.indexOf(PLAINTEXT), -1)
  t.same(open(kek, sealed, 'kid-1'), PLAINTEXT)
  t.same(open(kek, seal(kek, Buffer.from('x'), ''), ''), Buffer.from('x'), 'empty AAD works')
})

t.test('tampered ciphertext, nonce or tag fails to open', async (t) => {
  const sealed = seal(kek, PLAINTEXT, 'kid-1')
  t.throws(() => open(kek, flip(sealed, 0), 'kid-1'), 'nonce')
  t.throws(() => open(kek, flip(sealed, 12), 'kid-1'), 'ciphertext')
  t.throws(() => open(kek, flip(sealed, sealed.length - 1), 'kid-1'), 'tag')
  t.throws(() => open(kek, sealed.subarray(0, sealed.length - 1), 'kid-1'), 'truncated')
  t.throws(() => open(kek, Buffer.concat([sealed, Buffer.from([0])]), 'kid-1'), 'extended')
  t.throws(() => open(kek, sealed.subarray(0, 28), 'kid-1'), /too short/)
  t.throws(() => open(kek, Buffer.alloc(0), 'kid-1'), /too short/)
})

t.test('a ciphertext moved to another kid fails to open: AAD binds it to its row (#117)', async (t) => {
  const sealed = seal(kek, PLAINTEXT, 'kid-1')
  t.throws(() => open(kek, sealed, 'kid-2'))
  t.throws(() => open(kek, sealed, ''))
  t.throws(() => open(kek, sealed, 'kid-1 '))
})

t.test('a wrong KEK fails to open (#118)', async (t) => {
  const sealed = seal(kek, PLAINTEXT, 'kid-1')
  t.throws(() => open(otherKek, sealed, 'kid-1'))
})

t.test('10,000 seals under one KEK use 10,000 distinct 96-bit nonces (#116)', async (t) => {
  const nonces = new Set<string>()
  for (let i = 0; i < 10_000; i++) nonces.add(seal(kek, PLAINTEXT, 'kid-1').subarray(0, 12).toString('hex'))
  t.equal(nonces.size, 10_000)
})

t.test('parseKek: with an id: prefix the id is the prefix', async (t) => {
  const k = parseKek(TEST_KEK)
  t.equal(k.id, 'test')
  t.same(k.key, Buffer.alloc(32, 7))
  const raw = randomBytes(32)
  t.same(parseKek(`prod-2026:${raw.toString('base64url')}`), { id: 'prod-2026', key: raw })
})

t.test('parseKek: without a prefix the id is derived from the key, stable and not the key', async (t) => {
  const raw = Buffer.alloc(32, 7).toString('base64url')
  const k = parseKek(raw)
  t.same(k.key, Buffer.alloc(32, 7))
  t.match(k.id, /^[A-Za-z0-9_-]{8}$/)
  t.equal(parseKek(raw).id, k.id, 'same key, same id')
  t.not(parseKek(Buffer.alloc(32, 8).toString('base64url')).id, k.id, 'another key, another id')
  t.notOk(raw.includes(k.id), 'the id is not a piece of the key')
})

t.test('parseKek: a key that is not 32 bytes throws', async (t) => {
  t.throws(() => parseKek(Buffer.alloc(16).toString('base64url')), /32 bytes/)
  t.throws(() => parseKek('id:' + Buffer.alloc(33).toString('base64url')), /32 bytes/)
  t.throws(() => parseKek(''), /32 bytes/)
})

/** The decrypted private JWK of the app's active key. */
async function activePrivateJwk(app: TestApp) {
  const row = await app.database.db.selectFrom('signing_key').selectAll().where('state', '=', 'active').where('alg', '=', 'ES256').executeTakeFirstOrThrow()
  const jwk = JSON.parse(open(kek, Buffer.from(row.private_key_enc), row.kid).toString('utf8')) as Record<string, string>
  return { row, jwk }
}

t.test('the signing_key row holds no plaintext private key (#115)', async (t) => {
  const app = await testApp(t)
  const { row, jwk } = await activePrivateJwk(app)
  t.equal(row.kek_id, 'test')
  t.equal(row.alg, 'ES256')
  t.match(jwk.d, /^[A-Za-z0-9_-]{43}$/, 'decrypting with the KEK and kid gives the private JWK')
  const enc = Buffer.from(row.private_key_enc)
  const d = jwk.d!
  t.equal(enc.indexOf(Buffer.from(d, 'utf8')), -1, 'd (base64url text) not in private_key_enc')
  t.equal(enc.indexOf(Buffer.from(d, 'base64url')), -1, 'd (raw bytes) not in private_key_enc')
  t.notOk(enc.toString('latin1').includes('"d"'), 'no JSON member name either')
  t.notOk('d' in row.public_jwk, 'public_jwk has no d')
  t.notOk(JSON.stringify(row.public_jwk).includes(d), 'd not in public_jwk')
  t.same(Object.keys(row.public_jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'])
})

t.test('a dump of every table holds no refresh token, client secret, password or private d (#115)', async (t) => {
  const app = await testApp(t)
  const password = 'correct horse battery staple'
  await app.createUser('alice', password)
  const client = await app.createClient()
  const first = await passwordLogin(app, client, 'alice', password)
  const second = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: first.refresh_token }, client)
  t.equal(second.statusCode, 200)
  const cc = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
  t.equal(cc.statusCode, 200)
  const revoked = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token: first.access_token }) })
  t.equal(revoked.statusCode, 200)
  const { jwk } = await activePrivateJwk(app)

  const secrets: Record<string, string> = {
    password,
    'client secret': client.secret!,
    'first refresh token': first.refresh_token,
    'second refresh token': second.json().refresh_token,
    'access token': first.access_token,
    'client_credentials access token': cc.json().access_token,
    'private d': jwk.d!,
  }
  // bytea columns appear in row_to_json as \x-hex, so look for the hex form of every secret too.
  const needles: Array<[string, string]> = []
  for (const [name, value] of Object.entries(secrets)) {
    needles.push([name, value], [`${name} (hex)`, Buffer.from(value, 'utf8').toString('hex')])
  }
  needles.push(['private d (raw hex)', Buffer.from(jwk.d!, 'base64url').toString('hex')])

  const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`.execute(app.database.db)
  t.ok(tables.rows.length >= 7, 'every table of the schema is dumped')
  let dump = ''
  for (const { name } of tables.rows) {
    const rows = await sql<{ j: string }>`select row_to_json(t)::text as j from ${sql.table(name)} t`.execute(app.database.db)
    dump += rows.rows.map((r) => r.j).join('\n') + '\n'
  }
  t.ok(dump.includes('alice'), 'the dump is real (holds the username)')
  for (const [name, needle] of needles) t.notOk(dump.includes(needle), `no ${name} in the dump`)
})

t.test('a tampered active key ciphertext: reload does not crash; a fresh instance refuses to start without printing key material (#93, #118)', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', 'correct horse battery staple')
  const client = await app.createClient()
  const before = await passwordLogin(app, client, 'alice', 'correct horse battery staple')
  const { row, jwk } = await activePrivateJwk(app)
  const enc = Buffer.from(row.private_key_enc)
  const tampered = flip(enc, 20)
  await app.database.db.updateTable('signing_key').set({ private_key_enc: tampered }).where('kid', '=', row.kid).execute()

  await t.resolves(app.services.keyring.reload(), 'the running instance keeps going')
  const still = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
  t.equal(still.statusCode, 200, 'the running instance still signs with the key it has in memory')

  const logs: string[] = []
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter((l) => l !== ''))
      cb()
    },
  })
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 2, acquireTimeoutMs: 2000, lockTimeoutMs: 2000 })
  t.teardown(() => database.close())
  // Decided: refuse to start with a clear message (a wrong KEK and a tampered row look the same).
  const started = await buildApp({ config: app.config, database, logStream }).then(
    (tessera) => ({ tessera, error: undefined }),
    (error: Error) => ({ tessera: undefined, error }),
  )
  if (started.tessera) t.teardown(() => started.tessera.close())
  const errors = logs.map((l) => JSON.parse(l) as { level: number; msg: string; kid?: string }).filter((l) => l.level >= 50)
  t.equal(errors.length, 1, 'one error line')
  t.match(errors[0], { msg: /cannot decrypt the active signing key/, kid: row.kid })
  const all = logs.join('\n') + '\n' + (started.error ? `${started.error.message}\n${started.error.stack ?? ''}` : '')
  for (const [name, needle] of [
    ['d', jwk.d!],
    ['ciphertext (hex)', tampered.toString('hex')],
    ['ciphertext (base64)', tampered.toString('base64')],
    ['ciphertext (base64url)', tampered.toString('base64url')],
    ['KEK', TEST_KEK.slice(5)],
  ] as const) {
    t.notOk(all.includes(needle), `no ${name} in the logs or the start error`)
  }
  t.equal((await database.db.selectFrom('signing_key').select('kid').where('alg', '=', row.alg).execute()).length, 1, 'no second key was generated over the broken one')
  t.same(Buffer.from((await database.db.selectFrom('signing_key').select('private_key_enc').where('kid', '=', row.kid).executeTakeFirstOrThrow()).private_key_enc), tampered, 'the row is left for the operator')
  t.ok(started.error, 'a fresh instance refuses to start: it could never sign')
  t.match(started.error?.message, /cannot decrypt the active signing key/, 'and says why')
})

t.test('ensureActiveKeys run 5 times at once on a database with no key creates exactly one active key per line (#88, #143)', async (t) => {
  const url = await freshDatabase(t)
  const database = await openDatabase({ kind: 'postgres', url, poolSize: 10, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  t.teardown(() => database.close())
  await migrateToLatest(database.db)
  const opts = { keks: kekSet(kek), policy: keyPolicy(loadConfig(testEnv())), nowMs: Date.now() }
  const results = await Promise.all(Array.from({ length: 5 }, () => ensureActiveKeys(database.db, opts)))
  const created = results.flatMap((r) => r.created)
  t.same(created.map((k) => k.alg).sort(), ['ES256', 'RS256'], 'one key per line was created, by one call; the others found them')
  const rows = await database.db.selectFrom('signing_key').select(['kid', 'alg', 'state']).orderBy('alg').execute()
  t.same(rows, created.sort((a, b) => a.alg.localeCompare(b.alg)).map((k) => ({ kid: k.kid, alg: k.alg, state: 'active' })))
  const again = await ensureActiveKeys(database.db, opts)
  t.same(again.created, [], 'idempotent')
})

t.test('rotateKey run 5 times at once leaves exactly one active key and the others retired (#88, #143)', async (t) => {
  const app = await testApp(t)
  const original = (await app.database.db.selectFrom('signing_key').select('kid').where('alg', '=', 'ES256').executeTakeFirstOrThrow()).kid
  const results = await Promise.all(Array.from({ length: 5 }, () => rotateKey(app.database.db, keyOptions(app), 'ES256')))
  const rows = await app.database.db.selectFrom('signing_key').select(['kid', 'state', 'retired_at']).where('alg', '=', 'ES256').execute()
  t.equal(rows.length, 6)
  t.equal(rows.filter((r) => r.state === 'active').length, 1, 'one active key')
  t.equal(rows.filter((r) => r.state === 'retired').length, 5, 'the other five retired')
  t.ok(rows.filter((r) => r.state === 'retired').every((r) => r.retired_at !== null))
  // Serialised by the advisory lock: each rotation retired exactly the key active before it.
  t.ok(results.every((r) => r.retired.length === 1), 'each rotation retired one key')
  const retired = results.flatMap((r) => r.retired)
  t.equal(new Set(retired).size, 5)
  t.ok(retired.includes(original))
  const active = rows.find((r) => r.state === 'active')!.kid
  t.notOk(retired.includes(active), 'the survivor is the last rotation and was never retired')
  await app.services.keyring.reload()
  const jwks = await app.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(jwks.json().keys.filter((k: { alg: string }) => k.alg === 'ES256').length, 6, 'all six stay published')
  t.equal(jwks.json().keys.length, 7, 'and the RS256 line is untouched')
})

t.test('a wrong KEK refuses to start BEFORE writing: a missing line is not made under it, so the instances with the right KEK keep working (#118)', async (t) => {
  const app = await testApp(t)
  // A database of the single-line era: only the ES256 key.
  await app.database.db.deleteFrom('signing_key').where('alg', '=', 'RS256').execute()
  const before = await app.database.db.selectFrom('signing_key').select(['kid', 'state']).execute()
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 2, acquireTimeoutMs: 2000, lockTimeoutMs: 2000 })
  t.teardown(() => database.close())
  const wrong = loadConfig(testEnv({ DATABASE_URL: app.databaseUrl!, KEY_ENCRYPTION_KEY: `wrong:${randomBytes(32).toString('base64url')}` }))
  await t.rejects(buildApp({ config: wrong, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }) }), /cannot decrypt the active signing key with KEY_ENCRYPTION_KEY \(key line ES256;/)
  t.same(await app.database.db.selectFrom('signing_key').select(['kid', 'state']).execute(), before, 'no RS256 key, no standby: nothing was written')
})

t.test('upgrading to key lines (migration 0011): existing clients keep the algorithm of the key that signed their ID tokens; new clients get RS256', async (t) => {
  const url = await freshDatabase(t)
  const database = await openDatabase({ kind: 'postgres', url, poolSize: 2, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  t.teardown(() => database.close())
  const { error } = await migrator(database.db).migrateTo('2026_11_23_0010_audit_indexes')
  t.error(error)
  // The single line of before, on EdDSA (rotated there by hand), and a client of that era.
  const key = await generateSigningKey('EdDSA', kek)
  await sql`insert into signing_key (kid, alg, state, public_jwk, private_key_enc, kek_id, activated_at) values (${key.kid}, 'EdDSA', 'active', ${JSON.stringify(key.publicJwk)}::jsonb, ${key.privateKeyEnc}, ${key.kekId}, now())`.execute(database.db)
  await sql`insert into client (id, name, grant_types, scopes, refresh_delivery) values ('c_old', 'old', '{password}', '{openid}', 'body')`.execute(database.db)
  await migrateToLatest(database.db)
  const old = await database.db.selectFrom('client').select('id_token_signed_response_alg').where('id', '=', 'c_old').executeTakeFirstOrThrow()
  t.equal(old.id_token_signed_response_alg, 'EdDSA', 'the old client keeps EdDSA: no relying party sees a new key sign its ID tokens')
  await sql`insert into client (id, name, grant_types, scopes, refresh_delivery) values ('c_new', 'new', '{password}', '{openid}', 'body')`.execute(database.db)
  t.equal((await database.db.selectFrom('client').select('id_token_signed_response_alg').where('id', '=', 'c_new').executeTakeFirstOrThrow()).id_token_signed_response_alg, 'RS256', 'a new client: RS256')
})
