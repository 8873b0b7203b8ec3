// PostgreSQL stopped in the middle of a refresh burst (DESIGN.md: a database outage is a 503,
// never a half-done write, never invalid_grant). The test runs its own cluster so that it can
// stop it: `pg_ctl stop -m immediate` (like a crash), then start it again on the same port.
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { createClient } from '../../src/clients/clients.store.js'
import { loadConfig } from '../../src/config.js'
import { openDatabase } from '../../src/db/connect.js'
import { migrateToLatest } from '../../src/db/migrate.js'
import { PasswordHasher } from '../../src/users/passwords.js'
import { createUser } from '../../src/users/users.store.js'
import { startCluster } from '../../scripts/pg-cluster.mjs'
import { basic, FORM, form, testEnv } from '../helpers/app.js'

const SESSIONS = 16
const PASSWORD = 'correct horse battery staple'

t.test('PostgreSQL stopped during a refresh burst: only 200 or 503, nothing half-written, every session recovers', async (t) => {
  // Commits are acknowledged only once their WAL is written (synchronous_commit=on): what a client
  // was told survives the crash. fsync stays off: the OS keeps its buffers when only PostgreSQL stops.
  const pgc = await startCluster({ settings: { fsync: 'off', max_connections: '100' } })
  t.teardown(() => pgc.stop())
  const config = loadConfig(testEnv({ DATABASE_URL: pgc.url, REFRESH_GRACE_SECONDS: '120', DB_ACQUIRE_TIMEOUT_MS: '1000', DATABASE_POOL_SIZE: '8' }))
  const database = await openDatabase({ kind: 'postgres', url: pgc.url, poolSize: config.databasePoolSize, acquireTimeoutMs: config.dbAcquireTimeoutMs, lockTimeoutMs: config.lockTimeoutMs })
  await migrateToLatest(database.db)
  const logs: string[] = []
  const logStream = new Writable({ write(chunk, _enc, cb) { logs.push(String(chunk)); cb() } })
  const tessera = await buildApp({ config, database, logStream })
  t.teardown(async () => {
    await tessera.close()
    await database.close()
  })
  const { app } = tessera
  const hasher = new PasswordHasher(config.argon2)
  await createUser(database.db, { username: 'alice', passwordHash: await hasher.hash(PASSWORD), roles: [] })
  const { client, secret } = await createClient(database.db, { name: 'api', isPublic: false, grantTypes: ['password', 'refresh_token'], scopes: ['read'], audience: [] })
  const auth = { ...FORM, authorization: basic(client.id, secret!) }
  const post = (params: Record<string, string>) => app.inject({ method: 'POST', url: '/token', headers: auth, payload: form(params) })

  const current: string[] = []
  for (let i = 0; i < SESSIONS; i++) {
    const res = await post({ grant_type: 'password', username: 'alice', password: PASSWORD, scope: 'read' })
    t.equal(res.statusCode, 200)
    current.push(res.json().refresh_token)
  }

  const statuses = new Map<number, number>()
  const unexpected: string[] = []
  let stopping = false
  let okAfterRestart = 0
  let restarted = false
  // Each session refreshes in a loop, like a client would: on 503 it keeps its token and retries.
  const sessions = current.map(async (_, i) => {
    while (!stopping) {
      const res = await post({ grant_type: 'refresh_token', refresh_token: current[i]! })
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      if (res.statusCode === 200) {
        current[i] = res.json().refresh_token
        if (restarted) okAfterRestart++
      } else if (res.statusCode === 503) {
        if (res.json().error !== 'temporarily_unavailable' || res.headers['retry-after'] !== '5') unexpected.push(`503 body ${res.body}`)
        await sleep(50)
      } else {
        unexpected.push(`${res.statusCode} ${res.body}`)
        await sleep(50)
      }
    }
  })

  await sleep(400)
  pgc.cluster.halt()
  await sleep(1500)
  const down = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(down.statusCode, 503, 'not ready while PostgreSQL is down')
  pgc.cluster.resume()
  restarted = true
  const deadline = Date.now() + 30_000
  while (okAfterRestart < SESSIONS * 3 && Date.now() < deadline) await sleep(100)
  stopping = true
  await Promise.all(sessions)

  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}, successes after the restart: ${okAfterRestart}`)
  t.same(unexpected, [], 'every answer was 200 or 503 temporarily_unavailable with Retry-After: no 500, no invalid_grant')
  t.ok((statuses.get(503) ?? 0) > 0, 'the outage was seen (503s)')
  t.ok(okAfterRestart >= SESSIONS * 3, 'the burst went on after PostgreSQL came back')
  t.notOk(logs.some((l) => current.some((rt) => l.includes(rt))), 'no refresh token in the logs')
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, 'ready again')

  // Every session's newest token works, and the database holds no half-done rotation.
  for (const [i, rt] of current.entries()) {
    const res = await post({ grant_type: 'refresh_token', refresh_token: rt })
    t.equal(res.statusCode, 200, `session ${i} still refreshes`)
  }
  const db = database.db
  const families = await db.selectFrom('refresh_token_family').select(['id', 'revoked_at']).execute()
  t.equal(families.length, SESSIONS)
  t.ok(families.every((f) => f.revoked_at === null), 'no family was revoked')
  const orphans = await db.selectFrom('refresh_token as p').leftJoin('refresh_token as c', 'c.id', 'p.successor_id').select('p.id').where('p.used_at', 'is not', null).where('c.id', 'is', null).execute()
  t.same(orphans, [], 'every used token has its successor row')
  const unlinked = await db.selectFrom('refresh_token as c').leftJoin('refresh_token as p', 'p.id', 'c.parent_id').select('c.id').where('c.parent_id', 'is not', null).where((eb) => eb.or([eb('p.successor_id', 'is', null), eb('p.successor_id', '!=', eb.ref('c.id'))])).execute()
  t.same(unlinked, [], 'every successor is its parent’s recorded successor')
  const live = await db.selectFrom('refresh_token').select(['family_id']).where('used_at', 'is', null).execute()
  t.equal(live.length, SESSIONS, 'exactly one unused token per family')
  t.equal(new Set(live.map((r) => r.family_id)).size, SESSIONS)
  const retried = await db.selectFrom('audit_event').select((eb) => eb.fn.countAll<number>().as('n')).where('type', '=', 'refresh_token.retried').executeTakeFirstOrThrow()
  t.comment(`retries answered from the grace window (a commit whose answer was lost in the crash): ${retried.n}`)
})
