// Three real `tessera serve` processes on one PostgreSQL run the key schedule at once, on a
// 10-second rotation interval (SECURITY E #88, K #143, #145): each rotation creates exactly one key,
// every instance serves the same JWKS, and tokens of every instance verify through any JWKS.
// Needs a built dist/ (`npm run build`) and `npm test`'s PostgreSQL.
import { setTimeout as sleep } from 'node:timers/promises'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import t from 'tap'
import { freshDatabase } from '../helpers/app.js'
import { API, exitWithin, freePort, getJwks, runCli, sharedDatabaseEnv, sqlClient, startServer, token, waitReady, type Body, type Server } from '../helpers/processes.js'

t.test('three processes, one schedule: exactly one new key per rotation, the same JWKS everywhere', async (t) => {
  const url = await freshDatabase(t)
  const env = sharedDatabaseEnv(t, url, {
    // Publish lead = 0 + 1 + 0 = 1 s; a new key every 10 s.
    KEY_ROTATION_INTERVAL_SECONDS: '10',
    JWKS_MAX_AGE_SECONDS: '0',
    KEY_CLOCK_SKEW_SECONDS: '0',
  })
  t.equal((await runCli(t, ['migrate'], env)).code, 0)
  const created = await runCli(t, ['clients', 'create', '--name', 'api', '--grant-types', 'client_credentials', '--scopes', 'read', '--audience', API], env)
  t.equal(created.code, 0, created.stderr)
  const c = JSON.parse(created.stdout) as Body
  const client = { id: c.client_id as string, secret: c.client_secret as string }
  const sql = await sqlClient(t, url)

  const servers: Server[] = []
  for (const name of ['A', 'B', 'C']) servers.push(startServer(t, name, env, await freePort()))
  await Promise.all(servers.map((s) => waitReady(s, 60_000)))

  // Two and a half rotation intervals, with tokens from every instance all along.
  const tokens: string[] = []
  const started = Date.now()
  while (Date.now() - started < 25_000) {
    for (const s of servers) {
      const res = await token(s.url, client, { grant_type: 'client_credentials' })
      t.equal(res.status, 200, `${s.name}: token`)
      tokens.push(res.body.access_token as string)
    }
    await sleep(500)
  }
  // Each key line (ES256 for access tokens, RS256 for ID tokens) runs its own schedule.
  for (const line of ['ES256', 'RS256']) {
    const { rows } = await sql.query<{ kid: string; state: string; created_at: Date; activated_at: Date | null }>('select kid, state, created_at, activated_at from signing_key where alg = $1 order by created_at', [line])
    t.comment(`${line}:\n` + rows.map((r) => `${r.state} created ${r.created_at.toISOString()} activated ${r.activated_at?.toISOString()}`).join('\n'))
    t.ok(rows.length >= 4 && rows.length <= 5, `${line}: ${rows.length} keys in 25 s: the initial one, its standby, and one standby per rotation`)
    t.equal(rows.filter((r) => r.state === 'active').length, 1, `${line}: one active key`)
    t.ok(rows.filter((r) => r.state === 'pending').length <= 1, `${line}: at most one pending key`)
    t.ok(rows[1]!.created_at.getTime() - rows[0]!.created_at.getTime() < 8000, `${line}: the first standby is published at start`)
    for (let i = 2; i < rows.length; i++) {
      const gap = rows[i]!.created_at.getTime() - rows[i - 1]!.created_at.getTime()
      // A rotation step that ran late on a loaded machine shortens the gap to the next one, but
      // a second key made by another instance for the same step would follow within milliseconds.
      t.ok(gap >= 2000, `${line}: key ${i} created ${gap} ms after key ${i - 1}: no instance made a second one`)
    }
    for (const r of rows.slice(1)) {
      if (r.activated_at) t.ok(r.activated_at.getTime() - r.created_at.getTime() >= 1000, `${line}: published at least the lead before it signed`)
    }
  }

  // Every instance serves the same key set, and every token verifies through it.
  let jwks = await Promise.all(servers.map((s) => getJwks(s.url)))
  const deadline = Date.now() + 3000
  while (Date.now() < deadline && new Set(jwks.map((j) => j.etag)).size !== 1) {
    await sleep(100)
    jwks = await Promise.all(servers.map((s) => getJwks(s.url)))
  }
  t.equal(new Set(jwks.map((j) => j.etag)).size, 1, 'the same ETag on every instance')
  const kids = new Set(tokens.map((tok) => decodeProtectedHeader(tok).kid))
  t.ok(kids.size >= 2, `tokens were signed by ${kids.size} keys`)
  let failures = 0
  for (const tok of tokens) {
    await jwtVerify(tok, createLocalJWKSet(jwks[0]!.jwks), { issuer: 'https://tessera.test', audience: API, typ: 'at+jwt' }).catch(() => failures++)
  }
  t.equal(failures, 0, 'every token of every instance verifies through the JWKS')

  for (const s of servers) s.child.kill('SIGTERM')
  for (const s of servers) t.same(await exitWithin(s, 15_000), { code: 0, signal: null }, `${s.name} exits 0`)
  const stderr = servers.map((s) => s.stderr.join('')).join('')
  t.notMatch(stderr, /duplicate key|unique/i, 'no instance hit the one-pending index')
})
