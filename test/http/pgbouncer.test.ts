// Tessera behind PgBouncer in transaction pooling mode (docs/pgbouncer.md; issue 15 "Scale-out
// path"): a real pgbouncer (Debian's `pgbouncer` package) with a pool of 3 server connections in
// front of `npm test`'s PostgreSQL, so every instance's connections really are shared between
// transactions. Two `tessera migrate` at once, commands, and three `tessera serve` processes all go
// through it; only the LISTEN connection (DATABASE_LISTEN_URL) is direct. 60 simultaneous refreshes
// of one token (no grace window): exactly one succeeds, the rest are invalid_grant and the family
// is revoked for reuse, as on a direct connection. Then a key rotation by command reaches every
// instance. Needs a built dist/ (`npm run build`).
// Without the pgbouncer binary the test is skipped locally, and fails in CI (CI=true).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import pg from 'pg'
import t, { type Test } from 'tap'
import { freshDatabase } from '../helpers/app.js'
import { ALICE_PASSWORD, API, checkLogs, exitWithin, freePort, getJwks, runCli, sharedDatabaseEnv, sqlClient, startServer, token, waitReady, type Body } from '../helpers/processes.js'

const IN_CI = /^(true|1)$/i.test(process.env.CI ?? '')
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0
const INSTANCES = 3
const REFRESHES = 60
const POOL_SIZE = 3

/** The pgbouncer binary: on PATH, or Debian's /usr/sbin/pgbouncer (not on a non-root PATH). */
function findPgbouncer(): string | undefined {
  for (const candidate of ['pgbouncer', '/usr/sbin/pgbouncer']) {
    const r = spawnSync(candidate, ['--version'], { encoding: 'utf8' })
    if (r.status === 0) return candidate
  }
  return undefined
}

/** A pgbouncer in transaction pooling mode in front of the PostgreSQL of `adminUrl`; stopped at teardown. */
async function startPgbouncer(t: Test, bin: string, adminUrl: string): Promise<{ port: number; log: () => string }> {
  const upstream = new URL(adminUrl)
  // pgbouncer refuses to run as root: as root it runs as the postgres OS user (like the test cluster).
  const dir = mkdtempSync(join(IS_ROOT ? '/tmp' : tmpdir(), 'tessera-pgbouncer-'))
  chmodSync(dir, 0o777)
  const port = await freePort()
  const logFile = join(dir, 'pgbouncer.log')
  writeFileSync(join(dir, 'userlist.txt'), `"${upstream.username}" ""\n`)
  writeFileSync(join(dir, 'pgbouncer.ini'), [
    '[databases]',
    // Any database name: the one of the same name upstream (each test's fresh database).
    `* = host=${upstream.hostname} port=${upstream.port}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${join(dir, 'userlist.txt')}`,
    'pool_mode = transaction',
    `default_pool_size = ${POOL_SIZE}`,
    'min_pool_size = 0',
    'reserve_pool_size = 0',
    'max_client_conn = 1000',
    'max_db_connections = ' + POOL_SIZE,
    // pg sends the timeouts as `options`; Tessera sets them again in every transaction.
    'ignore_startup_parameters = options,extra_float_digits',
    `logfile = ${logFile}`,
    '',
  ].join('\n'))
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o666)
  // Spawned directly (not through runuser), so that the signal at teardown reaches pgbouncer itself.
  const ids = IS_ROOT ? { uid: Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout), gid: Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout) } : {}
  const child: ChildProcess = spawn(bin, [join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir, ...ids })
  const output: string[] = []
  child.stdout!.on('data', (d) => output.push(String(d)))
  child.stderr!.on('data', (d) => output.push(String(d)))
  const exited = new Promise<void>((res) => child.on('exit', () => res()))
  const log = () => {
    let file = ''
    try { file = String(spawnSync('cat', [logFile], { encoding: 'utf8' }).stdout ?? '') } catch {}
    return output.join('') + file
  }
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT') // immediate shutdown
      await Promise.race([exited, sleep(5000)])
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
    rmSync(dir, { recursive: true, force: true })
  })
  // Ready when it answers a query.
  const deadline = Date.now() + 10_000
  for (;;) {
    const c = new pg.Client({ host: '127.0.0.1', port, user: upstream.username, database: 'postgres' })
    try {
      await c.connect()
      await c.query('select 1')
      await c.end()
      return { port, log }
    } catch (err) {
      await c.end().catch(() => undefined)
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`pgbouncer did not start: ${(err as Error).message}\n${log()}`)
      await sleep(100)
    }
  }
}

const bin = findPgbouncer()
if (!bin) {
  if (IN_CI) {
    t.fail('pgbouncer is not installed, and CI=true: install it (apt-get install -y pgbouncer; .ci/run does)')
  } else {
    t.comment('SKIPPED: no pgbouncer binary (apt-get install -y pgbouncer); the PgBouncer tests need it, and CI runs them')
    t.pass('skipped: pgbouncer is not installed')
  }
} else {
  t.test(`${INSTANCES} instances behind PgBouncer (transaction pooling, ${POOL_SIZE} server connections): migrations, ${REFRESHES} simultaneous refreshes, key rotation`, async (t) => {
    const direct = await freshDatabase(t)
    const bouncer = await startPgbouncer(t, bin, direct)
    const pooledUrl = new URL(direct)
    pooledUrl.port = String(bouncer.port)
    const pooled = pooledUrl.toString()
    t.teardown(() => { if (t.passing()) return; t.comment(`pgbouncer log:\n${bouncer.log()}`) })

    // No grace window: a second use of a refresh token is reuse, however close in time.
    const env = sharedDatabaseEnv(t, pooled, { DATABASE_LISTEN_URL: direct, REFRESH_GRACE_SECONDS: '0', DATABASE_POOL_SIZE: '10' })
    const sql = await sqlClient(t, direct)

    // Two migrations at once, both through PgBouncer: the transaction-scoped lock serialises them.
    const migrations = await Promise.all([runCli(t, ['migrate'], env), runCli(t, ['migrate'], env)])
    t.same(migrations.map((m) => m.code), [0, 0], `both migrate commands exit 0: ${migrations.map((m) => m.stderr).join(' | ')}`)
    const { rows: applied } = await sql.query<{ n: number; distinct: number }>('select count(*)::int as n, count(distinct name)::int as distinct from kysely_migration')
    t.ok(applied[0]!.n > 0, `${applied[0]!.n} migrations applied`)
    t.equal(applied[0]!.n, applied[0]!.distinct, 'each migration once')
    const again = await runCli(t, ['migrate'], env)
    t.equal(again.code, 0, 'a third migrate through PgBouncer: nothing to do, exit 0')
    const { rows: locks } = await sql.query<{ n: number }>(`select count(*)::int as n from pg_locks where locktype = 'advisory'`)
    t.equal(locks[0]!.n, 0, 'no advisory lock is left on any server connection')

    t.equal((await runCli(t, ['users', 'create', '--username', 'alice', '--password-stdin'], env, ALICE_PASSWORD + '\n')).code, 0, 'users create')
    const created = await runCli(t, ['clients', 'create', '--name', 'api', '--grant-types', 'password,refresh_token,client_credentials', '--scopes', 'openid,read', '--audience', API], env)
    t.equal(created.code, 0, `clients create: ${created.stderr}`)
    const createdJson = JSON.parse(created.stdout) as Body
    const client = { id: createdJson.client_id as string, secret: createdJson.client_secret as string }

    const ports = new Set<number>()
    while (ports.size < INSTANCES) ports.add(await freePort())
    const servers = [...ports].map((port, i) => startServer(t, String.fromCharCode(65 + i), env, port))
    await Promise.all(servers.map((s) => waitReady(s, 60_000)))
    const { rows: listeners } = await sql.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name = 'tessera-listen'`)
    t.equal(listeners[0]!.n, INSTANCES, 'each instance LISTENs on its own direct connection')
    const { rows: serverConns } = await sql.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name <> 'tessera-listen' and pid <> pg_backend_pid()`)
    t.ok(serverConns[0]!.n <= POOL_SIZE, `at most ${POOL_SIZE} pooled server connections (${serverConns[0]!.n}) for ${INSTANCES} instances`)

    for (const s of servers) {
      const cc = await token(s.url, client, { grant_type: 'client_credentials', scope: 'read' })
      t.equal(cc.status, 200, `${s.name}: client_credentials`)
    }
    const login = await token(servers[0]!.url, client, { grant_type: 'password', username: 'alice', password: ALICE_PASSWORD, scope: 'openid read' })
    t.equal(login.status, 200, 'login on A')
    const rt = login.body.refresh_token as string
    const familyId = decodeJwt(login.body.access_token as string).sid as string

    const started = performance.now()
    const results = await Promise.all(
      Array.from({ length: REFRESHES }, (_, i) => token(servers[i % INSTANCES]!.url, client, { grant_type: 'refresh_token', refresh_token: rt })),
    )
    const statuses = results.reduce<Record<number, number>>((m, r) => ({ ...m, [r.status]: (m[r.status] ?? 0) + 1 }), {})
    t.comment(`${REFRESHES} refreshes over ${INSTANCES} instances through PgBouncer in ${Math.round(performance.now() - started)} ms: statuses ${JSON.stringify(statuses)}`)
    t.same(statuses, { 200: 1, 400: REFRESHES - 1 }, 'exactly one success, every other request a 400')
    const losers = results.filter((r) => r.status !== 200)
    t.ok(losers.every((r) => r.body.error === 'invalid_grant'), 'the rest are invalid_grant')
    const winner = results.find((r) => r.status === 200)!

    const { rows: fam } = await sql.query<{ revoked_reason: string | null }>('select revoked_reason from refresh_token_family where id = $1', [familyId])
    t.same(fam, [{ revoked_reason: 'reuse_detected' }], 'the family is revoked for reuse')
    const { rows: tokens } = await sql.query<{ n: number }>('select count(*)::int as n from refresh_token where family_id = $1', [familyId])
    t.equal(tokens[0]!.n, 2, 'two tokens in the family: the presented one and its one successor')
    const { rows: audit } = await sql.query<{ type: string; n: number }>('select type, count(*)::int as n from audit_event where family_id = $1 group by type order by type', [familyId])
    t.comment(`audit: ${JSON.stringify(audit)}`)
    t.equal(audit.find((a) => a.type === 'refresh_token.rotated')?.n, 1, 'one rotation audited')
    t.equal(audit.find((a) => a.type === 'refresh_token.reuse_detected')?.n, 1, 'one reuse_detected event')
    for (const s of servers) {
      const dead = await token(s.url, client, { grant_type: 'refresh_token', refresh_token: winner.body.refresh_token })
      t.same(dead, { status: 400, body: { error: 'invalid_grant', error_description: 'refresh token is invalid' } }, `${s.name}: the winner's successor is dead too`)
      const info = await fetch(`${s.url}/userinfo`, { headers: { authorization: `Bearer ${winner.body.access_token}` } })
      t.equal(info.status, 401, `${s.name}: the family's newest access token is refused`)
      await info.arrayBuffer()
    }

    // Key rotation by command, through PgBouncer; the change reaches every instance (LISTEN direct).
    const rotated = await runCli(t, ['keys', 'rotate', '--now'], env)
    t.equal(rotated.code, 0, `keys rotate: ${rotated.stderr}`)
    const newKid = (JSON.parse(rotated.stdout) as Body).kid as string
    const deadline = Date.now() + 5000
    let jwks = await Promise.all(servers.map((s) => getJwks(s.url)))
    while (Date.now() < deadline && !jwks.every((j) => j.jwks.keys.some((k) => k.kid === newKid))) {
      await sleep(100)
      jwks = await Promise.all(servers.map((s) => getJwks(s.url)))
    }
    for (const [i, s] of servers.entries()) {
      t.ok(jwks[i]!.jwks.keys.some((k) => k.kid === newKid), `${s.name} publishes the new key`)
      const cc = await token(s.url, client, { grant_type: 'client_credentials', scope: 'read' })
      t.equal(cc.status, 200, `${s.name}: client_credentials after the rotation`)
      t.equal(decodeProtectedHeader(cc.body.access_token as string).kid, newKid, `${s.name} signs with the new key`)
    }
    const second = await token(servers[1]!.url, client, { grant_type: 'password', username: 'alice', password: ALICE_PASSWORD, scope: 'openid read' })
    t.equal(second.status, 200, 'a new login on B')
    const refreshed = await token(servers[2]!.url, client, { grant_type: 'refresh_token', refresh_token: second.body.refresh_token })
    t.equal(refreshed.status, 200, 'and its refresh on C')

    for (const s of servers) s.child.kill('SIGTERM')
    const exits = await Promise.all(servers.map((s) => exitWithin(s, 15_000)))
    t.same(exits, servers.map(() => ({ code: 0, signal: null })), 'every instance exits 0 on SIGTERM')
    for (const s of servers) checkLogs(t, s, [ALICE_PASSWORD, client.secret, rt, winner.body.refresh_token])
    t.notMatch(bouncer.log(), /unsupported startup parameter|prepared statement .* does not exist/, 'pgbouncer logged no unsupported parameter nor lost prepared statement')
  })
}
