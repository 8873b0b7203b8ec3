// Test harness: a Tessera app on a fresh database (real PostgreSQL, or the embedded PGlite).
import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import pg from 'pg'
import type { Test } from 'tap'
import { buildApp, type Tessera } from '../../src/app.js'
import type { NewClient } from '../../src/clients/client.js'
import { createClient } from '../../src/clients/clients.store.js'
import type { Clock } from '../../src/clock.js'
import { loadConfig, type Config } from '../../src/config.js'
import { openDatabase, type DatabaseHandle } from '../../src/db/connect.js'
import { migrateToLatest } from '../../src/db/migrate.js'
import type { KeyOptions } from '../../src/keys/lifecycle.js'
import { PasswordHasher } from '../../src/users/passwords.js'
import { createUser } from '../../src/users/users.store.js'
import { clockAt } from './clock.js'

export type Backend = 'postgres' | 'pglite'

/** A fixed KEK for tests (never used outside them). */
export const TEST_KEK = 'test:' + Buffer.alloc(32, 7).toString('base64url')
export const ISSUER = 'https://tessera.test'
export const APP_ORIGIN = 'https://app.example.com'

export interface TestAppOptions {
  env?: Record<string, string>
  backend?: Backend
  /** The app's clock (a ManualClock the test moves); the wall clock by default. */
  clock?: Clock
  /** Shorthand: milliseconds since the epoch from the test, with the wall clock's timers. */
  now?: () => number
}

export interface TestApp extends Tessera {
  config: Config
  database: DatabaseHandle
  /** The PostgreSQL URL of this test's own database (postgres backend only). */
  databaseUrl: string | undefined
  /** Every log line the app wrote. */
  logs: string[]
  createUser(username: string, password: string, roles?: string[]): Promise<{ id: string; username: string }>
  createClient(input?: Partial<NewClient>): Promise<{ id: string; secret: string | undefined }>
}

/** The admin URL of the PostgreSQL that `npm test` provides; fails the test loudly without it. */
export function adminUrl(): string {
  const url = process.env.TESSERA_TEST_PG_URL
  if (!url) throw new Error('TESSERA_TEST_PG_URL is not set: run the tests with `npm test`, which provides PostgreSQL')
  return url
}

/** Creates an empty database in the test cluster; dropped when the test ends. */
export async function freshDatabase(t: Test): Promise<string> {
  const admin = adminUrl()
  const name = `tessera_t_${randomBytes(6).toString('hex')}`
  const client = new pg.Client({ connectionString: admin })
  await client.connect()
  await client.query(`create database ${name}`)
  await client.end()
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: admin })
    await c.connect()
    await c.query(`drop database if exists ${name} with (force)`)
    await c.end()
  })
  const url = new URL(admin)
  url.pathname = `/${name}`
  return url.toString()
}

export function testEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    ISSUER,
    KEY_ENCRYPTION_KEY: TEST_KEK,
    LOG_LEVEL: 'info',
    DATA_DIR: '/nonexistent-tessera-test-data',
    // Scheduled key rotation off unless a test turns it on: with it on, every instance keeps a
    // published standby key, i.e. two keys in the JWKS (README "Signing keys"; test/**/keys*.test.ts).
    KEY_ROTATION_INTERVAL_SECONDS: '0',
    ...extra,
  }
}

/** Builds an app on a fresh, migrated database; everything is torn down with the test. */
export async function testApp(t: Test, opts: TestAppOptions = {}): Promise<TestApp> {
  const backend = opts.backend ?? 'postgres'
  const databaseUrl = backend === 'postgres' ? await freshDatabase(t) : undefined
  const config = loadConfig(testEnv({ ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}), ...opts.env }))
  const database = await openDatabase(databaseUrl ? { kind: 'postgres', url: databaseUrl, poolSize: config.databasePoolSize, acquireTimeoutMs: config.dbAcquireTimeoutMs, lockTimeoutMs: config.lockTimeoutMs } : { kind: 'pglite', dataDir: undefined })
  await migrateToLatest(database.db)
  const logs: string[] = []
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter((l) => l !== ''))
      cb()
    },
  })
  const clock = opts.clock ?? (opts.now ? clockAt(opts.now) : undefined)
  const tessera = await buildApp({ config, database, logStream, ...(clock ? { clock } : {}) })
  t.teardown(async () => {
    await tessera.close()
    await database.close()
  })
  const hasher = new PasswordHasher(config.argon2)
  return {
    ...tessera,
    config,
    database,
    databaseUrl,
    logs,
    async createUser(username, password, roles = []) {
      const user = await createUser(database.db, { username, passwordHash: await hasher.hash(password), roles })
      if (!user) throw new Error(`user ${username} exists`)
      return { id: user.id, username: user.username }
    },
    async createClient(input = {}) {
      const { client, secret } = await createClient(database.db, {
        name: 'test client',
        isPublic: false,
        grantTypes: ['client_credentials', 'refresh_token', 'password'],
        scopes: ['openid', 'read', 'write'],
        audience: ['https://api.example.com'],
        ...input,
      })
      return { id: client.id, secret }
    },
  }
}

/** `Authorization: Basic` for a client (RFC 6749 §2.3.1 form-encoding). */
export function basic(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+')
  return 'Basic ' + Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')
}

/** A form-encoded body. */
export function form(params: Record<string, string>): string {
  return new URLSearchParams(params).toString()
}

export const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

/** POST /token with a form body and optional Basic auth. */
export function tokenRequest(app: Pick<TestApp, 'app'>, params: Record<string, string>, auth?: { id: string; secret?: string | undefined }) {
  return app.app.inject({
    method: 'POST',
    url: '/token',
    headers: { ...FORM, ...(auth?.secret !== undefined ? { authorization: basic(auth.id, auth.secret) } : {}) },
    payload: form(auth && auth.secret === undefined ? { client_id: auth.id, ...params } : params),
  })
}

/** A user with a password login on a confidential body-delivery client: returns the token response. */
export async function passwordLogin(app: Pick<TestApp, 'app'>, client: { id: string; secret?: string | undefined }, username: string, password: string, scope = 'openid read') {
  const res = await tokenRequest(app, { grant_type: 'password', username, password, scope }, client)
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return res.json() as { access_token: string; refresh_token: string; id_token?: string; scope: string; expires_in: number }
}

/** The options of a key lifecycle call on `app`'s keys (KEKs, policy), at `nowMs` (the wall clock by default). */
export function keyOptions(app: { services: Tessera['services'] }, nowMs = app.services.clock.nowMs()): KeyOptions {
  return { keks: app.services.keyring.keks, policy: app.services.keyring.policy, nowMs }
}
