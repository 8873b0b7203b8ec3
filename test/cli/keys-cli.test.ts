// `tessera keys list|rotate|revoke|retire-line|import|rewrap`, in-process through run(argv, io), on a real database.
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import type { Test } from 'tap'
import { calculateJwkThumbprint, type JWK } from 'jose'
import type { Env } from '../../src/config.js'
import { freshDatabase, TEST_KEK, testEnv } from '../helpers/app.js'
import { runTessera } from '../helpers/cli.js'

const tessera = (args: string[], env: Env) => runTessera(args, env)

async function setup(t: Test) {
  const url = await freshDatabase(t)
  const env = testEnv({ DATABASE_URL: url })
  const cli = (args: string[], extra: Env = {}) => tessera(args, { ...env, ...extra })
  if ((await cli(['migrate'])).code !== 0) throw new Error('migrate failed')
  const sql = new pg.Client({ connectionString: url })
  await sql.connect()
  t.teardown(() => sql.end())
  const dir = mkdtempSync(join(tmpdir(), 'tessera-keys-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string, content: string) => {
    const path = join(dir, name)
    writeFileSync(path, content, { mode: 0o600 })
    return path
  }
  return { cli, sql, file, url }
}

t.test('keys rotate schedules (pending, then the same key again); --now activates; list shows states and dates', async (t) => {
  const { cli } = await setup(t)
  const first = (await cli(['keys', 'rotate'])).json()
  t.match(first, { alg: 'ES256', state: 'active', created: true }, 'no key at all: the first one is active at once')
  const next = await cli(['keys', 'rotate'])
  t.equal(next.code, 0, next.err)
  t.match(next.json(), { alg: 'ES256', state: 'pending', created: true, activate_at: String })
  const lead = Date.parse(next.json().activate_at) - Date.now()
  t.ok(lead > 300_000 && lead <= 370_000, `activates after the publish lead (${lead} ms)`)
  t.match((await cli(['keys', 'rotate'])).json(), { kid: next.json().kid, created: false })
  const listed = (await cli(['keys', 'list'])).json()
  t.match(listed, [
    { kid: next.json().kid, state: 'pending', activate_at: next.json().activate_at, activated_at: null },
    { kid: first.kid, state: 'active', activate_at: null, activated_at: String },
  ])
  const { propagation, ...now } = (await cli(['keys', 'rotate', '--now'])).json()
  t.same(now, { kid: next.json().kid, alg: 'ES256', state: 'active', retired: [first.kid], prepublished: false }, '--now promotes the pending key')
  t.same(propagation, { version: propagation.version, confirmed: [], unconfirmed: [], stale: [], waited_ms: propagation.waited_ms }, 'no instance runs: nobody to wait for')
  t.match((await cli(['keys', 'list'])).json()[1], { kid: first.kid, state: 'retired', remove_at: String })
})

t.test('keys revoke KID: revoked with a reason, a successor at once; unknown kid and bad usage exit 2', async (t) => {
  const { cli, sql } = await setup(t)
  const first = (await cli(['keys', 'rotate'])).json().kid as string
  const res = await cli(['keys', 'revoke', first, '--reason', 'laptop stolen'])
  t.equal(res.code, 0, res.err)
  const { propagation, ...revoked } = res.json()
  const successor = revoked.successor as string
  t.same(revoked, { kid: first, alg: 'ES256', state: 'revoked', already_revoked: false, successor, successor_prepublished: false })
  t.match(propagation, { confirmed: [], unconfirmed: [] })
  const rows = (await sql.query('select kid, state, revoked_reason, length(private_key_enc) as len from signing_key order by created_at')).rows
  t.match(rows, [{ kid: first, state: 'revoked', revoked_reason: 'laptop stolen', len: 0 }, { kid: successor, state: 'active' }])
  t.match((await cli(['keys', 'revoke', first])).json(), { already_revoked: true })
  const unknown = await cli(['keys', 'revoke', 'nope'])
  t.equal(unknown.code, 2)
  t.match(unknown.err, /^tessera: no key nope$/)
  for (const args of [['keys', 'revoke'], ['keys', 'revoke', '--reason', 'x']]) {
    const r = await cli(args)
    t.equal(r.code, 2)
    t.match(r.err, /usage: tessera keys revoke KID/)
  }
  t.equal((await cli(['keys', 'revoke', first, '--frob'])).code, 2, 'unknown option')
})

t.test('keys import --file: PEM or JWK; bad files exit 2 without key material', async (t) => {
  const { cli, file, sql } = await setup(t)
  await cli(['keys', 'rotate'])
  const rsLine = (await cli(['keys', 'rotate', '--alg', 'RS256'])).json()
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const pem = ec.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const d = (ec.privateKey.export({ format: 'jwk' }) as JWK).d!
  const res = await cli(['keys', 'import', '--file', file('ec.pem', pem)])
  t.equal(res.code, 0, res.err)
  t.match(res.json(), { alg: 'ES256', state: 'pending', retired: [] })
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK
  const active = await cli(['keys', 'import', '--file', file('rsa.json', JSON.stringify(rsa)), '--alg', 'RS256', '--state', 'active'])
  t.equal(active.code, 0, active.err)
  t.match(active.json(), { alg: 'RS256', state: 'active', retired: [rsLine.kid] }, 'it takes over its own line (RS256) only')
  const dump = (await sql.query('select row_to_json(k)::text as j from signing_key k')).rows.map((r) => r.j as string).join('\n')
  t.notOk(dump.includes(d) || dump.includes(rsa.d!), 'no plaintext private key in the database')

  const bad: [string, string[], RegExp][] = [
    ['no --file', ['keys', 'import'], /needs --file/],
    ['missing file', ['keys', 'import', '--file', '/nonexistent/key.pem'], /cannot read/],
    ['broken JSON', ['keys', 'import', '--file', file('broken.json', '{"kty":')], /not valid JSON/],
    ['not a key', ['keys', 'import', '--file', file('junk.pem', 'hello')], /not a readable PEM or JWK key/],
    ['bad state', ['keys', 'import', '--file', file('ec2.pem', pem), '--state', 'removed'], /--state must be one of/],
    ['bad alg', ['keys', 'import', '--file', file('ec3.pem', pem), '--alg', 'HS256'], /--alg must be one of/],
    ['duplicate', ['keys', 'import', '--file', file('ec4.pem', pem), '--state', 'retired'], /exists already/],
  ]
  for (const [what, args, message] of bad) {
    const r = await cli(args)
    t.equal(r.code, 2, `${what}: exit 2`)
    t.match(r.err, message, what)
    t.notOk(r.err.includes(d), `${what}: no key material`)
  }
})

t.test('keys rewrap: re-seals under the current KEK; keys no configured KEK opens make it exit 1', async (t) => {
  const { cli, sql } = await setup(t)
  await cli(['keys', 'rotate'])
  await cli(['keys', 'rotate'])
  const newKek = `k2:${randomBytes(32).toString('base64url')}`
  const noPrevious = await cli(['keys', 'rewrap'], { KEY_ENCRYPTION_KEY: newKek })
  t.equal(noPrevious.code, 1, 'the old KEK is not configured')
  t.match(noPrevious.err, /2 key\(s\) open with no configured KEK/)
  t.same(noPrevious.json().rewrapped, [])
  const res = await cli(['keys', 'rewrap'], { KEY_ENCRYPTION_KEY: newKek, KEY_ENCRYPTION_KEYS_PREVIOUS: TEST_KEK })
  t.equal(res.code, 0, res.err)
  t.match(res.json(), { kek_id: 'k2', unchanged: 0, failed: [] })
  t.equal(res.json().rewrapped.length, 2)
  t.same((await sql.query('select distinct kek_id from signing_key')).rows, [{ kek_id: 'k2' }])
  t.equal((await cli(['keys', 'rewrap', '--x'])).code, 2)
})

t.test('KEY_ENCRYPTION_KEYS_PREVIOUS and KEY_ROTATION_INTERVAL_SECONDS are validated', async (t) => {
  const bad = await tessera(['keys', 'list'], testEnv({ KEY_ENCRYPTION_KEYS_PREVIOUS: `old:short,${TEST_KEK},${Buffer.alloc(32).toString('base64url')}`, KEY_ROTATION_INTERVAL_SECONDS: '5' }))
  t.equal(bad.code, 2)
  t.match(bad.err, /KEY_ENCRYPTION_KEYS_PREVIOUS entry 1 must be "id:"/)
  t.match(bad.err, /KEY_ENCRYPTION_KEYS_PREVIOUS entry 2 has the id of the current KEY_ENCRYPTION_KEY/)
  t.match(bad.err, /KEY_ENCRYPTION_KEYS_PREVIOUS entry 3 must be "id:"/)
  t.match(bad.err, /KEY_ROTATION_INTERVAL_SECONDS must be 0 \(no scheduled rotation\) or at least 1040 \(2 × \(JWKS_MAX_AGE_SECONDS/)
  t.notOk(bad.err.includes(TEST_KEK.slice(5)), 'no key in the message')
})

t.test('keys retire-line --alg: ends a line started by hand; the configured lines and bad usage exit 2', async (t) => {
  const { cli, sql } = await setup(t)
  const ed = (await cli(['keys', 'rotate', '--now', '--alg', 'EdDSA'])).json()
  const res = await cli(['keys', 'retire-line', '--alg', 'EdDSA'])
  t.equal(res.code, 0, res.err)
  t.match(res.json(), { alg: 'EdDSA', retired: [ed.kid], withdrawn: [], propagation: { confirmed: [], unconfirmed: [] } }, 'no instance runs: nothing to wait for')
  t.same((await sql.query(`select state from signing_key where alg = 'EdDSA'`)).rows, [{ state: 'retired' }])
  const configured = await cli(['keys', 'retire-line', '--alg', 'RS256'])
  t.equal(configured.code, 2)
  t.match(configured.err, /the RS256 line is one this configuration signs with/)
  for (const args of [['keys', 'retire-line'], ['keys', 'retire-line', '--alg', 'HS256']]) t.equal((await cli(args)).code, 2, args.join(' '))
})

t.test('keys revoke takes a kid that begins with "-" (a thumbprint can: one key in 64) for a kid, not an option', async (t) => {
  const { cli, file } = await setup(t)
  await cli(['keys', 'rotate', '--now'])
  let pem = ''
  let kid = ''
  for (let i = 0; i < 2000 && !kid.startsWith('-'); i++) {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    pem = ec.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
    kid = await calculateJwkThumbprint(ec.publicKey.export({ format: 'jwk' }) as JWK, 'sha256')
  }
  t.ok(kid.startsWith('-'), `a key whose kid begins with "-": ${kid}`)
  const imported = await cli(['keys', 'import', '--file', file('dash.pem', pem)])
  t.equal(imported.json().kid, kid)
  const res = await cli(['keys', 'revoke', kid, '--reason', 'test'])
  t.equal(res.code, 0, res.err)
  t.match(res.json(), { kid, state: 'revoked', already_revoked: false })
  t.equal((await cli(['keys', 'revoke', '--reason', 'x'])).code, 2, 'an option where the kid belongs is still a usage error')
})
