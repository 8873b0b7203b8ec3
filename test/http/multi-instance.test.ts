// Rotation across real server processes (DESIGN.md rotation promises 1, 2 and 5): three
// `tessera serve` processes on one PostgreSQL share 240 simultaneous refreshes of one token;
// then a grandparent replay on one instance ends the family for all of them.
import { createHash } from 'node:crypto'
import { decodeJwt } from 'jose'
import t from 'tap'
import { freshDatabase } from '../helpers/app.js'
import { ALICE_PASSWORD, API, checkLogs, exitWithin, freePort, runCli, sharedDatabaseEnv, sqlClient, startServer, token, waitReady, type Body } from '../helpers/processes.js'

const INSTANCES = 3
const REFRESHES = 240

t.test(`${INSTANCES} instances, ${REFRESHES} simultaneous refreshes of one token, then a grandparent replay`, async (t) => {
  const url = await freshDatabase(t)
  const env = sharedDatabaseEnv(t, url, { REFRESH_GRACE_SECONDS: '30' })
  t.equal((await runCli(t, ['migrate'], env)).code, 0, 'migrate')
  t.equal((await runCli(t, ['users', 'create', '--username', 'alice', '--password-stdin'], env, ALICE_PASSWORD + '\n')).code, 0, 'users create')
  const created = await runCli(t, ['clients', 'create', '--name', 'api', '--grant-types', 'password,refresh_token', '--scopes', 'openid,read', '--audience', API], env)
  t.equal(created.code, 0, `clients create: ${created.stderr}`)
  const createdJson = JSON.parse(created.stdout) as Body
  const client = { id: createdJson.client_id as string, secret: createdJson.client_secret as string }

  const sql = await sqlClient(t, url)

  const ports = new Set<number>()
  while (ports.size < INSTANCES) ports.add(await freePort())
  const servers = [...ports].map((port, i) => startServer(t, String.fromCharCode(65 + i), env, port))
  await Promise.all(servers.map((s) => waitReady(s, 60_000)))

  const login = await token(servers[0]!.url, client, { grant_type: 'password', username: 'alice', password: ALICE_PASSWORD, scope: 'openid read' })
  t.equal(login.status, 200, 'login on A')
  const rt = login.body.refresh_token as string
  const familyId = decodeJwt(login.body.access_token as string).sid as string

  const started = performance.now()
  const results = await Promise.all(
    Array.from({ length: REFRESHES }, (_, i) => token(servers[i % INSTANCES]!.url, client, { grant_type: 'refresh_token', refresh_token: rt })),
  )
  const elapsed = Math.round(performance.now() - started)
  const statuses = results.reduce<Record<number, number>>((m, r) => ({ ...m, [r.status]: (m[r.status] ?? 0) + 1 }), {})
  t.comment(`${REFRESHES} refreshes over ${INSTANCES} instances in ${elapsed} ms: statuses ${JSON.stringify(statuses)}`)
  t.equal(results.filter((r) => r.status >= 500).length, 0, 'no 5xx')
  const successes = results.filter((r) => r.status === 200)
  t.equal(successes.length, REFRESHES, 'every request succeeds: one rotation, the rest retries within the grace window')
  const values = new Set(successes.map((r) => r.body.refresh_token as string))
  t.equal(values.size, 1, 'exactly one successor value among the successes')
  t.equal(new Set(successes.map((r) => r.body.access_token as string)).size, successes.length, 'each success has its own access token')
  for (const [i, s] of servers.entries()) {
    t.ok(results.some((r, j) => j % INSTANCES === i && r.status === 200), `instance ${s.name} answered`)
  }

  const { rows: tokens } = await sql.query<{ n: number; used: number }>('select count(*)::int as n, count(used_at)::int as used from refresh_token where family_id = $1', [familyId])
  t.same(tokens, [{ n: 2, used: 1 }], 'two tokens in the family: the presented one (used) and its one successor')
  const { rows: fam } = await sql.query<{ revoked_at: Date | null }>('select revoked_at from refresh_token_family where id = $1', [familyId])
  t.equal(fam[0]?.revoked_at, null, 'the family is intact')
  const { rows: audit } = await sql.query<{ type: string; n: number }>('select type, count(*)::int as n from audit_event where family_id = $1 group by type order by type', [familyId])
  t.comment(`audit: ${JSON.stringify(audit)}`)
  t.same(audit, [
    { type: 'login.succeeded', n: 1 },
    { type: 'refresh_token.issued', n: 1 },
    { type: 'refresh_token.retried', n: REFRESHES - 1 },
    { type: 'refresh_token.rotated', n: 1 },
  ], 'one rotation and every other request audited as a retry')

  // The successor rotates on B; then the grandparent (the login token) is replayed on C.
  const successor = [...values][0]!
  const next = await token(servers[1]!.url, client, { grant_type: 'refresh_token', refresh_token: successor })
  t.equal(next.status, 200, 'the successor rotates on B')
  const replay = await token(servers[2 % INSTANCES]!.url, client, { grant_type: 'refresh_token', refresh_token: rt })
  t.same(replay, { status: 400, body: { error: 'invalid_grant', error_description: 'refresh token is invalid' } }, 'grandparent replay on C: invalid_grant')
  const { rows: revoked } = await sql.query<{ revoked_reason: string }>('select revoked_reason from refresh_token_family where id = $1', [familyId])
  t.same(revoked, [{ revoked_reason: 'reuse_detected' }], 'the family is revoked for reuse')
  for (const s of servers) {
    const dead = await token(s.url, client, { grant_type: 'refresh_token', refresh_token: next.body.refresh_token })
    t.equal(dead.status, 400, `${s.name}: the newest refresh token is dead`)
    const info = await fetch(`${s.url}/userinfo`, { headers: { authorization: `Bearer ${next.body.access_token}` } })
    t.equal(info.status, 401, `${s.name}: the family's newest access token is refused`)
    await info.arrayBuffer()
  }
  const { rows: reuse } = await sql.query<{ n: number }>(`select count(*)::int as n from audit_event where family_id = $1 and type = 'refresh_token.reuse_detected'`, [familyId])
  t.equal(reuse[0]?.n, 1, 'one reuse_detected event')
  const { rows: hashes } = await sql.query<{ n: number }>('select count(*)::int as n from refresh_token where token_hash = $1', [createHash('sha256').update(successor).digest()])
  t.equal(hashes[0]?.n, 1, 'the successor is stored once, as a hash')

  for (const s of servers) s.child.kill('SIGTERM')
  const exits = await Promise.all(servers.map((s) => exitWithin(s, 15_000)))
  t.same(exits, servers.map(() => ({ code: 0, signal: null })), 'every instance exits 0 on SIGTERM')
  const secrets = [ALICE_PASSWORD, client.secret, rt, successor, next.body.refresh_token, login.body.access_token]
  for (const s of servers) checkLogs(t, s, secrets)
})
