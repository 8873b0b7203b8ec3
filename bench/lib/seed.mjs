// Seeding Tessera's benchmark database: users and clients through the CLI (as an operator
// would), the refresh-token pool directly in SQL (the CLI cannot mint refresh tokens, and a
// pool of 100k+ must take seconds, not minutes).
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'
import { runCommand } from './proc.mjs'

/** Exactly like src/tokens/refresh-token.ts: `tsr_` + 256 random bits, base64url; stored as SHA-256. */
export const newRefreshToken = () => 'tsr_' + randomBytes(32).toString('base64url')
export const hashRefreshToken = (token) => createHash('sha256').update(token, 'utf8').digest()

/**
 * Inserts `count` refresh tokens of client `clientId`, each the only token of its own family (scope
 * "openid read", owners taken in turn from `userIds`), in batches of one transaction each, over
 * the connected client `c`; returns { tokens, hashes }.
 */
async function insertFamilies(c, clientId, userIds, count) {
  const tokens = []
  const hashes = []
  const BATCH = 5000
  for (let done = 0; done < count; done += BATCH) {
    const n = Math.min(BATCH, count - done)
    const fams = []
    const owners = []
    const hexes = []
    for (let i = 0; i < n; i++) {
      const t = newRefreshToken()
      const h = hashRefreshToken(t)
      tokens.push(t)
      hashes.push(h)
      fams.push(randomUUID())
      owners.push(userIds[(done + i) % userIds.length])
      hexes.push(h.toString('hex'))
    }
    await c.query('BEGIN')
    await c.query(
      `INSERT INTO refresh_token_family (id, client_id, user_id, scope, auth_time, expires_at, last_used_at)
       SELECT f, $1, u, 'openid read', now(), now() + interval '30 days', now() FROM unnest($2::uuid[], $3::uuid[]) AS t(f, u)`,
      [clientId, fams, owners],
    )
    await c.query(
      `INSERT INTO refresh_token (family_id, token_hash, expires_at)
       SELECT f, decode(h, 'hex'), least(now() + interval '14 days', now() + interval '30 days') FROM unnest($1::uuid[], $2::text[]) AS t(f, h)`,
      [fams, hexes],
    )
    await c.query('COMMIT')
  }
  return { tokens, hashes }
}

/** Creates database `name` in the cluster of `adminUrl`; returns its URL. */
export async function createDatabase(adminUrl, name) {
  const c = new pg.Client({ connectionString: adminUrl })
  await c.connect()
  try {
    await c.query(`DROP DATABASE IF EXISTS "${name}"`)
    await c.query(`CREATE DATABASE "${name}"`)
  } finally {
    await c.end()
  }
  const u = new URL(adminUrl)
  u.pathname = `/${name}`
  return u.toString()
}

/** Runs `node bin/tessera.js ...args`; resolves its parsed JSON output. */
export async function tesseraCli(root, env, args, input) {
  const r = await runCommand(process.execPath, ['bin/tessera.js', ...args], { cwd: root, env, input })
  if (r.code !== 0) throw new Error(`tessera ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`)
  const out = r.stdout.trim()
  try {
    return JSON.parse(out)
  } catch {
    return out
  }
}

/**
 * Seeds Tessera:
 *  - `bench-user` (through the CLI, so its hash has the configured argon2 parameters) and
 *    `userCount` more users with the same hash (inserted in SQL; owners of the refresh families);
 *  - a confidential client_credentials client `bench-service` (scopes read, write);
 *  - a confidential first-party client `bench-app` (password, refresh_token; scopes openid, read;
 *    ES256 ID tokens, like the node-oidc-provider peer's, so that both sign the same work);
 *  - `refreshCount` refresh tokens of bench-app, each the only token of its own family
 *    (scope "openid read", family expiry now + 30 d, token expiry now + 14 d), returned in memory;
 *  - `ceilingRefreshCount` more such tokens, returned apart: the pool of the fair refresh ceiling
 *    (bench/lib/bare-refresh-server.mjs), so neither server ever gets a token the other spent;
 *  - `chainStarts` more such tokens whose hashes go to table bench_chain_start, for the rotation
 *    ceiling (pgbench follows a chain from each start).
 */
export async function seedTessera({ root, env, dbUrl, userCount = 1000, refreshCount, ceilingRefreshCount = 0, chainStarts = 0, log }) {
  const password = `bench-${randomBytes(12).toString('base64url')}`
  const user = await tesseraCli(root, env, ['users', 'create', '--username', 'bench-user', '--password-stdin'], password)
  const service = await tesseraCli(root, env, ['clients', 'create', '--name', 'bench-service', '--grant-types', 'client_credentials', '--scopes', 'read,write'])
  const app = await tesseraCli(root, env, ['clients', 'create', '--name', 'bench-app', '--grant-types', 'password,refresh_token', '--scopes', 'openid,read', '--refresh-delivery', 'body', '--id-token-signed-response-alg', 'ES256'])

  const c = new pg.Client({ connectionString: dbUrl })
  await c.connect()
  const started = performance.now()
  try {
    const { rows } = await c.query(
      `INSERT INTO app_user (username, password_hash)
       SELECT 'bench-u' || g, (SELECT password_hash FROM app_user WHERE id = $1) FROM generate_series(1, $2::int) AS g
       RETURNING id`,
      [user.id, userCount],
    )
    const userIds = [user.id, ...rows.map((r) => r.id)]

    const pool = await insertFamilies(c, app.client_id, userIds, refreshCount)
    const ceilingPool = ceilingRefreshCount > 0 ? await insertFamilies(c, app.client_id, userIds, ceilingRefreshCount) : { tokens: [] }
    if (chainStarts > 0) {
      const chain = await insertFamilies(c, app.client_id, userIds, chainStarts)
      await c.query('CREATE TABLE bench_chain_start (n bigint PRIMARY KEY, token_hash bytea NOT NULL)')
      await c.query('CREATE SEQUENCE bench_chain_seq')
      await c.query('INSERT INTO bench_chain_start (n, token_hash) SELECT row_number() OVER (), decode(h, \'hex\') FROM unnest($1::text[]) AS t(h)', [chain.hashes.map((h) => h.toString('hex'))])
    }
    await c.query('VACUUM ANALYZE')
    log?.(`seeded ${userIds.length} users, ${refreshCount + ceilingRefreshCount + chainStarts} refresh families/tokens in ${((performance.now() - started) / 1000).toFixed(1)} s`)
    return {
      user: { id: user.id, username: user.username, password },
      service: { id: service.client_id, secret: service.client_secret },
      app: { id: app.client_id, secret: app.client_secret },
      refreshTokens: pool.tokens,
      ceilingRefreshTokens: ceilingPool.tokens,
      userCount: userIds.length,
      userIds,
    }
  } finally {
    await c.end()
  }
}

/**
 * Seeds `count` more refresh tokens of `clientId` (owners `userIds`, as seedTessera made them), later
 * in a run: scale_out's pool, so the refresh scenario before it runs on the tables it always had.
 */
export async function addRefreshFamilies({ dbUrl, clientId, userIds, count, log }) {
  const c = new pg.Client({ connectionString: dbUrl })
  await c.connect()
  const started = performance.now()
  try {
    const { tokens } = await insertFamilies(c, clientId, userIds, count)
    await c.query('VACUUM ANALYZE refresh_token_family')
    await c.query('VACUUM ANALYZE refresh_token')
    log?.(`seeded ${count} more refresh families/tokens in ${((performance.now() - started) / 1000).toFixed(1)} s`)
    return tokens
  } finally {
    await c.end()
  }
}
