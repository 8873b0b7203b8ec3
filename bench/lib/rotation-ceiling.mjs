// The storage ceiling of refresh: the raw rate of Tessera's rotation transaction on the same
// PostgreSQL, without HTTP, JSON or JWT signing. The statements are those of `rotate()` in
// src/tokens/refresh-tokens.store.ts, in the same order, with the same round trips:
//
//   BEGIN
//   find the presented token by its SHA-256, joined with its family and user,
//     locking the token and family rows (FOR UPDATE OF t, f)
//   one statement: audit event refresh_token.rotated, successor insert, parent marked used
//     (pointing at its successor), family's last-used columns
//   COMMIT
//
// Each client follows a chain: it starts from a fresh seeded token (table bench_chain_start,
// handed out by a sequence) and then always presents the successor it just inserted, so no token
// is ever presented twice and the pool never runs out. pgbench (extended query protocol, like
// node-postgres) when it is installed, else the same loop in Node with pg.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { runCommand } from './proc.mjs'
import { percentile } from './util.mjs'

const IDLE_SECONDS = 14 * 86_400

const PGBENCH_SCRIPT = `
\\if :started = 0
SELECT token_hash AS hash FROM bench_chain_start WHERE n = (SELECT nextval('bench_chain_seq')) \\gset
\\set started 1
\\endif
BEGIN;
SELECT t.id AS tid, t.used_at, f.id AS fid, f.client_id AS cid, f.user_id AS uid, f.scope, f.auth_time, f.expires_at AS fexp, f.revoked_at, u.disabled_at AS user_disabled_at, u.username, u.roles, f.expires_at <= now() AS family_expired, t.expires_at <= now() AS token_expired FROM refresh_token AS t INNER JOIN refresh_token_family AS f ON f.id = t.family_id INNER JOIN app_user AS u ON u.id = f.user_id WHERE t.token_hash = :hash FOR UPDATE OF t, f \\gset
WITH audit AS (INSERT INTO audit_event (type, client_id, user_id, family_id, ip, user_agent, detail) VALUES ('refresh_token.rotated', :cid, :uid, :fid, '127.0.0.1', 'pgbench', '{}')), successor AS (INSERT INTO refresh_token (family_id, token_hash, parent_id, expires_at) VALUES (:fid, sha256(uuid_send(gen_random_uuid())), :tid, least(now() + make_interval(secs => ${IDLE_SECONDS}), :fexp)) RETURNING id, token_hash), parent AS (UPDATE refresh_token SET used_at = now(), successor_id = (SELECT id FROM successor) WHERE id = :tid) UPDATE refresh_token_family SET last_used_at = now(), last_ip = '127.0.0.1', last_user_agent = 'pgbench' WHERE id = :fid RETURNING (SELECT token_hash FROM successor) AS hash \\gset
COMMIT;
`

export function findPgbench(binDir) {
  if (binDir && existsSync(join(binDir, 'pgbench'))) return join(binDir, 'pgbench')
  const r = spawnSync('sh', ['-c', 'command -v pgbench'], { encoding: 'utf8' })
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null
}

/** One pgbench run; `{ tps, p50, p99, transactions, failed }` (latencies in ms). */
async function pgbenchRun({ pgbench, url, clients, duration, workDir, tag }) {
  const script = join(workDir, 'rotation.sql')
  writeFileSync(script, PGBENCH_SCRIPT)
  const prefix = `pgbench-${tag}`
  const r = await runCommand(pgbench, ['-n', '-M', 'extended', '-c', String(clients), '-j', '1', '-T', String(Math.max(1, Math.round(duration))), '-D', 'started=0', '-f', script, '-l', `--log-prefix=${prefix}`, url], { cwd: workDir })
  const logs = readdirSync(workDir).filter((f) => f.startsWith(prefix + '.'))
  const latUs = []
  for (const f of logs) {
    for (const line of readFileSync(join(workDir, f), 'utf8').split('\n')) {
      const parts = line.split(' ')
      // client_id transaction_no time script_no time_epoch time_us
      if (parts.length >= 6 && parts[2] !== 'failed' && parts[2] !== 'skipped') latUs.push(Number(parts[2]))
    }
    rmSync(join(workDir, f), { force: true })
  }
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout)
  const failed = /number of failed transactions: (\d+)/.exec(r.stdout)
  if (r.code !== 0 || !tps) throw new Error(`pgbench failed (exit ${r.code}):\n${r.stdout}${r.stderr}`)
  return {
    tps: Number(tps[1]),
    p50: percentile(latUs, 50) / 1000,
    p99: percentile(latUs, 99) / 1000,
    transactions: latUs.length,
    failed: failed ? Number(failed[1]) : 0,
    aborted: /aborted/i.test(r.stderr) ? r.stderr.trim().split('\n').slice(-3).join(' | ') : undefined,
  }
}

/** The same transaction in Node with pg, `clients` connections, for `duration` seconds. */
async function nodeRun({ url, clients, duration }) {
  const conns = await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = new pg.Client({ connectionString: url })
      await c.connect()
      return c
    }),
  )
  const lat = []
  const end = performance.now() + duration * 1000
  const start = performance.now()
  try {
    await Promise.all(
      conns.map(async (c) => {
        let hash = (await c.query("SELECT token_hash FROM bench_chain_start WHERE n = (SELECT nextval('bench_chain_seq'))")).rows[0].token_hash
        while (performance.now() < end) {
          const t0 = performance.now()
          await c.query('BEGIN')
          const row = (await c.query('SELECT t.id AS tid, t.used_at, f.id AS fid, f.client_id AS cid, f.user_id AS uid, f.scope, f.auth_time, f.expires_at AS fexp, f.revoked_at, u.disabled_at AS user_disabled_at, u.username, u.roles, f.expires_at <= now() AS family_expired, t.expires_at <= now() AS token_expired FROM refresh_token AS t INNER JOIN refresh_token_family AS f ON f.id = t.family_id INNER JOIN app_user AS u ON u.id = f.user_id WHERE t.token_hash = $1 FOR UPDATE OF t, f', [hash])).rows[0]
          const out = (await c.query(`WITH audit AS (INSERT INTO audit_event (type, client_id, user_id, family_id, ip, user_agent, detail) VALUES ('refresh_token.rotated', $4, $5, $1, '127.0.0.1', 'node', '{}')), successor AS (INSERT INTO refresh_token (family_id, token_hash, parent_id, expires_at) VALUES ($1, sha256(uuid_send(gen_random_uuid())), $2, least(now() + make_interval(secs => ${IDLE_SECONDS}), $3)) RETURNING id, token_hash), parent AS (UPDATE refresh_token SET used_at = now(), successor_id = (SELECT id FROM successor) WHERE id = $2) UPDATE refresh_token_family SET last_used_at = now(), last_ip = '127.0.0.1', last_user_agent = 'node' WHERE id = $1 RETURNING (SELECT token_hash FROM successor) AS hash`, [row.fid, row.tid, row.fexp, row.cid, row.uid])).rows[0]
          await c.query('COMMIT')
          hash = out.hash
          lat.push(performance.now() - t0)
        }
      }),
    )
  } finally {
    await Promise.all(conns.map((c) => c.end().catch(() => undefined)))
  }
  return { tps: lat.length / ((performance.now() - start) / 1000), p50: percentile(lat, 50), p99: percentile(lat, 99), transactions: lat.length, failed: 0 }
}

/** Chain starts the ceiling needs for `clientCounts` × `repeat` runs. */
export const chainStartsNeeded = (clientCounts, repeat) => clientCounts.reduce((a, b) => a + b, 0) * repeat + 16

/**
 * One run of the rotation transaction with `clients` connections for `duration` seconds: pgbench
 * when installed (extended protocol, like node-postgres), else the same loop in Node with pg.
 * Returns { tool, tps, p50, p99, transactions, failed } (latencies in ms).
 */
export async function rotationRun({ url, binDir, clients, duration, workDir, tag }) {
  const pgbench = findPgbench(binDir)
  const run = pgbench ? await pgbenchRun({ pgbench, url, clients, duration, workDir, tag }) : await nodeRun({ url, clients, duration })
  return { tool: pgbench ? 'pgbench' : 'node-pg', ...run }
}
