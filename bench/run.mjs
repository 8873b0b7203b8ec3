#!/usr/bin/env node
// Tessera benchmark harness: `npm run bench [-- options]`.
//
// Starts a throwaway PostgreSQL cluster (scripts/pg-cluster.mjs, like the tests do), migrates
// and seeds a database, runs Tessera (`node bin/tessera.js serve`, production mode, as users run
// it) as a child process, and drives it over loopback from THIS process with autocannon. Beside
// it, each in its own process on the same cores: the ceilings (bench/lib/bare-server.mjs: a bare
// Fastify GET and a bare route signing one ES256 JWT; bench/lib/bare-refresh-server.mjs: the fair
// refresh ceiling, a bare Fastify route doing a refresh's essential work — the form, one call of
// the rotation statement through pg on Tessera's database, the access and ID token signatures (ES256); the raw argon2id
// rate) and the peer, node-oidc-provider with its memory and PostgreSQL adapters (bench/peers/,
// optional). The raw rate of the rotation statement alone (pgbench) is shown for information.
// scale_out then runs the refresh load over 1, 2 and 3 fresh Tessera instances on one PostgreSQL.
//
// Only one subject is under load at any time (the others sit idle), and the repetitions are
// interleaved — Tessera, ceiling, peer, Tessera, ceiling, peer… — so a noisy neighbour on a
// shared machine slows every subject of a scenario alike instead of skewing one ratio. Each
// subject also reports its CPU time per request, which noise disturbs far less than req/s.
//
// Prints a table per scenario and the targets of issue 15 (PASS/MISS/n/a, never asserted: JWKS 200
// and 304 against the bare GET, client_credentials against the signing route and the peer, refresh
// against the fair ceiling and the peer on PostgreSQL and its p99, /login against raw argon2id,
// client_credentials p99 during a /login burst against idle, Tessera's peak RSS over the whole
// run, scale_out instances included), and writes everything as JSON to bench/results/ (latest.json
// and a timestamped copy; --smoke writes smoke-latest.json; scale_out in `scaleOut`).
//
// Options:
//   --smoke             every scenario for ~1.5 s (login 4 s), once, small pools (CI proves the harness works;
//                       on a shared machine: --smoke --skip-peers --only a,b)
//   --duration S        seconds per recorded run (default 10; smoke 1.5)
//   --connections N     concurrent connections (default 50)
//   --repeat N          recorded runs per scenario; the median is reported (default 3; smoke 1)
//   --warmup S          unrecorded warm-up per subject and scenario (default 1; smoke 0.5)
//   --only a,b          scenarios: client_credentials, login, refresh (with the fair refresh
//                       ceiling and the rotation statement alone), jwks, jwks_304, userinfo,
//                       jwks_during_login (JWKS and client_credentials probes idle, then during
//                       a /login burst), login_flood (300 connections: the argon2id queue
//                       overflows, 503s; JWKS and client_credentials p99 beside it),
//                       login_enumeration (200 sequential attempts per failure kind: the
//                       response-time medians of unknown user, wrong password, empty password
//                       and disabled user, with their spread; target < 5 %),
//                       scale_out (1, 2, then 3 fresh Tessera instances on the same database,
//                       the refresh load split over them: total req/s, worst p99, PostgreSQL and
//                       Tessera CPU ms per refresh, refreshes/s per PostgreSQL core; runs last)
//                       (ceilings and peers follow the chosen scenarios)
//   --skip-peers        do not run node-oidc-provider
//   --refresh-pool N    refresh tokens to seed per refresh subject: Tessera, the fair ceiling, each
//                       peer (default: 4,000/s × (warm-up + every run) × 1.5); scale_out seeds
//                       as many again per step (its warm-up is at least 3 s: fresh processes),
//                       just before it runs; a run that exhausts its pool stops early and says so
//   --keep-logs         keep the work folder (server logs) afterwards
//   --profile           run Tessera under `node --cpu-prof`; profiles go to bench/results/profiles/
//                       (open them in Chrome DevTools, or `node bench/lib/profile-top.mjs FILE`)
//
// Exit code: 0 when every measurement ran (whatever the figures), 1 when the harness itself
// failed (a server did not start, a scenario's first request was not what it must be).
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { BENCH_SETTINGS, freePort, startCluster } from '../scripts/pg-cluster.mjs'
import { bodyPool, runLoad, summarise } from './lib/load.mjs'
import { clusterCpuMs, killAllChildren, machineCpuMs, processCpuMs, RssMonitor, runCommand, selfAndChildrenCpuMs, startProcess, tailLog, waitIdle } from './lib/proc.mjs'
import { computeRatios, evaluateTargets, NAMES, scaleOutTable, scenarioTables, targetsText } from './lib/report.mjs'
import { chainStartsNeeded, rotationRun } from './lib/rotation-ceiling.mjs'
import { addRefreshFamilies, createDatabase, seedTessera, tesseraCli } from './lib/seed.mjs'
import { fmtMs, fmtNum, log, median } from './lib/util.mjs'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS_DIR = join(ROOT, 'bench', 'results')
const PEER_SCRIPT = join(ROOT, 'bench', 'peers', 'oidc-provider-server.mjs')
const ALL_SCENARIOS = ['jwks', 'jwks_304', 'client_credentials', 'userinfo', 'refresh', 'login', 'jwks_during_login', 'login_flood', 'login_enumeration', 'scale_out']
/** Tessera instances per step of the scale_out scenario (one PostgreSQL behind them all). */
const SCALE_OUT_STEPS = [1, 2, 3]
/** Attempts per failure kind in login_enumeration (docs/security.md "Brute force and abuse"). */
const ENUMERATION_ATTEMPTS = 200
/** The /login flood: far more connections than the argon2id queue (PASSWORD_HASH_QUEUE, 64) holds. */
const FLOOD_CONNECTIONS = 300
/** Refresh tokens are single-use: the pool is sized for this rate over every run, with margin. */
const POOL_RPS = 4000
const POOL_MARGIN = 1.5
/** Client counts of the rotation-transaction ceiling (about Tessera's pool of 10, and the HTTP connection count). */
const ROTATION_CLIENTS = [8, 50]
/** JWKS probe during the login burst: a steady, light rate, so it measures latency, not capacity. */
const PROBE = { connections: 2, overallRate: 100, ccRate: 50 }

// ---------------------------------------------------------------------------
// Options

const { values: argv } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    duration: { type: 'string' },
    connections: { type: 'string' },
    repeat: { type: 'string' },
    warmup: { type: 'string' },
    only: { type: 'string' },
    'skip-peers': { type: 'boolean', default: false },
    'refresh-pool': { type: 'string' },
    'keep-logs': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (argv.help) {
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n')
  process.stdout.write(text.slice(1, text.findIndex((l) => l.startsWith('import'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n')
  process.exit(0)
}
const num = (v, def, name) => {
  if (v === undefined) return def
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) {
    log(`--${name} must be a positive number (got "${v}")`)
    process.exit(2)
  }
  return n
}
const smoke = argv.smoke
const opts = {
  mode: smoke ? 'smoke' : 'full',
  duration: num(argv.duration, smoke ? 1.5 : 10, 'duration'),
  connections: Math.round(num(argv.connections, 50, 'connections')),
  repeat: Math.round(num(argv.repeat, smoke ? 1 : 3, 'repeat')),
  warmup: argv.warmup === '0' ? 0 : num(argv.warmup, smoke ? 0.5 : 1, 'warmup'),
  skipPeers: argv['skip-peers'],
}
const only = argv.only ? argv.only.split(',').map((s) => s.trim()).filter(Boolean) : ALL_SCENARIOS
const unknown = only.filter((s) => !ALL_SCENARIOS.includes(s))
if (unknown.length) {
  log(`unknown scenario(s): ${unknown.join(', ')} (known: ${ALL_SCENARIOS.join(', ')})`)
  process.exit(2)
}
const want = (s) => only.includes(s)
opts.only = only
// 50 logins in flight take seconds to clear at argon2id speed: a smoke run must still see some finish.
const loginDuration = Math.max(opts.duration, smoke ? 4 : 0)
// One pool per refresh subject (Tessera, the fair ceiling, each peer), and one for all the steps
// of scale_out together (each step: a warm-up and `repeat` runs, like one subject).
const refreshPoolSize = Math.round(num(argv['refresh-pool'], Math.ceil(POOL_RPS * (opts.duration * opts.repeat + opts.warmup) * POOL_MARGIN) + 100, 'refresh-pool'))
// scale_out's instances are fresh processes each step: a longer warm-up gets their JIT going.
const scaleOutWarmup = opts.warmup > 0 ? Math.max(opts.warmup, smoke ? 0.5 : 3) : 0
const scaleOutStepPool = argv['refresh-pool'] ? refreshPoolSize : Math.ceil(POOL_RPS * (opts.duration * opts.repeat + scaleOutWarmup) * POOL_MARGIN) + 100
const scaleOutPoolSize = want('scale_out') ? scaleOutStepPool * SCALE_OUT_STEPS.length : 0

// ---------------------------------------------------------------------------
// Cleanup: every child, the cluster and the work folder, whatever happens

let cluster = null
const workDir = mkdtempSync(join(os.tmpdir(), 'tessera-bench-'))
let cleanedUp = false
function cleanup() {
  if (cleanedUp) return
  cleanedUp = true
  killAllChildren('SIGKILL')
  if (cluster) {
    cluster.stop()
    cluster.remove()
  }
  if (!argv['keep-logs']) rmSync(workDir, { recursive: true, force: true })
  else log(`logs kept in ${workDir}`)
}
process.on('exit', cleanup)
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.on(sig, () => {
    log(`${sig}: stopping`)
    cleanup()
    process.exit(128 + n)
  })
}

// ---------------------------------------------------------------------------
// Helpers

const harnessFailures = []
function harnessFailure(msg) {
  harnessFailures.push(msg)
  log(`HARNESS FAILURE: ${msg}`)
}

/** Environment of a child: nothing inherited but the basics (no stray DATABASE_URL, NODE_OPTIONS…). */
function baseEnv(extra) {
  const env = {}
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ']) if (process.env[k] !== undefined) env[k] = process.env[k]
  return { ...env, ...extra }
}

/** Builds dist/ when any file of src/ or migrations/ is newer than it. */
async function ensureBuilt() {
  const marker = join(ROOT, 'dist', 'src', 'cli', 'main.js')
  const newest = (dir) =>
    readdirSync(dir, { withFileTypes: true, recursive: true })
      .filter((e) => e.isFile())
      .reduce((m, e) => Math.max(m, statSync(join(e.parentPath ?? e.path, e.name)).mtimeMs), 0)
  const built = existsSync(marker) ? statSync(marker).mtimeMs : 0
  if (built >= Math.max(newest(join(ROOT, 'src')), newest(join(ROOT, 'migrations')))) return
  log('building dist/ (tsc -p tsconfig.build.json)')
  const r = await runCommand(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT })
  if (r.code !== 0) throw new Error(`build failed:\n${r.stdout}${r.stderr}`)
}

const basic = (id, secret) => 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')
const FORM = 'application/x-www-form-urlencoded'

/** One request before the load, to prove the scenario measures what it claims. */
async function preflight(label, spec, check) {
  try {
    const body = spec.nextBody ? spec.nextBody() : spec.body
    const res = await fetch(spec.url, { method: spec.method ?? 'GET', headers: spec.headers, body, signal: AbortSignal.timeout(30_000) })
    const text = await res.text()
    let json
    try {
      json = JSON.parse(text)
    } catch {}
    const problem = check(res, json)
    if (problem) {
      harnessFailure(`${label}: first request is wrong: ${problem} (status ${res.status}, body ${text.slice(0, 200)})`)
      return false
    }
    return true
  } catch (e) {
    harnessFailure(`${label}: first request failed: ${e.message}`)
    return false
  }
}
const expectStatus = (status, field) => (res, json) =>
  res.status !== status ? `expected ${status}` : field && !(json && json[field]) ? `no "${field}" in the body` : null

const pkgVersion = (name) => {
  try {
    return createRequire(import.meta.url)(`${name}/package.json`).version
  } catch {
    return null
  }
}

/** PID of the benchmark cluster's postmaster (for its CPU time). */
let postmasterPid = null
const pgCpuMs = () => (postmasterPid ? clusterCpuMs(postmasterPid) : null)

// ---------------------------------------------------------------------------
// Subjects: one thing measured in a scenario (Tessera, a peer, a ceiling)
//
//   { name, kind: 'tessera'|'peer'|'ceiling', isTarget?, skipped?,
//     preflight(): Promise<boolean>, warmup(): Promise<void>, runOnce(i): Promise<run> }

/** A server process under HTTP load: `server` is { name, pid, rss: RssMonitor }. */
function httpSubject({ name, kind, isTarget, server, spec, check, what = '' }) {
  const label = `${name}${what ? ` ${what}` : ''}`
  const settle = async () => {
    await waitIdle(() => processCpuMs(server.pid))
    await waitIdle(pgCpuMs, { maxMs: 5000, quietMs: 15 })
  }
  let exhausted = false
  return {
    name,
    kind,
    isTarget,
    preflight: () => preflight(label, spec, check),
    async warmup() {
      if (opts.warmup <= 0) return
      await runLoad({ connections: opts.connections, ...spec, duration: opts.warmup })
      await settle()
    },
    async runOnce() {
      if (exhausted) return null
      server.rss.start()
      const c0 = processCpuMs(server.pid)
      const p0 = pgCpuMs()
      const run = await runLoad({ connections: opts.connections, duration: opts.duration, ...spec })
      await settle()
      const c1 = processCpuMs(server.pid)
      const p1 = pgCpuMs()
      run.peakRss = server.rss.stop()
      run.cpuMs = { server: c0 !== null && c1 !== null ? c1 - c0 : null, pg: p0 !== null && p1 !== null ? p1 - p0 : null }
      if (run.poolExhausted) exhausted = true
      return run
    },
  }
}

/** The raw argon2id rate, a fresh child process per run (verify(), and hash() for information). */
function argon2Subject() {
  const hashRates = []
  return {
    name: 'ceiling: raw argon2id verify/s',
    kind: 'ceiling',
    isTarget: true,
    hashRates,
    preflight: async () => true,
    warmup: async () => {},
    async runOnce() {
      const r = await runCommand(process.execPath, [join(ROOT, 'bench', 'lib', 'argon2-rate.mjs'), '--memory', '19456', '--time', '2', '--parallelism', '1', '--duration', String(opts.duration), '--repeat', '1', '--warmup', '0.5'], { cwd: ROOT, env: baseEnv({}) })
      if (r.code !== 0) throw new Error(`argon2 ceiling failed: ${r.stderr}`)
      const a = JSON.parse(r.stdout.trim().split('\n').pop())
      hashRates.push(a.hash[0])
      return { rps: a.verify[0], latency: null, unexpected: null, detail: a }
    },
  }
}

/** The raw rotation transaction on the same PostgreSQL, `clients` connections. */
function rotationSubject(dbUrl, binDir, clients) {
  let n = 0
  const s = {
    name: `ceiling: rotation tx (${clients} clients)`,
    kind: 'ceiling',
    clients,
    preflight: async () => true,
    warmup: async () => {},
    async runOnce() {
      const p0 = pgCpuMs()
      const r = await rotationRun({ url: dbUrl, binDir, clients, duration: opts.duration, workDir, tag: `${clients}-${n++}` })
      const p1 = pgCpuMs()
      s.name = `ceiling: rotation tx (${r.tool}, ${clients} clients)`
      await waitIdle(pgCpuMs, { maxMs: 5000, quietMs: 15 })
      return { rps: r.tps, latency: { p50: r.p50, p99: r.p99, max: null }, unexpected: r.failed, sent: r.transactions, cpuMs: { server: null, pg: p0 !== null && p1 !== null ? p1 - p0 : null }, detail: r }
    },
  }
  return s
}

const skippedSubject = (name, kind, reason) => ({ name, kind, skipped: reason })

const fmtRun = (r) =>
  `${fmtNum(r.rps)} req/s${r.latency ? `, p50 ${fmtMs(r.latency.p50)} ms, p99 ${fmtMs(r.latency.p99)} ms` : ''}${r.unexpected ? `, ${r.unexpected} unexpected ${JSON.stringify(r.statusCodes ?? {})}` : ''}${r.errors || r.timeouts ? `, ${r.errors} errors ${r.timeouts} timeouts` : ''}${r.poolExhausted ? ', POOL EXHAUSTED' : ''}`

/**
 * Measures the subjects of one scenario: preflight and warm-up each, then `repeat` rounds in
 * which every subject runs once, in an order rotated each round. Returns the table rows.
 */
async function measureGroup(title, subjects) {
  const active = []
  const rows = new Map()
  for (const s of subjects) {
    if (s.skipped) {
      rows.set(s, { name: s.name, kind: s.kind, skipped: s.skipped })
      continue
    }
    if (await s.preflight()) active.push(s)
    else rows.set(s, { name: s.name, kind: s.kind, skipped: 'first request failed' })
  }
  if (!active.length) return subjects.map((s) => rows.get(s))
  log(`${title}: ${active.map((s) => s.name).join(' | ')} — warm-up ${opts.warmup} s each, then ${opts.repeat} interleaved rounds`)
  for (const s of active) await s.warmup()
  const runs = new Map(active.map((s) => [s, []]))
  for (let round = 0; round < opts.repeat; round++) {
    for (let k = 0; k < active.length; k++) {
      const s = active[(k + round) % active.length]
      try {
        const r = await s.runOnce(round)
        if (!r) continue
        runs.get(s).push(r)
        log(`  round ${round + 1}/${opts.repeat} ${s.name}: ${fmtRun(r)}`)
      } catch (e) {
        harnessFailure(`${title} / ${s.name}: ${e.message}`)
      }
    }
  }
  for (const s of active) {
    const rs = runs.get(s)
    rows.set(s, rs.length ? { name: s.name, kind: s.kind, isTarget: s.isTarget, ...summarise(rs) } : { name: s.name, kind: s.kind, skipped: 'no run completed' })
  }
  return subjects.map((s) => rows.get(s))
}

// ---------------------------------------------------------------------------
// Results

const results = {
  schema: 'tessera-bench/1',
  date: new Date().toISOString(),
  mode: opts.mode,
  options: { ...opts, loginDuration, refreshPoolSize, scaleOutPoolSize, scaleOutWarmup },
  machine: {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? null,
    memoryBytes: os.totalmem(),
    loadAverageAtStart: os.loadavg(),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
    postgres: null,
    autocannon: pkgVersion('autocannon'),
    fastify: pkgVersion('fastify'),
    jose: pkgVersion('jose'),
    oidcProvider: pkgVersion('oidc-provider'),
  },
  setup: {},
  scenarios: {},
  peers: {},
  rss: { tessera: null, scaleOut: [], tesseraMax: null },
  scaleOut: null,
  notes: [],
  targets: [],
  harnessFailures,
}

function addScenario(id, title, rows, extra = {}) {
  const sc = (results.scenarios[id] = { title, subjects: rows.filter(Boolean), warnings: [], ...extra })
  for (const r of sc.subjects) {
    if (!r.skipped && r.unexpected > 0) sc.warnings.push(`${r.name}: ${r.unexpected} unexpected statuses ${JSON.stringify(r.statusCodes)}`)
  }
  return sc
}

// ---------------------------------------------------------------------------
// Main

async function main() {
  const started = Date.now()
  // What else ran on the machine meanwhile: all CPU time minus ours (harness, children, cluster).
  const machine0 = machineCpuMs()
  const self0 = selfAndChildrenCpuMs()
  log(`mode ${opts.mode}: ${opts.duration} s × ${opts.repeat} per subject, ${opts.connections} connections, warm-up ${opts.warmup} s; scenarios ${only.join(', ')}`)
  log(`machine: ${results.machine.cpus} × ${results.machine.cpuModel}, node ${process.version}, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`)
  if (os.loadavg()[0] > results.machine.cpus * 0.5) log(`warning: the machine is busy (load average ${os.loadavg()[0].toFixed(2)}); figures will be noisy`)

  await ensureBuilt()

  const pg = await startCluster({ log: (m) => log(`pg: ${m}`), settings: BENCH_SETTINGS, onCreate: (c) => (cluster = c) })
  results.machine.postgres = pg.version
  try {
    postmasterPid = Number(readFileSync(join(pg.cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  } catch {
    log('cannot read postmaster.pid: no PostgreSQL CPU figures')
  }
  results.setup.postgres = {
    version: pg.version,
    settings: pg.settings,
    note:
      'PostgreSQL defaults (synchronous_commit=on, full_page_writes=on: commits wait for their WAL write) except fsync=off: ' +
      'on a shared, noisy VM the cost of fsync measures the disk, not the code. Every subject using PostgreSQL runs on this same cluster.',
  }
  log(`${pg.version} on 127.0.0.1:${pg.port} (fsync=off, synchronous_commit=on)`)

  // ----- Tessera: migrate, seed, serve -----
  const dbUrl = await createDatabase(pg.url, 'tessera_bench')
  const port = await freePort()
  const issuer = `http://127.0.0.1:${port}`
  const tEnv = baseEnv({
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    ISSUER: issuer,
    ALLOW_INSECURE_ISSUER: 'true',
    KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64url'),
    // The production default: one JSON line per request, as users run it (to a file here).
    LOG_LEVEL: 'info',
    DATABASE_URL: dbUrl,
    // The load generator is one address logging one user in 50 at a time, and one client
    // asking for thousands of tokens a second: what throttling exists to stop. Measure the work,
    // not the throttle (docs/security.md "Brute force and abuse" has the throttle's own figures).
    LOGIN_ACCOUNT_FREE_FAILURES: '1000000',
    LOGIN_ADDRESS_ACCOUNT_FREE_FAILURES: '1000000',
    LOGIN_ADDRESS_FREE_FAILURES: '1000000',
    CLIENT_RATE_LIMIT_PER_SECOND: '0',
  })
  results.setup.tessera = {
    command: 'node bin/tessera.js serve',
    env: { NODE_ENV: 'production', LOG_LEVEL: 'info (production default; request lines go to a log file)', DATABASE_POOL_SIZE: '10 (default)', SIGNING_ALG: 'ES256 (default)', ARGON2: '19456 KiB, t=2, p=1 (defaults)', PASSWORD_HASH: 'concurrency CPU cores - 1, queue 64 (defaults)', LOGIN_THROTTLE: 'free failures 1,000,000 (the load is one address and one user)', CLIENT_RATE_LIMIT_PER_SECOND: '0 (the load is one client)' },
  }
  await tesseraCli(ROOT, tEnv, ['migrate'])
  const needRefresh = want('refresh')
  const seed = await seedTessera({
    root: ROOT,
    env: tEnv,
    dbUrl,
    userCount: smoke ? 100 : 1000,
    // scale_out seeds its own pool when its turn comes (it runs last), so the refresh scenario
    // runs on the tables it always had (plus the fair ceiling's pool).
    refreshCount: needRefresh ? refreshPoolSize : 10,
    ceilingRefreshCount: needRefresh ? refreshPoolSize : 0,
    chainStarts: needRefresh ? chainStartsNeeded(ROTATION_CLIENTS, opts.repeat) : 0,
    log,
  })
  results.setup.seed = { users: seed.userCount, clients: 2, refreshTokens: seed.refreshTokens.length, ceilingRefreshTokens: seed.ceilingRefreshTokens.length, scaleOutRefreshTokens: scaleOutPoolSize }
  const refreshBody = (t) => `grant_type=refresh_token&refresh_token=${t}`
  const EXHAUSTED_BODY = 'grant_type=refresh_token&refresh_token=tsr_pool_exhausted'
  const tesseraRefreshTokens = seed.refreshTokens
  if (want('login_enumeration')) {
    await tesseraCli(ROOT, tEnv, ['users', 'create', '--username', 'bench-disabled', '--password-stdin'], seed.user.password)
    await tesseraCli(ROOT, tEnv, ['users', 'disable', '--username', 'bench-disabled'])
  }

  const profileArgs = argv.profile ? ['--cpu-prof', '--cpu-prof-dir', join(RESULTS_DIR, 'profiles')] : []
  const tProc = startProcess({ name: 'tessera', args: [...profileArgs, 'bin/tessera.js', 'serve'], env: tEnv, cwd: ROOT, logFile: join(workDir, 'tessera.log') })
  try {
    await tProc.waitForHttp(`${issuer}/readyz`)
  } catch (e) {
    tailLog(tProc.logFile)
    throw e
  }
  log(`tessera listening on ${issuer} (pid ${tProc.pid})`)
  const tessera = { name: 'tessera', pid: tProc.pid, rss: new RssMonitor(tProc.pid) }

  // ----- Ceiling server (bare Fastify) -----
  let bare = null
  let bareProc = null
  if (want('client_credentials') || want('jwks') || want('jwks_304')) {
    const bport = await freePort()
    // The JWKS ceiling answers the same bytes as Tessera's JWKS (its key lines: several keys).
    const jwksFile = join(workDir, 'jwks.json')
    writeFileSync(jwksFile, await (await fetch(`${issuer}/.well-known/jwks.json`)).text())
    bareProc = startProcess({ name: 'bare-server', args: [join(ROOT, 'bench', 'lib', 'bare-server.mjs'), '--port', String(bport), '--jwks-file', jwksFile], env: baseEnv({ NODE_ENV: 'production' }), cwd: ROOT, logFile: join(workDir, 'bare-server.log'), readyLine: /^READY (\d+)/ })
    try {
      await bareProc.waitForLine(30_000)
      bare = { name: 'bare-server', pid: bareProc.pid, rss: new RssMonitor(bareProc.pid), base: `http://127.0.0.1:${bport}` }
    } catch (e) {
      harnessFailure(`bare server: ${e.message}`)
      tailLog(bareProc.logFile)
    }
  }

  // ----- Fair refresh ceiling (bare Fastify + pg + jose, on Tessera's database) -----
  let refreshBare = null
  let refreshBareProc = null
  if (needRefresh) {
    const rport = await freePort()
    refreshBareProc = startProcess({ name: 'bare-refresh-server', args: [join(ROOT, 'bench', 'lib', 'bare-refresh-server.mjs'), '--port', String(rport), '--db-url', dbUrl, '--pool-size', '10'], env: baseEnv({ NODE_ENV: 'production' }), cwd: ROOT, logFile: join(workDir, 'bare-refresh-server.log'), readyLine: /^READY (\d+)/ })
    try {
      await refreshBareProc.waitForLine(30_000)
      refreshBare = { name: 'bare-refresh-server', pid: refreshBareProc.pid, rss: new RssMonitor(refreshBareProc.pid), base: `http://127.0.0.1:${rport}` }
    } catch (e) {
      harnessFailure(`bare refresh server: ${e.message}`)
      tailLog(refreshBareProc.logFile)
    }
  }

  // ----- Peers: node-oidc-provider (started now, idle until their turn) -----
  const peers = {}
  const peerReason = opts.skipPeers ? '--skip-peers' : !existsSync(PEER_SCRIPT) ? 'bench/peers/oidc-provider-server.mjs not found' : null
  const peerSpecs = [
    // client_credentials and the JWKS do not touch the adapter: measured with the memory adapter only.
    { adapter: 'memory', name: 'oidc-provider (memory)', scenarios: ['client_credentials', 'refresh', 'jwks'].filter(want) },
    { adapter: 'postgres', name: 'oidc-provider (postgres)', scenarios: ['refresh'].filter(want) },
  ].filter((p) => p.scenarios.length)
  for (const p of peerSpecs) {
    if (peerReason) {
      peers[p.adapter] = { ...p, skipped: peerReason }
      continue
    }
    peers[p.adapter] = await startPeer(p, pg)
  }
  if (peerReason && peerSpecs.length) log(`peers skipped: ${peerReason}`)
  const peerSubject = (adapter, scenarioId) => {
    const p = peers[adapter]
    if (!p || !p.scenarios.includes(scenarioId)) return null
    if (p.skipped) return skippedSubject(p.name, 'peer', p.skipped)
    const info = p.info
    const auth = { authorization: basic(info.clientId, info.clientSecret), 'content-type': FORM }
    if (scenarioId === 'client_credentials') {
      return httpSubject({ name: p.name, kind: 'peer', server: p.server, spec: { url: info.tokenEndpoint, method: 'POST', headers: auth, body: 'grant_type=client_credentials&scope=read' }, check: expectStatus(200, 'access_token') })
    }
    if (scenarioId === 'refresh') {
      const pool = bodyPool((info.refreshTokens ?? []).map((t) => `grant_type=refresh_token&refresh_token=${encodeURIComponent(t)}`), 'grant_type=refresh_token&refresh_token=pool_exhausted')
      return httpSubject({ name: p.name, kind: 'peer', server: p.server, spec: { url: info.tokenEndpoint, method: 'POST', headers: auth, nextBody: pool }, check: expectStatus(200, 'refresh_token') })
    }
    return httpSubject({ name: p.name, kind: 'peer', server: p.server, spec: { url: info.jwksUri }, check: expectStatus(200, 'keys') })
  }
  const bareSubject = (path, method, name) =>
    bare ? httpSubject({ name, kind: 'ceiling', isTarget: true, server: bare, spec: { url: `${bare.base}${path}`, method }, check: expectStatus(200, path === '/bare' ? 'keys' : 'access_token') }) : skippedSubject(name, 'ceiling', 'bare server did not start')

  // ----- Scenarios -----
  const T = (what, spec, check) => httpSubject({ name: 'Tessera', kind: 'tessera', server: tessera, spec, check, what })
  const jwksUrl = `${issuer}/.well-known/jwks.json`
  const etag = (await fetch(jwksUrl)).headers.get('etag')
  const ccSpec = { url: `${issuer}/token`, method: 'POST', headers: { authorization: basic(seed.service.id, seed.service.secret), 'content-type': FORM }, body: 'grant_type=client_credentials&scope=read' }
  const loginSpec = {
    duration: loginDuration,
    url: `${issuer}/login`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: seed.user.username, password: seed.user.password, client_id: seed.app.id, client_secret: seed.app.secret, scope: 'openid read' }),
  }

  if (want('jwks') || want('jwks_304')) {
    // One interleaved group: Tessera 200, Tessera 304, the bare route, the peer; split into two tables.
    const t200 = want('jwks') ? T('jwks', { url: jwksUrl }, expectStatus(200, 'keys')) : null
    const t304 = want('jwks_304') ? { ...T('jwks 304', { url: jwksUrl, headers: { 'if-none-match': etag }, expect: (s) => s === 304 }, expectStatus(304)), name: 'Tessera (304)' } : null
    const b = bareSubject('/bare', 'GET', 'ceiling: bare Fastify GET')
    const peer = want('jwks') ? peerSubject('memory', 'jwks') : null
    const group = [t200, t304, b, peer].filter(Boolean)
    const rows = await measureGroup('jwks', group)
    const row = (s) => (s ? rows[group.indexOf(s)] : null)
    if (t200) addScenario('jwks', 'GET /.well-known/jwks.json (200)', [row(t200), row(b), row(peer)])
    if (t304) addScenario('jwks_304', 'GET /.well-known/jwks.json with If-None-Match (304)', [{ ...row(t304), name: 'Tessera', kind: 'tessera' }, row(b)], { expectLabel: 'non-304' })
  }

  if (want('client_credentials')) {
    const rows = await measureGroup('client_credentials', [T('client_credentials', ccSpec, expectStatus(200, 'access_token')), bareSubject('/sign', 'POST', 'ceiling: bare Fastify + jose ES256 sign'), peerSubject('memory', 'client_credentials')].filter(Boolean))
    addScenario('client_credentials', 'POST /token grant_type=client_credentials (Basic auth, ES256 access token)', rows)
  }

  if (want('userinfo')) {
    const r = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { authorization: basic(seed.app.id, seed.app.secret), 'content-type': FORM },
      body: new URLSearchParams({ grant_type: 'password', username: seed.user.username, password: seed.user.password, scope: 'openid read' }),
    })
    const at = (await r.json()).access_token
    const rows = await measureGroup('userinfo', [T('userinfo', { url: `${issuer}/userinfo`, headers: { authorization: `Bearer ${at}` } }, expectStatus(200, 'sub'))])
    addScenario('userinfo', 'GET /userinfo (Bearer: JWT verification, revocation check, user lookup)', rows)
  }

  if (want('refresh')) {
    const pool = bodyPool(tesseraRefreshTokens, EXHAUSTED_BODY, refreshBody)
    const ceilingPool = bodyPool(seed.ceilingRefreshTokens, EXHAUSTED_BODY, refreshBody)
    const rot = ROTATION_CLIENTS.map((n) => rotationSubject(dbUrl, pg.binDir, n))
    const auth = { authorization: basic(seed.app.id, seed.app.secret), 'content-type': FORM }
    const fair = refreshBare
      ? httpSubject({ name: NAMES.refreshCeiling, kind: 'ceiling', isTarget: true, server: refreshBare, spec: { url: `${refreshBare.base}/refresh`, method: 'POST', headers: auth, nextBody: ceilingPool }, check: expectStatus(200, 'refresh_token') })
      : skippedSubject(NAMES.refreshCeiling, 'ceiling', 'bare refresh server did not start')
    const group = [
      T('refresh', { url: `${issuer}/token`, method: 'POST', headers: auth, nextBody: pool }, expectStatus(200, 'refresh_token')),
      fair,
      ...rot,
      peerSubject('memory', 'refresh'),
      peerSubject('postgres', 'refresh'),
    ].filter(Boolean)
    const rows = await measureGroup('refresh', group)
    log(`  refresh pools: ${pool.used()} of ${tesseraRefreshTokens.length} Tessera tokens used, ${ceilingPool.used()} of ${seed.ceilingRefreshTokens.length} of the fair ceiling's`)
    // The rotation statement alone is information (what PostgreSQL can do), not a target: the
    // better of its client counts is the one reported beside the targets.
    const rotRows = rot.map((s) => rows[group.indexOf(s)]).filter((r) => !r.skipped)
    if (rotRows.length) rotRows.reduce((a, b) => ((b.rps.median ?? 0) > (a.rps.median ?? 0) ? b : a)).best = true
    addScenario('refresh', 'POST /token grant_type=refresh_token (rotation: one PostgreSQL transaction, new refresh token)', rows)
  }

  if (want('login')) {
    const a = argon2Subject()
    // A smoke run checks the harness on a shared CI machine, where another test file may hold the
    // CPU: a burst can then fill the argon2id queue, and its documented answer is 503 + Retry-After
    // (load shedding). A measuring run counts only 200s.
    const loginLoad = smoke ? { ...loginSpec, expect: (status) => status === 200 || status === 503 } : loginSpec
    const group = [T('login', loginLoad, expectStatus(200, 'access_token')), a]
    const rows = await measureGroup('login', group)
    const hash = a.hashRates.length ? summarise(a.hashRates.map((rps) => ({ rps }))) : null
    addScenario('login', 'POST /login (argon2id verify at 19456 KiB, t=2, p=1; new refresh family)', [...rows, hash && { name: '(info) raw argon2id hash/s', kind: 'info', ...hash, latency: null, unexpected: null }], {
      description: `${opts.connections} connections, ${loginDuration} s × ${opts.repeat}, median; argon2id ceiling: a child process, 8 operations in flight, libuv pool of 4 like Tessera's`,
    })
  }

  // Hashing runs on libuv's pool; if it ever ran on the event loop, JWKS latency would jump to a
  // hash time. A light client_credentials probe rides along: token signing (WebCrypto) also uses
  // libuv's pool, so it shows whether signatures queue behind the hashes.
  const burstScenario = async (id, title, connections) => {
    const jwksProbe = { url: jwksUrl, connections: PROBE.connections, overallRate: PROBE.overallRate, duration: loginDuration }
    const ccProbe = { ...ccSpec, connections: PROBE.connections, overallRate: PROBE.ccRate, duration: loginDuration }
    if (!(await preflight('tessera login (burst)', loginSpec, expectStatus(200, 'access_token')))) return
    await waitIdle(() => processCpuMs(tessera.pid))
    log(`probes alone: ${loginDuration} s, JWKS at ${PROBE.overallRate} req/s and client_credentials at ${PROBE.ccRate} req/s`)
    const [idle, ccIdle] = await Promise.all([runLoad(jwksProbe), runLoad(ccProbe)])
    log(`probes during a /login burst of ${connections} connections: ${loginDuration} s`)
    tessera.rss.start()
    // In a flood, 503 (the argon2id queue is full) is an expected answer, not a failure.
    const burstExpect = connections > opts.connections ? (s) => s === 200 || s === 503 : undefined
    const [during, ccDuring, burst] = await Promise.all([runLoad(jwksProbe), runLoad(ccProbe), runLoad({ ...loginSpec, connections, ...(burstExpect ? { expect: burstExpect } : {}) })])
    const peak = tessera.rss.stop()
    await waitIdle(() => processCpuMs(tessera.pid))
    const sc = addScenario(
      id,
      title,
      [
        { name: 'JWKS probe, idle', kind: 'info', ...summarise([idle]) },
        { name: `JWKS probe, during /login ${connections > opts.connections ? 'flood' : 'burst'}`, kind: 'info', ...summarise([during]), peakRss: peak },
        { name: '(info) client_credentials probe, idle', kind: 'info', ...summarise([ccIdle]) },
        { name: '(info) client_credentials probe, during burst', kind: 'info', ...summarise([ccDuring]) },
        { name: '/login burst itself', kind: 'info', ...summarise([burst]) },
      ],
      {
        description: `probes over ${PROBE.connections} connections each (JWKS ${PROBE.overallRate} req/s, client_credentials ${PROBE.ccRate} req/s), ${loginDuration} s, alone and then beside ${connections} connections of /login`,
      },
    )
    sc.probe = { idle: idle.latency, during: during.latency, clientCredentialsIdle: ccIdle.latency, clientCredentialsDuring: ccDuring.latency, burstStatusCodes: burst.statusCodes }
    const l = (r) => `${fmtMs(r.latency.p50)}/${fmtMs(r.latency.p99)}/${fmtMs(r.latency.max)} ms`
    log(`  p50/p99/max — JWKS: idle ${l(idle)}, during login ${l(during)}; client_credentials: idle ${l(ccIdle)}, during login ${l(ccDuring)} (login ${fmtNum(burst.rps)} req/s, statuses ${JSON.stringify(burst.statusCodes)}, p50/p99 ${l(burst)})`)
    if (ccDuring.latency.p99 > 5 * Math.max(10, ccIdle.latency.p99)) {
      sc.warnings.push(`client_credentials p99 goes from ${fmtMs(ccIdle.latency.p99)} to ${fmtMs(ccDuring.latency.p99)} ms during the login burst (${ccDuring.total} of ${ccIdle.total} answered): token signing waits behind argon2id`)
    }
  }
  if (want('jwks_during_login')) await burstScenario('jwks_during_login', 'JWKS latency, idle vs. during a /login burst (hashing must not block the event loop)', opts.connections)
  if (want('login_flood')) await burstScenario('login_flood', `JWKS and client_credentials latency during a /login flood of ${FLOOD_CONNECTIONS} connections (the argon2id queue overflows: 503 + Retry-After at once)`, FLOOD_CONNECTIONS)

  if (want('login_enumeration')) {
    // Response-time medians of the failure kinds that must not tell accounts apart (docs/security.md "Brute
    // force and abuse"): sequential requests (one in flight, so the medians measure the work and
    // not a queue), the kinds in a fresh random order every round so drift hits all alike.
    const kinds = [
      ['unknown user', 'bench-nobody', seed.user.password],
      ['wrong password', seed.user.username, 'not the password'],
      ['empty password', seed.user.username, ''],
      ['disabled user', 'bench-disabled', seed.user.password],
    ]
    const n = smoke ? 10 : ENUMERATION_ATTEMPTS
    const times = kinds.map(() => [])
    const bodies = kinds.map(() => new Set())
    const statuses = kinds.map(() => new Set())
    const attempt = async (k) => {
      const [, username, password] = kinds[k]
      const t0 = performance.now()
      const r = await fetch(`${issuer}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password, client_id: seed.app.id, client_secret: seed.app.secret }) })
      const body = await r.text()
      times[k].push(performance.now() - t0)
      bodies[k].add(body)
      statuses[k].add(r.status)
    }
    // After a flood the hashing queue is still full for a moment (503 at once): start once a login
    // goes through, so that the kinds are timed doing their work, not refused by the queue.
    for (let i = 0; i < 600; i++) {
      const r = await fetch(`${issuer}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: seed.user.username, password: seed.user.password, client_id: seed.app.id, client_secret: seed.app.secret }) })
      await r.arrayBuffer()
      if (r.status === 200) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    for (let i = 0; i < 5; i++) for (let k = 0; k < kinds.length; k++) await attempt(k) // warm-up
    // The warm-up's answers do not count (right after a flood its first attempts may still meet a full queue).
    for (const a of times) a.length = 0
    for (const b of bodies) b.clear()
    for (const s of statuses) s.clear()
    log(`login_enumeration: ${n} sequential attempts per kind`)
    for (let i = 0; i < n; i++) {
      const order = kinds.map((_, k) => k).sort(() => Math.random() - 0.5)
      for (const k of order) await attempt(k)
    }
    const q = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]
    const medians = times.map((a) => q(a, 0.5))
    const spread = (Math.max(...medians) - Math.min(...medians)) / Math.min(...medians)
    const allBodies = new Set(bodies.flatMap((b) => [...b]))
    const allStatuses = new Set(statuses.flatMap((s) => [...s]))
    const sc = addScenario(
      'login_enumeration',
      `POST /login failures: response-time medians of ${n} attempts per kind (no user enumeration)`,
      kinds.map(([name], k) => ({ name, kind: 'info', rps: { median: null, min: null, max: null }, latency: { p50: medians[k], p99: q(times[k], 0.99), max: Math.max(...times[k]) }, unexpected: [...statuses[k]].filter((s) => s !== 400).length, errors: 0 })),
      { description: `one request in flight, kinds interleaved in random order; medians differ by ${(spread * 100).toFixed(1)} %; ${allBodies.size} distinct body, statuses ${[...allStatuses].join(',')}` },
    )
    sc.enumeration = { attempts: n, medians: Object.fromEntries(kinds.map(([name], k) => [name, medians[k]])), spread, distinctBodies: allBodies.size, statuses: [...allStatuses] }
    if (allBodies.size !== 1) sc.warnings.push(`the failure kinds answered ${allBodies.size} different bodies`)
    log(`  medians ${kinds.map(([name], k) => `${name} ${medians[k].toFixed(2)} ms`).join(', ')}; spread ${(spread * 100).toFixed(1)} %; ${allBodies.size} distinct body`)
  }

  if (want('scale_out')) {
    const tokens = await addRefreshFamilies({ dbUrl, clientId: seed.app.id, userIds: seed.userIds, count: scaleOutPoolSize, log })
    await waitIdle(pgCpuMs, { maxMs: 30_000, quietMs: 15 })
    await scaleOut({ tEnv, seed, tessera, pool: bodyPool(tokens, EXHAUSTED_BODY, refreshBody) })
  }

  // ----- Stop everything -----
  // VmHWM-based: the main instance's peak over its whole life (every scenario, warm-ups and the
  // gaps between runs included), and each scale_out instance's over its own.
  results.rss.tessera = tessera.rss.peak()
  results.rss.tesseraMax = Math.max(results.rss.tessera ?? 0, ...results.rss.scaleOut.map((r) => r.peakRss ?? 0)) || null
  await tProc.stop()
  if (bareProc) await bareProc.stop()
  if (refreshBareProc) await refreshBareProc.stop()
  for (const p of Object.values(peers)) {
    if (p.proc) {
      results.peers[p.adapter] = { ...results.peers[p.adapter], rss: p.server.rss.peak() }
      await p.proc.stop()
    }
  }

  const elapsed = Date.now() - started
  const machine1 = machineCpuMs()
  const self1 = selfAndChildrenCpuMs()
  const pgTotal = pgCpuMs()
  if (machine0 && machine1 && self0 !== null && self1 !== null) {
    const capacity = elapsed * results.machine.cpus
    const foreign = machine1.busy - machine0.busy - (self1 - self0) - (pgTotal ?? 0)
    results.machine.otherCpuShare = Math.max(0, foreign / capacity)
    results.machine.stealShare = (machine1.steal - machine0.steal) / capacity
  }

  // ----- Report -----
  computeRatios(results)
  results.targets = evaluateTargets(results)
  results.durationSeconds = Math.round((Date.now() - started) / 1000)
  results.machine.loadAverageAtEnd = os.loadavg()
  results.notes.push(
    `load generator: autocannon ${results.machine.autocannon} in the harness process, ${opts.connections} connections, no pipelining, over loopback; it shares the ${results.machine.cpus} CPUs with the server and PostgreSQL`,
    'one subject under load at a time; repetitions interleaved across the subjects of a scenario (order rotated each round); servers not under load sit idle',
    'PostgreSQL: fsync=off (shared noisy VM), otherwise durable defaults (synchronous_commit=on, full_page_writes=on), for Tessera, the rotation ceiling and the peer alike',
    'Tessera: production mode, LOG_LEVEL=info (the production default) with request lines written to a file; DATABASE_POOL_SIZE=10 (default)',
    'req/s counts every response; the non-2xx column counts the others (non-304 for jwks_304); p50/p99 are medians over the runs; peak RSS is the server process over its recorded runs (MB = 10^6 bytes)',
    'CPU ms/req: CPU time of the server process (all threads) per request sent; PG ms/req: CPU time of the whole PostgreSQL cluster per request (per transaction for the rotation ceiling)',
    'peak RSS target: the main Tessera instance over its whole life (kernel high-water mark, so every scenario and the gaps between runs count) and every scale_out instance over its own',
    '/login ceiling: @node-rs/argon2 verify() of the same parameters in a child process with the same thread pool (4), 8 operations in flight',
  )
  if (results.scenarios.refresh) {
    results.notes.push(
      'fair refresh ceiling (the target): bench/lib/bare-refresh-server.mjs, a bare Fastify route in its own process on Tessera\'s database: the form parsed like Tessera does, the client id from the Basic header (secret not checked), the token hashed (SHA-256) and its successor derived (HMAC-SHA-256) like Tessera, the statement rotate() sends (tessera_rotate_refresh_token, the SSO session read in the same statement) through a pg.Pool of 10 with the parameters rotate() passes, an ES256 access token and an ES256 ID token signed with jose (the seeded families hold "openid": Tessera and node-oidc-provider answer an ID token too, ES256 on all three); its own pool of seeded tokens',
      'rotation statement alone (information, not a target): the very statement rotate() in src/tokens/refresh-tokens.store.ts sends (one call of tessera_rotate_refresh_token: lock, decide, successor, parent used, family, audit), through pgbench, each client following its own chain of successors; the targets table shows the better of 8 and 50 clients',
    )
  }
  if (results.scaleOut) {
    results.notes.push(
      `scale_out: fresh instances per step with the main instance\'s environment (DATABASE_POOL_SIZE=10 each) on their own ports, the main instance idle meanwhile; one autocannon run per instance in this process, in parallel: the load generator shares the ${results.machine.cpus} CPUs with every instance and PostgreSQL, so beyond ${results.machine.cpus - 1} instance(s) they contend and req/s flattens; PostgreSQL CPU ms per refresh is the figure that carries to a bigger machine (refreshes/s per PostgreSQL core = 1000 ÷ it)`,
    )
  }
  if (results.machine.otherCpuShare !== undefined) {
    const other = Math.round(results.machine.otherCpuShare * 100)
    const steal = Math.round(results.machine.stealShare * 100)
    results.notes.push(
      `other processes on the machine used ${other} % of its CPU during the run (hypervisor steal ${steal} %)` +
        (other >= 10 || steal >= 10 ? ': req/s are noisy; the interleaving spreads the noise over all subjects, and CPU ms per request is the steadier figure' : ''),
    )
  }

  const text = [
    `\n# Tessera benchmark (${opts.mode}) — ${results.date}`,
    `${results.machine.cpus} × ${results.machine.cpuModel}; node ${process.version}; ${pg.version} (fsync=off, synchronous_commit=on); autocannon ${results.machine.autocannon}` +
      (results.machine.otherCpuShare !== undefined ? `; other processes used ${Math.round(results.machine.otherCpuShare * 100)} % of the CPU meanwhile` : ''),
    scenarioTables(results),
    scaleOutTable(results),
    '\n## Targets (reported, not asserted)',
    targetsText(results.targets),
    '\nNotes:',
    ...results.notes.map((n) => `- ${n}`),
    ...(harnessFailures.length ? ['\nHARNESS FAILURES:', ...harnessFailures.map((f) => `- ${f}`)] : []),
    `\n(${results.durationSeconds} s)`,
  ].join('\n')
  process.stdout.write(text + '\n')
  writeResults()
}

/**
 * scale_out: 1, then 2, then 3 fresh Tessera instances (the main one's environment and database,
 * their own ports; the main instance sits idle meanwhile), the refresh load spread over them (one
 * autocannon run per instance in parallel, the connections split, tokens from one shared pool).
 * Per step: total refreshes/s, the worst instance's p99, PostgreSQL CPU and Tessera CPU (summed
 * over the instances) per refresh, and what follows for sizing.
 */
async function scaleOut({ tEnv, seed, tessera, pool }) {
  const headers = { authorization: basic(seed.app.id, seed.app.secret), 'content-type': FORM }
  const steps = []
  log(`scale_out: ${SCALE_OUT_STEPS.join(', ')} instances, ${opts.connections} connections split over them, warm-up ${scaleOutWarmup} s, ${opts.repeat} × ${opts.duration} s`)
  await waitIdle(() => processCpuMs(tessera.pid))
  for (const n of SCALE_OUT_STEPS) {
    const inst = []
    try {
      for (let k = 0; k < n; k++) {
        const port = await freePort()
        const name = `tessera-scale-${n}.${k + 1}`
        // Same environment as the main instance (ISSUER included: instances behind one name), its own port.
        const proc = startProcess({ name, args: ['bin/tessera.js', 'serve'], env: { ...tEnv, PORT: String(port) }, cwd: ROOT, logFile: join(workDir, `${name}.log`) })
        inst.push({ name, proc, pid: proc.pid, url: `http://127.0.0.1:${port}`, connections: Math.floor(opts.connections / n) + (k < opts.connections % n ? 1 : 0) })
      }
      for (const i of inst) {
        try {
          await i.proc.waitForHttp(`${i.url}/readyz`)
        } catch (e) {
          tailLog(i.proc.logFile)
          throw e
        }
        i.rss = new RssMonitor(i.pid)
      }
      const spec = (i, duration) => ({ url: `${i.url}/token`, method: 'POST', headers, nextBody: pool, connections: i.connections, duration })
      let ok = true
      for (const i of inst) ok = (await preflight(`scale_out ${i.name}`, spec(i, 0), expectStatus(200, 'refresh_token'))) && ok
      if (!ok) {
        steps.push({ instances: n, skipped: 'first request failed' })
        continue
      }
      const cpu = () => {
        let sum = 0
        for (const i of inst) {
          const c = processCpuMs(i.pid)
          if (c === null) return null
          sum += c
        }
        return sum
      }
      const settle = async () => {
        await waitIdle(cpu)
        await waitIdle(pgCpuMs, { maxMs: 5000, quietMs: 15 })
      }
      if (scaleOutWarmup > 0) await Promise.all(inst.map((i) => runLoad(spec(i, scaleOutWarmup))))
      await settle()
      const runs = []
      for (let r = 0; r < opts.repeat; r++) {
        for (const i of inst) i.rss.start()
        const c0 = cpu()
        const p0 = pgCpuMs()
        const h0 = process.cpuUsage()
        const per = await Promise.all(inst.map((i) => runLoad(spec(i, opts.duration))))
        const h = process.cpuUsage(h0)
        await settle()
        const c1 = cpu()
        const p1 = pgCpuMs()
        const peaks = inst.map((i) => i.rss.stop())
        const sent = per.reduce((a, x) => a + x.sent, 0)
        const run = {
          rps: per.reduce((a, x) => a + x.rps, 0),
          sent,
          p50: Math.max(...per.map((x) => x.latency.p50)),
          p99: Math.max(...per.map((x) => x.latency.p99)),
          unexpected: per.reduce((a, x) => a + x.unexpected, 0),
          errors: per.reduce((a, x) => a + x.errors + x.timeouts, 0),
          statusCodes: per.reduce((acc, x) => {
            for (const [k, v] of Object.entries(x.statusCodes)) acc[k] = (acc[k] ?? 0) + v
            return acc
          }, {}),
          poolExhausted: per.some((x) => x.poolExhausted),
          cpuMs: { tessera: c0 !== null && c1 !== null ? c1 - c0 : null, pg: p0 !== null && p1 !== null ? p1 - p0 : null, loadGenerator: (h.user + h.system) / 1000 },
          durationS: Math.max(...per.map((x) => x.duration)),
          perInstance: per.map((x, k) => ({ instance: inst[k].name, connections: inst[k].connections, rps: x.rps, p99: x.latency.p99, peakRss: peaks[k] })),
        }
        runs.push(run)
        log(`  round ${r + 1}/${opts.repeat} ${n} instance${n > 1 ? 's' : ''}: ${fmtNum(run.rps)} req/s (${run.perInstance.map((x) => fmtNum(x.rps)).join(' + ')}), worst p99 ${fmtMs(run.p99)} ms${run.unexpected ? `, ${run.unexpected} unexpected ${JSON.stringify(run.statusCodes)}` : ''}${run.poolExhausted ? ', POOL EXHAUSTED' : ''}`)
        if (run.poolExhausted) break
      }
      const sent = runs.reduce((a, r) => a + r.sent, 0)
      const perReq = (k) => (sent > 0 && runs.every((r) => typeof r.cpuMs[k] === 'number') ? runs.reduce((a, r) => a + r.cpuMs[k], 0) / sent : null)
      const rps = median(runs.map((r) => r.rps))
      const pgMs = perReq('pg')
      const tMs = perReq('tessera')
      const lgMs = perReq('loadGenerator')
      const step = {
        instances: n,
        connections: inst.map((i) => i.connections),
        rps,
        p50: median(runs.map((r) => r.p50)),
        p99: median(runs.map((r) => r.p99)),
        pgCpuMsPerRefresh: pgMs,
        tesseraCpuMsPerRefresh: tMs,
        loadGeneratorCpuMsPerRefresh: lgMs,
        refreshesPerPgCore: pgMs ? 1000 / pgMs : null,
        // Cores busy at the measured rate (CPU ms per refresh × refreshes/s ÷ 1000).
        pgCores: pgMs !== null && rps !== null ? (pgMs * rps) / 1000 : null,
        tesseraCores: tMs !== null && rps !== null ? (tMs * rps) / 1000 : null,
        loadGeneratorCores: lgMs !== null && rps !== null ? (lgMs * rps) / 1000 : null,
        unexpected: runs.reduce((a, r) => a + r.unexpected, 0),
        errors: runs.reduce((a, r) => a + r.errors, 0),
        poolExhausted: runs.some((r) => r.poolExhausted),
        peakRss: inst.map((i) => i.rss.peak()),
        runs,
      }
      steps.push(step)
      log(`  ${n} instance${n > 1 ? 's' : ''}: ${fmtNum(rps)} refreshes/s, p99 ${fmtMs(step.p99)} ms, PostgreSQL ${fmtMs(pgMs)} ms CPU/refresh (${fmtNum(step.refreshesPerPgCore)} refreshes/s per core), Tessera ${fmtMs(tMs)} ms CPU/refresh`)
    } catch (e) {
      harnessFailure(`scale_out, ${n} instance${n > 1 ? 's' : ''}: ${e.message}`)
      steps.push({ instances: n, skipped: e.message })
    } finally {
      for (const i of inst) {
        const peakRss = i.rss ? i.rss.peak() : null
        await i.proc.stop()
        results.rss.scaleOut.push({ instance: i.name, peakRss })
      }
    }
  }
  log(`  scale_out pool: ${pool.used()} of ${pool.used() + pool.remaining()} tokens used`)
  results.scaleOut = {
    title: 'refresh over 1, 2 and 3 Tessera instances behind one PostgreSQL',
    description: `${opts.connections} connections split over the instances (one autocannon run per instance, in parallel, one shared token pool), fresh instances each step, warm-up ${scaleOutWarmup} s, ${opts.duration} s × ${opts.repeat}, median; p50/p99: the worst instance's; CPU per refresh: summed over the instances (Tessera) and over the whole cluster (PostgreSQL)`,
    machine: `${results.machine.cpus} CPUs shared by the instances, PostgreSQL and the load generator (the harness process)`,
    steps,
  }
}

/** Starts a peer and waits for its READY line; on failure the peer's subjects are skipped. */
async function startPeer(p, pg) {
  const port = await freePort()
  const out = join(workDir, `peer-${p.adapter}.json`)
  const pool = p.scenarios.includes('refresh') ? refreshPoolSize : 10
  const args = [PEER_SCRIPT, '--adapter', p.adapter, '--port', String(port), '--pool', String(pool), '--out', out]
  if (p.adapter === 'postgres') args.push('--pg-url', await createDatabase(pg.url, 'oidc_bench'))
  log(`peer ${p.name}: starting (pool ${pool})`)
  const proc = startProcess({ name: p.name, args, env: baseEnv({}), cwd: ROOT, logFile: join(workDir, `peer-${p.adapter}.log`), readyLine: /^READY (.+)$/ })
  try {
    const t0 = Date.now()
    const [, file] = await proc.waitForLine(600_000)
    const info = JSON.parse(readFileSync(file.trim(), 'utf8'))
    log(`peer ${p.name}: ready in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${info.refreshTokens?.length ?? 0} refresh tokens (pid ${proc.pid})`)
    results.peers[p.adapter] = { issuer: info.issuer, tokenEndpoint: info.tokenEndpoint, jwksUri: info.jwksUri, refreshTokens: info.refreshTokens?.length ?? 0, startSeconds: (Date.now() - t0) / 1000 }
    return { ...p, proc, info, server: { name: p.name, pid: proc.pid, rss: new RssMonitor(proc.pid) } }
  } catch (e) {
    harnessFailure(`peer ${p.name}: ${e.message}`)
    tailLog(proc.logFile)
    await proc.stop()
    return { ...p, skipped: 'did not start' }
  }
}

function writeResults() {
  mkdirSync(RESULTS_DIR, { recursive: true })
  // Raw per-run numbers stay in; refresh tokens never go into results.
  const json = JSON.stringify(results, null, 2) + '\n'
  const write = (name) => {
    const tmp = join(RESULTS_DIR, `${name}.tmp`)
    writeFileSync(tmp, json)
    renameSync(tmp, join(RESULTS_DIR, name))
  }
  if (opts.mode === 'smoke') {
    write('smoke-latest.json')
    log('results: bench/results/smoke-latest.json')
  } else {
    const stamp = results.date.replace(/[:.]/g, '-')
    write(`${stamp}.json`)
    write('latest.json')
    log(`results: bench/results/latest.json and bench/results/${stamp}.json`)
  }
}

let exitCode = 0
try {
  await main()
  if (harnessFailures.length) exitCode = 1
} catch (e) {
  log(`failed: ${e?.stack ?? e}`)
  exitCode = 1
} finally {
  cleanup()
}
process.exit(exitCode)
