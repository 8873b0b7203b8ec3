// Changes reach every instance at once, and the operator knows when (docs/operations.md "Changes reach every
// instance"; DESIGN "Running and scaling"; SECURITY K #139, #140): three real `tessera serve`
// processes on one PostgreSQL, and commands in a fourth. The moment `tessera keys revoke` or
// `tessera clients disable` returns, every instance refuses the tokens it concerns, and the
// command's JSON lists three confirmations. Their LISTEN connections are killed and come back; an
// instance frozen with SIGSTOP is reported unconfirmed within the bound, and the command exits 0.
// Caches are kept for 10 minutes here, so nothing but the propagation can explain a refusal.
// Needs a built dist/ (`npm run build`) and `npm test`'s PostgreSQL.
import { setTimeout as sleep } from 'node:timers/promises'
import { decodeProtectedHeader } from 'jose'
import t from 'tap'
import { basic, FORM, form, freshDatabase } from '../helpers/app.js'
import { ALICE_PASSWORD, API, exitWithin, freePort, runCli, sharedDatabaseEnv, sqlClient, startServer, token, waitReady, type Body, type Client, type Server } from '../helpers/processes.js'

/** POST /introspect on `server`, as the resource server `rs`. */
async function introspect(server: Server, rs: Client, tok: string): Promise<Body> {
  const res = await fetch(`${server.url}/introspect`, { method: 'POST', headers: { ...FORM, authorization: basic(rs.id, rs.secret) }, body: form({ token: tok }) })
  if (res.status !== 200) throw new Error(`${server.name} /introspect: ${res.status} ${await res.text()}`)
  return res.json()
}

/** GET /userinfo on `server`: the status. */
async function userinfo(server: Server, tok: string): Promise<number> {
  const res = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${tok}` } })
  await res.arrayBuffer()
  return res.status
}

/** The pids in a `propagation` list, sorted. */
const pids = (list: Array<{ pid: number }>) => list.map((i) => i.pid).sort((a, b) => a - b)

t.test('a key revoke and a client disable made by a command are refused by every instance the moment the command returns', async (t) => {
  const url = await freshDatabase(t)
  // Clients and full key reloads only every 10 minutes: a refusal comes from the propagation.
  const env = sharedDatabaseEnv(t, url, { CACHE_REFRESH_SECONDS: '600' })
  t.equal((await runCli(t, ['migrate'], env)).code, 0, 'migrate')
  t.equal((await runCli(t, ['users', 'create', '--username', 'alice', '--password-stdin'], env, ALICE_PASSWORD + '\n')).code, 0, 'users create')
  const cli = async (args: string[]) => {
    const res = await runCli(t, args, env)
    if (res.code !== 0) throw new Error(`tessera ${args.join(' ')}: ${res.code} ${res.stderr}`)
    return JSON.parse(res.stdout) as Body
  }
  // A resource server that introspects, and an app whose tokens name it in their audience.
  const rsJson = await cli(['clients', 'create', '--name', 'rs', '--grant-types', 'client_credentials', '--scopes', 'read'])
  const rs: Client = { id: rsJson.client_id, secret: rsJson.client_secret }
  const appJson = await cli(['clients', 'create', '--name', 'app', '--grant-types', 'client_credentials,password', '--scopes', 'openid,read', '--audience', `${rs.id},${API}`])
  const app: Client = { id: appJson.client_id, secret: appJson.client_secret }
  const sql = await sqlClient(t, url)

  const servers: Server[] = []
  for (const name of ['A', 'B', 'C']) servers.push(startServer(t, name, env, await freePort()))
  await Promise.all(servers.map((s) => waitReady(s, 60_000)))
  const serverPids = pids(servers.map((s) => ({ pid: s.child.pid! })))
  const heartbeats = await sql.query<{ pid: number; host: string }>('select pid, host from instance_heartbeat order by pid')
  t.same(heartbeats.rows.map((r) => r.pid), serverPids, 'one heartbeat row per instance, with its pid')

  /** A user token (openid: /userinfo) and a client token of `app`, each seen live on every instance (which also fills their caches). */
  const liveTokens = async (what: string) => {
    const user = await token(servers[0]!.url, app, { grant_type: 'password', username: 'alice', password: ALICE_PASSWORD, scope: 'openid read' })
    const client = await token(servers[1]!.url, app, { grant_type: 'client_credentials', scope: 'read' })
    t.equal(user.status, 200, `${what}: a password token`)
    t.equal(client.status, 200, `${what}: a client_credentials token`)
    const tokens = { user: user.body.access_token as string, client: client.body.access_token as string }
    for (const s of servers) {
      t.equal((await introspect(s, rs, tokens.user)).active, true, `${what}: ${s.name} finds the user token active`)
      t.equal((await introspect(s, rs, tokens.client)).active, true, `${what}: ${s.name} finds the client token active`)
      t.equal(await userinfo(s, tokens.user), 200, `${what}: ${s.name} answers /userinfo`)
    }
    return tokens
  }
  /** Every instance refuses `tokens`, asked right after the command returned. */
  const refusedEverywhere = async (tokens: { user: string; client: string }, what: string) => {
    // All instances at once: no instance gets extra time from the answers of the others.
    const answers = await Promise.all(servers.map(async (s) => ({ s, user: await introspect(s, rs, tokens.user), client: await introspect(s, rs, tokens.client), info: await userinfo(s, tokens.user) })))
    for (const { s, user, client, info } of answers) {
      t.same(user, { active: false }, `${what}: ${s.name} /introspect of the user token: inactive`)
      t.same(client, { active: false }, `${what}: ${s.name} /introspect of the client token: inactive`)
      t.equal(info, 401, `${what}: ${s.name} /userinfo: 401`)
    }
  }
  const figures: string[] = []

  t.test('keys revoke: every instance refuses the revoked key\'s tokens when the command returns; three confirmations', async (t) => {
    const tokens = await liveTokens('before the revoke')
    const kid = decodeProtectedHeader(tokens.user).kid!
    const res = await runCli(t, ['keys', 'revoke', kid, '--reason', 'propagation test'], env)
    t.equal(res.code, 0, res.stderr)
    await refusedEverywhere(tokens, 'after keys revoke')
    const out = JSON.parse(res.stdout) as Body
    t.match(out, { kid, state: 'revoked', already_revoked: false, successor: String }, 'the usual answer')
    t.same(pids(out.propagation.confirmed), serverPids, 'three confirmations: A, B and C')
    t.same(out.propagation.unconfirmed, [], 'none unconfirmed')
    for (const i of out.propagation.confirmed) t.ok(i.change_version >= out.propagation.version, `${i.pid} applied version ${i.change_version} >= ${out.propagation.version}`)
    t.equal(res.stderr, '', 'no warning')
    figures.push(`keys revoke: ${out.propagation.waited_ms} ms from the commit to the last of three confirmations`)
    t.comment(figures.at(-1)!)
    // A confirmation names the change version applied; the key set reported beside it can trail by
    // one heartbeat when a schedule step (a new standby) lands meanwhile: wait for them to agree.
    const keySets = async () => new Set((await sql.query('select key_set_version from instance_heartbeat')).rows.map((r) => r.key_set_version)).size
    const until = Date.now() + 5000
    while ((await keySets()) !== 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
    t.equal(await keySets(), 1, 'every instance reports the same key set')
  })

  t.test('the LISTEN connections are killed: each instance reconnects and LISTENs again', async (t) => {
    const listeners = `select pid from pg_stat_activity where datname = current_database() and application_name = 'tessera-listen'`
    t.equal((await sql.query(listeners)).rows.length, 3, 'three LISTEN connections')
    const killedAt = (await sql.query<{ at: Date }>('select clock_timestamp() as at')).rows[0]!.at
    const { rows } = await sql.query(`select pg_terminate_backend(pid) as ok from (${listeners}) l`)
    t.same(rows, [{ ok: true }, { ok: true }, { ok: true }], 'terminated')
    const logged = (s: Server) => /no LISTEN connection; reconnecting[\s\S]*listening again/.test(s.stdout.join('').split('\n').filter((l) => l.includes('change listener')).join('\n'))
    const deadline = Date.now() + 30_000
    let listening = 0
    while (Date.now() < deadline) {
      // New connections (the last query shown may be the listener's periodic liveness check, not LISTEN).
      listening = (await sql.query(`${listeners} and backend_start > $1`, [killedAt])).rows.length
      if (listening === 3 && servers.every(logged)) break // log lines are written asynchronously
      await sleep(50)
    }
    t.equal(listening, 3, 'three LISTEN connections again')
    for (const s of servers) t.ok(logged(s), `${s.name} logged the loss and the reconnection`)
  })

  t.test('clients disable: every instance refuses the client\'s tokens when the command returns; three confirmations', async (t) => {
    const tokens = await liveTokens('before the disable')
    const res = await runCli(t, ['clients', 'disable', '--id', app.id], env)
    t.equal(res.code, 0, res.stderr)
    await refusedEverywhere(tokens, 'after clients disable')
    for (const s of servers) {
      const cc = await fetch(`${s.url}/token`, { method: 'POST', headers: { ...FORM, authorization: basic(app.id, app.secret) }, body: form({ grant_type: 'client_credentials' }) })
      t.equal(cc.status, 401, `${s.name}: the client cannot authenticate`)
      await cc.arrayBuffer()
    }
    const out = JSON.parse(res.stdout) as Body
    t.match(out, { client_id: app.id, disabled: true })
    t.same(pids(out.propagation.confirmed), serverPids, 'three confirmations')
    t.same(out.propagation.unconfirmed, [])
    figures.push(`clients disable (after the LISTEN reconnection): ${out.propagation.waited_ms} ms from the commit to the last of three confirmations`)
    t.comment(figures.at(-1)!)
  })

  t.test('an instance frozen with SIGSTOP: the revoke reports it unconfirmed after its bound, exits 0, and it catches up when it resumes', async (t) => {
    const other = await cli(['clients', 'create', '--name', 'other', '--grant-types', 'client_credentials', '--scopes', 'read', '--audience', rs.id])
    const c2: Client = { id: other.client_id, secret: other.client_secret }
    const tok = (await token(servers[0]!.url, c2, { grant_type: 'client_credentials', scope: 'read' })).body.access_token as string
    for (const s of servers) t.equal((await introspect(s, rs, tok)).active, true, `${s.name}: active before`)
    const frozen = servers[2]!
    frozen.child.kill('SIGSTOP')
    t.teardown(() => { frozen.child.kill('SIGCONT') })
    const started = performance.now()
    // Under the default staleness bound: C is reported whether its last heartbeat was still fresh
    // when the wait began (unconfirmed) or already stale (stale) — never left out.
    const res = await runCli(t, ['keys', 'revoke', decodeProtectedHeader(tok).kid!, '--wait', '3'], env)
    const elapsed = Math.round(performance.now() - started)
    t.equal(res.code, 0, 'exit 0: the change is committed')
    const out = JSON.parse(res.stdout) as Body
    t.same(pids(out.propagation.confirmed), serverPids.filter((p) => p !== frozen.child.pid), 'A and B confirmed')
    const behind = [...out.propagation.unconfirmed, ...out.propagation.stale]
    t.same(pids(behind), [frozen.child.pid], `C did not (${out.propagation.unconfirmed.length ? 'unconfirmed' : 'stale'})`)
    t.ok(behind[0].change_version < out.propagation.version, 'C is behind')
    if (out.propagation.unconfirmed.length > 0) {
      t.ok(out.propagation.waited_ms >= 3000, `it waited the whole bound (${out.propagation.waited_ms} ms)`)
      // The loop ends at the first look past the deadline (a 20 ms pause, one query): its own figure, not a speed claim.
      t.ok(out.propagation.waited_ms < 4000, 'and stopped at the bound')
      t.match(res.stderr, new RegExp(`warning: the change is committed, but 1 instance\\(s\\) did not confirm it within \\d+ ms: [0-9a-f-]{36} \\([^)]*, pid ${frozen.child.pid}\\)`))
    } else {
      t.match(res.stderr, new RegExp(`warning: 1 instance\\(s\\) have not sent a heartbeat for over INSTANCE_STALE_SECONDS .*: [0-9a-f-]{36} \\([^)]*, pid ${frozen.child.pid}\\)`))
    }
    for (const s of servers.slice(0, 2)) t.same(await introspect(s, rs, tok), { active: false }, `${s.name}: refuses it`)
    figures.push(`a frozen instance: the command returned after ${elapsed} ms (process start included), waited_ms ${out.propagation.waited_ms}`)
    t.comment(figures.at(-1)!)

    frozen.child.kill('SIGCONT')
    let caughtUp = false
    const deadline = Date.now() + 30_000
    while (!caughtUp && Date.now() < deadline) {
      const { rows } = await sql.query<{ v: string }>('select change_version::text as v from instance_heartbeat where pid = $1', [frozen.child.pid])
      caughtUp = Number(rows[0]?.v) >= out.propagation.version
      if (!caughtUp) await sleep(50)
    }
    t.ok(caughtUp, 'resumed, C applies the revoke and says so in its heartbeat')
    t.same(await introspect(frozen, rs, tok), { active: false }, 'C refuses the token now')
  })

  t.test('shutdown: each instance removes its heartbeat row', async (t) => {
    for (const s of servers) s.child.kill('SIGTERM')
    for (const s of servers) t.same(await exitWithin(s, 15_000), { code: 0, signal: null }, `${s.name} exits 0`)
    t.same((await sql.query('select * from instance_heartbeat')).rows, [], 'no heartbeat left: nobody waits for a stopped instance')
    t.comment(`measured: ${figures.join('; ')}`)
  })
})
