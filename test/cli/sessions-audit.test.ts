// `tessera sessions …` and `tessera audit list`, run in-process through `run(argv, io)` against
// a real PostgreSQL database on which a Tessera server logs users in. SECURITY.md #81, #122.
import { Writable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { createClient } from '../../src/clients/clients.store.js'
import { loadConfig, type Env } from '../../src/config.js'
import { databaseTarget, openDatabase } from '../../src/db/connect.js'
import { migrateToLatest } from '../../src/db/migrate.js'
import { PasswordHasher } from '../../src/users/passwords.js'
import { createUser } from '../../src/users/users.store.js'
import { basic, FORM, form, freshDatabase, testEnv } from '../helpers/app.js'
import { runTessera, type CliResult } from '../helpers/cli.js'

const PASSWORD = 'correct horse battery'
const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>

const tessera = (args: string[], env: Env): Promise<CliResult> => runTessera(args, env)

/** A migrated database with alice and bob, a client, a server on it, and the CLI bound to it. */
async function setup(t: Test) {
  const url = await freshDatabase(t)
  const env = testEnv({ DATABASE_URL: url })
  const config = loadConfig(env)
  const database = await openDatabase(databaseTarget(config))
  await migrateToLatest(database.db)
  const server = await buildApp({ config, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
  t.teardown(async () => {
    await server.close()
    await database.close()
  })
  const hasher = new PasswordHasher(config.argon2)
  const alice = (await createUser(database.db, { username: 'alice', passwordHash: await hasher.hash(PASSWORD) }))!
  await createUser(database.db, { username: 'bob', passwordHash: await hasher.hash(PASSWORD) })
  const { client, secret } = await createClient(database.db, { name: 'Web app', isPublic: false, grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'read'] })
  const token = (params: Record<string, string>, ua: string) =>
    server.app.inject({ method: 'POST', url: '/token', headers: { ...FORM, authorization: basic(client.id, secret!), 'user-agent': ua }, remoteAddress: '198.51.100.7', payload: form(params) })
  const login = async (username: string, ua = 'cli-test') => {
    const res = await token({ grant_type: 'password', username, password: PASSWORD, scope: 'openid read' }, ua)
    if (res.statusCode !== 200) throw new Error(`login: ${res.statusCode} ${res.body}`)
    return res.json() as { access_token: string; refresh_token: string }
  }
  const refresh = (rt: string, ua = 'cli-test') => token({ grant_type: 'refresh_token', refresh_token: rt }, ua)
  const cli = (args: string[]) => tessera(args, env)
  return { db: database.db, alice, client, login, refresh, cli }
}

function usageError(t: Test, res: CliResult, message: string | RegExp) {
  t.equal(res.code, 2, 'exit code 2')
  t.equal(res.out, '', 'nothing on stdout')
  t.match(res.err, message)
}

t.test('sessions list shows client, created, last used, IP and user agent; --all adds dead sessions', async (t) => {
  const { login, refresh, cli, client } = await setup(t)
  const laptop = await login('alice', 'Firefox/141')
  const phone = await login('alice', 'Phone/2')
  await login('bob')
  t.equal((await refresh(laptop.refresh_token, 'Firefox/142')).statusCode, 200)

  const res = await cli(['sessions', 'list', '--username', 'Alice'])
  t.equal(res.code, 0, res.err)
  t.equal(res.err, '')
  const list = res.json()
  t.equal(list.length, 2)
  t.same(list.map((s: { id: string }) => s.id), [claimsOf(phone.access_token).sid, claimsOf(laptop.access_token).sid], 'newest first')
  t.match(list[1], { client_id: client.id, client_name: 'Web app', last_ip: '198.51.100.7', last_user_agent: 'Firefox/142', state: 'active', scope: 'openid read', revoked_at: null })
  t.match(list[1].created_at, /^\d{4}-\d{2}-\d{2}T/)
  t.match(list[1].last_used_at, /^\d{4}-\d{2}-\d{2}T/)

  const revoked = await cli(['sessions', 'revoke', '--id', claimsOf(phone.access_token).sid as string])
  t.equal(revoked.code, 0, revoked.err)
  t.same(revoked.json(), { id: claimsOf(phone.access_token).sid, revoked: true })
  t.same((await cli(['sessions', 'list', '--username', 'alice'])).json().map((s: { id: string }) => s.id), [claimsOf(laptop.access_token).sid])
  const all = (await cli(['sessions', 'list', '--username', 'alice', '--all'])).json()
  t.same(all.map((s: { state: string; revoked_reason: string | null }) => [s.state, s.revoked_reason]), [['revoked', 'admin'], ['active', null]])
})

t.test('sessions revoke: that session only; again → revoked false; unknown or malformed id → exit 2', async (t) => {
  const { login, refresh, cli, db } = await setup(t)
  const a = await login('alice')
  const b = await login('alice')
  const id = claimsOf(a.access_token).sid as string
  t.same((await cli(['sessions', 'revoke', '--id', id])).json(), { id, revoked: true })
  t.equal((await refresh(a.refresh_token)).statusCode, 400, 'the revoked session is dead')
  t.equal((await refresh(b.refresh_token)).statusCode, 200, 'the other session of the user works')
  t.same((await cli(['sessions', 'revoke', '--id', id])).json(), { id, revoked: false })
  const events = await db.selectFrom('audit_event').select(['type', 'detail', 'client_id']).where('family_id', '=', id).where('type', 'in', ['refresh_token.revoked', 'admin.sessions_revoked']).orderBy('id').execute()
  t.same(events.map((e) => [e.type, e.detail]), [
    ['refresh_token.revoked', { reason: 'admin', via: 'cli' }],
    ['admin.sessions_revoked', { via: 'cli', reason: 'admin', count: 1 }],
    ['admin.sessions_revoked', { via: 'cli', reason: 'admin', count: 0 }],
  ])
  t.equal(events[1]!.client_id, null, 'no client acted: the CLI did')
  usageError(t, await cli(['sessions', 'revoke', '--id', '00000000-0000-4000-8000-000000000000']), 'tessera: no session 00000000-0000-4000-8000-000000000000')
  usageError(t, await cli(['sessions', 'revoke', '--id', 'nope']), 'tessera: --id must be a UUID')
  usageError(t, await cli(['sessions', 'revoke']), 'tessera: sessions revoke needs --id')
})

t.test('#81 sessions revoke-all: every session of the user, not others; a later login works', async (t) => {
  const { login, refresh, cli, db, alice } = await setup(t)
  const sessions = [await login('alice'), await login('alice'), await login('alice')]
  const bob = await login('bob')
  const res = await cli(['sessions', 'revoke-all', '--username', 'alice'])
  t.equal(res.code, 0, res.err)
  t.same(res.json(), { username: 'alice', revoked: 3 })
  for (const s of sessions) t.equal((await refresh(s.refresh_token)).statusCode, 400)
  t.equal((await refresh(bob.refresh_token)).statusCode, 200, "bob's session is untouched")
  t.same((await cli(['sessions', 'revoke-all', '--username', 'alice'])).json(), { username: 'alice', revoked: 0 })
  const later = await login('alice')
  t.equal((await refresh(later.refresh_token)).statusCode, 200)
  const perFamily = await db.selectFrom('audit_event').select('detail').where('type', '=', 'refresh_token.revoked').where('user_id', '=', alice.id).execute()
  t.same(perFamily.map((e) => e.detail), Array(3).fill({ reason: 'admin', via: 'cli' }))
  usageError(t, await cli(['sessions', 'revoke-all', '--username', 'mallory']), 'tessera: no user mallory')
  usageError(t, await cli(['sessions', 'revoke-all']), 'tessera: sessions revoke-all needs --username')
})

t.test('audit list: filters, newest first, cursor paging; bad options exit 2', async (t) => {
  const { login, refresh, cli, alice, client } = await setup(t)
  const s = await login('alice', 'Firefox/141')
  t.equal((await refresh(s.refresh_token)).statusCode, 200)
  await login('bob')
  const sid = claimsOf(s.access_token).sid as string

  const all = await cli(['audit', 'list'])
  t.equal(all.code, 0, all.err)
  const events = all.json()
  t.equal(events.length, 5, 'alice: login, issued, rotated; bob: login, issued')
  t.same(Object.keys(events[0]).sort(), ['at', 'client_id', 'detail', 'family_id', 'id', 'ip', 'type', 'user_agent', 'user_id'])
  t.same(events.map((e: { type: string }) => e.type), ['refresh_token.issued', 'login.succeeded', 'refresh_token.rotated', 'refresh_token.issued', 'login.succeeded'])

  const mine = (await cli(['audit', 'list', '--username', 'alice', '--type', 'refresh_token.'])).json()
  t.same(mine.map((e: { type: string }) => e.type), ['refresh_token.rotated', 'refresh_token.issued'])
  t.ok(mine.every((e: { user_id: string }) => e.user_id === alice.id))
  t.same((await cli(['audit', 'list', '--family', sid, '--type', 'login.succeeded'])).json().map((e: { family_id: string }) => e.family_id), [sid])
  t.equal((await cli(['audit', 'list', '--client', client.id, '--since', '2000-01-01T00:00:00Z', '--until', '2999-01-01'])).json().length, 5)
  t.same((await cli(['audit', 'list', '--since', '2999-01-01'])).json(), [])

  const page1 = (await cli(['audit', 'list', '--limit', '2'])).json()
  const page2 = (await cli(['audit', 'list', '--limit', '2', '--cursor', page1[1].id])).json()
  const page3 = (await cli(['audit', 'list', '--limit', '2', '--cursor', page2[1].id])).json()
  t.same([...page1, ...page2, ...page3].map((e: { id: string }) => e.id), events.map((e: { id: string }) => e.id), 'pages by --cursor: each event once')

  usageError(t, await cli(['audit', 'list', '--limit', '0']), 'tessera: --limit must be an integer from 1 to 1000')
  usageError(t, await cli(['audit', 'list', '--since', 'last week']), /tessera: --since must be an ISO 8601 date/)
  usageError(t, await cli(['audit', 'list', '--type', 'DROP TABLE']), /tessera: --type must be an event type/)
  usageError(t, await cli(['audit', 'list', '--family', 'x']), 'tessera: --family must be a UUID')
  usageError(t, await cli(['audit', 'list', '--client', 'a b']), 'tessera: --client must be a client id')
  usageError(t, await cli(['audit', 'list', '--cursor', 'abc']), 'tessera: --cursor must be the next_cursor of a previous page')
  usageError(t, await cli(['audit', 'list', '--username', 'mallory']), 'tessera: no user mallory')
  usageError(t, await cli(['audit', 'list', '--bogus']), /^tessera: unknown option --bogus for audit list/)
  usageError(t, await cli(['audit', 'show']), /^tessera: unknown command: audit show \(tessera audit --help lists its commands\)$/)
})

t.test('usage: sessions needs a subcommand and --username; help lists the new commands', async (t) => {
  const { cli } = await setup(t)
  usageError(t, await cli(['sessions']), /^usage: tessera sessions <command>(.|\n)*  sessions revoke-all /)
  usageError(t, await cli(['sessions', 'list']), 'tessera: sessions list needs --username')
  usageError(t, await cli(['sessions', 'list', '--username', 'mallory']), 'tessera: no user mallory')
  usageError(t, await cli(['sessions', 'list', '--username', 'alice', '--id', 'x']), /^tessera: unknown option --id for sessions list/)
  const help = await cli(['help'])
  t.equal(help.code, 0)
  for (const name of ['sessions list', 'sessions revoke', 'sessions revoke-all', 'audit list']) t.match(help.out, `  ${name} `)
  t.match((await cli(['sessions', 'list', '--help'])).out, /usage: tessera sessions list --username U \[options\](.|\n)*--all +also the revoked and expired ones/)
  t.match((await cli(['sessions', 'revoke', '--help'])).out, 'usage: tessera sessions revoke --id FAMILY')
  t.match((await cli(['audit', 'list', '--help'])).out, /--type T +an event type/)
})
