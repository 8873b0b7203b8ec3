// Housekeeping: dead families (and their tokens), expired denylist entries and old audit events
// are deleted in bounded batches, by one instance or several at once; live families keep their
// used tokens, so reuse detection still works. Plus the background timer and the CLI command.
import { Writable } from 'node:stream'
import { sql } from 'kysely'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { run } from '../../src/cli/main.js'
import { loadConfig } from '../../src/config.js'
import { openDatabase } from '../../src/db/connect.js'
import type { Db } from '../../src/db/schema.js'
import { runHousekeeping, type HousekeepingSettings } from '../../src/housekeeping/housekeeping.js'
import { DENYLIST_SKEW_SECONDS } from '../../src/housekeeping/housekeeping.store.js'
import type { HousekeepingTable } from '../../src/metrics.js'
import { passwordLogin, testApp, testEnv, tokenRequest, type TestApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

const PASSWORD = 'correct horse battery'
const DAY = 86_400
const SETTINGS: HousekeepingSettings = { retentionSeconds: 7 * DAY, auditRetentionDays: 90, batchSize: 500 }
const NONE = { refresh_token_family: 0, refresh_token: 0, revoked_access_token: 0, audit_event: 0, login_throttle: 0, authorization_request: 0, authorization_code: 0, sso_session: 0, idempotency_key: 0 }

type Client = { id: string; secret: string | undefined }

/** A user and a body-delivery client on a fresh app. */
async function setup(t: Test, env: Record<string, string> = {}, clock?: ManualClock) {
  const app = await testApp(t, { env, ...(clock ? { clock } : {}) })
  const user = await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  return { app, db: app.database.db, user, client }
}

/** `count` families straight in the database, each with a chain of `tokens` tokens (all but the newest used). */
async function insertFamilies(db: Db, owner: { userId: string; clientId: string }, count: number, tokens: number, state: { expiresAt: string; revokedAt: string | null }): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    insert into refresh_token_family (client_id, user_id, scope, auth_time, expires_at, revoked_at, revoked_reason)
    select ${owner.clientId}, ${owner.userId}, 'read', now() - interval '60 days', now() + ${state.expiresAt}::interval,
           now() + ${state.revokedAt}::interval, case when ${state.revokedAt}::interval is not null then 'logout' end
      from generate_series(1, ${count})
    returning id`.execute(db)
  const ids = rows.map((r) => r.id)
  if (tokens > 0) {
    // Parent before child in one statement: the foreign keys are checked at its end.
    await sql`
      with t as (select f, i, gen_random_uuid() as id from unnest(${ids}::uuid[]) f cross join generate_series(1, ${tokens}) i)
      insert into refresh_token (id, family_id, token_hash, parent_id, expires_at, used_at)
      select t.id, t.f, sha256(t.id::text::bytea), p.id, now() + interval '1 day', case when t.i < ${tokens} then now() - interval '1 hour' end
        from t left join t p on p.f = t.f and p.i = t.i - 1`.execute(db)
  }
  return ids
}

async function insertDenylist(db: Db, count: number, expiresIn: string): Promise<void> {
  await sql`insert into revoked_access_token (jti, expires_at) select gen_random_uuid()::text, now() + ${expiresIn}::interval from generate_series(1, ${count})`.execute(db)
}

async function insertAudit(db: Db, count: number, at: string): Promise<void> {
  await sql`insert into audit_event (type, at) select 'test.event', now() + ${at}::interval from generate_series(1, ${count})`.execute(db)
}

async function counts(db: Db) {
  const { rows } = await sql<{ families: number; tokens: number; denylist: number; audit: number }>`
    select (select count(*)::int from refresh_token_family) as families, (select count(*)::int from refresh_token) as tokens,
           (select count(*)::int from revoked_access_token) as denylist, (select count(*)::int from audit_event) as audit`.execute(db)
  return rows[0]!
}

const refresh = (app: TestApp, client: Client, token: string) => tokenRequest(app, { grant_type: 'refresh_token', refresh_token: token }, client)

async function setFamily(db: Db, id: string, column: 'revoked_at' | 'expires_at', ago: string): Promise<void> {
  await sql`update refresh_token_family set ${sql.ref(column)} = now() - ${ago}::interval where id = ${id}`.execute(db)
}

const familyOf = async (db: Db, accessToken: string) => JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()).sid as string

t.test('deletes exactly the dead rows; keeps live families with their used tokens, and reuse detection still works', async (t) => {
  const { app, db, client } = await setup(t)
  // Live, with two used tokens: the reuse-detection evidence.
  const live = await passwordLogin(app, client, 'alice', PASSWORD)
  const second = (await refresh(app, client, live.refresh_token)).json()
  const third = (await refresh(app, client, second.refresh_token)).json()
  t.ok(third.refresh_token, 'two rotations')
  const liveId = await familyOf(db, live.access_token)
  // Dead long ago: revoked 8 days ago (with a rotation: 2 tokens), expired 8 days ago (1 token).
  const revokedOld = await passwordLogin(app, client, 'alice', PASSWORD)
  t.equal((await refresh(app, client, revokedOld.refresh_token)).statusCode, 200)
  await setFamily(db, await familyOf(db, revokedOld.access_token), 'revoked_at', '8 days')
  const expiredOld = await passwordLogin(app, client, 'alice', PASSWORD)
  await setFamily(db, await familyOf(db, expiredOld.access_token), 'expires_at', '8 days')
  // Dead recently: kept for the sessions list and forensics.
  const revokedRecent = await passwordLogin(app, client, 'alice', PASSWORD)
  await setFamily(db, await familyOf(db, revokedRecent.access_token), 'revoked_at', '1 day')
  const expiredRecent = await passwordLogin(app, client, 'alice', PASSWORD)
  await setFamily(db, await familyOf(db, expiredRecent.access_token), 'expires_at', '1 hour')
  // The denylist: past exp + skew goes; within the skew margin or still valid stays.
  await insertDenylist(db, 1, `-${DENYLIST_SKEW_SECONDS + 3600} seconds`)
  await insertDenylist(db, 1, `-${DENYLIST_SKEW_SECONDS - 60} seconds`)
  await insertDenylist(db, 1, '10 minutes')
  await insertAudit(db, 3, '-91 days')
  await insertAudit(db, 1, '-89 days')
  const before = await counts(db)

  const deleted = await runHousekeeping(db, SETTINGS)
  t.same(deleted, { ...NONE, refresh_token_family: 2, refresh_token: 3, revoked_access_token: 1, audit_event: 3 })
  const after = await counts(db)
  t.same(after, { families: before.families - 2, tokens: before.tokens - 3, denylist: before.denylist - 1, audit: before.audit - 3 })
  const families = await db.selectFrom('refresh_token_family').select('id').orderBy('id').execute()
  const kept = [liveId, await familyOf(db, revokedRecent.access_token), await familyOf(db, expiredRecent.access_token)].sort()
  t.same(families.map((f) => f.id), kept, 'the live family and the recently dead ones are kept')
  const liveTokens = await db.selectFrom('refresh_token').select(['used_at']).where('family_id', '=', liveId).execute()
  t.equal(liveTokens.length, 3, 'the live family keeps all 3 tokens')
  t.equal(liveTokens.filter((r) => r.used_at !== null).length, 2, 'including its 2 used ones')
  t.same(await runHousekeeping(db, SETTINGS), NONE, 'a second run finds nothing')

  t.test('a replay of the live family’s first token is still detected as reuse', async (t) => {
    const reuse = await refresh(app, client, live.refresh_token)
    t.equal(reuse.statusCode, 400)
    t.same(reuse.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' })
    const fam = await db.selectFrom('refresh_token_family').select(['revoked_at', 'revoked_reason']).where('id', '=', liveId).executeTakeFirstOrThrow()
    t.not(fam.revoked_at, null, 'the family is revoked')
    t.equal(fam.revoked_reason, 'reuse_detected')
    t.equal((await refresh(app, client, third.refresh_token)).statusCode, 400, 'its newest token is dead too')
  })
})

t.test('retention settings: HOUSEKEEPING_RETENTION_SECONDS, AUDIT_RETENTION_DAYS=0 keeps the audit trail', async (t) => {
  const { db, user, client } = await setup(t)
  await insertFamilies(db, { userId: user.id, clientId: client.id }, 2, 1, { expiresAt: '-2 hours', revokedAt: null })
  await insertFamilies(db, { userId: user.id, clientId: client.id }, 1, 1, { expiresAt: '10 days', revokedAt: '-30 minutes' })
  await insertAudit(db, 5, '-1000 days')
  t.same(await runHousekeeping(db, { retentionSeconds: 3600, auditRetentionDays: 0, batchSize: 10 }), { ...NONE, refresh_token_family: 2, refresh_token: 2 }, 'dead > 1 hour ago only; no audit event')
  t.same(await runHousekeeping(db, { retentionSeconds: 0, auditRetentionDays: 0, batchSize: 10 }), { ...NONE, refresh_token_family: 1, refresh_token: 1 }, 'retention 0: every dead family')
  t.equal((await counts(db)).audit, 5)
})

t.test('bounded batches: at most HOUSEKEEPING_BATCH_SIZE rows per table per batch', async (t) => {
  const { db, user, client } = await setup(t)
  // One dead family with a chain of 25 tokens, and 25 expired denylist entries.
  const [family] = await insertFamilies(db, { userId: user.id, clientId: client.id }, 1, 25, { expiresAt: '30 days', revokedAt: '-8 days' })
  await insertDenylist(db, 25, '-1 day')
  const settings = { ...SETTINGS, batchSize: 10 }
  const batches: [HousekeepingTable, number][] = []
  const onDeleted = (table: HousekeepingTable, rows: number) => void batches.push([table, rows])

  t.same(await runHousekeeping(db, settings, { maxBatches: 1, onDeleted }), { ...NONE, refresh_token: 10, revoked_access_token: 10 }, 'one batch per table')
  t.ok(await db.selectFrom('refresh_token_family').select('id').where('id', '=', family!).executeTakeFirst(), 'the family stays while it has tokens')
  t.same(await runHousekeeping(db, settings, { pauseMs: 5, onDeleted }), { ...NONE, refresh_token: 15, refresh_token_family: 1, revoked_access_token: 15 })
  t.same(batches, [
    ['refresh_token', 10],
    ['revoked_access_token', 10],
    ['refresh_token', 10],
    ['refresh_token', 5],
    ['refresh_token_family', 1],
    ['revoked_access_token', 10],
    ['revoked_access_token', 5],
  ], 'every batch within the size; the family goes with its last tokens')
  t.same(await counts(db).then((c) => [c.families, c.tokens, c.denylist]), [0, 0, 0])

  t.test('shouldStop ends a run before its next batch', async (t) => {
    await insertDenylist(db, 25, '-1 day')
    let calls = 0
    t.same(await runHousekeeping(db, settings, { shouldStop: () => ++calls > 2 }), { ...NONE, revoked_access_token: 10 }, 'stopped after one batch')
  })
})

t.test('three instances at once on one database: every row deleted exactly once, no errors', async (t) => {
  const { app, db, user, client } = await setup(t)
  const owner = { userId: user.id, clientId: client.id }
  const dead = [
    ...(await insertFamilies(db, owner, 90, 4, { expiresAt: '30 days', revokedAt: '-8 days' })),
    ...(await insertFamilies(db, owner, 60, 3, { expiresAt: '-10 days', revokedAt: null })),
  ]
  const live = [
    ...(await insertFamilies(db, owner, 30, 3, { expiresAt: '20 days', revokedAt: null })),
    ...(await insertFamilies(db, owner, 10, 2, { expiresAt: '20 days', revokedAt: '-1 day' })),
  ]
  await insertDenylist(db, 400, '-1 day')
  await insertDenylist(db, 40, '1 hour')
  await insertAudit(db, 400, '-100 days')
  const before = await counts(db)

  // Two more instances, each with its own connection pool, on the same database.
  const others = await Promise.all([1, 2].map(async () => {
    const config = loadConfig(testEnv({ DATABASE_URL: app.databaseUrl!, HOUSEKEEPING_INTERVAL_SECONDS: '0' }))
    const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 4, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
    const instance = await buildApp({ config, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
    t.teardown(async () => {
      await instance.close()
      await database.close()
    })
    return instance.services.db
  }))
  const settings = { ...SETTINGS, batchSize: 25 }
  const results = await Promise.all([db, ...others].map((d) => runHousekeeping(d, settings)))
  const total = (table: HousekeepingTable) => results.reduce((sum, r) => sum + r[table], 0)
  t.equal(total('refresh_token_family'), dead.length, 'each dead family deleted once')
  t.equal(total('refresh_token'), 90 * 4 + 60 * 3, 'each of their tokens deleted once')
  t.equal(total('revoked_access_token'), 400)
  t.equal(total('audit_event'), 400)
  const after = await counts(db)
  t.same(after, { families: before.families - dead.length, tokens: before.tokens - 540, denylist: before.denylist - 400, audit: before.audit - 400 })
  const left = await db.selectFrom('refresh_token_family').select('id').execute()
  t.same(left.map((r) => r.id).sort(), [...live].sort(), 'exactly the live and recently revoked families are left')
  t.equal(after.tokens, 30 * 3 + 10 * 2, 'with all their tokens')
  t.ok(results.filter((r) => r.refresh_token > 0).length >= 1, `work shared: ${results.map((r) => r.refresh_token).join(' / ')} tokens`)
})

t.test('each batch finds its rows through an index (migration 0009 for families)', async (t) => {
  const { db } = await setup(t)
  const plan = (query: string) =>
    db.transaction().execute(async (trx) => {
      // Tiny test tables would be scanned anyway: show that an index can serve the query.
      await sql`set local enable_seqscan = off`.execute(trx)
      const { rows } = await sql<{ 'QUERY PLAN': string }>`explain ${sql.raw(query)}`.execute(trx)
      return rows.map((r) => r['QUERY PLAN']).join('\n')
    })
  t.match(await plan(`select id from refresh_token_family where least(expires_at, revoked_at) < now() - make_interval(secs => 60) order by least(expires_at, revoked_at) limit 10 for update skip locked`), /refresh_token_family_dead_idx/)
  t.match(await plan(`select jti from revoked_access_token where expires_at < now() order by expires_at limit 10 for update skip locked`), /revoked_access_token_expires_idx/)
  t.match(await plan(`select id from audit_event where at < now() - make_interval(days => 90) order by at limit 10 for update skip locked`), /audit_event_at_idx/)
  t.match(await plan(`select id from refresh_token where family_id = any('{00000000-0000-0000-0000-000000000000}'::uuid[]) limit 10`), /refresh_token_family_idx/)
})

const scrape = async (app: TestApp) => (await app.app.inject({ method: 'GET', url: '/metrics' })).body

/** The log lines from `from` on that match `re`, parsed. */
const linesOf = (logs: string[], re: RegExp, from = 0) => logs.slice(from).filter((l) => re.test(l)).map((l) => JSON.parse(l) as Record<string, any>)

t.test('the background job: runs on its timer, counts in /metrics, logs once per run; a failed run warns and the next retries', async (t) => {
  const clock = new ManualClock()
  const { app, db } = await setup(t, { HOUSEKEEPING_INTERVAL_SECONDS: '1' }, clock)
  // Moves the clock past the job's next run (the first within 0.5–1 interval, then 0.8–1.2) and waits for the run.
  const nextRun = async () => {
    clock.advance(1200)
    await app.jobs.housekeeping.idle()
  }
  // A broken table: the run fails, the process does not.
  await sql`alter table revoked_access_token rename to revoked_access_token_away`.execute(db)
  await nextRun()
  const failed = linesOf(app.logs, /housekeeping failed/)[0]
  t.ok(failed, 'a warning')
  t.equal(failed?.level, 40, 'at warn level')
  t.equal(failed?.err?.code, '42P01', 'with the database error code')
  t.match(await scrape(app), /^tessera_housekeeping_runs_total\{outcome="error"\} [1-9]/m, 'counted as an error run')
  t.equal((await app.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'the app still serves')

  await sql`alter table revoked_access_token_away rename to revoked_access_token`.execute(db)
  await insertDenylist(db, 3, '-1 day')
  const from = app.logs.length
  await nextRun()
  const done = linesOf(app.logs, /"msg":"housekeeping"/, from)[0]
  t.ok(done, 'the next run succeeds')
  t.same(done?.deleted, { ...NONE, revoked_access_token: 3 })
  t.equal(done?.level, 30, 'one info line')
  const text = await scrape(app)
  t.match(text, /^tessera_housekeeping_deleted_rows_total\{table="revoked_access_token"\} 3$/m)
  t.match(text, /^tessera_housekeeping_runs_total\{outcome="ok"\} [1-9]/m)
  await nextRun()
  await nextRun()
  t.equal(app.logs.slice(from).filter((l) => l.includes('"msg":"housekeeping"')).length, 1, 'runs that delete nothing log nothing')
})

t.test('HOUSEKEEPING_INTERVAL_SECONDS=0 never runs, and close() stops the timer', async (t) => {
  const clock = new ManualClock()
  const { app, db } = await setup(t, { HOUSEKEEPING_INTERVAL_SECONDS: '0' }, clock)
  await insertDenylist(db, 2, '-1 day')
  // A second instance with the timer on, closed at once.
  const config = loadConfig(testEnv({ DATABASE_URL: app.databaseUrl!, HOUSEKEEPING_INTERVAL_SECONDS: '1' }))
  const database = await openDatabase({ kind: 'postgres', url: app.databaseUrl!, poolSize: 2, acquireTimeoutMs: 5000, lockTimeoutMs: 5000 })
  const lines: string[] = []
  const closed = await buildApp({ config, database, clock, logStream: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) })
  await closed.close()
  clock.advance(1600)
  await Promise.all([app.jobs.housekeeping.idle(), closed.jobs.housekeeping.idle()])
  await database.close()
  t.equal((await counts(db)).denylist, 2, 'nothing deleted')
  t.notOk([...app.logs, ...lines].some((l) => l.includes('housekeeping')), 'no run at all')
})

/** Runs the CLI in-process. */
async function cli(args: string[], env: Record<string, string>) {
  const out: string[] = []
  const err: string[] = []
  const code = await run(args, { env, out: (l) => out.push(l), err: (l) => err.push(l), readStdin: async () => '' })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

t.test('tessera housekeeping run: deletes until nothing is left and prints the counts', async (t) => {
  const { app, db, user, client } = await setup(t)
  await insertFamilies(db, { userId: user.id, clientId: client.id }, 7, 3, { expiresAt: '-8 days', revokedAt: null })
  await insertDenylist(db, 12, '-1 day')
  await insertAudit(db, 9, '-91 days')
  const env = testEnv({ DATABASE_URL: app.databaseUrl!, HOUSEKEEPING_BATCH_SIZE: '5' })
  const first = await cli(['housekeeping', 'run'], env)
  t.equal(first.code, 0, first.err)
  t.same(JSON.parse(first.out), { ...NONE, refresh_token_family: 7, refresh_token: 21, revoked_access_token: 12, audit_event: 9 })
  const second = await cli(['housekeeping', 'run'], env)
  t.same(JSON.parse(second.out), NONE, 'then nothing')

  t.test('usage errors: exit 2', async (t) => {
    for (const [args, message] of [
      [['housekeeping'], /^usage: tessera housekeeping <command>[^]*housekeeping run +delete dead sessions/],
      [['housekeeping', 'start'], /^tessera: unknown command: housekeeping start \(tessera housekeeping --help lists its commands\)$/],
      [['housekeeping', 'run', '--now'], /^tessera: unknown option --now for housekeeping run /],
    ] as const) {
      const r = await cli([...args], env)
      t.equal(r.code, 2, args.join(' '))
      t.match(r.err, message)
      t.equal(r.out, '')
    }
  })
  t.test('listed in the usage', async (t) => {
    t.match((await cli(['help'], env)).out, /housekeeping run/)
  })
})

t.test('embedded PGlite: one dead family deleted', async (t) => {
  const app = await testApp(t, { backend: 'pglite' })
  await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const db = app.database.db
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  await setFamily(db, await familyOf(db, login.access_token), 'revoked_at', '8 days')
  await insertDenylist(db, 1, '-1 day')
  t.same(await runHousekeeping(db, SETTINGS, { pauseMs: 1 }), { ...NONE, refresh_token_family: 1, refresh_token: 1, revoked_access_token: 1 })
})
