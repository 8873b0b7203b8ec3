// The storage ceiling of refresh: the raw rate of Tessera's rotation transaction on the same
// PostgreSQL, without HTTP, JSON or JWT signing. It is the very statement `rotate()` in
// src/tokens/refresh-tokens.store.ts sends: one call of `tessera_rotate_refresh_token`
// (migration 0007), which locks the token and family, inserts the successor, marks the parent
// used, updates the family and writes the audit row, in one autocommit transaction.
//
// Each client follows a chain: it starts from a fresh seeded token (table bench_chain_start,
// handed out by a sequence) and then always presents the successor it just created, so no token
// is ever presented twice and the pool never runs out. pgbench (extended query protocol, like
// node-postgres) when it is installed, else the same loop in Node with pg.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { runCommand } from './proc.mjs'
import { percentile } from './util.mjs'

const IDLE_SECONDS = 14 * 86_400
const GRACE_SECONDS = 10

// The successor's hash is drawn in the same statement (the server derives it with an HMAC in Node).
const ROTATE_SQL = (hash, cid, ua) =>
  `SELECT s.next AS hash, r.outcome FROM (SELECT sha256(uuid_send(gen_random_uuid())) AS next) AS s, ` +
  `LATERAL tessera_rotate_refresh_token(${hash}, ${cid}, ARRAY[s.next], NULL, ${GRACE_SECONDS}, ${IDLE_SECONDS}, '127.0.0.1', '${ua}') AS r`

const PGBENCH_SCRIPT = `
\\if :started = 0
SELECT t.token_hash AS hash, f.client_id AS cid FROM bench_chain_start AS c JOIN refresh_token AS t ON t.token_hash = c.token_hash JOIN refresh_token_family AS f ON f.id = t.family_id WHERE c.n = (SELECT nextval('bench_chain_seq')) \\gset
\\set started 1
\\endif
${ROTATE_SQL(':hash', ':cid', 'pgbench')} \\gset
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
        let { hash, cid } = (await c.query("SELECT t.token_hash AS hash, f.client_id AS cid FROM bench_chain_start AS c JOIN refresh_token AS t ON t.token_hash = c.token_hash JOIN refresh_token_family AS f ON f.id = t.family_id WHERE c.n = (SELECT nextval('bench_chain_seq'))")).rows[0]
        while (performance.now() < end) {
          const t0 = performance.now()
          const out = (await c.query(ROTATE_SQL('$1', '$2', 'node'), [hash, cid])).rows[0]
          if (out.outcome !== 'rotated') throw new Error(`rotation ceiling: ${out.outcome}`)
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
  if (!pgbench) return { tool: 'node-pg', ...(await nodeRun({ url, clients, duration })) }
  try {
    return { tool: 'pgbench', ...(await pgbenchRun({ pgbench, url, clients, duration, workDir, tag })) }
  } catch (err) {
    // pgbench's -T clock runs while its clients connect: on a loaded machine 50 connections can
    // take a short (smoke) run's whole duration, and it ends having run nothing. Once more, longer.
    if (!/actually processed: 0\b/.test(err.message) || duration >= 10) throw err
    return { tool: 'pgbench', retried: true, ...(await pgbenchRun({ pgbench, url, clients, duration: Math.max(5, duration * 3), workDir, tag: `${tag}-again` })) }
  }
}
