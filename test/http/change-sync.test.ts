// Change propagation inside one process (docs/operations.md "Changes reach every instance"; the process-level
// test is propagation.test.ts): the triggers of migration 0012, the heartbeat, NOTIFY as the only
// way a change arrives while the app's clock stands still (no poll), the LISTEN connection killed
// and re-established, the wait of a command, the embedded database, and DATABASE_LISTEN_URL=off.
import { setTimeout as sleep } from 'node:timers/promises'
import { Writable } from 'node:stream'
import pg from 'pg'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { CLI_CONTEXT } from '../../src/audit/context.js'
import { disableClient } from '../../src/clients/disable-client.js'
import { systemClock } from '../../src/clock.js'
import { ConfigError, loadConfig } from '../../src/config.js'
import { openDatabase } from '../../src/db/connect.js'
import { migrateToLatest } from '../../src/db/migrate.js'
import type { Db } from '../../src/db/schema.js'
import { revokeKey } from '../../src/keys/lifecycle.js'
import { awaitPropagation } from '../../src/propagation/await-propagation.js'
import { changesSince, currentChangeVersion, instanceStatuses, writeHeartbeat } from '../../src/propagation/changes.store.js'
import { disableUser } from '../../src/users/disable-user.js'
import { findUserById, upgradePasswordHash } from '../../src/users/users.store.js'
import { basic, FORM, form, freshDatabase, keyOptions, passwordLogin, testApp, testEnv, tokenRequest, type TestApp } from '../helpers/app.js'
import { runTessera } from '../helpers/cli.js'
import { ManualClock } from '../helpers/clock.js'

const PASSWORD = 'correct horse battery'

/** Polls `check` (real time) until it holds; false after `ms`. For events the test does not drive (a socket closing, a NOTIFY arriving). */
async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await sleep(20)
  }
  return check()
}

/** Disables a client the way any other instance or command would: the use case on the database. */
const disable = (app: TestApp, id: string) => disableClient(app.database.db, id, CLI_CONTEXT)

/** Waits until `app` has applied every change so far (creating a client is one: it drops the client from the cache). */
async function settled(app: TestApp): Promise<boolean> {
  const version = await currentChangeVersion(app.database.db)
  return eventually(() => (app.services.changes.appliedVersion ?? 0) >= version)
}

/** A plain connection to the app's database (closed at teardown, before the database is dropped). */
async function sqlOn(t: Test, url: string): Promise<pg.Client> {
  const sql = new pg.Client({ connectionString: url })
  sql.on('error', () => undefined)
  await sql.connect()
  t.teardown(() => sql.end())
  return sql
}

t.test('the triggers: one version per transaction, an event per key, client and user, NOTIFY with ids only; a password rehash or a rollback bumps nothing', async (t) => {
  const app = await testApp(t)
  const db = app.database.db
  const sql = await sqlOn(t, app.databaseUrl!)
  const payloads: unknown[] = []
  sql.on('notification', (m) => payloads.push(JSON.parse(m.payload!)))
  await sql.query('listen tessera_change')
  const v0 = await currentChangeVersion(db)

  const client = await app.createClient()
  t.equal(await currentChangeVersion(db), v0 + 1, 'a new client is a change (an instance may have cached its absence)')
  const user = await app.createUser('alice', PASSWORD)
  t.equal(await currentChangeVersion(db), v0 + 1, 'a new user is not (users are not cached)')
  await upgradePasswordHash(db, user.id, (await findUserById(db, user.id))!.passwordHash, 'x')
  t.equal((await findUserById(db, user.id))!.passwordHash, 'x', 'the rehash was written')
  await upgradePasswordHash(db, user.id, 'a hash replaced meanwhile', 'y')
  t.equal((await findUserById(db, user.id))!.passwordHash, 'x', 'a rehash never overwrites a password set since the login read it')
  t.equal(await currentChangeVersion(db), v0 + 1, 'a password rehash at login bumps nothing')
  await disableUser(db, 'alice', CLI_CONTEXT)
  t.equal(await currentChangeVersion(db), v0 + 2, 'a disabled user is')
  await disableUser(db, 'alice', CLI_CONTEXT)
  t.equal(await currentChangeVersion(db), v0 + 2, 'disabling again changes nothing')
  await t.rejects(db.transaction().execute(async (trx) => {
    await trx.updateTable('client').set({ name: 'renamed' }).where('id', '=', client.id).execute()
    throw new Error('rolled back')
  }))
  t.equal(await currentChangeVersion(db), v0 + 2, 'a rolled-back change leaves no version behind')

  const active = await db.selectFrom('signing_key').select('kid').where('state', '=', 'active').executeTakeFirstOrThrow()
  const r = await revokeKey(db, keyOptions(app), active.kid)
  t.equal(await currentChangeVersion(db), v0 + 3, 'a revoke changing two rows (the revoked key, its successor) is one version')
  const events = await changesSince(db, v0, 100)
  t.same(events, [
    { version: v0 + 1, kind: 'client', subject: client.id },
    { version: v0 + 2, kind: 'user', subject: user.id },
    ...[active.kid, r.successor!].sort().map((kid) => ({ version: v0 + 3, kind: 'keys', subject: kid })),
  ])
  t.ok(await eventually(() => payloads.length >= 4), 'NOTIFY delivered at commit')
  t.same(payloads.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))), [
    { version: v0 + 1, kind: 'client', id: client.id },
    { version: v0 + 2, kind: 'user', id: user.id },
    ...[active.kid, r.successor!].sort().map((kid) => ({ version: v0 + 3, kind: 'keys', id: kid })),
  ].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))), 'payloads: version, kind and id, nothing else')
})

t.test('the heartbeat: what the instance applied, rewritten every second of its clock, removed when it stops', async (t) => {
  const clock = new ManualClock()
  const app = await testApp(t, { clock })
  const db = app.database.db
  const me = app.services.changes.identity
  const row = () => db.selectFrom('instance_heartbeat').selectAll().where('instance_id', '=', me.instanceId).executeTakeFirst()
  const first = await row()
  t.match(first, { host: me.host, pid: process.pid, change_version: String(await currentChangeVersion(db)), key_set_version: app.services.keyring.version })
  t.same(await instanceStatuses(db, 5), [{ instanceId: me.instanceId, host: me.host, pid: process.pid, changeVersion: await currentChangeVersion(db), live: true }])

  await sleep(20) // the database's now() moves
  clock.advance(1000)
  t.ok(await eventually(async () => (await row())!.heartbeat_at > first!.heartbeat_at), 'rewritten after a second of the app\'s clock')
  await db.updateTable('instance_heartbeat').set({ heartbeat_at: new Date(Date.now() - 60_000) }).execute()
  t.same((await instanceStatuses(db, 5)).map((s) => s.live), [false], 'older than the staleness bound: not live')

  // Once a minute of its clock, an instance deletes heartbeats silent for an hour and events older than a day.
  const dead = { instanceId: '00000000-0000-4000-8000-0000000000de', host: 'gone', pid: 1 }
  await writeHeartbeat(db, dead, { changeVersion: 0, keySetVersion: 'x' })
  await db.updateTable('instance_heartbeat').set({ heartbeat_at: new Date(Date.now() - 3_601_000) }).where('instance_id', '=', dead.instanceId).execute()
  await app.createClient()
  await db.updateTable('change_event').set({ at: new Date(Date.now() - 86_401_000) }).execute()
  const recent = await app.createClient()
  clock.advance(60_000)
  t.ok(await eventually(async () => (await instanceStatuses(db, 5)).every((s) => s.instanceId !== dead.instanceId)), 'the dead instance\'s row is pruned')
  t.ok(await eventually(async () => (await changesSince(db, 0, 100)).every((e) => e.subject === recent.id)), 'old change events are pruned')
  t.same((await changesSince(db, 0, 100)).map((e) => e.subject), [recent.id], 'the recent one stays')
  t.ok((await row()) !== undefined, 'its own row stays')

  // A second instance, stopped by the test: its row goes with it.
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 2, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  t.teardown(() => database.close())
  const b = await buildApp({ config: app.config, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
  t.equal((await instanceStatuses(db, 5)).length, 2)
  await b.close()
  t.same((await instanceStatuses(db, 5)).map((s) => s.instanceId), [me.instanceId], 'a stopped instance removes its heartbeat')
})

t.test('a client disabled elsewhere is dropped from the cache by NOTIFY alone (the app\'s clock stands still: no poll, no expiry)', async (t) => {
  const clock = new ManualClock()
  const app = await testApp(t, { clock })
  t.ok(app.services.changes.listening, 'LISTEN is in place')
  const client = await app.createClient()
  t.ok(await settled(app))
  t.equal((await app.services.clients.get(client.id))?.disabled, false, 'cached, enabled')
  t.equal(await disable(app, client.id), true)
  const target = await currentChangeVersion(app.database.db)
  t.ok(await eventually(() => (app.services.changes.appliedVersion ?? 0) >= target), 'applied on NOTIFY')
  t.equal((await app.services.clients.get(client.id))?.disabled, true, 'the cache answers disabled')
  const report = await awaitPropagation(app.database.db, { clock: systemClock, waitSeconds: 5, staleSeconds: 5 })
  t.same(report.confirmed.map((i) => i.instance), [app.services.changes.identity.instanceId], 'and its heartbeat says so')
  t.same(report.unconfirmed, [])
  const res = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
  t.equal(res.statusCode, 401, 'refused at /token')
})

t.test('the LISTEN connection is terminated: the instance reconnects after a backoff, reloads what it missed, and NOTIFY works again', async (t) => {
  const clock = new ManualClock()
  const app = await testApp(t, { clock })
  const sql = await sqlOn(t, app.databaseUrl!)
  const missed = await app.createClient()
  const later = await app.createClient()
  t.ok(await settled(app))
  for (const c of [missed, later]) t.equal((await app.services.clients.get(c.id))?.disabled, false, 'cached')

  const { rows } = await sql.query(`select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = current_database() and application_name = 'tessera-listen'`)
  t.same(rows, [{ ok: true }], 'its one LISTEN connection is terminated')
  t.ok(await eventually(() => !app.services.changes.listening), 'the instance notices')
  t.ok(app.logs.some((l) => l.includes('"level":40') && l.includes('change listener: no LISTEN connection; reconnecting')), 'and logs a warning')

  // A change while nobody listens: its NOTIFY is lost.
  await disable(app, missed.id)
  const v1 = await currentChangeVersion(app.database.db)
  await sleep(200)
  t.equal((await app.services.clients.get(missed.id))?.disabled, false, 'not applied yet: the clock stands still, so no poll')

  clock.advance(150) // the first reconnection attempt comes 100 ms (±20 %) after the loss
  t.ok(await eventually(() => app.services.changes.listening), 'LISTENs again')
  t.ok(await eventually(() => (app.services.changes.appliedVersion ?? 0) >= v1), 'the full reload after the reconnection applies the missed change')
  t.equal((await app.services.clients.get(missed.id))?.disabled, true, 'the missed disable is seen')
  t.ok(app.logs.some((l) => l.includes('change listener: listening again')), 'and logs it')

  await disable(app, later.id)
  const v2 = await currentChangeVersion(app.database.db)
  t.ok(await eventually(() => (app.services.changes.appliedVersion ?? 0) >= v2), 'a later change arrives by NOTIFY (the clock still stands still)')
  t.equal((await app.services.clients.get(later.id))?.disabled, true)
})

t.test('awaitPropagation: who is waited for, who confirmed, and the bound', async (t) => {
  const url = await freshDatabase(t)
  const database = await openDatabase({ kind: 'postgres', url, poolSize: 2, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  t.teardown(() => database.close())
  const db: Db = database.db
  await migrateToLatest(db)
  const wait = (o: { waitSeconds: number; clock?: ManualClock }) => awaitPropagation(db, { clock: o.clock ?? systemClock, waitSeconds: o.waitSeconds, staleSeconds: 5, pollMs: 5 })
  const A = { instanceId: '00000000-0000-4000-8000-00000000000a', host: 'a', pid: 1 }
  const B = { instanceId: '00000000-0000-4000-8000-00000000000b', host: 'b', pid: 2 }
  const ref = (who: typeof A, v: number) => ({ instance: who.instanceId, host: who.host, pid: who.pid, change_version: v })

  t.match(await wait({ waitSeconds: 5 }), { version: 0, confirmed: [], unconfirmed: [] }, 'no instance: nothing to wait for')
  await writeHeartbeat(db, A, { changeVersion: 0, keySetVersion: 'x' })
  await writeHeartbeat(db, B, { changeVersion: 0, keySetVersion: 'x' })
  t.match(await wait({ waitSeconds: 5 }), { version: 0, confirmed: [ref(A, 0), ref(B, 0)], unconfirmed: [] }, 'nothing changed: both are there already')

  await db.insertInto('client').values({ id: 'c_1', name: 'c', secret_hash: null, grant_types: [], scopes: [], refresh_delivery: 'body' }).execute()
  t.match(await wait({ waitSeconds: 0 }), { version: 1, confirmed: [], unconfirmed: [ref(A, 0), ref(B, 0)] }, 'waitSeconds 0: one look')

  const caughtUp = wait({ waitSeconds: 60 })
  await sleep(50)
  await writeHeartbeat(db, A, { changeVersion: 1, keySetVersion: 'x' })
  await sleep(50)
  await writeHeartbeat(db, B, { changeVersion: 1, keySetVersion: 'x' })
  const r1 = await caughtUp
  t.match(r1, { version: 1, confirmed: [ref(A, 1), ref(B, 1)], unconfirmed: [] }, 'the wait ends when the last one confirms')
  t.ok(r1.waited_ms >= 90 && r1.waited_ms < 60_000, `not before (${r1.waited_ms} ms)`)

  await db.updateTable('client').set({ name: 'd' }).execute() // version 2
  // B went silent long ago: not waited for, but listed as stale. A goes silent during the wait: it stays unconfirmed.
  await db.updateTable('instance_heartbeat').set({ heartbeat_at: new Date(Date.now() - 3_600_000) }).where('instance_id', '=', B.instanceId).execute()
  const clock = new ManualClock()
  const frozen = wait({ waitSeconds: 5, clock })
  await sleep(50)
  await db.updateTable('instance_heartbeat').set({ heartbeat_at: new Date(Date.now() - 3_600_000) }).where('instance_id', '=', A.instanceId).execute()
  await sleep(50)
  clock.advance(5000)
  t.same(await frozen, { version: 2, confirmed: [], unconfirmed: [ref(A, 1)], stale: [ref(B, 1)], waited_ms: 5000 }, 'a silent instance is reported, not dropped; the bound is the clock\'s')

  // An instance that stops cleanly during the wait (its row deleted) serves nothing: left out.
  await writeHeartbeat(db, A, { changeVersion: 1, keySetVersion: 'x' })
  await writeHeartbeat(db, B, { changeVersion: 2, keySetVersion: 'x' })
  const stopped = wait({ waitSeconds: 60 })
  await sleep(50)
  await db.deleteFrom('instance_heartbeat').where('instance_id', '=', A.instanceId).execute()
  t.match(await stopped, { version: 2, confirmed: [ref(B, 2)], unconfirmed: [] })

  await database.close()
  t.match(await wait({ waitSeconds: 1 }), { confirmed: [], unconfirmed: [], error: 'could not read the change version' }, 'a database error ends the wait, it does not throw')
})

t.test('/introspect and /userinfo refuse a disabled user\'s token that has no family (a client without refresh tokens)', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await app.createClient({ grantTypes: ['password'] })
  const tokens = await passwordLogin(app, client, 'alice', PASSWORD)
  t.equal(JSON.parse(Buffer.from(tokens.access_token.split('.')[1]!, 'base64url').toString()).sid, undefined, 'no family')
  const introspect = () => app.app.inject({ method: 'POST', url: '/introspect', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token: tokens.access_token }) })
  t.equal((await introspect()).json().active, true, 'active before')
  await disableUser(app.database.db, 'alice', CLI_CONTEXT)
  t.same((await introspect()).json(), { active: false }, '/introspect: inactive once the user is disabled')
  const info = await app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(info.statusCode, 401, '/userinfo: 401')
})

t.test('the embedded database: no LISTEN, the heartbeat and the poll; an admin revoke confirms its own instance', async (t) => {
  const clock = new ManualClock()
  const app = await testApp(t, { backend: 'pglite', clock })
  t.notOk(app.services.changes.listening, 'no LISTEN connection')
  t.equal((await instanceStatuses(app.database.db, 5)).length, 1, 'a heartbeat row')
  const client = await app.createClient()
  clock.advance(1000) // the poll applies the creation (it drops the client's id from the cache)
  await app.jobs.changeSync.idle()
  t.equal((await app.services.clients.get(client.id))?.disabled, false)
  await disable(app, client.id)
  clock.advance(1000) // the poll
  await app.jobs.changeSync.idle()
  t.equal((await app.services.clients.get(client.id))?.disabled, true, 'the poll applied it')

  const admin = await app.createClient({ name: 'admin', grantTypes: ['client_credentials'], scopes: ['tessera:admin'], audience: [] })
  const token = (await tokenRequest(app, { grant_type: 'client_credentials', scope: 'tessera:admin' }, admin)).json().access_token as string
  const kid = (await app.database.db.selectFrom('signing_key').select('kid').where('state', '=', 'active').executeTakeFirstOrThrow()).kid
  const res = await app.app.inject({ method: 'POST', url: `/admin/keys/${kid}/revoke`, headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json(), { kid, state: 'revoked', propagation: { confirmed: [{ instance: app.services.changes.identity.instanceId }], unconfirmed: [] } })
})

t.test('DATABASE_LISTEN_URL=off: no LISTEN; changes arrive by the once-a-second poll', async (t) => {
  const clock = new ManualClock()
  const app = await testApp(t, { clock, env: { DATABASE_LISTEN_URL: 'off' } })
  t.notOk(app.services.changes.listening)
  const client = await app.createClient()
  clock.advance(1000)
  await app.jobs.changeSync.idle()
  t.equal((await app.services.clients.get(client.id))?.disabled, false)
  await disable(app, client.id)
  await sleep(100)
  t.equal((await app.services.clients.get(client.id))?.disabled, false, 'nothing before the poll')
  clock.advance(1000)
  await app.jobs.changeSync.idle()
  t.equal((await app.services.clients.get(client.id))?.disabled, true, 'the poll applied it')
})

t.test('configuration and the CLI\'s --wait', async (t) => {
  t.equal(loadConfig(testEnv({ DATABASE_URL: 'postgres://h/db' })).databaseListenUrl, 'postgres://h/db', 'defaults to DATABASE_URL')
  t.equal(loadConfig(testEnv({ DATABASE_URL: 'postgres://h/db', DATABASE_LISTEN_URL: 'postgres://direct/db' })).databaseListenUrl, 'postgres://direct/db')
  t.equal(loadConfig(testEnv({ DATABASE_URL: 'postgres://h/db', DATABASE_LISTEN_URL: 'off' })).databaseListenUrl, undefined)
  t.match(loadConfig(testEnv()), { databaseListenUrl: undefined, propagationWaitSeconds: 5, instanceStaleSeconds: 5 })
  t.throws(() => loadConfig(testEnv({ DATABASE_LISTEN_URL: 'postgres://direct/db' })), new ConfigError(['DATABASE_LISTEN_URL needs DATABASE_URL (the embedded database is single-process and has no LISTEN connection)']))
  t.throws(() => loadConfig(testEnv({ DATABASE_URL: 'postgres://h/db', DATABASE_LISTEN_URL: 'mysql://h/db', PROPAGATION_WAIT_SECONDS: '301', INSTANCE_STALE_SECONDS: '1' })), new ConfigError([
    'DATABASE_LISTEN_URL must be a postgres:// or postgresql:// URL, or off',
    'PROPAGATION_WAIT_SECONDS must be an integer between 0 and 300 (got "301")',
    'INSTANCE_STALE_SECONDS must be an integer between 2 and 3600 (got "1")',
  ]))
  const env = testEnv()
  for (const [args, message] of [
    [['keys', 'revoke', 'KID', '--wait', 'soon'], /^tessera: --wait must be a whole number of seconds from 0 to 300 \(got "soon"\)$/],
    [['clients', 'disable', '--id', 'c_1', '--wait'], /^tessera: --wait needs a number of seconds$/],
    [['users', 'disable', '--username', 'alice', '--wait=301'], /--wait must be a whole number/],
    [['keys', 'list', '--wait', '1'], /^tessera: unknown option --wait for keys list \(tessera keys list --help lists its options\)$/],
  ] as const) {
    const res = await runTessera([...args], env)
    t.equal(res.code, 2, `${args.join(' ')}: exit 2`)
    t.match(res.err, message)
  }
})
