// The real `tessera` executable (bin/tessera.js → dist/) as separate OS processes, over real HTTP:
// the README quick start on the embedded database, production's refusal of insecure settings,
// and two instances sharing one PostgreSQL (refresh race, one key created once, key rotation).
// Needs a built dist/ (`npm run build`) and, for the last test, `npm test`'s PostgreSQL.
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import t from 'tap'
import type { Test } from 'tap'
import { freshDatabase, TEST_KEK } from '../helpers/app.js'
import { ALICE_PASSWORD, API, baseEnv, checkLogs, exitWithin, freePort, getJwks, runCli, sharedDatabaseEnv, sqlClient, startServer, tmpDir, token, waitReady, type Body } from '../helpers/processes.js'

const mode = (file: string) => statSync(file).mode & 0o777

t.test('quick start on the embedded default (npm start)', async (t) => {
  const dataDir = tmpDir(t)
  const port = await freePort()
  const env = { ...baseEnv(), NODE_ENV: 'development', DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' }
  const credFile = join(dataDir, 'demo-credentials.json')
  const lockFile = join(dataDir, 'tessera.lock')

  const first = startServer(t, 'first start', env, port)
  const readyMs = await waitReady(first, 90_000)
  t.comment(`embedded server ready in ${readyMs} ms`)
  t.equal(readFileSync(lockFile, 'utf8'), String(first.child.pid), 'the data folder is locked by the server process')

  const discovery = await (await fetch(`${first.url}/.well-known/openid-configuration`)).json() as Body
  t.equal(discovery.issuer, `http://localhost:${port}`)

  t.equal(mode(credFile), 0o600, 'demo-credentials.json is mode 0600')
  const demo = JSON.parse(readFileSync(credFile, 'utf8')) as Body
  t.match(demo, { username: 'demo', password: /^\S{8,}$/, client_id: /^\S+$/, client_secret: /^\S+$/ })
  t.equal(mode(join(dataDir, 'dev-key-encryption-key')), 0o600, 'dev-key-encryption-key is mode 0600')
  const client = { id: demo.client_id as string, secret: demo.client_secret as string }

  const cc = await token(first.url, client, { grant_type: 'client_credentials' })
  t.equal(cc.status, 200, 'client_credentials')
  t.type(cc.body.access_token, 'string')
  const login = await token(first.url, client, { grant_type: 'password', username: demo.username, password: demo.password, scope: 'openid read' })
  t.equal(login.status, 200, 'password grant')
  t.match(login.body, { refresh_token: /^tsr_[A-Za-z0-9_-]{43}$/, scope: 'openid read', id_token: String })
  const refreshed = await token(first.url, client, { grant_type: 'refresh_token', refresh_token: login.body.refresh_token })
  t.equal(refreshed.status, 200, 'refresh')
  t.match(refreshed.body.refresh_token, /^tsr_/)
  t.not(refreshed.body.refresh_token, login.body.refresh_token, 'rotated')
  const userinfo = await fetch(`${first.url}/userinfo`, { headers: { authorization: `Bearer ${refreshed.body.access_token}` } })
  t.equal(userinfo.status, 200, '/userinfo')
  t.match(await userinfo.json(), { preferred_username: 'demo' })

  first.child.kill('SIGTERM')
  t.same(await exitWithin(first, 15_000), { code: 0, signal: null }, 'SIGTERM: exit 0 within 15 s')
  t.notOk(existsSync(lockFile), 'the lock file is removed')
  const secrets = [demo.password, demo.client_secret, cc.body.access_token, login.body.access_token, login.body.refresh_token, login.body.id_token, refreshed.body.access_token, refreshed.body.refresh_token, refreshed.body.id_token]
  const logs = checkLogs(t, first, secrets)
  t.ok(logs.some((l) => l.path === '/token' && l.status === 200), 'requests were logged (so the secret check means something)')
  t.ok(logs.some((l) => /demo user/.test(l.msg ?? '')), 'the log points at the demo credentials file')

  // Second start on the same folder: the database is not empty, so no new demo credentials.
  const demoStat = statSync(credFile)
  const demoBody = readFileSync(credFile, 'utf8')
  const second = startServer(t, 'second start', env, port)
  await waitReady(second, 90_000)
  t.equal(statSync(credFile).mtimeMs, demoStat.mtimeMs, 'demo-credentials.json is not rewritten')
  t.equal(readFileSync(credFile, 'utf8'), demoBody)
  const again = await token(second.url, client, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token })
  t.equal(again.status, 200, 'the successor refresh token survived the restart')
  t.match(again.body.refresh_token, /^tsr_/)
  second.child.kill('SIGTERM')
  t.same(await exitWithin(second, 15_000), { code: 0, signal: null }, 'second SIGTERM: exit 0')
  t.notOk(existsSync(lockFile), 'the lock file is removed again')
  const logs2 = checkLogs(t, second, [...secrets, again.body.access_token, again.body.refresh_token, again.body.id_token])
  t.notOk(logs2.some((l) => /demo user/.test(l.msg ?? '')), 'no demo seeding on the second start')
})

t.test('production mode refuses insecure settings', async (t) => {
  /** Starts `serve` with `env`; watches the port while it runs. */
  async function refused(t: Test, env: Record<string, string>) {
    const dataDir = tmpDir(t)
    const port = await freePort()
    const server = startServer(t, 'production', { ...baseEnv(), NODE_ENV: 'production', HOST: '127.0.0.1', DATA_DIR: dataDir, ...env }, port)
    let connected = 0
    let done = false
    const watch = (async () => {
      while (!done) {
        await new Promise<void>((res) => {
          const s = connect(port, '127.0.0.1')
          s.on('connect', () => { connected++; s.destroy(); res() })
          s.on('error', () => res())
        })
        await sleep(25)
      }
    })()
    const exit = await exitWithin(server, 30_000)
    done = true
    await watch
    t.same(exit, { code: 2, signal: null }, 'exit code 2 within 30 s')
    t.equal(connected, 0, 'nothing ever listened on the port')
    t.notOk(server.stdout.join('').includes('listening'), 'no listening line')
    t.same(readdirSync(dataDir), [], 'nothing written to DATA_DIR')
    return server.stderr.join('')
  }

  t.test('no ISSUER and no KEY_ENCRYPTION_KEY', async (t) => {
    const stderr = await refused(t, {})
    t.match(stderr, /ISSUER/)
    t.match(stderr, /KEY_ENCRYPTION_KEY/)
  })

  t.test('no DATABASE_URL: the embedded database is refused unless asked for (ALLOW_EMBEDDED_DATABASE)', async (t) => {
    const stderr = await refused(t, { ISSUER: 'https://auth.example.com', KEY_ENCRYPTION_KEY: TEST_KEK })
    t.match(stderr, /DATABASE_URL is required in production: the embedded database keeps its data in DATA_DIR/)
    t.match(stderr, /ALLOW_EMBEDDED_DATABASE=true/)
  })

  t.test('an http ISSUER', async (t) => {
    const stderr = await refused(t, { ISSUER: 'http://x.example', KEY_ENCRYPTION_KEY: TEST_KEK })
    t.match(stderr, /ISSUER.*https/)
    t.notMatch(stderr, /KEY_ENCRYPTION_KEY/, 'the valid KEK is not a problem')
  })
})

t.test('production on the embedded database when asked for: it starts, and warns once where the data lives', async (t) => {
  const dataDir = tmpDir(t)
  const port = await freePort()
  const { LOG_FORMAT: _format, ...base } = baseEnv()
  const server = startServer(t, 'embedded-production', { ...base, NODE_ENV: 'production', HOST: '127.0.0.1', DATA_DIR: dataDir, ISSUER: 'https://auth.example.com', KEY_ENCRYPTION_KEY: TEST_KEK, ALLOW_EMBEDDED_DATABASE: 'true' }, port)
  await waitReady(server, 120_000)
  const out = server.stdout.join('').split('\n').filter((l) => l !== '')
  t.ok(out.length > 0)
  t.ok(out.every((l) => l.startsWith('{')), 'production logs are JSON lines (LOG_FORMAT unset: auto)')
  const lines = out.map((l) => JSON.parse(l) as { level: number; msg: string; dataDir?: string })
  const warnings = lines.filter((l) => /embedded database in production/.test(l.msg))
  t.equal(warnings.length, 1, 'one warning')
  t.match(warnings[0], { level: 40, dataDir: resolve(dataDir), msg: /one instance only/ })
  t.ok(lines.every((l) => typeof l.msg === 'string'), 'production logs are JSON lines')
  server.child.kill('SIGTERM')
  t.same(await exitWithin(server, 15_000), { code: 0, signal: null })
})

t.test('development logs readable lines by default (pino-pretty), secrets still censored; LOG_FORMAT=json gives JSON lines', async (t) => {
  const { LOG_FORMAT: _format, ...base } = baseEnv()
  for (const format of ['auto', 'json'] as const) {
    const port = await freePort()
    const server = startServer(t, `development-${format}`, { ...base, NODE_ENV: 'development', DATA_DIR: tmpDir(t), ...(format === 'json' ? { LOG_FORMAT: 'json' } : {}) }, port)
    await waitReady(server, 120_000)
    // A refused request is logged (at info) with its outcome; its secret must not be.
    const res = await fetch(`${server.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('nobody:s3cret-in-header').toString('base64')}` }, body: 'grant_type=password&username=alice&password=hunter2-in-body' })
    t.equal(res.status, 401)
    server.child.kill('SIGTERM')
    t.same(await exitWithin(server, 15_000), { code: 0, signal: null })
    const out = server.stdout.join('').split('\n').filter((l) => l !== '')
    t.ok(out.length >= 2, `${format}: lines were written`)
    if (format === 'auto') {
      t.ok(out.every((l) => !l.startsWith('{')), 'no JSON line')
      t.ok(out.some((l) => /INFO.*listening/i.test(l)), 'a readable level and message')
      t.ok(out.some((l) => /\[\d\d:\d\d:\d\d\.\d{3}\]/.test(l)), 'a readable time')
    } else {
      t.ok(out.every((l) => l.startsWith('{') && typeof (JSON.parse(l) as { msg?: unknown }).msg === 'string'), 'JSON lines')
    }
    for (const secret of ['s3cret-in-header', 'hunter2-in-body']) t.notOk(out.join('\n').includes(secret), `${format}: ${secret} is not logged`)
  }
})

t.test('two instances on one PostgreSQL', async (t) => {
  const url = await freshDatabase(t)
  const env = sharedDatabaseEnv(t, url)
  const dataDir = env.DATA_DIR!

  const migrated = await runCli(t, ['migrate'], env)
  t.equal(migrated.code, 0, `migrate: ${migrated.stderr}`)
  const alice = await runCli(t, ['users', 'create', '--username', 'alice', '--password-stdin'], env, ALICE_PASSWORD + '\n')
  t.equal(alice.code, 0, `users create: ${alice.stderr}`)
  t.notOk(alice.stdout.includes(ALICE_PASSWORD), 'the password is not echoed')
  const created = await runCli(t, ['clients', 'create', '--name', 'api', '--grant-types', 'client_credentials,password,refresh_token', '--scopes', 'openid,read', '--audience', API], env)
  t.equal(created.code, 0, `clients create: ${created.stderr}`)
  const createdJson = JSON.parse(created.stdout) as Body
  const client = { id: createdJson.client_id as string, secret: createdJson.client_secret as string }
  t.match(client, { id: /^\S+$/, secret: /^tessera_cs_/ })

  const sql = await sqlClient(t, url)

  const portA = await freePort()
  let portB = await freePort()
  while (portB === portA) portB = await freePort()
  const a = startServer(t, 'A', env, portA)
  const b = startServer(t, 'B', env, portB)
  await Promise.all([waitReady(a, 120_000), waitReady(b, 120_000)])

  // Per key line (ES256 for access tokens, RS256 for ID tokens) one active key and its published
  // standby (scheduled rotation is on by default), each created once, published identically by both.
  let [jwksA, jwksB] = await Promise.all([getJwks(a.url), getJwks(b.url)])
  for (const until = Date.now() + 3000; Date.now() < until && !(jwksA.jwks.keys.length === 4 && jwksA.etag === jwksB.etag); await sleep(100)) {
    ;[jwksA, jwksB] = await Promise.all([getJwks(a.url), getJwks(b.url)])
  }
  t.equal(jwksA.jwks.keys.length, 4, 'two keys per line: the active one and the standby')
  t.ok(jwksA.etag, 'an ETag')
  t.equal(jwksA.etag, jwksB.etag, 'the same ETag on both instances')
  t.same(jwksA.jwks, jwksB.jwks)
  const { rows: keyRows } = await sql.query<{ kid: string; alg: string; state: string }>('select kid, alg, state from signing_key order by alg, state')
  t.same(keyRows.map((r) => `${r.alg}:${r.state}`), ['ES256:active', 'ES256:pending', 'RS256:active', 'RS256:pending'], 'one active and one pending key row per line in the database')
  t.same(keyRows.map((r) => r.kid).sort(), jwksA.jwks.keys.map((k) => k.kid!).sort(), 'all published')
  const standby = keyRows.find((r) => r.state === 'pending' && r.alg === 'ES256')!.kid
  const generated = [a, b].flatMap((p) => p.stdout.join('').match(/the (ES256|RS256) key line had no active key/g) ?? [])
  t.same(generated.sort(), ['the ES256 key line had no active key', 'the RS256 key line had no active key'], 'exactly one key per line was generated, by one instance')

  // Log in on A, then 50 simultaneous refreshes of that token on A and B.
  const login = await token(a.url, client, { grant_type: 'password', username: 'alice', password: ALICE_PASSWORD, scope: 'openid read' })
  t.equal(login.status, 200, 'password login on A')
  const rt = login.body.refresh_token as string
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => token(i % 2 === 0 ? a.url : b.url, client, { grant_type: 'refresh_token', refresh_token: rt })))
  const statuses = results.reduce<Record<number, number>>((m, r) => ({ ...m, [r.status]: (m[r.status] ?? 0) + 1 }), {})
  t.comment(`statuses: ${JSON.stringify(statuses)}`)
  t.equal(results.filter((r) => r.status >= 500).length, 0, 'no 5xx')
  const winners = results.filter((r) => r.status === 200)
  t.equal(winners.length, 50, 'all 200: one rotation, the rest retries within the grace window')
  t.equal(new Set(winners.map((r) => r.body.refresh_token)).size, 1, 'one successor value')

  const familyId = decodeJwt(login.body.access_token as string).sid as string
  const { rows: byHash } = await sql.query<{ family_id: string }>('select family_id from refresh_token where token_hash = $1', [createHash('sha256').update(rt).digest()])
  t.equal(byHash[0]?.family_id, familyId, 'the access token sid names the refresh token family')
  const { rows: successors } = await sql.query<{ n: number }>('select count(*)::int as n from refresh_token where family_id = $1 and parent_id is not null', [familyId])
  t.equal(successors[0]?.n, 1, 'exactly one successor row')
  const { rows: fam } = await sql.query<{ revoked: boolean }>('select revoked_at is not null as revoked from refresh_token_family where id = $1', [familyId])
  t.same(fam, [{ revoked: false }], 'the family is intact')

  // Key rotation from the CLI reaches both instances within ~3 s: the standby signs, the old key is
  // retired (still published), and a new standby is published.
  const rotated = await runCli(t, ['keys', 'rotate', '--now'], env)
  t.equal(rotated.code, 0, `keys rotate: ${rotated.stderr}`)
  const newKid = (JSON.parse(rotated.stdout) as Body).kid as string
  t.equal(newKid, standby, 'rotate --now promotes the long-published standby')
  const deadline = Date.now() + 3000
  let after = await Promise.all([getJwks(a.url), getJwks(b.url)])
  while (Date.now() < deadline && !after.every((j) => j.jwks.keys.length === 5 && j.etag === after[0].etag)) {
    await sleep(100)
    after = await Promise.all([getJwks(a.url), getJwks(b.url)])
  }
  const [afterA, afterB] = after
  t.equal(afterA.jwks.keys.length, 5, 'A publishes the retired, the active and the new standby key of ES256, and the RS256 pair')
  t.equal(afterB.jwks.keys.length, 5, 'B too')
  t.equal(afterA.etag, afterB.etag, 'with the same ETag')
  t.not(afterA.etag, jwksA.etag, 'a new ETag')
  t.ok(afterA.jwks.keys.some((k) => k.kid === newKid), 'the new key is published')

  const [ccA, ccB] = await Promise.all([token(a.url, client, { grant_type: 'client_credentials' }), token(b.url, client, { grant_type: 'client_credentials' })])
  t.equal(ccA.status, 200)
  t.equal(ccB.status, 200)
  const opts = { issuer: 'https://tessera.test', audience: API, typ: 'at+jwt', algorithms: ['ES256'] }
  for (const [name, at] of [['A', ccA.body.access_token], ['B', ccB.body.access_token]] as const) {
    t.equal(decodeProtectedHeader(at).kid, newKid, `${name}'s token is signed with the new key`)
    for (const [jwksName, jwks] of [['A', afterA.jwks], ['B', afterB.jwks]] as const) {
      const { payload } = await jwtVerify(at, createLocalJWKSet(jwks), opts)
      t.equal(payload.client_id, client.id, `${name}'s token verifies with ${jwksName}'s JWKS`)
    }
  }
  await t.resolves(jwtVerify(login.body.access_token, createLocalJWKSet(afterB.jwks), { ...opts, audience: API }), 'a token of the retired key still verifies')

  a.child.kill('SIGTERM')
  b.child.kill('SIGTERM')
  const [exitA, exitB] = await Promise.all([exitWithin(a, 15_000), exitWithin(b, 15_000)])
  t.same(exitA, { code: 0, signal: null }, 'A exits 0 on SIGTERM')
  t.same(exitB, { code: 0, signal: null }, 'B exits 0 on SIGTERM')
  const secrets = [ALICE_PASSWORD, client.secret, rt, login.body.access_token, login.body.id_token, ccA.body.access_token, ccB.body.access_token, ...winners.flatMap((w) => [w.body.access_token, w.body.refresh_token])]
  checkLogs(t, a, secrets)
  checkLogs(t, b, secrets)
  t.same(readdirSync(dataDir), [], 'nothing written to DATA_DIR on PostgreSQL')
})
