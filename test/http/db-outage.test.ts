import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import pg from 'pg'
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { openDatabase } from '../../src/db/connect.js'
import { isDatabaseUnavailable } from '../../src/errors.js'
import { hashRefreshToken } from '../../src/tokens/refresh-token.js'
import { APP_ORIGIN, basic, FORM, form, testApp, testEnv, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery staple'
const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable, retry later' }

/**
 * A TCP proxy between Tessera and PostgreSQL that can fail like a network does:
 * `cut()` resets every open connection and refuses new ones, `blackhole()` silently
 * stops moving bytes (a partition), `restore()` forwards again.
 */
class FaultyProxy {
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private mode: 'up' | 'cut' | 'blackhole' = 'up'
  port = 0

  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((client) => this.accept(client))
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.port = (this.server.address() as AddressInfo).port
  }

  private track(s: Socket): void {
    this.sockets.add(s)
    s.on('close', () => this.sockets.delete(s))
    s.on('error', () => s.destroy())
  }

  private accept(client: Socket): void {
    this.track(client)
    if (this.mode === 'cut') {
      client.resetAndDestroy()
      return
    }
    if (this.mode === 'blackhole') return // accepted, never answered
    const upstream = connect(this.target.port, this.target.host)
    this.track(upstream)
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  }

  /** Resets every open connection; new ones are reset at once. */
  cut(): void {
    this.mode = 'cut'
    for (const s of this.sockets) s.resetAndDestroy()
    this.sockets.clear()
  }

  /** Open connections stay open but carry nothing more; new ones are accepted and never answered. */
  blackhole(): void {
    this.mode = 'blackhole'
    for (const s of this.sockets) {
      s.unpipe()
      s.pause()
    }
  }

  /** Forwards again; connections stuck in a black hole are reset (as TCP would, eventually). */
  restore(): void {
    if (this.mode === 'blackhole') for (const s of this.sockets) s.resetAndDestroy()
    this.mode = 'up'
  }

  async close(): Promise<void> {
    this.cut()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** A proxy in front of the test database's PostgreSQL; closed with the test. */
async function startProxy(t: Test, databaseUrl: string): Promise<{ proxy: FaultyProxy; proxiedUrl: string }> {
  const url = new URL(databaseUrl)
  const proxy = new FaultyProxy({ host: url.hostname, port: Number(url.port || 5432) })
  await proxy.listen()
  t.teardown(() => proxy.close())
  url.hostname = '127.0.0.1'
  url.port = String(proxy.port)
  return { proxy, proxiedUrl: url.toString() }
}

interface Edge {
  app: FastifyInstance
  logs: string[]
}

/** A second Tessera whose only way to the database is through the proxy. */
async function proxiedApp(t: Test, proxy: FaultyProxy, proxiedUrl: string, env: Record<string, string> = {}): Promise<Edge> {
  const config = loadConfig(testEnv({ DATABASE_URL: proxiedUrl, DB_ACQUIRE_TIMEOUT_MS: '1000', DB_LOCK_TIMEOUT_MS: '1000', ...env }))
  const database = await openDatabase({ kind: 'postgres', url: proxiedUrl, poolSize: 5, acquireTimeoutMs: 1000, lockTimeoutMs: config.lockTimeoutMs })
  const logs: string[] = []
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter((l) => l !== ''))
      cb()
    },
  })
  const tessera = await buildApp({ config, database, logStream })
  t.teardown(async () => {
    proxy.restore()
    await tessera.close()
    await database.close()
  })
  return { app: tessera.app, logs }
}

type Client = { id: string; secret?: string | undefined }

function token(app: FastifyInstance, params: Record<string, string>, client: Client): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/token', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form(params) })
}

function refresh(app: FastifyInstance, refreshToken: string, client: Client) {
  return token(app, { grant_type: 'refresh_token', refresh_token: refreshToken }, client)
}

async function login(app: FastifyInstance, client: Client): Promise<{ access_token: string; refresh_token: string }> {
  const res = await token(app, { grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'openid read' }, client)
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

function cookieLogin(app: FastifyInstance, clientId: string) {
  return app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json', origin: APP_ORIGIN }, payload: { username: 'alice', password: PASSWORD, client_id: clientId, scope: 'openid read' } })
}

/** Asserts the one answer a database outage may give. */
function assertUnavailable(t: Test, res: LightMyRequestResponse, what: string): void {
  t.equal(res.statusCode, 503, `${what}: 503 (${res.body.slice(0, 120)})`)
  t.same(res.json(), UNAVAILABLE, `${what}: temporarily_unavailable`)
  t.equal(res.headers['retry-after'], '5', `${what}: Retry-After`)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: no-store`)
  t.notOk('set-cookie' in res.headers, `${what}: no cookie change`)
}

/**
 * Records uncaught exceptions while the test runs. Tessera installs no handler, so in production
 * each of these would have killed the process; here they are collected and asserted on.
 */
function watchCrashes(t: Test): Error[] {
  const crashes: Error[] = []
  const onUncaught = (err: Error) => {
    crashes.push(err)
  }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => {
    process.removeListener('uncaughtException', onUncaught)
  })
  return crashes
}

function assertNoCrash(t: Test, crashes: Error[]): void {
  t.same(crashes.map((e) => `${(e as { code?: string }).code ?? ''} ${e.message}`), [], 'no uncaught exception (it would kill the process)')
}

async function timed<T>(p: Promise<T>): Promise<[T, number]> {
  const start = performance.now()
  const value = await p
  return [value, performance.now() - start]
}

/** A user, a confidential API client and a browser (cookie) client on the real database. */
async function seed(app: TestApp) {
  await app.createUser('alice', PASSWORD)
  const api = await app.createClient()
  const spa = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'], refreshDelivery: 'cookie', allowedOrigins: [APP_ORIGIN] })
  return { api, spa }
}

/** A seeded app on the real database, and a second app ("edge") on the same database through the proxy. */
async function outageSetup(t: Test, edgeEnv: Record<string, string> = {}) {
  const crashes = watchCrashes(t)
  const app = await testApp(t)
  const { api, spa } = await seed(app)
  const { proxy, proxiedUrl } = await startProxy(t, app.databaseUrl!)
  const edge = await proxiedApp(t, proxy, proxiedUrl, edgeEnv)
  return { crashes, app, api, spa, proxy, edge }
}

t.test('connection to PostgreSQL cut: every endpoint that needs it answers 503 temporarily_unavailable, never 500 or invalid_grant; nothing half-written; recovery without restart (#126, #79, #129)', async (t) => {
  const { crashes, app, api, spa, proxy, edge } = await outageSetup(t, { CACHE_REFRESH_SECONDS: '1' })

  const session = await login(edge.app, api)
  const spaLogin = await cookieLogin(edge.app, spa.id)
  t.equal(spaLogin.statusCode, 200)
  const cookie = spaLogin.cookies.find((c) => c.value !== '')!
  const cookieHeader = `${cookie.name}=${cookie.value}`
  const jwksBefore = await edge.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(jwksBefore.statusCode, 200)
  t.equal((await edge.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, 'ready before the cut')

  // Warm the client cache, then cut: these fail inside the grant or the store.
  t.equal((await token(edge.app, { grant_type: 'client_credentials' }, api)).statusCode, 200)
  proxy.cut()
  const [phaseA, msA] = await timed(
    Promise.all([
      refresh(edge.app, session.refresh_token, api),
      token(edge.app, { grant_type: 'password', username: 'alice', password: PASSWORD }, api),
      edge.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(api.id, api.secret!) }, payload: form({ token: session.refresh_token }) }),
    ]),
  )
  assertUnavailable(t, phaseA[0], 'refresh_token grant (client cached)')
  assertUnavailable(t, phaseA[1], 'password grant (client cached)')
  assertUnavailable(t, phaseA[2], 'revoke (client cached)')
  t.ok(msA < 3000, `answered in ${Math.round(msA)} ms`)

  // CACHE_REFRESH_SECONDS=1: once the cached client is stale, client authentication itself needs the database.
  await sleep(1200)
  const [phaseB, msB] = await timed(
    Promise.all([
      token(edge.app, { grant_type: 'client_credentials' }, api),
      refresh(edge.app, session.refresh_token, api),
      cookieLogin(edge.app, spa.id),
      edge.app.inject({ method: 'POST', url: '/refresh', headers: { origin: APP_ORIGIN, cookie: cookieHeader } }),
      edge.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(api.id, api.secret!) }, payload: form({ token: session.refresh_token }) }),
      edge.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(api.id, api.secret!) }, payload: form({ token: session.access_token }) }),
      edge.app.inject({ method: 'POST', url: '/introspect', headers: { ...FORM, authorization: basic(api.id, api.secret!) }, payload: form({ token: session.access_token }) }),
      edge.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${session.access_token}` } }),
    ]),
  )
  const names = ['client_credentials', 'refresh_token grant', '/login', '/refresh (cookie)', '/revoke refresh token', '/revoke access token', '/introspect', '/userinfo']
  phaseB.forEach((res, i) => assertUnavailable(t, res, names[i]!))
  t.ok(msB < 3000, `answered in ${Math.round(msB)} ms`)

  const readyz = await edge.app.inject({ method: 'GET', url: '/readyz' })
  t.equal(readyz.statusCode, 503)
  t.same(readyz.json(), { status: 'unavailable', reason: 'database or signing key not available' })
  t.equal(readyz.headers['retry-after'], '5')
  t.notOk(readyz.body.includes(String(proxy.port)), 'no connection detail in the body')
  const healthz = await edge.app.inject({ method: 'GET', url: '/healthz' })
  t.equal(healthz.statusCode, 200)
  t.same(healthz.json(), { status: 'ok' })
  const jwks = await edge.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(jwks.statusCode, 200, 'JWKS is served from memory')
  t.equal(jwks.body, jwksBefore.body)
  t.equal(jwks.headers.etag, jwksBefore.headers.etag)
  t.equal((await edge.app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).statusCode, 200)

  // Through the real database (not the proxy): nothing was written by the failed requests.
  const rows = await app.database.db.selectFrom('refresh_token').select(['token_hash', 'used_at', 'parent_id']).execute()
  t.equal(rows.length, 2, 'the two logins, no successor')
  t.ok(rows.every((r) => r.used_at === null), 'no token marked used')
  const families = await app.database.db.selectFrom('refresh_token_family').select('revoked_at').execute()
  t.ok(families.every((f) => f.revoked_at === null), 'no family revoked')
  t.equal((await app.database.db.selectFrom('revoked_access_token').select('jti').execute()).length, 0, 'no access token denylisted')
  t.notOk(edge.logs.some((l) => l.includes('"status":500')), 'no 500 was logged')

  // #129: back without a restart, within 5 s.
  proxy.restore()
  const start = performance.now()
  let ready = 0
  while (performance.now() - start < 5000) {
    ready = (await edge.app.inject({ method: 'GET', url: '/readyz' })).statusCode
    if (ready === 200) break
    await sleep(100)
  }
  t.equal(ready, 200, `ready again after ${Math.round(performance.now() - start)} ms`)
  t.ok(performance.now() - start < 5000)
  assertNoCrash(t, crashes)
  const again = await refresh(edge.app, session.refresh_token, api)
  t.equal(again.statusCode, 200, 'the same refresh token still works')
  t.match(again.json().refresh_token, /^tsr_/)
  const cookieAgain = await edge.app.inject({ method: 'POST', url: '/refresh', headers: { origin: APP_ORIGIN, cookie: cookieHeader } })
  t.equal(cookieAgain.statusCode, 200, 'the same cookie still works')
})

t.test('the connection of a request in flight is reset: that request gets 503 and the process survives (#126, #127)', async (t) => {
  const { crashes, app, api, proxy, edge } = await outageSetup(t, { DB_LOCK_TIMEOUT_MS: '10000' })
  const first = await login(edge.app, api)
  // Hold the family lock on the real database, so the refresh sits in its transaction, query active.
  const locker = new pg.Client({ connectionString: app.databaseUrl })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('begin')
  await locker.query('select * from refresh_token_family for update')
  const pending = refresh(edge.app, first.refresh_token, api)
  await sleep(300)
  proxy.cut()
  const res = await pending
  await locker.query('rollback')
  await sleep(100)
  assertUnavailable(t, res, 'refresh whose connection was reset')
  assertNoCrash(t, crashes)
  proxy.restore()
  t.equal((await refresh(edge.app, first.refresh_token, api)).statusCode, 200, 'the token still works afterwards')
})

t.test('30 concurrent refreshes of one token with the connection cut midway: only 503s, at most one successor, no orphan rows (#126, #127, #53)', async (t) => {
  const { crashes, app, api, proxy, edge } = await outageSetup(t)
  const first = await login(edge.app, api)

  let cut = false
  const results = await Promise.all(
    Array.from({ length: 30 }, () =>
      refresh(edge.app, first.refresh_token, api).then((res) => {
        // Cut the network as soon as the first answer is out, while the others are in flight.
        if (!cut) {
          cut = true
          proxy.cut()
        }
        return res
      }),
    ),
  )
  proxy.restore()
  const statuses = results.map((r) => r.statusCode)
  t.comment(`statuses: ${JSON.stringify(statuses.reduce<Record<number, number>>((m, s) => ({ ...m, [s]: (m[s] ?? 0) + 1 }), {}))}`)
  t.ok(statuses.every((s) => s === 200 || s === 400 || s === 503), 'only 200, 400 and 503')
  t.ok(statuses.includes(503), 'the cut hit requests in flight')
  // The winner and any retries answered within the grace window carry the one successor.
  t.ok(new Set(results.filter((r) => r.statusCode === 200).map((r) => r.json().refresh_token)).size <= 1, 'at most one successor value among the 200s')
  for (const r of results.filter((r) => r.statusCode === 503)) t.same(r.json(), UNAVAILABLE)
  for (const r of results.filter((r) => r.statusCode === 400)) t.same(r.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' }, 'a loser saw a used token')

  const db = app.database.db
  const rows = await db.selectFrom('refresh_token').select(['id', 'token_hash', 'parent_id', 'used_at', 'successor_id']).execute()
  const byId = new Map(rows.map((r) => [r.id, r]))
  t.ok(rows.length <= 2, 'at most the first token and one successor')
  t.ok(rows.filter((r) => r.parent_id !== null).length <= 1, 'at most one successor')
  for (const row of rows.filter((r) => r.parent_id !== null)) {
    const parent = byId.get(row.parent_id!)
    t.ok(parent, 'the successor has its parent')
    t.not(parent?.used_at, null, 'the parent is marked used')
    t.equal(parent?.successor_id, row.id, 'the parent points at it')
  }
  for (const row of rows.filter((r) => r.used_at !== null)) t.ok(row.successor_id && byId.has(row.successor_id), 'a used token has its successor')
  // A client that got 200 holds a token the database really has (the response followed the COMMIT).
  for (const r of results.filter((r) => r.statusCode === 200)) {
    const hash = hashRefreshToken(r.json().refresh_token)
    t.ok(rows.some((row) => Buffer.from(row.token_hash).equals(hash)), 'the winner’s token was committed')
  }
  t.equal((await db.selectFrom('refresh_token_family').select('id').execute()).length, 1, 'one family')
  assertNoCrash(t, crashes)
})

t.test('a family row locked by another transaction: refresh answers 503 within about DB_LOCK_TIMEOUT_MS, /healthz stays fast, works after rollback (#67, #131, #132)', async (t) => {
  const app = await testApp(t, { env: { DB_LOCK_TIMEOUT_MS: '500' } })
  const { api } = await seed(app)
  const first = await login(app.app, api)
  const locker = new pg.Client({ connectionString: app.databaseUrl })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('begin')
  await locker.query('select * from refresh_token_family for update')

  const pending = timed(refresh(app.app, first.refresh_token, api))
  await sleep(100)
  const [health, healthMs] = await timed(app.app.inject({ method: 'GET', url: '/healthz' }))
  const [res, ms] = await pending
  t.equal(health.statusCode, 200)
  t.ok(healthMs < 100, `/healthz answered in ${Math.round(healthMs)} ms while the refresh waited`)
  assertUnavailable(t, res, 'refresh behind a held lock')
  t.ok(ms >= 450 && ms < 2000, `answered after ${Math.round(ms)} ms (lock timeout 500 ms)`)
  const failed = app.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request failed')
  t.same(
    failed.map((l) => [l.detail, l.dbCode]),
    [['database unavailable', '55P03']],
    'the log says why: lock_not_available (a code, no message)',
  )

  const [revoke, revokeMs] = await timed(app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(api.id, api.secret!) }, payload: form({ token: first.refresh_token }) }))
  assertUnavailable(t, revoke, 'revoke behind a held lock (never a 200 that did nothing)')
  t.ok(revokeMs < 2000, `revoke answered after ${Math.round(revokeMs)} ms`)

  await locker.query('rollback')
  const rows = await app.database.db.selectFrom('refresh_token').select('used_at').execute()
  t.same(rows, [{ used_at: null }], 'nothing was written')
  const after = await refresh(app.app, first.refresh_token, api)
  t.equal(after.statusCode, 200, 'the token works once the lock is released')
})

t.test('pool exhausted by lock waits: 12 refreshes on a pool of 3 all end in 503 within a bounded time, event loop responsive, pool recovers (#131, #67)', async (t) => {
  const app = await testApp(t, { env: { DB_LOCK_TIMEOUT_MS: '500', DB_ACQUIRE_TIMEOUT_MS: '1000', DATABASE_POOL_SIZE: '3' } })
  const { api } = await seed(app)
  const first = await login(app.app, api)
  const locker = new pg.Client({ connectionString: app.databaseUrl })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('begin')
  await locker.query('select * from refresh_token_family for update')

  const burst = timed(Promise.all(Array.from({ length: 12 }, () => refresh(app.app, first.refresh_token, api))))
  const healthTimes: number[] = []
  for (let i = 0; i < 5; i++) {
    await sleep(150)
    const [h, ms] = await timed(app.app.inject({ method: 'GET', url: '/healthz' }))
    t.equal(h.statusCode, 200)
    healthTimes.push(ms)
  }
  const [results, ms] = await burst
  t.ok(Math.max(...healthTimes) < 100, `/healthz stayed fast: ${healthTimes.map(Math.round).join(', ')} ms`)
  results.forEach((r, i) => assertUnavailable(t, r, `refresh ${i}`))
  t.ok(ms < 4000, `all 12 answered within ${Math.round(ms)} ms`)

  await locker.query('rollback')
  const after = await refresh(app.app, first.refresh_token, api)
  t.equal(after.statusCode, 200, 'no connection leaked: the pool serves again')
})

// Packets vanish: no RST, so only a client-side timeout can end the wait. The bound allowed here is
// the statement timeout (15 s for this config) plus slack: a query that ran that long is dead anyway.
t.test('network partition (packets dropped, no reset): a refresh ends in 503 within statement timeout + 5 s, not hang (#131, #126)', async (t) => {
  const { crashes, app, api, proxy, edge } = await outageSetup(t)
  const first = await login(edge.app, api) // leaves idle pooled connections behind
  proxy.blackhole()
  const start = performance.now()
  const outcome = await Promise.race([refresh(edge.app, first.refresh_token, api), sleep(20_000, 'still waiting' as const)])
  const ms = performance.now() - start
  // Unstick anything still waiting before the assertions, so the test ends either way.
  proxy.cut()
  await sleep(200)
  if (outcome === 'still waiting') {
    t.fail(`no answer after ${Math.round(ms)} ms`)
    return
  }
  assertUnavailable(t, outcome, 'refresh during a partition')
  assertNoCrash(t, crashes)
  proxy.restore()
  const start2 = performance.now()
  let again = 0
  while (performance.now() - start2 < 5000 && again !== 200) again = (await refresh(edge.app, first.refresh_token, api)).statusCode
  t.equal(again, 200, 'works again once the partition heals: no connection stays poisoned')
})

t.test('buildApp while PostgreSQL is unreachable fails with an error serve() retries on, then starts once it is back (#130)', async (t) => {
  const app = await testApp(t)
  const { proxy, proxiedUrl } = await startProxy(t, app.databaseUrl!)
  proxy.cut()
  const database = await openDatabase({ kind: 'postgres', url: proxiedUrl, poolSize: 2, acquireTimeoutMs: 1000, lockTimeoutMs: 1000 })
  t.teardown(() => database.close())
  const config = loadConfig(testEnv({ DATABASE_URL: proxiedUrl }))
  const logStream = new Writable({ write: (_c, _e, cb) => cb() })
  const err = await buildApp({ config, database, logStream }).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof Error, 'buildApp rejects')
  t.ok(isDatabaseUnavailable(err), `recognised as "database unavailable" (${(err as Error).message})`)
  proxy.restore()
  const tessera = await buildApp({ config, database, logStream })
  t.teardown(() => tessera.close())
  t.equal((await tessera.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, 'ready once the database is back')
})
