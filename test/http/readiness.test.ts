// The readiness gate (src/http/readiness.ts): an app that listens before start-up is done answers
// 503 temporarily_unavailable on every route that needs the database or the keys, while /healthz,
// /readyz and /metrics answer; once open, the routes work. (Real processes: start-without-db.test.ts.)
import { Writable } from 'node:stream'
import t from 'tap'
import { createApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { openDatabase } from '../../src/db/connect.js'
import { migrateToLatest } from '../../src/db/migrate.js'
import { isDatabaseUnavailable } from '../../src/errors.js'
import { basic, FORM, form, freshDatabase, testEnv } from '../helpers/app.js'
import { freePort } from '../helpers/processes.js'

const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable, retry later' }
const quiet = () => new Writable({ write: (_c, _e, cb) => cb() })

const GATED: Array<{ method: 'GET' | 'POST' | 'OPTIONS'; url: string; headers?: Record<string, string>; payload?: string }> = [
  { method: 'POST', url: '/token', headers: { ...FORM, authorization: basic('c', 's') }, payload: form({ grant_type: 'client_credentials' }) },
  { method: 'POST', url: '/login', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ username: 'a', password: 'b', client_id: 'c' }) },
  { method: 'POST', url: '/refresh', headers: { origin: 'https://app.example.com', cookie: '__Secure-tessera_rt=tsr_x' } },
  { method: 'POST', url: '/revoke', headers: FORM, payload: form({ token: 'x', client_id: 'c' }) },
  { method: 'POST', url: '/introspect', headers: FORM, payload: form({ token: 'x' }) },
  { method: 'GET', url: '/userinfo', headers: { authorization: 'Bearer x' } },
  { method: 'POST', url: '/logout' },
  { method: 'GET', url: '/.well-known/jwks.json' },
  { method: 'OPTIONS', url: '/.well-known/jwks.json' },
  { method: 'GET', url: '/.well-known/openid-configuration' },
  { method: 'GET', url: '/.well-known/oauth-authorization-server' },
  { method: 'GET', url: '/admin/keys', headers: { authorization: 'Bearer x' } },
  { method: 'POST', url: '/token', headers: { 'content-type': 'text/plain' }, payload: 'not even a form' },
  { method: 'GET', url: '/no-such-route' },
]

t.test('database unreachable: every route but the probes and /metrics is 503 temporarily_unavailable, nothing hangs', async (t) => {
  const url = `postgres://postgres@127.0.0.1:${await freePort()}/nowhere`
  const config = loadConfig(testEnv({ DATABASE_URL: url, DB_ACQUIRE_TIMEOUT_MS: '1000' }))
  const database = await openDatabase({ kind: 'postgres', url, poolSize: 2, acquireTimeoutMs: 1000, lockTimeoutMs: 1000 })
  t.teardown(() => database.close())
  const tessera = await createApp({ config, database, logStream: quiet() })
  const { app, readiness } = tessera

  t.same(readiness, { ready: false, draining: false, reason: 'starting' }, 'not ready when built')
  for (const req of GATED) {
    const res = await app.inject(req)
    const name = `${req.method} ${req.url}${req.headers?.['content-type'] === 'text/plain' ? ' (a wrong content type)' : ''}`
    t.equal(res.statusCode, 503, name)
    t.same(res.json(), UNAVAILABLE, `${name}: body`)
    t.equal(res.headers['retry-after'], '5', `${name}: Retry-After`)
    t.equal(res.headers['cache-control'], 'no-store', `${name}: no-store`)
  }

  const healthz = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(healthz.statusCode, 200, '/healthz: the process is alive')
  t.same(healthz.json(), { status: 'ok' })
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(metrics.statusCode, 200, '/metrics answers (no database needed)')

  const prepared = await tessera.prepare().then(() => undefined, (err: unknown) => err)
  t.ok(isDatabaseUnavailable(prepared), `one start-up attempt fails as "database unavailable", which start-up retries (${(prepared as Error).message})`)
  readiness.reason = 'database unavailable (ECONNREFUSED)'
  const readyz = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(readyz.statusCode, 503)
  t.same(readyz.json(), { status: 'starting', reason: 'database unavailable (ECONNREFUSED)' }, '/readyz says why')
  t.equal(readyz.headers['retry-after'], '5')
  t.equal(readyz.headers['cache-control'], 'no-store')
  t.notOk(readyz.body.includes(new URL(url).port), 'no connection detail in the body')

  await tessera.close()
  t.equal(readiness.draining, true, 'closing while starting drains')
  await tessera.open()
  t.equal(readiness.ready, false, 'an instance that closed while starting never opens')
})

t.test('on a migrated database: closed until prepare() and open(), then every route works', async (t) => {
  const url = await freshDatabase(t)
  const config = loadConfig(testEnv({ DATABASE_URL: url }))
  const database = await openDatabase({ kind: 'postgres', url, poolSize: 4, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  t.teardown(() => database.close())
  await migrateToLatest(database.db)
  const tessera = await createApp({ config, database, logStream: quiet() })
  t.teardown(() => tessera.close())
  const { app } = tessera

  t.equal((await database.db.selectFrom('signing_key').select('kid').execute()).length, 0, 'building the app ran no query: no key yet')
  t.equal((await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).statusCode, 503, 'JWKS: 503 before the keys are loaded')
  await tessera.prepare()
  t.equal((await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).statusCode, 503, 'still 503 until open()')
  await tessera.open()
  const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(jwks.statusCode, 200, 'JWKS once open')
  t.same(jwks.json().keys.map((k: { alg: string }) => k.alg).sort(), ['ES256', 'RS256'], 'the keys prepare() created: one per line')
  const discovery = await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })
  t.equal(discovery.statusCode, 200)
  t.same(discovery.json().id_token_signing_alg_values_supported, ['ES256', 'RS256'], 'discovery lists the loaded keys’ algorithms')
  t.same((await app.inject({ method: 'GET', url: '/readyz' })).json(), { status: 'ready' })
  const token = await app.inject({ method: 'POST', url: '/token', headers: { ...FORM, authorization: basic('nobody', 'x') }, payload: form({ grant_type: 'client_credentials' }) })
  t.equal(token.statusCode, 401, '/token reaches client authentication')
})
