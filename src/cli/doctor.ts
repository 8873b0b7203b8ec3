import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { JWK } from 'jose'
import { sql } from 'kysely'
import { systemClock } from '../clock.js'
import { ConfigError, loadConfig, type Config, type Env } from '../config.js'
import { databaseTarget, openDatabase, type DatabaseHandle } from '../db/connect.js'
import { schemaStatus } from '../db/migrate.js'
import { isDatabaseUnavailable } from '../errors.js'
import { parseKek, resolveKeks, type KekSet } from '../keys/kek.js'
import { opensWith } from '../keys/key-material.js'
import { loadLiveKeys } from '../keys/keys.store.js'
import { keyPolicy } from '../keys/policy.js'
import { CliError, parseCommand, printJson, type CliIo } from './io.js'

// `tessera doctor` (docs/cli.md "CLI"): checks a deployment from the outside, with the configuration of
// this environment, and says in words what is wrong. It never changes anything: no migration, no
// key generated, no development KEK file created.

type Status = 'ok' | 'fail' | 'skip'

/** One check's outcome: `detail` says what was found, in words an operator can act on. */
export interface Check {
  name: string
  status: Status
  detail: string
}

/** How long the issuer may take to answer. */
const HTTP_TIMEOUT_MS = 5_000

/** `tessera doctor [--format text|json]`: exit 0 when every check passed (or was skipped), 1 otherwise. */
export async function doctorCommand(env: Env, args: string[], io: CliIo): Promise<number> {
  const o = parseCommand('doctor', args)
  const format = o.format ?? 'text'
  if (format !== 'text' && format !== 'json') throw new CliError('--format must be text or json')
  const checks = await diagnose(env)
  const failed = checks.filter((c) => c.status === 'fail').length
  if (format === 'json') printJson(io, { ok: failed === 0, checks })
  else {
    for (const c of checks) io.out(`${c.status === 'ok' ? 'ok  ' : c.status === 'fail' ? 'FAIL' : 'skip'}  ${c.name}: ${c.detail}`)
    io.out(failed === 0 ? 'tessera doctor: everything checked is fine' : `tessera doctor: ${failed} check(s) failed`)
  }
  return failed === 0 ? 0 : 1
}

/** Runs every check it can; a failure early on (no configuration, no database) skips what depends on it. */
export async function diagnose(env: Env): Promise<Check[]> {
  const checks: Check[] = []
  const add = (name: string, status: Status, detail: string) => checks.push({ name, status, detail })

  let config: Config
  try {
    config = loadConfig(env)
    add('configuration', 'ok', `${config.env} mode, issuer ${config.issuer}, ${config.databaseUrl ? 'PostgreSQL' : 'the embedded database'}`)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    add('configuration', 'fail', err.problems.join('; '))
    for (const name of ['database', 'schema', 'key encryption key', 'key lines', 'clock', 'issuer', 'jwks']) add(name, 'skip', 'needs a valid configuration')
    return checks
  }

  const keks = kekSetOf(config)
  let database: DatabaseHandle | undefined
  try {
    database = await openDatabase(databaseTarget(config), undefined, { besideServer: true })
    await sql`select 1`.execute(database.db)
    add('database', 'ok', config.databaseUrl ? 'PostgreSQL answers' : `the embedded database in ${config.dataDir} opens`)
  } catch (err) {
    add('database', 'fail', databaseProblem(err))
    await database?.close().catch(() => undefined)
    database = undefined
  }

  let published: { kid: string; alg: string; state: string }[] | undefined
  if (database) {
    try {
      const status = await schemaStatus(database.db)
      if (status.unknown.length > 0) add('schema', 'fail', `the database has migrations this version does not know (${status.unknown.join(', ')}): it was migrated by a newer Tessera; run that version`)
      else if (status.pending.length > 0) add('schema', 'fail', `${status.pending.length} migration(s) not applied (${status.pending.join(', ')}): run \`tessera migrate\``)
      else add('schema', 'ok', 'migrated to this version')
      const ready = status.pending.length === 0 && status.unknown.length === 0
      if (ready) {
        const rows = await loadLiveKeys(database.db)
        published = rows.map((r) => ({ kid: r.kid, alg: r.alg, state: r.state }))
        checkKeks(rows, keks, add)
        checkLines(rows, config, add)
      } else {
        add('key encryption key', 'skip', 'needs a migrated database')
        add('key lines', 'skip', 'needs a migrated database')
      }
      const skew = await clockSkewSeconds(database)
      const bound = config.keyClockSkewSeconds
      add('clock', Math.abs(skew) <= bound / 2 ? 'ok' : 'fail', `this machine's clock is ${Math.abs(skew).toFixed(1)} s ${skew >= 0 ? 'ahead of' : 'behind'} the database's (at most ${bound / 2} s: half of KEY_CLOCK_SKEW_SECONDS; use NTP)`)
    } catch (err) {
      add('schema', 'fail', databaseProblem(err))
    } finally {
      await database.close().catch(() => undefined)
    }
  } else {
    for (const name of ['schema', 'key encryption key', 'key lines', 'clock']) add(name, 'skip', 'needs the database')
  }

  await checkServed(config, published, add)
  return checks
}

/** The configured KEKs, or undefined when there are none (development without a KEK file yet). */
function kekSetOf(config: Config): KekSet | undefined {
  if (config.keyEncryptionKey) return resolveKeks(config, parseKek(config.keyEncryptionKey))
  const file = join(config.dataDir, 'dev-key-encryption-key')
  // Never created here: the doctor changes nothing.
  if (!existsSync(file)) return undefined
  return resolveKeks(config, parseKek(readFileSync(file, 'utf8').trim()))
}

type Add = (name: string, status: Status, detail: string) => void

/** Every stored private key (pending, active) opens with a configured KEK. */
function checkKeks(rows: Awaited<ReturnType<typeof loadLiveKeys>>, keks: KekSet | undefined, add: Add): void {
  const sealed = rows.filter((r) => r.private_key_enc.length > 0)
  if (!keks) {
    add('key encryption key', sealed.length === 0 ? 'ok' : 'fail', sealed.length === 0 ? 'no KEK yet and no stored key' : 'no KEY_ENCRYPTION_KEY is configured, and keys are stored')
    return
  }
  const closed = sealed.filter((r) => !opensWith(keks, r))
  if (closed.length === 0) add('key encryption key', 'ok', `opens every stored private key (${sealed.length})`)
  else {
    const ids = [...new Set(closed.map((r) => r.kek_id))]
    add('key encryption key', 'fail', `cannot open ${closed.length} stored key(s) (${closed.map((r) => `${r.kid.slice(0, 8)}… ${r.state} ${r.alg}`).join(', ')}), sealed under KEK id ${ids.join(', ')}: set the KEK that sealed them (KEY_ENCRYPTION_KEY, or KEY_ENCRYPTION_KEYS_PREVIOUS during a KEK rotation)`)
  }
}

/** Each configured key line (docs/keys.md "Key lines") has an active key. */
function checkLines(rows: Awaited<ReturnType<typeof loadLiveKeys>>, config: Config, add: Add): void {
  const lines = keyPolicy(config).lines
  const missing = lines.filter((alg) => !rows.some((r) => r.alg === alg && r.state === 'active'))
  if (missing.length === 0) add('key lines', 'ok', `an active key on every line (${lines.join(', ')})`)
  else add('key lines', 'fail', `no active key on the ${missing.join(', ')} line(s): start a server (it makes them), or \`tessera keys rotate --now --alg ${missing[0]}\``)
}

/** This machine's clock minus the database's, in seconds (half the round trip taken off). */
async function clockSkewSeconds(database: DatabaseHandle): Promise<number> {
  const before = systemClock.nowMs()
  const { rows } = await sql<{ ms: string }>`select (extract(epoch from clock_timestamp()) * 1000)::bigint::text as ms`.execute(database.db)
  const after = systemClock.nowMs()
  return ((before + after) / 2 - Number(rows[0]!.ms)) / 1000
}

/**
 * The issuer answers discovery with itself as `issuer` (over https in production) and serves the
 * JWKS the database holds. Outside production an unreachable issuer is skipped: a developer may
 * run the doctor with the server stopped.
 */
async function checkServed(config: Config, published: { kid: string; alg: string; state: string }[] | undefined, add: Add): Promise<void> {
  const production = config.env === 'production'
  if (production && !config.issuer.startsWith('https://')) {
    add('issuer', 'fail', `${config.issuer} is not https`)
    add('jwks', 'skip', 'needs the issuer')
    return
  }
  let discovery: { issuer?: unknown; jwks_uri?: unknown }
  try {
    discovery = (await getJson(`${config.issuer}/.well-known/openid-configuration`)) as typeof discovery
  } catch (err) {
    add('issuer', production ? 'fail' : 'skip', `${config.issuer} does not answer discovery (${(err as Error).message})${production ? '' : '; not required outside production'}`)
    add('jwks', 'skip', 'needs the issuer')
    return
  }
  if (discovery.issuer !== config.issuer) {
    add('issuer', 'fail', `${config.issuer} answers, but its discovery says issuer ${JSON.stringify(discovery.issuer)}: another server, or ISSUER differs between it and here`)
    add('jwks', 'skip', 'needs the issuer')
    return
  }
  add('issuer', 'ok', `${config.issuer} answers discovery`)
  if (!published) {
    add('jwks', 'skip', 'needs the keys from the database')
    return
  }
  try {
    const jwks = (await getJson(String(discovery.jwks_uri))) as { keys?: JWK[] }
    const served = new Set((jwks.keys ?? []).map((k) => k.kid))
    const stored = new Set(published.map((k) => k.kid))
    const missing = [...stored].filter((kid) => !served.has(kid))
    const extra = [...served].filter((kid) => kid !== undefined && !stored.has(kid))
    if (missing.length === 0 && extra.length === 0) add('jwks', 'ok', `serves the ${stored.size} published key(s) the database holds`)
    else add('jwks', 'fail', `the served JWKS differs from the database: ${missing.length} key(s) not served${missing.length ? ` (${missing.map((k) => k.slice(0, 8) + '…').join(', ')})` : ''}, ${extra.length} served but not published${extra.length ? ` (${extra.map((k) => String(k).slice(0, 8) + '…').join(', ')})` : ''}; instances that are not up to date, or a cache in front of them`)
  } catch (err) {
    add('jwks', 'fail', `${String(discovery.jwks_uri)} does not answer (${(err as Error).message})`)
  }
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS), headers: { accept: 'application/json' } })
  if (!res.ok) throw new Error(`HTTP ${res.status}`)
  return res.json()
}

/** A database error in words, without the connection string. */
function databaseProblem(err: unknown): string {
  const e = err as { code?: string; message?: string }
  if (isDatabaseUnavailable(err)) return `not reachable (${e.code ?? e.message ?? 'unavailable'}): is PostgreSQL running, and DATABASE_URL right?`
  return `${e.code ? `${e.code}: ` : ''}${(e.message ?? String(err)).replace(/postgres(ql)?:\/\/[^\s]+/g, '[DATABASE_URL]')}`
}
