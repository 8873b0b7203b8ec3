// Real `tessera` processes (bin/tessera.js → dist/) for tests: spawn, wait until ready, call over HTTP.
// Needs a built dist/ (`npm run build`, done by `npm ci`'s prepare).
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { JSONWebKeySet } from 'jose'
import pg from 'pg'
import type { Test } from 'tap'
import { CONFIG_VARIABLES } from '../../src/config.js'
import { basic, FORM, form, TEST_KEK } from './app.js'

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = join('bin', 'tessera.js')
export const API = 'https://api.example.com'
export const ALICE_PASSWORD = 'correct horse battery staple'

// Every variable Tessera reads, and the test database URL: a child sees only what its test sets.
const CONFIG_VARS = new Set([...CONFIG_VARIABLES.map((v) => v.name), 'TESSERA_TEST_PG_URL'])

/** process.env without DATABASE_URL, TESSERA_TEST_PG_URL or any other Tessera setting. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !CONFIG_VARS.has(k)) env[k] = v
  // Log lines are parsed (checkLogs): JSON even in development, where the default is readable lines.
  env.LOG_FORMAT = 'json'
  return env
}

/** A port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer()
    srv.on('error', rej)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => res(port))
    })
  })
}

export function tmpDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-proc-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface Exit { code: number | null; signal: NodeJS.Signals | null }

export interface Proc {
  name: string
  child: ChildProcess
  stdout: string[]
  stderr: string[]
  /** Resolves once the process has exited and its output is drained. */
  exited: Promise<Exit>
}

export interface Server extends Proc {
  port: number
  url: string
}

/** Spawns `node bin/tessera.js …`, collecting its output; SIGKILLed at teardown if still alive. */
export function spawnTessera(t: Test, name: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: repoRoot, env, stdio: ['pipe', 'pipe', 'pipe'] })
  const stdout: string[] = []
  const stderr: string[] = []
  child.stdout!.setEncoding('utf8').on('data', (c: string) => stdout.push(c))
  child.stderr!.setEncoding('utf8').on('data', (c: string) => stderr.push(c))
  const exited = new Promise<Exit>((res) => {
    child.on('error', (err) => { stderr.push(`spawn error: ${err.message}`); res({ code: null, signal: null }) })
    child.on('close', (code, signal) => res({ code, signal }))
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
    if (!t.passing()) t.comment(`--- ${name} stdout ---\n${stdout.join('')}\n--- ${name} stderr ---\n${stderr.join('')}`)
  })
  return { name, child, stdout, stderr, exited }
}

export function startServer(t: Test, name: string, env: Record<string, string>, port: number): Server {
  const proc = spawnTessera(t, name, ['serve'], { ...env, PORT: String(port) })
  proc.child.stdin!.end()
  return { ...proc, port, url: `http://127.0.0.1:${port}` }
}

/** The exit of `proc`, or 'timeout' after `ms`. */
export async function exitWithin(proc: Proc, ms: number): Promise<Exit | 'timeout'> {
  const ac = new AbortController()
  const timer = sleep(ms, 'timeout' as const, { signal: ac.signal }).catch(() => 'timeout' as const)
  try {
    return await Promise.race([proc.exited, timer])
  } finally {
    ac.abort() // a pending timer would keep the test process alive
  }
}

/** Polls GET /readyz until 200; fails at once if the process exits. */
export async function waitReady(server: Server, timeoutMs: number): Promise<number> {
  const started = Date.now()
  let exited = false
  void server.exited.then(() => { exited = true })
  while (Date.now() - started < timeoutMs) {
    if (exited) throw new Error(`${server.name} exited before it was ready:\n${server.stderr.join('')}${server.stdout.join('')}`)
    try {
      const res = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(2000) })
      await res.arrayBuffer()
      if (res.status === 200) return Date.now() - started
    } catch { /* not listening yet */ }
    await sleep(200)
  }
  throw new Error(`${server.name} not ready after ${timeoutMs} ms:\n${server.stderr.join('')}${server.stdout.join('')}`)
}

/** Runs a CLI command to completion (killed after 60 s); `stdin` is written and closed. */
export async function runCli(t: Test, args: string[], env: Record<string, string>, stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawnTessera(t, `tessera ${args.join(' ')}`, args, env)
  proc.child.stdin!.end(stdin)
  const exit = await exitWithin(proc, 60_000)
  if (exit === 'timeout') throw new Error(`tessera ${args.join(' ')} did not finish in 60 s`)
  return { code: exit.code, stdout: proc.stdout.join(''), stderr: proc.stderr.join('') }
}

export interface Client { id: string; secret: string }
// Response bodies are checked field by field.
export type Body = any // eslint-disable-line @typescript-eslint/no-explicit-any

/** POST /token with Basic client authentication and a form body. */
export async function token(base: string, client: Client, params: Record<string, string>): Promise<{ status: number; body: Body }> {
  const res = await fetch(`${base}/token`, { method: 'POST', headers: { ...FORM, authorization: basic(client.id, client.secret) }, body: form(params) })
  return { status: res.status, body: await res.json() }
}

export async function getJwks(base: string): Promise<{ etag: string | null; jwks: JSONWebKeySet }> {
  const res = await fetch(`${base}/.well-known/jwks.json`)
  if (res.status !== 200) throw new Error(`JWKS: ${res.status}`)
  return { etag: res.headers.get('etag'), jwks: (await res.json()) as JSONWebKeySet }
}

/** Every stdout line is a JSON object, and neither stream contains any of `secrets`. */
export function checkLogs(t: Test, proc: Proc, secrets: string[]) {
  const lines = proc.stdout.join('').split('\n').filter((l) => l !== '')
  t.ok(lines.length > 0, `${proc.name} logged`)
  const notJson = lines.filter((l) => { try { return typeof JSON.parse(l) !== 'object' } catch { return true } })
  t.same(notJson, [], `${proc.name}: every stdout line is JSON`)
  const all = proc.stdout.join('') + proc.stderr.join('')
  const leaked = secrets.filter((s) => s.length > 0 && all.includes(s))
  t.equal(leaked.length, 0, `${proc.name}: no password, client secret or token in the output`)
  return lines.map((l) => JSON.parse(l) as Body)
}


/** The environment of production instances sharing the PostgreSQL at `url` (migrated by command). */
export function sharedDatabaseEnv(t: Test, url: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...baseEnv(),
    DATABASE_URL: url,
    NODE_ENV: 'production',
    ISSUER: 'https://tessera.test',
    KEY_ENCRYPTION_KEY: TEST_KEK,
    CACHE_REFRESH_SECONDS: '1',
    MIGRATE_ON_START: 'false',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    DATA_DIR: tmpDir(t),
    ...extra,
  }
}

/** A direct connection to `url` for checking rows; closed at teardown, before the database is dropped. */
export async function sqlClient(t: Test, url: string): Promise<pg.Client> {
  const sql = new pg.Client({ connectionString: url })
  sql.on('error', () => undefined) // the database is dropped with (force) at teardown
  await sql.connect()
  t.teardown(() => sql.end()) // LIFO: before freshDatabase drops the database
  return sql
}
