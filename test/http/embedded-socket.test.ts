// The embedded default stays usable (issue 14): a running embedded server serves its database on
// a Unix socket in DATA_DIR, `tessera` commands work beside it through that socket, and
// `tessera dev admin-token` gives a working admin token (docs/embedded.md).
// Real processes: needs `npm run build`. One server (started twice: after a crash, and cleanly).
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { TEST_KEK } from '../helpers/app.js'
import { ALICE_PASSWORD, baseEnv, checkLogs, exitWithin, freePort, runCli, startServer, tmpDir, token, waitReady, type Body, type Server } from '../helpers/processes.js'

t.setTimeout(600_000)

const dataDir = tmpDir(t)
const socketDir = join(dataDir, 'run')
const socketPath = join(socketDir, '.s.PGSQL.5432')
const lockFile = join(dataDir, 'tessera.lock')
const env = { ...baseEnv(), DATA_DIR: dataDir, NODE_ENV: 'development', HOST: '127.0.0.1', LOG_LEVEL: 'info', CACHE_REFRESH_SECONDS: '1' }
const mode = (p: string) => statSync(p).mode & 0o777
const secrets: string[] = []

/** A client of the server's database socket, as `pg` sees it. */
async function socketClient(t: Test): Promise<pg.Client> {
  const client = new pg.Client({ host: socketDir, port: 5432, user: 'test', database: 'test' })
  client.on('error', () => undefined)
  await client.connect()
  t.teardown(() => client.end().catch(() => undefined))
  return client
}

async function login(server: Server, client: { id: string; secret: string }, username: string, password: string): Promise<{ status: number; body: Body }> {
  const res = await fetch(`${server.url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password, client_id: client.id, client_secret: client.secret }),
  })
  return { status: res.status, body: await res.json() }
}

t.test('commands beside a running embedded server', async (t) => {
  const top = t // a server started in a subtest would be killed at the subtest's end
  const port = await freePort()
  let server = startServer(top, 'embedded', env, port)
  await waitReady(server, 240_000)
  const demo = JSON.parse(readFileSync(join(dataDir, 'demo-credentials.json'), 'utf8')) as { client_id: string; client_secret: string }
  const demoClient = { id: demo.client_id, secret: demo.client_secret }
  secrets.push(demo.client_secret)

  t.test('the socket: in DATA_DIR/run, directory 0700, socket 0600; the admin credentials 0600', async (t) => {
    t.ok(statSync(socketDir).isDirectory())
    t.equal(mode(socketDir), 0o700, 'directory 0700')
    t.ok(statSync(socketPath).isSocket(), 'a socket')
    t.equal(mode(socketPath), 0o600, 'socket 0600: owner only')
    t.equal(mode(join(dataDir, 'admin-credentials.json')), 0o600)
    t.equal(readFileSync(lockFile, 'utf8'), String(server.child.pid), 'the server holds the lock')
  })

  t.test('users create beside the server; the user logs in at its /login', async (t) => {
    const res = await runCli(t, ['users', 'create', '--username', 'alice', '--password-stdin'], env, ALICE_PASSWORD)
    t.equal(res.code, 0, res.stderr)
    t.match(JSON.parse(res.stdout), { username: 'alice', roles: [] })
    t.notMatch(res.stderr, /in use by process/)
    const ok = await login(server, demoClient, 'alice', ALICE_PASSWORD)
    t.equal(ok.status, 200, 'logged in')
    t.match(ok.body, { token_type: 'Bearer', access_token: String })
    secrets.push(ok.body.access_token, ok.body.refresh_token ?? '')
  })

  t.test('clients create beside the server; the client authenticates at /token at once', async (t) => {
    const res = await runCli(t, ['clients', 'create', '--name', 'svc', '--grant-types', 'client_credentials', '--scopes', 'read'], env)
    t.equal(res.code, 0, res.stderr)
    const created = JSON.parse(res.stdout) as { client_id: string; client_secret: string }
    secrets.push(created.client_secret)
    const cc = await token(server.url, { id: created.client_id, secret: created.client_secret }, { grant_type: 'client_credentials', scope: 'read' })
    t.equal(cc.status, 200, cc.body.error_description ?? 'token issued')
    t.equal(cc.body.scope, 'read')
    secrets.push(cc.body.access_token)
  })

  t.test('a change command waits for the server, which confirms it (its caches see the change)', async (t) => {
    const res = await runCli(t, ['users', 'disable', '--username', 'alice'], env)
    t.equal(res.code, 0, res.stderr)
    const body = JSON.parse(res.stdout) as Body
    t.equal(body.disabled, true)
    t.equal(body.propagation.confirmed.length, 1, 'the running server confirmed the change')
    t.equal(body.propagation.confirmed[0].pid, server.child.pid)
    const refused = await login(server, demoClient, 'alice', ALICE_PASSWORD)
    t.equal(refused.status, 400, 'the disabled user cannot log in')
  })

  t.test('several commands at once', async (t) => {
    const runs = await Promise.all([
      runCli(t, ['users', 'list'], env),
      runCli(t, ['keys', 'list'], env),
      runCli(t, ['users', 'create', '--username', 'bob', '--password-stdin'], env, ALICE_PASSWORD),
      runCli(t, ['clients', 'list'], env),
    ])
    for (const r of runs) t.equal(r.code, 0, r.stderr)
    t.ok((JSON.parse(runs[1]!.stdout) as unknown[]).length >= 2, 'keys listed')
    const ok = await login(server, demoClient, 'bob', ALICE_PASSWORD)
    t.equal(ok.status, 200)
  })

  t.test('a client that disconnects inside a transaction is rolled back; the server goes on', async (t) => {
    const quitter = await socketClient(t)
    await quitter.query('begin')
    await quitter.query('create table tx_probe (id int)')
    await quitter.query("update app_user set name = 'half-written' where username = 'bob'")
    ;(quitter as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()

    // A failed transaction ('E' status) left behind too.
    const failing = await socketClient(t)
    await failing.query('begin')
    await failing.query('insert into tx_probe_missing values (1)').catch(() => undefined)
    ;(failing as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()

    const fresh = await socketClient(t)
    const { rows } = await fresh.query<{ probe: string | null; xid: string | null; name: string | null }>(
      "select to_regclass('public.tx_probe')::text as probe, pg_current_xact_id_if_assigned()::text as xid, (select name from app_user where username = 'bob') as name",
    )
    t.same(rows, [{ probe: null, xid: null, name: null }], 'nothing of the lost transactions, and no transaction open')
    const ready = await fetch(`${server.url}/readyz`)
    t.equal(ready.status, 200, 'the server still answers')
    const ok = await login(server, demoClient, 'bob', ALICE_PASSWORD)
    t.equal(ok.status, 200, 'and writes (a login) still work')
  })

  t.test('dev admin-token prints a token the admin API accepts', async (t) => {
    const res = await runCli(t, ['dev', 'admin-token'], env)
    t.equal(res.code, 0, res.stderr)
    const tok = res.stdout.trim()
    t.match(tok, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/, 'one line: the access token alone')
    secrets.push(tok, (JSON.parse(readFileSync(join(dataDir, 'admin-credentials.json'), 'utf8')) as { client_secret: string }).client_secret)
    const keys = await fetch(`${server.url}/admin/keys`, { headers: { authorization: `Bearer ${tok}` } })
    t.equal(keys.status, 200)
    const none = await fetch(`${server.url}/admin/keys`)
    t.equal(none.status, 401, 'and without it: 401')
  })

  t.test('dev admin-token is refused in production', async (t) => {
    const prod = { ...env, NODE_ENV: 'production', ALLOW_EMBEDDED_DATABASE: 'true', ISSUER: 'https://tessera.test', KEY_ENCRYPTION_KEY: TEST_KEK }
    const res = await runCli(t, ['dev', 'admin-token'], prod)
    t.equal(res.code, 2)
    t.equal(res.stdout, '')
    t.match(res.stderr, /refused in production/)
  })

  t.test('after a crash: the stale lock and socket are handled, by the CLI and by the next server', async (t) => {
    const first = server
    first.child.kill('SIGKILL')
    await first.exited
    t.ok(existsSync(socketPath), 'the crashed server left its socket')
    checkLogs(t, first, secrets)
    const direct = await runCli(t, ['users', 'list'], env)
    t.equal(direct.code, 0, direct.stderr)
    t.same((JSON.parse(direct.stdout) as Array<{ username: string }>).map((u) => u.username).sort(), ['alice', 'bob', 'demo'], 'the CLI opened the database directly')

    server = startServer(top, 'embedded-again', env, port)
    await waitReady(server, 240_000)
    t.ok(statSync(socketPath).isSocket())
    t.equal(mode(socketPath), 0o600)
    const beside = await runCli(t, ['clients', 'list'], env)
    t.equal(beside.code, 0, beside.stderr)
    t.ok((JSON.parse(beside.stdout) as Array<{ name: string }>).some((c) => c.name === 'svc'))
    const again = await runCli(t, ['dev', 'admin-token'], env)
    t.equal(again.code, 0, again.stderr)
    const keys = await fetch(`${server.url}/admin/keys`, { headers: { authorization: `Bearer ${again.stdout.trim()}` } })
    t.equal(keys.status, 200, 'the same admin client, at the restarted server')
    secrets.push(again.stdout.trim())
  })

  t.test('a clean stop removes the socket; the CLI then opens the database directly', async (t) => {
    server.child.kill('SIGTERM')
    const exit = await exitWithin(server, 60_000)
    t.same(exit, { code: 0, signal: null })
    t.notOk(existsSync(socketPath), 'socket removed')
    t.notOk(existsSync(lockFile), 'lock released')
    const res = await runCli(t, ['users', 'list'], env)
    t.equal(res.code, 0, res.stderr)
    t.equal((JSON.parse(res.stdout) as unknown[]).length, 3)
    t.notOk(existsSync(socketPath), 'a command serves no socket')
    checkLogs(t, server, secrets)
  })
})
