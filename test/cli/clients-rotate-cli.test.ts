// `tessera clients rotate-secret ID [--overlap SECONDS]` (docs/admin-clients.md): the new secret is
// printed once; the old one keeps authenticating at a running server for the overlap (judged by
// the server's clock), then stops; --overlap 0 stops it at once. `clients create` and the admin
// API share the settings parser (src/clients/client-settings.ts).
import { Writable } from 'node:stream'
import pg from 'pg'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { databaseTarget, openDatabase } from '../../src/db/connect.js'
import { basic, FORM, form, freshDatabase, testEnv } from '../helpers/app.js'
import { runTessera, type CliResult } from '../helpers/cli.js'
import { ManualClock } from '../helpers/clock.js'

async function setup(t: Test, extraEnv: Record<string, string> = {}) {
  const url = await freshDatabase(t)
  const env = testEnv({ DATABASE_URL: url, ...extraEnv })
  const cli = (args: string[]) => runTessera(args, env)
  const migrated = await cli(['migrate'])
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.err}`)
  const sql = new pg.Client({ connectionString: url })
  await sql.connect()
  t.teardown(() => sql.end())
  // A running server on the same database, on a clock the test moves.
  const clock = new ManualClock()
  const config = loadConfig(env)
  const database = await openDatabase(databaseTarget(config))
  const server = await buildApp({ config, database, clock, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
  t.teardown(async () => {
    await server.close()
    await database.close()
  })
  const token = async (id: string, secret: string) =>
    (await server.app.inject({ method: 'POST', url: '/token', headers: { ...FORM, authorization: basic(id, secret) }, payload: form({ grant_type: 'client_credentials' }) })).statusCode
  return { cli, sql, clock, token }
}

function usageError(t: Test, res: CliResult, message: RegExp) {
  t.equal(res.code, 2, 'exit code 2')
  t.equal(res.out, '', 'nothing on stdout')
  t.match(res.err, message)
}

t.test('clients rotate-secret: the new secret once; the old one works for --overlap seconds at a running server, then stops; audited', async (t) => {
  const { cli, sql, clock, token } = await setup(t)
  const created = (await cli(['clients', 'create', '--name', 'worker', '--grant-types', 'client_credentials', '--scopes', 'read'])).json()
  const id = created.client_id as string
  t.equal(await token(id, created.client_secret), 200)

  const startedAt = Date.now()
  const res = await cli(['clients', 'rotate-secret', id, '--overlap', '60'])
  const endedAt = Date.now()
  t.equal(res.code, 0, res.err)
  const out = res.json()
  t.match(out.client_secret, /^tessera_cs_[A-Za-z0-9_-]{43}$/)
  t.not(out.client_secret, created.client_secret)
  t.equal(out.overlap_seconds, 60)
  const ends = new Date(out.previous_secret_expires_at).getTime()
  t.ok(ends >= startedAt + 60_000 && ends <= endedAt + 60_000, 'the old secret ends 60 s after the rotation (by the CLI\'s clock)')
  t.match(out.propagation, { confirmed: [{ pid: process.pid }], unconfirmed: [] }, 'the running server confirmed it')

  t.equal(await token(id, created.client_secret), 200, 'during the overlap: the old secret')
  t.equal(await token(id, out.client_secret), 200, 'and the new one')
  // The server's clock reaches the end of the overlap (the CLI set it by the wall clock).
  clock.advance(new Date(out.previous_secret_expires_at).getTime() - clock.nowMs() - 1)
  t.equal(await token(id, created.client_secret), 200, 'a millisecond before its end: still')
  clock.advance(1)
  t.equal(await token(id, created.client_secret), 401, 'after it: the old secret is refused')
  t.equal(await token(id, out.client_secret), 200)

  const audit = (await sql.query(`select client_id, detail from audit_event where type = 'client.secret_rotated'`)).rows
  t.match(audit, [{ client_id: id, detail: { via: 'cli', overlap_seconds: 60 } }])
  t.notMatch(JSON.stringify(audit), /tessera_cs_/, 'never the secret in the audit trail')
  t.notMatch((await cli(['clients', 'list'])).out, /tessera_cs_/, 'the list never shows it')

  const now = await cli(['clients', 'rotate-secret', id, '--overlap', '0'])
  t.equal(now.code, 0, now.err)
  t.equal(now.json().previous_secret_expires_at, null)
  t.equal(await token(id, out.client_secret), 401, '--overlap 0: the old secret stops at once')
  t.equal(await token(id, now.json().client_secret), 200)
})

t.test('clients rotate-secret: CLIENT_SECRET_OVERLAP_SECONDS by default; usage errors exit 2 and change nothing', async (t) => {
  const { cli, sql } = await setup(t, { CLIENT_SECRET_OVERLAP_SECONDS: '120' })
  const created = (await cli(['clients', 'create', '--name', 'worker', '--grant-types', 'client_credentials'])).json()
  const res = await cli(['clients', 'rotate-secret', created.client_id])
  t.equal(res.code, 0, res.err)
  t.equal(res.json().overlap_seconds, 120, 'the configured overlap')
  const hash = async () => (await sql.query('select secret_hash, version from client where id = $1', [created.client_id])).rows[0]
  const before = await hash()
  usageError(t, await cli(['clients', 'rotate-secret']), /^tessera: usage: tessera clients rotate-secret ID \[--overlap SECONDS\]$/)
  usageError(t, await cli(['clients', 'rotate-secret', created.client_id, '--overlap=-5']), /--overlap must be a whole number of seconds from 0 to 2592000/)
  usageError(t, await cli(['clients', 'rotate-secret', created.client_id, '--overlap', '2592001']), /--overlap must be a whole number/)
  usageError(t, await cli(['clients', 'rotate-secret', created.client_id, '--overlap', 'soon']), /--overlap must be a whole number/)
  usageError(t, await cli(['clients', 'rotate-secret', created.client_id, '--overlaps', '5']), /unknown option --overlaps/)
  usageError(t, await cli(['clients', 'rotate-secret', 'c_nosuchclient']), /^tessera: no client c_nosuchclient$/)
  const spa = (await cli(['clients', 'create', '--name', 'spa', '--public', '--grant-types', 'password'])).json()
  usageError(t, await cli(['clients', 'rotate-secret', spa.client_id]), /^tessera: a public client has no secret to rotate$/)
  t.same(await hash(), before, 'nothing changed')
  const help = await cli(['clients', 'rotate-secret', '--help'])
  t.equal(help.code, 0)
  t.match(help.out, /--overlap SECONDS/)
  t.match(help.out, /CLIENT_SECRET_OVERLAP_SECONDS/)
})

t.test('clients create is audited like POST /admin/clients (the same use case)', async (t) => {
  const { cli, sql } = await setup(t)
  const created = (await cli(['clients', 'create', '--name', 'worker', '--grant-types', 'client_credentials', '--scopes', 'read'])).json()
  const rows = (await sql.query(`select client_id, detail from audit_event where type = 'client.created'`)).rows
  t.match(rows, [{ client_id: created.client_id, detail: { via: 'cli', name: 'worker', type: 'confidential', grant_types: ['client_credentials'], scopes: ['read'] } }])
  t.notMatch(JSON.stringify(rows), /tessera_cs_/)
})
