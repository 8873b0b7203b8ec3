// `tessera throttle show|clear` and `clients create --rate-limit` (docs/security.md "Brute force and abuse", #12).
import pg from 'pg'
import t from 'tap'
import { Writable } from 'node:stream'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { databaseTarget, openDatabase } from '../../src/db/connect.js'
import { freshDatabase, testEnv } from '../helpers/app.js'
import { runTessera } from '../helpers/cli.js'

t.test('#122 (#12) tessera throttle show / clear an account and an address; clients create --rate-limit is stored and shown', async (t) => {
  const url = await freshDatabase(t)
  const env = testEnv({ DATABASE_URL: url, LOGIN_ACCOUNT_FREE_FAILURES: '1' })
  const cli = (args: string[], stdin = '') => runTessera(args, env, stdin)
  t.equal((await cli(['migrate'])).code, 0)
  t.equal((await cli(['users', 'create', '--username', 'alice', '--password-stdin'], 'correct horse battery\n')).code, 0)
  const created = await cli(['clients', 'create', '--name', 'web', '--grant-types', 'password,client_credentials', '--scopes', 'read', '--rate-limit', '25'])
  t.equal(created.code, 0, created.err)
  const client = JSON.parse(created.out)
  t.equal(client.rate_limit_per_second, 25, 'the rate is shown')
  t.equal(JSON.parse((await cli(['clients', 'list'])).out)[0].rate_limit_per_second, 25, 'and listed')
  const defaulted = JSON.parse((await cli(['clients', 'create', '--name', 'api', '--grant-types', 'client_credentials', '--scopes', 'read'])).out)
  t.equal(defaulted.rate_limit_per_second, null, 'no --rate-limit: the default (CLIENT_RATE_LIMIT_PER_SECOND)')
  for (const bad of ['-1', 'ten', '1.5', '2000000']) {
    const res = await cli(['clients', 'create', '--name', 'x', '--grant-types', 'client_credentials', '--scopes', 'read', `--rate-limit=${bad}`])
    t.equal(res.code, 2, `--rate-limit ${bad} is refused`)
    t.match(res.err, /--rate-limit must be an integer from 0/)
  }

  // Two failures of alice from one address, through a server on the same database.
  const config = loadConfig(env)
  const database = await openDatabase(databaseTarget(config))
  const server = await buildApp({ config, database, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
  t.teardown(async () => {
    await server.close()
    await database.close()
  })
  const login = (password: string) => server.app.inject({ method: 'POST', url: '/login', remoteAddress: '2001:db8:5:6::7', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ username: 'alice', password, client_id: client.client_id, client_secret: client.client_secret }) })
  await login('wrong')
  await login('wrong')
  t.equal((await login('correct horse battery')).statusCode, 429, 'alice is locked')

  const shown = await cli(['throttle', 'show', '--username', 'ALICE'])
  t.equal(shown.code, 0, shown.err)
  const state = JSON.parse(shown.out)
  t.equal(state.account, 'alice')
  t.equal(state.locked, true)
  t.match(state.counters.find((c: { kind: string }) => c.kind === 'account'), { account: 'alice', failures: 2, locked: true })
  const byAddress = JSON.parse((await cli(['throttle', 'show', '--address', '2001:db8:5:6::99'])).out)
  t.equal(byAddress.address, '2001:db8:5:6::/64', 'an IPv6 address names its /64')
  t.equal(byAddress.counters.length, 2)

  t.equal((await cli(['throttle', 'show'])).code, 2, 'a target is needed')
  t.equal((await cli(['throttle', 'show', '--username', 'a', '--address', '192.0.2.1'])).code, 2, 'only one')
  t.equal((await cli(['throttle', 'show', '--address', 'nope'])).code, 2)
  t.equal((await cli(['throttle', 'reset', '--username', 'a'])).code, 2, 'unknown subcommand')

  const cleared = await cli(['throttle', 'clear', '--address', '2001:db8:5:6::/64'])
  t.same(JSON.parse(cleared.out), { address: '2001:db8:5:6::/64', cleared: 2 })
  t.equal(JSON.parse((await cli(['throttle', 'clear', '--username', 'alice'])).out).cleared, 1)
  t.equal((await login('correct horse battery')).statusCode, 200, 'the lock is gone')
  const sql = new pg.Client({ connectionString: url })
  await sql.connect()
  t.teardown(() => sql.end())
  const { rows } = await sql.query(`select detail from audit_event where type = 'login_throttle.cleared' order by id`)
  t.same(rows.map((r) => r.detail), [{ address: '2001:db8:5:6::/64', cleared: 2, via: 'cli' }, { account: 'alice', cleared: 1, via: 'cli' }])
})
