// `tessera doctor`: a healthy deployment passes every check; each broken one fails the check that
// names the problem, in words, with exit code 1 — and the doctor never changes anything.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import type { Test } from 'tap'
import { freshDatabase, testApp, testEnv } from '../helpers/app.js'
import { runTessera } from '../helpers/cli.js'
import { freePort } from '../helpers/processes.js'

type Check = { name: string; status: 'ok' | 'fail' | 'skip'; detail: string }

async function doctor(env: Record<string, string>, format = 'json') {
  const res = await runTessera(['doctor', '--format', format], env)
  return { res, checks: format === 'json' ? (res.json().checks as Check[]) : [], byName: (name: string) => (res.json().checks as Check[]).find((c) => c.name === name)! }
}

/** A Tessera listening on 127.0.0.1 whose issuer is its own URL, and the environment to inspect it with. */
async function served(t: Test) {
  const port = await freePort()
  const issuer = `http://127.0.0.1:${port}`
  const app = await testApp(t, { env: { ISSUER: issuer } })
  await app.app.listen({ port, host: '127.0.0.1' })
  return { app, env: testEnv({ DATABASE_URL: app.databaseUrl!, ISSUER: issuer }) }
}

t.test('a healthy deployment: every check passes, exit 0; text by default, JSON with --format json', async (t) => {
  const { env } = await served(t)
  const { res, checks } = await doctor(env)
  t.equal(res.code, 0, res.err)
  t.same(checks.map((c) => c.name), ['configuration', 'database', 'schema', 'key encryption key', 'key lines', 'clock', 'issuer', 'jwks'])
  t.same(checks.filter((c) => c.status !== 'ok'), [], 'all ok')
  t.equal(res.json().ok, true)
  t.match(checks.find((c) => c.name === 'key lines')!.detail, /ES256, RS256/)
  t.match(checks.find((c) => c.name === 'jwks')!.detail, /serves the 2 published key\(s\) the database holds/)
  const text = await runTessera(['doctor'], env)
  t.equal(text.code, 0)
  t.match(text.out, /^ok +configuration: test mode/m)
  t.match(text.out, /tessera doctor: everything checked is fine$/)
  t.equal((await runTessera(['doctor', '--format', 'yaml'], env)).code, 2, 'a bad --format is a usage error')
})

t.test('a wrong KEK: the key check says which keys it cannot open and which KEK id sealed them', async (t) => {
  const { env } = await served(t)
  const { res, byName } = await doctor({ ...env, KEY_ENCRYPTION_KEY: `other:${randomBytes(32).toString('base64url')}` })
  t.equal(res.code, 1)
  t.equal(byName('key encryption key').status, 'fail')
  t.match(byName('key encryption key').detail, /^cannot open 2 stored key\(s\) .*sealed under KEK id test: set the KEK that sealed them/)
  t.notOk(res.out.includes(env.KEY_ENCRYPTION_KEY!.slice(5)), 'no KEK in the output')
  t.equal(byName('database').status, 'ok')
})

t.test('an unmigrated database: the schema check says to run `tessera migrate`; nothing is migrated', async (t) => {
  const url = await freshDatabase(t)
  const env = testEnv({ DATABASE_URL: url })
  const { res, byName } = await doctor(env)
  t.equal(res.code, 1)
  t.equal(byName('schema').status, 'fail')
  t.match(byName('schema').detail, /^\d+ migration\(s\) not applied \(.*\): run `tessera migrate`$/)
  t.equal(byName('key lines').status, 'skip')
  const again = await doctor(env)
  t.match(again.byName('schema').detail, /not applied/, 'still unmigrated: the doctor changed nothing')
})

t.test('the database down: said in words, without the connection string; what needs it is skipped', async (t) => {
  const port = await freePort()
  const env = testEnv({ DATABASE_URL: `postgres://tessera:s3cret-password@127.0.0.1:${port}/tessera`, DB_ACQUIRE_TIMEOUT_MS: '1000' })
  const { res, byName } = await doctor(env)
  t.equal(res.code, 1)
  t.equal(byName('database').status, 'fail')
  t.match(byName('database').detail, /^not reachable \(ECONNREFUSED\): is PostgreSQL running, and DATABASE_URL right\?$/)
  for (const name of ['schema', 'key lines', 'clock']) t.equal(byName(name).status, 'skip', `${name} skipped`)
  t.notOk(res.out.includes('s3cret-password'), 'no password in the output')
})

t.test('a missing key line: the RS256 line has no active key', async (t) => {
  const url = await freshDatabase(t)
  const env = testEnv({ DATABASE_URL: url })
  t.equal((await runTessera(['migrate'], env)).code, 0)
  t.equal((await runTessera(['keys', 'rotate', '--now'], env)).code, 0, 'an ES256 key only')
  const { res, byName } = await doctor(env)
  t.equal(res.code, 1)
  t.equal(byName('key lines').status, 'fail')
  t.match(byName('key lines').detail, /^no active key on the RS256 line\(s\): start a server \(it makes them\), or `tessera keys rotate --now --alg RS256`$/)
  t.equal(byName('key encryption key').status, 'ok')
})

t.test('a server that serves other keys than the database holds: the JWKS check fails', async (t) => {
  const { env } = await served(t)
  // The same issuer, inspected with another database: its keys are not the ones served.
  const url = await freshDatabase(t)
  const other = { ...env, DATABASE_URL: url }
  t.equal((await runTessera(['migrate'], other)).code, 0)
  t.equal((await runTessera(['keys', 'rotate', '--now'], other)).code, 0)
  const { res, byName } = await doctor(other)
  t.equal(res.code, 1)
  t.equal(byName('issuer').status, 'ok')
  t.match(byName('jwks').detail, /^the served JWKS differs from the database: 1 key\(s\) not served .*, 2 served but not published/)
})

t.test('a bad configuration is reported, not thrown; production needs a reachable https issuer', async (t) => {
  const { res, byName } = await doctor({ NODE_ENV: 'production' })
  t.equal(res.code, 1)
  t.equal(byName('configuration').status, 'fail')
  t.match(byName('configuration').detail, /ISSUER is required in production/)
  t.equal(byName('database').status, 'skip')

  const { env } = await served(t)
  const prod = { ...env, NODE_ENV: 'production', ALLOW_INSECURE_ISSUER: 'true', KEY_ENCRYPTION_KEY: env.KEY_ENCRYPTION_KEY! }
  const http = await doctor(prod)
  t.equal(http.byName('issuer').status, 'fail')
  t.match(http.byName('issuer').detail, /is not https$/)
  const unreachable = await doctor({ ...prod, ISSUER: 'https://127.0.0.1:1' })
  t.equal(unreachable.byName('issuer').status, 'fail', 'production: an unreachable issuer fails')
  t.match(unreachable.byName('issuer').detail, /does not answer discovery/)
  const devUnreachable = await doctor({ ...env, ISSUER: 'http://127.0.0.1:1' })
  t.equal(devUnreachable.byName('issuer').status, 'skip', 'development: skipped (the server may be stopped)')
})
