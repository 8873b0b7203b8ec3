// Real `tessera serve` processes started while PostgreSQL is down (DESIGN "Running and scaling",
// SECURITY #130): they stay up, /healthz 200, /readyz 503 with a reason, every endpoint 503 +
// Retry-After; once PostgreSQL starts they are ready within 5 s, and work. And what must still
// end a start: a schema newer than the code, a wrong KEK, a database that does not exist.
// Needs a built dist/ (`npm run build`); the first test runs its own cluster (so it can stop it),
// the others use `npm test`'s PostgreSQL.
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import t, { type Test } from 'tap'
import { startCluster } from '../../scripts/pg-cluster.mjs'
import { basic, FORM, form, freshDatabase, TEST_KEK } from '../helpers/app.js'
import { ALICE_PASSWORD, API, checkLogs, exitWithin, freePort, runCli, sharedDatabaseEnv, sqlClient, startServer, waitReady, type Body, type Client, type Server } from '../helpers/processes.js'

const INSTANCES = 3
const READY_WITHIN_MS = 5000
const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable, retry later' }

/** Polls GET /healthz until 200 (the process listens); fails at once if the process exits. */
async function waitListening(server: Server, timeoutMs: number): Promise<void> {
  const started = performance.now()
  while (performance.now() - started < timeoutMs) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) throw new Error(`${server.name} exited:\n${server.stderr.join('')}${server.stdout.join('')}`)
    try {
      const res = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(2000) })
      await res.arrayBuffer()
      if (res.status === 200) return
    } catch { /* not listening yet */ }
    await sleep(100)
  }
  throw new Error(`${server.name} not listening after ${timeoutMs} ms:\n${server.stderr.join('')}${server.stdout.join('')}`)
}

/** Milliseconds until GET /readyz is 200, polled every 50 ms. */
async function msUntilReady(server: Server, since: number, timeoutMs: number): Promise<number> {
  while (performance.now() - since < timeoutMs) {
    try {
      const res = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.status === 200) return Math.round(performance.now() - since)
    } catch { /* keep polling */ }
    await sleep(50)
  }
  return Infinity
}

/** GET /readyz once the first start-up attempt has ended (its reason is no longer the initial one). */
async function readyzAfterFirstAttempt(server: Server): Promise<{ status: number; body: Body }> {
  for (let i = 0; ; i++) {
    const res = await fetch(`${server.url}/readyz`)
    const body = (await res.json()) as Body
    if (body.reason !== 'connecting to the database' || i >= 100) return { status: res.status, body }
    await sleep(100)
  }
}

/** JSON log lines of `server` with a message matching `re`. */
const logLines = (server: Server, re: RegExp): Body[] =>
  server.stdout.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Body).filter((l) => re.test(l.msg ?? ''))

async function post(base: string, path: string, headers: Record<string, string>, body: string) {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers, body })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as Body }
}

t.test(`${INSTANCES} instances started while PostgreSQL is down stay up, answer 503, and are ready within ${READY_WITHIN_MS / 1000} s of it starting`, async (t) => {
  const pgc = await startCluster()
  t.teardown(() => pgc.stop())
  const admin = new pg.Client({ connectionString: pgc.url })
  await admin.connect()
  await admin.query('create database tessera')
  await admin.end()
  const url = new URL(pgc.url)
  url.pathname = '/tessera'
  const env = sharedDatabaseEnv(t, url.toString(), { DB_ACQUIRE_TIMEOUT_MS: '2000' })

  t.equal((await runCli(t, ['migrate'], env)).code, 0, 'migrate')
  t.equal((await runCli(t, ['users', 'create', '--username', 'alice', '--password-stdin'], env, ALICE_PASSWORD + '\n')).code, 0, 'users create')
  const created = await runCli(t, ['clients', 'create', '--name', 'api', '--grant-types', 'password,refresh_token', '--scopes', 'openid,read', '--audience', API], env)
  t.equal(created.code, 0, `clients create: ${created.stderr}`)
  const c = JSON.parse(created.stdout) as Body
  const client: Client = { id: c.client_id, secret: c.client_secret }

  // Ports picked while PostgreSQL still holds its own, so none of them is the one it restarts on.
  const ports = new Set<number>()
  while (ports.size < INSTANCES + 1) ports.add(await freePort())
  pgc.cluster.halt()
  const [portD, ...instancePorts] = [...ports]
  const servers = instancePorts.map((port, i) => startServer(t, String.fromCharCode(65 + i), env, port))
  // One more, stopped while it still waits for the database.
  const d = startServer(t, 'D', env, portD!)
  const startedAt = performance.now()
  await Promise.all([...servers, d].map((s) => waitListening(s, 60_000)))
  t.comment(`${INSTANCES + 1} instances listening without a database after ${Math.round(performance.now() - startedAt)} ms`)

  for (const s of servers) {
    const healthz = await fetch(`${s.url}/healthz`)
    t.equal(healthz.status, 200, `${s.name}: /healthz 200`)
    t.same(await healthz.json(), { status: 'ok' })
    const readyz = await readyzAfterFirstAttempt(s)
    t.equal(readyz.status, 503, `${s.name}: /readyz 503`)
    t.same(readyz.body, { status: 'starting', reason: 'database unavailable (ECONNREFUSED)' }, `${s.name}: /readyz says why`)
    t.notOk(JSON.stringify(readyz.body).includes(String(pgc.port)), 'no connection detail in /readyz')

    const requests: Array<[string, Promise<Response>]> = [
      ['POST /token', fetch(`${s.url}/token`, { method: 'POST', headers: { ...FORM, authorization: basic(client.id, client.secret) }, body: form({ grant_type: 'refresh_token', refresh_token: 'tsr_x' }) })],
      ['POST /login', fetch(`${s.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: ALICE_PASSWORD, client_id: client.id, client_secret: client.secret }) })],
      ['POST /refresh', fetch(`${s.url}/refresh`, { method: 'POST', headers: { origin: 'https://app.example.com', cookie: '__Secure-tessera_rt=tsr_x' } })],
      ['POST /revoke', fetch(`${s.url}/revoke`, { method: 'POST', headers: { ...FORM, authorization: basic(client.id, client.secret) }, body: form({ token: 'tsr_x' }) })],
      ['POST /introspect', fetch(`${s.url}/introspect`, { method: 'POST', headers: { ...FORM, authorization: basic(client.id, client.secret) }, body: form({ token: 'tsr_x' }) })],
      ['GET /userinfo', fetch(`${s.url}/userinfo`, { headers: { authorization: 'Bearer x' } })],
      ['POST /logout', fetch(`${s.url}/logout`, { method: 'POST' })],
      ['GET /.well-known/jwks.json', fetch(`${s.url}/.well-known/jwks.json`)],
      ['GET /.well-known/openid-configuration', fetch(`${s.url}/.well-known/openid-configuration`)],
    ]
    for (const [name, pending] of requests) {
      const res = await pending
      t.equal(res.status, 503, `${s.name}: ${name} 503`)
      t.equal(res.headers.get('retry-after'), '5', `${s.name}: ${name} Retry-After`)
      t.equal(res.headers.get('cache-control'), 'no-store', `${s.name}: ${name} no-store`)
      t.same(await res.json(), UNAVAILABLE, `${s.name}: ${name} temporarily_unavailable`)
    }
  }

  // A SIGTERM while waiting for the database: a clean exit.
  d.child.kill('SIGTERM')
  t.same(await exitWithin(d, 10_000), { code: 0, signal: null }, 'D, still waiting for the database, exits 0 on SIGTERM')

  // Long enough that the backoff reached its cap (2 s): the case the 5 s promise is about.
  while (performance.now() - startedAt < 6000) await sleep(100)
  for (const s of servers) t.equal(s.child.exitCode, null, `${s.name} is still running`)

  pgc.cluster.resume() // pg_ctl start -w: returns once PostgreSQL accepts connections
  const reachableAt = performance.now()
  const times = await Promise.all(servers.map((s) => msUntilReady(s, reachableAt, 30_000)))
  t.comment(`ready after PostgreSQL became reachable: ${servers.map((s, i) => `${s.name} ${times[i]} ms`).join(', ')}`)
  for (const [i, s] of servers.entries()) t.ok(times[i]! <= READY_WITHIN_MS, `${s.name} ready within ${READY_WITHIN_MS} ms (${times[i]} ms)`)

  // A login, a refresh and a revoke on each instance.
  const secrets: string[] = [ALICE_PASSWORD, client.secret]
  for (const s of servers) {
    const login = await post(s.url, '/login', { 'content-type': 'application/json' }, JSON.stringify({ username: 'alice', password: ALICE_PASSWORD, client_id: client.id, client_secret: client.secret, scope: 'openid read' }))
    t.equal(login.status, 200, `${s.name}: login`)
    const auth = { ...FORM, authorization: basic(client.id, client.secret) }
    const refreshed = await post(s.url, '/token', auth, form({ grant_type: 'refresh_token', refresh_token: login.body.refresh_token }))
    t.equal(refreshed.status, 200, `${s.name}: refresh`)
    const revoked = await post(s.url, '/revoke', auth, form({ token: refreshed.body.refresh_token, token_type_hint: 'refresh_token' }))
    t.equal(revoked.status, 200, `${s.name}: revoke`)
    const dead = await post(s.url, '/token', auth, form({ grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token }))
    t.same({ status: dead.status, error: dead.body.error }, { status: 400, error: 'invalid_grant' }, `${s.name}: the revoked family is dead`)
    secrets.push(login.body.access_token, login.body.refresh_token, refreshed.body.access_token, refreshed.body.refresh_token)
  }

  const waitedSeconds = (reachableAt - startedAt) / 1000
  for (const s of [...servers, d]) {
    const notReady = logLines(s, /^not ready: /)
    t.ok(notReady.length >= 1 && notReady.length <= 1 + Math.floor(waitedSeconds / 30), `${s.name}: the wait is logged, not every attempt (${notReady.length} line(s) over ${waitedSeconds.toFixed(1)} s)`)
  }
  for (const s of servers) {
    const ready = logLines(s, /^tessera is ready$/)
    t.equal(ready.length, 1, `${s.name}: one "ready" line`)
    t.ok(ready[0]?.attempts > 1, `${s.name}: it says after how many attempts (${ready[0]?.attempts})`)
  }

  for (const s of servers) s.child.kill('SIGTERM')
  const exits = await Promise.all(servers.map((s) => exitWithin(s, 15_000)))
  t.same(exits, servers.map(() => ({ code: 0, signal: null })), 'every instance exits 0 on SIGTERM')
  for (const s of [...servers, d]) checkLogs(t, s, secrets)
})

/** Starts `serve` and expects it to end with a non-zero exit; returns its stderr. */
async function refusesToStart(t: Test, env: Record<string, string>): Promise<string> {
  const server = startServer(t, 'refused', env, await freePort())
  const exit = await exitWithin(server, 30_000)
  t.same(exit, { code: 1, signal: null }, 'exit 1')
  const stderr = server.stderr.join('')
  t.equal(logLines(server, /^cannot start; exiting$/).length, 1, 'one log line says it cannot start')
  t.equal(logLines(server, /^not ready: /).length, 0, 'not treated as an outage to wait out')
  t.notOk((stderr + server.stdout.join('')).includes(TEST_KEK.slice(5)), 'no KEK in the output')
  return stderr
}

t.test('a schema newer than the code: exit 1 with a clear message (MIGRATE_ON_START off and on)', async (t) => {
  const url = await freshDatabase(t)
  const env = sharedDatabaseEnv(t, url)
  t.equal((await runCli(t, ['migrate'], env)).code, 0, 'migrate')
  const sql = await sqlClient(t, url)
  await sql.query(`insert into kysely_migration (name, timestamp) values ('2999_01_01_0001_from_the_future', now())`)
  for (const migrateOnStart of ['false', 'true']) {
    const stderr = await refusesToStart(t, { ...env, MIGRATE_ON_START: migrateOnStart })
    t.match(stderr, /the database schema is newer than this version of Tessera \(migrations it does not know: 2999_01_01_0001_from_the_future\)/, `MIGRATE_ON_START=${migrateOnStart}: says why`)
  }
})

t.test('a wrong KEK: exit 1 with a clear message', async (t) => {
  const url = await freshDatabase(t)
  const env = sharedDatabaseEnv(t, url)
  t.equal((await runCli(t, ['migrate'], env)).code, 0, 'migrate')
  const first = startServer(t, 'first', env, await freePort())
  await waitReady(first, 60_000) // creates the active key under TEST_KEK
  first.child.kill('SIGTERM')
  t.same(await exitWithin(first, 15_000), { code: 0, signal: null })
  const otherKek = 'other:' + Buffer.alloc(32, 9).toString('base64url')
  const stderr = await refusesToStart(t, { ...env, KEY_ENCRYPTION_KEY: otherKek })
  t.match(stderr, /cannot decrypt the active signing key with KEY_ENCRYPTION_KEY/)
  t.notOk(stderr.includes(otherKek.slice(6)), 'not the KEK either')
})

t.test('a database that does not exist is a wrong configuration, not an outage: exit 1', async (t) => {
  const url = new URL(await freshDatabase(t))
  url.pathname = '/tessera_no_such_database'
  const stderr = await refusesToStart(t, sharedDatabaseEnv(t, url.toString()))
  t.match(stderr, /database "tessera_no_such_database" does not exist/)
})

t.test('a schema not migrated yet is waited for, with the reason, until `tessera migrate` runs', async (t) => {
  const url = await freshDatabase(t)
  const env = sharedDatabaseEnv(t, url)
  const server = startServer(t, 'early', env, await freePort())
  await waitListening(server, 60_000)
  const { body } = await readyzAfterFirstAttempt(server)
  t.match(body, { status: 'starting', reason: /^database schema not migrated: \d+ migration\(s\) pending \(run `tessera migrate`\)$/ }, '/readyz says what to do')
  t.equal((await runCli(t, ['migrate'], env)).code, 0, 'migrate')
  await waitReady(server, 10_000)
  t.pass('ready once migrated')
  server.child.kill('SIGTERM')
  t.same(await exitWithin(server, 15_000), { code: 0, signal: null })
})
