// The `tessera` command, run in-process through `run(argv, io)` against a real PostgreSQL
// database; plus one run of the real executable.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { Writable } from 'node:stream'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { calculateJwkThumbprint, type JWK } from 'jose'
import pg from 'pg'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig, type Env } from '../../src/config.js'
import { databaseTarget, openDatabase } from '../../src/db/connect.js'
import { PasswordHasher } from '../../src/users/passwords.js'
import { basic, FORM, form, freshDatabase, testEnv, TEST_KEK } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'
import { runTessera, type CliResult } from '../helpers/cli.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const MIGRATIONS = readdirSync(join(ROOT, 'migrations'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''))
  .sort()
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The CLI with a password on standard input by default. */
const tessera = (args: string[], env: Env, stdin = 'the password\n'): Promise<CliResult> => runTessera(args, env, stdin)

/** A fresh migrated database, a CLI bound to it and a direct connection for checking rows. */
async function setup(t: Test) {
  const url = await freshDatabase(t)
  const env = testEnv({ DATABASE_URL: url })
  const cli = (args: string[], stdin?: string) => tessera(args, env, stdin)
  const migrated = await cli(['migrate'])
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.err}`)
  const sql = new pg.Client({ connectionString: url })
  await sql.connect()
  t.teardown(() => sql.end())
  return { url, env, cli, sql }
}

/** A Tessera server on the same database: POST /token as `client`, with a form body. */
async function tokenEndpointOn(t: Test, url: string, client: { id: string; secret: string }, env: Record<string, string> = {}, clock?: ManualClock) {
  const config = loadConfig(testEnv({ DATABASE_URL: url, ...env }))
  const database = await openDatabase(databaseTarget(config))
  const server = await buildApp({ config, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }), ...(clock ? { clock } : {}) })
  t.teardown(async () => {
    await server.close()
    await database.close()
  })
  return (params: Record<string, string>) =>
    server.app.inject({ method: 'POST', url: '/token', headers: { ...FORM, authorization: basic(client.id, client.secret) }, payload: form(params) })
}

/** Usage errors: exit 2, one line on stderr, nothing on stdout. */
function usageError(t: Test, res: CliResult, message: string | RegExp) {
  t.equal(res.code, 2, 'exit code 2')
  t.equal(res.out, '', 'nothing on stdout')
  t.match(res.err, message)
}

t.test('migrate applies every migration once and lists them as JSON', async (t) => {
  const url = await freshDatabase(t)
  const env = testEnv({ DATABASE_URL: url })
  const first = await tessera(['migrate'], env)
  t.equal(first.code, 0, first.err)
  t.equal(first.err, '')
  t.same(first.json(), { database: 'postgres', applied: MIGRATIONS })
  t.ok(MIGRATIONS.length >= 7, `every migration file is applied (${MIGRATIONS.length})`)
  const second = await tessera(['migrate'], env)
  t.equal(second.code, 0)
  t.same(second.json(), { database: 'postgres', applied: [] }, 'a second run applies nothing')
})

t.test('users create reads the password from stdin and prints the user; only an argon2id hash is stored (#101)', async (t) => {
  const { cli, sql } = await setup(t)
  const res = await cli(['users', 'create', '--username', 'Alice', '--password-stdin', '--roles', 'admin,ops'])
  t.equal(res.code, 0, res.err)
  t.equal(res.stdinReads, 1)
  const user = res.json()
  t.same(Object.keys(user).sort(), ['email', 'email_verified', 'id', 'name', 'roles', 'username'])
  t.match(user.id, UUID)
  t.equal(user.username, 'alice', 'usernames are stored lower-cased')
  t.same(user.roles, ['admin', 'ops'])
  const row = (await sql.query('select password_hash from app_user where id = $1', [user.id])).rows[0]
  t.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
  const hasher = new PasswordHasher({ memoryKib: 19_456, timeCost: 2, parallelism: 1 })
  t.ok(await hasher.verify(row.password_hash, 'the password'), 'the trailing newline of stdin is not part of the password')
  t.notOk(await hasher.verify(row.password_hash, 'the password\n'))
})

t.test('users create of an existing username exits 2 and changes nothing', async (t) => {
  const { cli, sql } = await setup(t)
  t.equal((await cli(['users', 'create', '--username', 'alice', '--password-stdin'])).code, 0)
  const before = (await sql.query('select id, password_hash from app_user')).rows
  const dup = await cli(['users', 'create', '--username', 'ALICE', '--password-stdin'], 'another password\n')
  usageError(t, dup, /^tessera: user ALICE already exists$/)
  t.same((await sql.query('select id, password_hash from app_user')).rows, before)
})

t.test('users create normalises usernames like the admin API (Unicode NFKC, lower case)', async (t) => {
  const { cli, sql } = await setup(t)
  const created = await cli(['users', 'create', '--username', 'Ａlice', '--password-stdin'])
  t.equal(created.code, 0, created.err)
  t.equal(created.json().username, 'alice', 'the full-width A is an a')
  usageError(t, await cli(['users', 'create', '--username', 'ａｌｉｃｅ', '--password-stdin'], 'another password\n'), /^tessera: user ａｌｉｃｅ already exists$/)
  usageError(t, await cli(['users', 'create', '--username', 'bob', '--password-stdin', '--roles', 'a;b c,d\u0001'], 'another password\n'), /^tessera: --roles must be words/)
  t.same((await sql.query('select username from app_user')).rows, [{ username: 'alice' }])
})

t.test('users create refuses weak passwords with a clear message (#100)', async (t) => {
  const { cli, sql } = await setup(t)
  usageError(t, await cli(['users', 'create', '--username', 'alice', '--password-stdin'], 'password\n'), /^tessera: password is on the list of common and breached passwords: choose another$/)
  usageError(t, await cli(['users', 'create', '--username', 'alice', '--password-stdin'], 'short\n'), /^tessera: password must have at least 8 characters$/)
  usageError(t, await cli(['users', 'create', '--username', 'alice', '--password-stdin'], 'x'.repeat(1025)), /^tessera: password must be at most 1024 bytes \(a long passphrase fits\)$/)
  usageError(t, await cli(['users', 'create', '--username', 'alice1234', '--password-stdin'], 'ALICE1234\n'), /^tessera: password must not equal the username$/)
  t.equal((await sql.query('select count(*)::int as n from app_user')).rows[0].n, 0, 'no user was created')
})

t.test('users create without --password-stdin exits 2 and never reads a password', async (t) => {
  const { cli, sql } = await setup(t)
  const res = await cli(['users', 'create', '--username', 'alice'])
  usageError(t, res, /--password-stdin/)
  t.equal(res.stdinReads, 0)
  usageError(t, await cli(['users', 'create', '--username', 'alice', '--password', 'hunter2hunter2']), /^tessera: unknown option --password for users create; did you mean --password-stdin\?/)
  usageError(t, await cli(['users', 'create', '--password-stdin']), /^tessera: users create needs --username$/)
  usageError(t, await cli(['users', 'create', '--username', 'alice smith', '--password-stdin']), /^tessera: username may contain letters, digits/)
  usageError(t, await cli(['users', 'create', '--username', 'alice', '--password-stdin', 'extra']), /^tessera: unexpected argument for users create: extra/)
  t.equal((await sql.query('select count(*)::int as n from app_user')).rows[0].n, 0)
})

t.test('users create and update take the optional profile attributes (name, email, email_verified)', async (t) => {
  const { cli } = await setup(t)
  const created = await cli(['users', 'create', '--username', 'carol', '--password-stdin', '--name', 'Carol Q', '--email', 'carol@example.com', '--email-verified'])
  t.equal(created.code, 0, created.err)
  t.match(created.json(), { username: 'carol', name: 'Carol Q', email: 'carol@example.com', email_verified: true })
  const updated = await cli(['users', 'update', '--username', 'Carol', '--name', '', '--email-verified', 'false'])
  t.equal(updated.code, 0, updated.err)
  t.same(updated.json(), { username: 'carol', updated: ['name', 'email_verified'] })
  t.match((await cli(['users', 'list'])).json()[0], { name: null, email: 'carol@example.com', email_verified: false })
  usageError(t, await cli(['users', 'update', '--username', 'carol']), /needs --name, --email or --email-verified/)
  usageError(t, await cli(['users', 'update', '--name', 'x']), /needs --username/)
  usageError(t, await cli(['users', 'update', '--username', 'nobody', '--name', 'x']), /no user nobody/)
  usageError(t, await cli(['users', 'update', '--username', 'carol', '--email', 'not-an-address']), /must be an e-mail address/)
  usageError(t, await cli(['users', 'update', '--username', 'carol', '--email-verified', 'yes']), /true or false/)
  usageError(t, await cli(['users', 'update', '--username', 'carol', '--name', 'x'.repeat(300)]), /at most 256/)
})

t.test('users list prints every user without password hashes', async (t) => {
  const { cli } = await setup(t)
  const alice = (await cli(['users', 'create', '--username', 'alice', '--password-stdin'])).json()
  const bob = (await cli(['users', 'create', '--username', 'bob', '--password-stdin', '--roles', 'admin'])).json()
  const res = await cli(['users', 'list'])
  t.equal(res.code, 0, res.err)
  const users = res.json()
  t.equal(users.length, 2)
  for (const u of users) t.same(Object.keys(u).sort(), ['created_at', 'disabled', 'email', 'email_verified', 'id', 'name', 'roles', 'username'])
  t.match(users, [
    { id: alice.id, username: 'alice', roles: [], disabled: false },
    { id: bob.id, username: 'bob', roles: ['admin'], disabled: false },
  ])
  t.notMatch(res.out, /argon2/, 'no hash anywhere in the output')
  usageError(t, await cli(['users', 'list', '--all']), /^tessera: unknown option --all for users list/)
})

t.test('users disable: the user can no longer log in and their sessions are revoked (#60)', async (t) => {
  const { url, cli, sql } = await setup(t)
  await cli(['users', 'create', '--username', 'alice', '--password-stdin'])
  const created = await cli(['clients', 'create', '--name', 'first-party', '--grant-types', 'password,refresh_token', '--scopes', 'openid,read'])
  const { client_id: id, client_secret: secret } = created.json()

  const token = await tokenEndpointOn(t, url, { id, secret })
  const login = await token({ grant_type: 'password', username: 'alice', password: 'the password', scope: 'openid read' })
  t.equal(login.statusCode, 200, 'alice can log in before')

  const res = await cli(['users', 'disable', '--username', 'alice'])
  t.equal(res.code, 0, res.err)
  const { propagation, ...disabled } = res.json()
  t.same(disabled, { username: 'alice', disabled: true })
  t.match(propagation, { confirmed: [{ pid: process.pid }], unconfirmed: [] }, 'the running instance (in this process) confirmed')
  t.not((await sql.query(`select disabled_at from app_user where username = 'alice'`)).rows[0].disabled_at, null)

  const again = await token({ grant_type: 'password', username: 'alice', password: 'the password', scope: 'openid read' })
  t.equal(again.statusCode, 400)
  t.same(again.json(), { error: 'invalid_grant', error_description: 'invalid username or password' })
  const refresh = await token({ grant_type: 'refresh_token', refresh_token: login.json().refresh_token })
  t.equal(refresh.statusCode, 400)
  t.equal(refresh.json().error, 'invalid_grant')
  t.same((await sql.query('select revoked_reason from refresh_token_family')).rows, [{ revoked_reason: 'user_disabled' }])
  const audit = (await sql.query(`select type, user_id, family_id is not null as family, detail from audit_event where type in ('refresh_token.revoked', 'user.disabled') order by id`)).rows
  const aliceId = (await sql.query(`select id from app_user where username = 'alice'`)).rows[0].id
  t.same(audit, [
    { type: 'refresh_token.revoked', user_id: aliceId, family: true, detail: { reason: 'user_disabled', via: 'cli' } },
    { type: 'user.disabled', user_id: aliceId, family: false, detail: { via: 'cli', families_revoked: 1 } },
  ], 'each revoked family and the disable itself are audited, in the same transaction')

  const twice = await cli(['users', 'disable', '--username', 'alice'])
  t.equal(twice.code, 0, 'disabling again is fine')
  t.equal((await sql.query(`select count(*)::int as n from audit_event where type = 'user.disabled'`)).rows[0].n, 1, 'and is not audited as a second disable')
  usageError(t, await cli(['users', 'disable', '--username', 'bob']), /^tessera: no user bob$/)
  usageError(t, await cli(['users', 'disable']), /^tessera: users disable needs --username$/)
})

t.test('clients create prints the secret once; the database keeps only its 32-byte SHA-256 (#115)', async (t) => {
  const { cli, sql } = await setup(t)
  const res = await cli(['clients', 'create', '--name', 'web', '--grant-types', 'client_credentials', '--scopes', 'read,write', '--audience', 'https://api.example.com'])
  t.equal(res.code, 0, res.err)
  const out = res.json()
  t.match(out.client_id, /^c_[A-Za-z0-9_-]{16}$/)
  t.match(out.client_secret, /^tessera_cs_[A-Za-z0-9_-]{43}$/)
  t.match(out.created_at, /^\d{4}-\d\d-\d\dT/)
  const { client_id: id, client_secret: secret, created_at: _c, ...rest } = out
  t.same(rest, {
    name: 'web',
    type: 'confidential',
    grant_types: ['client_credentials'],
    scopes: ['read', 'write'],
    audience: ['https://api.example.com'],
    refresh_delivery: 'body',
    allowed_origins: [],
    id_token_signed_response_alg: 'RS256',
    rate_limit_per_second: null,
    redirect_uris: [],
    post_logout_redirect_uris: [],
    first_party: false,
    backchannel_logout_uri: null,
    require_pushed_authorization_requests: false,
    disabled: false,
  })

  const row = (await sql.query('select * from client where id = $1', [id])).rows[0]
  t.ok(Buffer.isBuffer(row.secret_hash))
  t.equal(row.secret_hash.length, 32)
  t.same(row.secret_hash, createHash('sha256').update(secret).digest())
  const stored = JSON.stringify(Object.values(row).map((v) => (Buffer.isBuffer(v) ? [v.toString('hex'), v.toString('base64'), v.toString('base64url'), v.toString('latin1')] : v)))
  t.notOk(stored.includes(secret), 'the secret appears nowhere in the row')
  t.notOk(stored.includes(secret.slice('tessera_cs_'.length)), 'not even its random part')

  const second = (await cli(['clients', 'create', '--name', 'web', '--grant-types', 'client_credentials', '--scopes', 'read'])).json()
  t.not(second.client_secret, secret, 'every client gets its own secret')
})

t.test('clients create --public for a browser app: no secret, cookie delivery with its origins', async (t) => {
  const { cli, sql } = await setup(t)
  const res = await cli(['clients', 'create', '--name', 'spa', '--public', '--grant-types', 'password,refresh_token', '--scopes', 'openid', '--refresh-delivery', 'cookie', '--allowed-origins', 'https://app.example.com,http://localhost:5173'])
  t.equal(res.code, 0, res.err)
  const out = res.json()
  t.equal(out.client_secret, undefined)
  t.match(out, { type: 'public', refresh_delivery: 'cookie', allowed_origins: ['https://app.example.com', 'http://localhost:5173'] })
  t.same((await sql.query('select secret_hash from client where id = $1', [out.client_id])).rows, [{ secret_hash: null }])
})

t.test('clients create refuses invalid combinations with exit 2 and creates nothing', async (t) => {
  const { cli, sql } = await setup(t)
  const base = ['clients', 'create', '--name', 'x', '--scopes', 'read']
  usageError(t, await cli([...base, '--public', '--grant-types', 'client_credentials']), /^tessera: a public client cannot use client_credentials$/)
  usageError(t, await cli([...base, '--grant-types', 'password,refresh_token', '--refresh-delivery', 'cookie']), /^tessera: cookie delivery needs --allowed-origins/)
  usageError(t, await cli([...base, '--grant-types', 'password', '--refresh-delivery', 'cookie', '--allowed-origins', 'https://app.example.com/login']), /^tessera: not an origin \(scheme:\/\/host\[:port\], no path\): https:\/\/app\.example\.com\/login$/)
  usageError(t, await cli([...base, '--grant-types', 'password', '--allowed-origins', 'app.example.com']), /^tessera: not an origin/)
  usageError(t, await cli([...base, '--grant-types', 'password', '--allowed-origins', 'https://app.example.com/']), /^tessera: not an origin/)
  usageError(t, await cli([...base, '--grant-types', 'client_credentials,implicit']), /^tessera: unknown grant type: implicit \(known: client_credentials, refresh_token, password, authorization_code\)$/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code']), /^tessera: authorization_code needs --redirect-uris$/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code', '--redirect-uris', 'http://rp.example.com/cb']), /must use https/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code', '--redirect-uris', 'https://rp.example.com/cb#x']), /must not have a fragment/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code', '--redirect-uris', 'rp.example.com/cb']), /must be an absolute URI/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code', '--redirect-uris', 'https://u:p@rp.example.com/cb']), /user information/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code', '--redirect-uris', 'https://rp.example.com\\cb']), /whitespace or backslashes/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code', '--redirect-uris', 'javascript:alert(1)']), /forbidden scheme/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code', '--redirect-uris', 'https://rp.example.com/cb', '--post-logout-redirect-uris', 'http://x.example/']), /--post-logout-redirect-uris must use https/)
  usageError(t, await cli([...base, '--grant-types', 'authorization_code', '--redirect-uris', 'https://rp.example.com/cb', '--backchannel-logout-uri', 'com.example.app:/bc']), /must be an http\(s\) URL/)
  usageError(t, await cli([...base]), /^tessera: clients create needs --grant-types/)
  usageError(t, await cli([...base, '--grant-types', 'password', '--refresh-delivery', 'query']), /^tessera: --refresh-delivery must be body or cookie$/)
  usageError(t, await cli(['clients', 'create', '--name', 'x', '--grant-types', 'password', '--scopes', 'read,"quoted"']), /^tessera: scopes must be RFC 6749 scope tokens$/)
  usageError(t, await cli(['clients', 'create', '--grant-types', 'password']), /^tessera: clients create needs --name$/)
  t.equal((await sql.query('select count(*)::int as n from client')).rows[0].n, 0)
})

t.test('clients create --id-token-signed-response-alg: a line that signs here; RS256 by default; anything else exits 2', async (t) => {
  const { cli } = await setup(t)
  const create = (...extra: string[]) => cli(['clients', 'create', '--name', 'rp', '--grant-types', 'password', '--scopes', 'openid', ...extra])
  const es = await create('--id-token-signed-response-alg', 'ES256')
  t.equal(es.code, 0, es.err)
  t.equal(es.json().id_token_signed_response_alg, 'ES256', 'SIGNING_ALG is a line')
  usageError(t, await create('--id-token-signed-response-alg', 'HS256'), /--id-token-signed-response-alg must be one of ES256, RS256, PS256, EdDSA/)
  usageError(t, await create('--id-token-signed-response-alg', 'none'), /must be one of/)
  usageError(t, await create('--id-token-signed-response-alg', 'EdDSA'), /no EdDSA key line signs here: start one with `tessera keys rotate --alg EdDSA --now`/)
  t.equal((await cli(['keys', 'rotate', '--now', '--alg', 'EdDSA'])).code, 0)
  t.equal((await create('--id-token-signed-response-alg', 'EdDSA')).json().id_token_signed_response_alg, 'EdDSA', 'once the line exists')
  const listed = (await cli(['clients', 'list'])).json() as { id_token_signed_response_alg: string }[]
  t.same(listed.map((c) => c.id_token_signed_response_alg), ['ES256', 'EdDSA'], 'the CLI shows it')
})

t.test('clients list shows every client without secrets or hashes', async (t) => {
  const { cli } = await setup(t)
  const web = (await cli(['clients', 'create', '--name', 'web', '--grant-types', 'client_credentials', '--scopes', 'read'])).json()
  const res = await cli(['clients', 'list'])
  t.equal(res.code, 0, res.err)
  const clients = res.json()
  t.equal(clients.length, 1)
  t.same(Object.keys(clients[0]).sort(), ['allowed_origins', 'audience', 'backchannel_logout_uri', 'client_id', 'created_at', 'disabled', 'first_party', 'grant_types', 'id_token_signed_response_alg', 'name', 'post_logout_redirect_uris', 'rate_limit_per_second', 'redirect_uris', 'refresh_delivery', 'require_pushed_authorization_requests', 'scopes', 'type'])
  t.match(clients[0], { client_id: web.client_id, name: 'web', type: 'confidential', disabled: false })
  t.notOk(res.out.includes(web.client_secret), 'the secret is never shown again')
  t.notMatch(res.out, /secret/)
})

t.test('clients disable: the client is refused and its sessions are revoked (#60, #140); an unknown id exits 2', async (t) => {
  const { url, cli, sql } = await setup(t)
  const web = (await cli(['clients', 'create', '--name', 'web', '--grant-types', 'client_credentials,password,refresh_token', '--scopes', 'read'])).json()
  await cli(['users', 'create', '--username', 'alice', '--password-stdin'])
  // The server caches clients for one second of its clock.
  const clock = new ManualClock()
  const token = await tokenEndpointOn(t, url, { id: web.client_id, secret: web.client_secret }, { CACHE_REFRESH_SECONDS: '1' }, clock)
  const login = await token({ grant_type: 'password', username: 'alice', password: 'the password' })
  t.equal(login.statusCode, 200)

  const res = await cli(['clients', 'disable', '--id', web.client_id])
  t.equal(res.code, 0, res.err)
  const { propagation, ...disabled } = res.json()
  t.same(disabled, { client_id: web.client_id, disabled: true })
  t.match(propagation, { confirmed: [{ pid: process.pid }], unconfirmed: [] }, 'the running instance (in this process) confirmed')
  t.not((await sql.query('select disabled_at from client where id = $1', [web.client_id])).rows[0].disabled_at, null)
  t.same((await sql.query('select revoked_reason from refresh_token_family')).rows, [{ revoked_reason: 'client_disabled' }])
  const audit = (await sql.query(`select type, client_id, family_id is not null as family, detail from audit_event where type in ('refresh_token.revoked', 'client.disabled') order by id`)).rows
  t.same(audit, [
    { type: 'refresh_token.revoked', client_id: web.client_id, family: true, detail: { reason: 'client_disabled', via: 'cli' } },
    { type: 'client.disabled', client_id: web.client_id, family: false, detail: { via: 'cli', families_revoked: 1 } },
  ], 'each revoked family and the disable itself are audited, in the same transaction')
  clock.advance(1100) // past the client cache bound
  const cc = await token({ grant_type: 'client_credentials' })
  t.equal(cc.statusCode, 401)
  t.same(cc.json(), { error: 'invalid_client', error_description: 'client authentication failed' })
  t.equal((await token({ grant_type: 'refresh_token', refresh_token: login.json().refresh_token })).statusCode, 401)
  t.match((await cli(['clients', 'list'])).json(), [{ client_id: web.client_id, disabled: true }])
  t.equal((await cli(['clients', 'disable', '--id', web.client_id])).code, 0, 'disabling again is fine')
  t.equal((await sql.query(`select count(*)::int as n from audit_event where type = 'client.disabled'`)).rows[0].n, 1, 'and is not audited as a second disable')
  usageError(t, await cli(['clients', 'disable', '--id', 'c_nope']), /^tessera: no client c_nope$/)
  usageError(t, await cli(['clients', 'disable']), /^tessera: clients disable needs --id$/)
})

t.test('keys rotate makes a new active key and retires the previous one; keys list shows the states', async (t) => {
  const { cli, sql } = await setup(t)
  const first = await cli(['keys', 'rotate', '--now'])
  t.equal(first.code, 0, first.err)
  const { propagation, ...k1 } = first.json()
  t.same(k1, { kid: k1.kid, alg: 'ES256', state: 'active', retired: [], prepublished: false }, 'rotation is off in tests: nothing was pre-published')
  t.match(propagation, { version: Number, confirmed: [], unconfirmed: [], waited_ms: Number }, 'no instance runs: nobody to wait for')
  const { propagation: _, ...k2 } = (await cli(['keys', 'rotate', '--now'])).json()
  t.same(k2, { kid: k2.kid, alg: 'ES256', state: 'active', retired: [k1.kid], prepublished: false })
  t.not(k2.kid, k1.kid)

  const listed = await cli(['keys', 'list'])
  t.equal(listed.code, 0, listed.err)
  const keys = listed.json()
  for (const k of keys) t.same(Object.keys(k).sort(), ['activate_at', 'activated_at', 'alg', 'created_at', 'kek_id', 'kid', 'remove_at', 'removed_at', 'retired_at', 'revoked_at', 'revoked_reason', 'state'], 'no key material')
  t.match(keys, [
    { kid: k2.kid, alg: 'ES256', state: 'active', retired_at: null, revoked_at: null },
    { kid: k1.kid, alg: 'ES256', state: 'retired', retired_at: String, revoked_at: null },
  ])

  const rows = (await sql.query('select kid, public_jwk, private_key_enc, kek_id from signing_key')).rows
  t.equal(rows.length, 2)
  for (const row of rows) {
    t.equal(await calculateJwkThumbprint(row.public_jwk as JWK, 'sha256'), row.kid, 'kid is the RFC 7638 thumbprint')
    t.equal(row.public_jwk.d, undefined, 'no private member in the public JWK')
    t.notOk(row.private_key_enc.toString('latin1').includes('"d"'), 'the private key is stored encrypted')
    t.equal(row.kek_id, TEST_KEK.split(':')[0])
  }
})

t.test('keys rotate --alg RS256 makes an RSA key; an unknown alg exits 2 (#91)', async (t) => {
  const { cli, sql } = await setup(t)
  const es = (await cli(['keys', 'rotate', '--now'])).json()
  const res = await cli(['keys', 'rotate', '--now', '--alg', 'RS256'])
  t.equal(res.code, 0, res.err)
  const { propagation: _, ...rs } = res.json()
  t.same(rs, { kid: rs.kid, alg: 'RS256', state: 'active', retired: [], prepublished: false }, 'RS256 is a line of its own: the ES256 key keeps signing')
  t.not(rs.kid, es.kid)
  const jwk = (await sql.query('select public_jwk from signing_key where kid = $1', [rs.kid])).rows[0].public_jwk
  t.match(jwk, { kty: 'RSA', alg: 'RS256', use: 'sig', kid: rs.kid })
  t.ok(Buffer.from(jwk.n, 'base64url').length >= 256, 'RSA modulus of at least 2048 bits (#90)')
  usageError(t, await cli(['keys', 'rotate', '--alg', 'HS256']), /^tessera: --alg must be one of ES256, RS256, PS256, EdDSA$/)
  usageError(t, await cli(['keys', 'rotate', '--alg', 'none']), /--alg must be one of/)
  t.same((await sql.query(`select alg from signing_key where state = 'active' order by alg`)).rows, [{ alg: 'ES256' }, { alg: 'RS256' }], 'still exactly one active key per line')
})

t.test('keys rotate in development without KEY_ENCRYPTION_KEY generates a key file and warns loudly (#120)', async (t) => {
  const url = await freshDatabase(t)
  const dataDir = mkdtempSync(join(tmpdir(), 'tessera-cli-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const env = { NODE_ENV: 'development', DATABASE_URL: url, DATA_DIR: dataDir }
  const res = await tessera(['keys', 'rotate', '--now'], env)
  t.equal(res.code, 0, res.err)
  const file = join(dataDir, 'dev-key-encryption-key')
  t.match(res.err, `DEVELOPMENT ONLY: generated a key-encryption key in ${file}`)
  t.equal(statSync(file).mode & 0o777, 0o600, 'the key file is private')
  t.match(readFileSync(file, 'utf8'), /^dev:[A-Za-z0-9_-]{43}\n$/)
  const again = await tessera(['keys', 'rotate', '--now'], env)
  t.equal(again.code, 0, again.err)
  t.equal(again.err, '', 'the existing key file is reused quietly')
  t.same(again.json().retired, [res.json().kid])
})

t.test('an unknown command or subcommand exits 2 with the usage', async (t) => {
  const env = testEnv()
  const res = await tessera(['frobnicate'], env)
  usageError(t, res, /^tessera: unknown command: frobnicate \(tessera --help lists the commands\)$/)
  usageError(t, await tessera(['users', 'frobnicate'], env), /^tessera: unknown command: users frobnicate \(tessera users --help lists its commands\)$/)
  usageError(t, await tessera(['keys', 'delete'], env), /^tessera: unknown command: keys delete \(tessera keys --help/)
  // A group word alone: its commands, on stderr (the usage of a usage error).
  for (const [word, subs] of [['sso-sessions', ['list', 'revoke', 'revoke-all']], ['consents', ['list', 'revoke']], ['clients', ['create', 'list', 'disable']]] as const) {
    const alone = await tessera([word], env)
    t.equal(alone.code, 2, word)
    t.match(alone.err, new RegExp(`^usage: tessera ${word} <command>`))
    for (const sub of subs) t.match(alone.err, `  ${word} ${sub} `)
  }
  const none = await tessera([], env)
  t.equal(none.code, 2, 'no command at all is a usage error')
  t.match(none.err, /^usage: tessera <command>/)
})

t.test('--help prints the usage and exits 0', async (t) => {
  for (const flag of ['--help', '-h', 'help']) {
    const res = await tessera([flag], {})
    t.equal(res.code, 0, flag)
    t.equal(res.err, '')
    t.match(res.out, /^usage: tessera <command>/)
    for (const cmd of ['migrate', 'serve', 'users create', 'clients create', 'keys rotate']) t.match(res.out, cmd)
  }
})

t.test('invalid configuration exits 2 naming the variable', async (t) => {
  const res = await tessera(['users', 'list'], testEnv({ PORT: 'abc' }))
  usageError(t, res, /^tessera: invalid configuration:\n {2}- PORT must be an integer between 0 and 65535 \(got "abc"\)$/)
  const several = await tessera(['users', 'list'], testEnv({ PORT: 'abc', SIGNING_ALG: 'HS256', DATABASE_URL: 'mysql://db' }))
  t.equal(several.code, 2)
  t.match(several.err, /PORT must be/)
  t.match(several.err, /SIGNING_ALG must be one of/)
  t.match(several.err, /DATABASE_URL must be a postgres/, 'every problem in one message')
})

t.test('production without ISSUER and KEY_ENCRYPTION_KEY exits 2 naming both (#118)', async (t) => {
  const url = await freshDatabase(t)
  const res = await tessera(['keys', 'rotate'], { NODE_ENV: 'production', DATABASE_URL: url })
  usageError(t, res, /ISSUER is required in production/)
  t.match(res.err, /KEY_ENCRYPTION_KEY is required in production/)
  const sql = new pg.Client({ connectionString: url })
  await sql.connect()
  t.teardown(() => sql.end())
  const tables = await sql.query(`select count(*)::int as n from information_schema.tables where table_schema = 'public'`)
  t.equal(tables.rows[0].n, 0, 'nothing was written to the database')
})

t.test('the real executable prints the usage for --help and exits 0', async (t) => {
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'tessera.js'), '--help'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
    child.on('error', fail)
    child.on('close', (code) => done({ code, stdout, stderr }))
  })
  t.equal(code, 0, stderr)
  t.match(stdout, /^usage: tessera <command> \[options\]\n/)
  t.match(stdout, /  users create +create a user\n/)
  t.equal(stderr, '')
})
