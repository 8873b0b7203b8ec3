// The embedded default (PGlite): the full token flow, the serialised refresh race,
// persistence of the data folder, and its single-process lock (#137).
// Each PGlite instance costs ~5 s and ~500 MB: this file starts three in-process, one at a time.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { openDatabase } from '../../src/db/connect.js'
import { migrateToLatest } from '../../src/db/migrate.js'
import { PasswordHasher } from '../../src/users/passwords.js'
import { createUser } from '../../src/users/users.store.js'
import { basic, FORM, form, passwordLogin, testApp, tokenRequest } from '../helpers/app.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const PASSWORD = 'correct horse battery'

/** Runs the compiled `tessera` command (bin/tessera.js → dist/) in its own process. */
function tessera(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base = { ...process.env }
  delete base.DATABASE_URL // the embedded database, whatever the runner was given
  delete base.KEY_ENCRYPTION_KEY
  delete base.ISSUER
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'tessera.js'), ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolveRun({ code, stdout, stderr })
    })
  })
}

t.test('the full token flow on the embedded database', async (t) => {
  const app = await testApp(t, { backend: 'pglite' })
  t.equal(app.database.kind, 'pglite')
  const alice = await app.createUser('alice', PASSWORD)
  const client = await app.createClient()

  t.test('client_credentials issues an access token', async (t) => {
    const res = await tokenRequest(app, { grant_type: 'client_credentials' }, client)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['cache-control'], 'no-store')
    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'scope', 'token_type'])
    t.match(body, { token_type: 'Bearer', expires_in: 900, scope: 'read write' })
  })

  t.test('password login, refresh rotation, and reuse detection revokes the family', async (t) => {
    const first = await passwordLogin(app, client, 'alice', PASSWORD)
    t.match(first.refresh_token, /^tsr_[A-Za-z0-9_-]{43}$/)
    const next = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: first.refresh_token }, client)
    t.equal(next.statusCode, 200)
    const rotated = next.json()
    t.not(rotated.refresh_token, first.refresh_token)
    t.equal(rotated.scope, 'openid read')
    const rows = await app.database.db.selectFrom('refresh_token').select(['id', 'family_id', 'used_at', 'parent_id', 'successor_id']).orderBy('created_at').execute()
    t.equal(rows.length, 2)
    t.equal(rows[0]!.family_id, rows[1]!.family_id)
    t.not(rows[0]!.used_at, null)
    t.equal(rows[0]!.successor_id, rows[1]!.id)
    t.equal(rows[1]!.parent_id, rows[0]!.id)

    const retry = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: first.refresh_token }, client)
    t.equal(retry.statusCode, 200, 'a retry within the grace window')
    t.equal(retry.json().refresh_token, rotated.refresh_token, 'gets the same successor')
    const third = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: rotated.refresh_token }, client)
    t.equal(third.statusCode, 200)
    const reuse = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: first.refresh_token }, client)
    t.equal(reuse.statusCode, 400)
    t.same(reuse.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' })
    const fam = await app.database.db.selectFrom('refresh_token_family').select(['revoked_at', 'revoked_reason']).where('id', '=', rows[0]!.family_id).executeTakeFirstOrThrow()
    t.equal(fam.revoked_reason, 'reuse_detected')
    const successor = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: third.json().refresh_token }, client)
    t.equal(successor.statusCode, 400, 'the newest token died with its family')
    const userinfo = await app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${rotated.access_token}` } })
    t.equal(userinfo.statusCode, 401, "the family's access token is refused too (#23)")
    const events = await app.database.db.selectFrom('audit_event').select('type').where('type', '=', 'refresh_token.reuse_detected').execute()
    t.equal(events.length, 1)
  })

  t.test('revoking a refresh token revokes its family; userinfo answers for a live session', async (t) => {
    const revoked = await passwordLogin(app, client, 'alice', PASSWORD)
    const live = await passwordLogin(app, client, 'alice', PASSWORD)
    const res = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: basic(client.id, client.secret!) }, payload: form({ token: revoked.refresh_token }) })
    t.equal(res.statusCode, 200)
    t.equal(res.body, '')
    const refresh = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: revoked.refresh_token }, client)
    t.equal(refresh.statusCode, 400)
    t.same(refresh.json(), { error: 'invalid_grant', error_description: 'refresh token is invalid' })

    const info = await app.app.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${live.access_token}` } })
    t.equal(info.statusCode, 200)
    t.same(info.json(), { sub: alice.id, preferred_username: 'alice' })
    const other = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: live.refresh_token }, client)
    t.equal(other.statusCode, 200, 'revoking one family leaves the other session alone (DESIGN 3)')
  })

  t.test('20 simultaneous refreshes of one token: no 5xx, one successor value, the family intact (#54)', async (t) => {
    const first = await passwordLogin(app, client, 'alice', PASSWORD)
    const results = await Promise.all(
      Array.from({ length: 20 }, () => tokenRequest(app, { grant_type: 'refresh_token', refresh_token: first.refresh_token }, client)),
    )
    const statuses = results.map((r) => r.statusCode)
    t.equal(statuses.filter((s) => s >= 500).length, 0, 'no 5xx')
    t.equal(statuses.filter((s) => s === 200).length, 20, 'all 200: the losers are retries within the grace window')
    t.equal(new Set(results.map((r) => r.json().refresh_token)).size, 1, 'one successor value')
    const family = await app.database.db
      .selectFrom('refresh_token as t')
      .innerJoin('refresh_token_family as f', 'f.id', 't.family_id')
      .select(['f.id', 'f.revoked_reason'])
      .where('t.parent_id', 'is', null)
      .orderBy('f.created_at', 'desc')
      .executeTakeFirstOrThrow()
    const successors = await app.database.db.selectFrom('refresh_token').select('id').where('family_id', '=', family.id).where('parent_id', 'is not', null).execute()
    t.equal(successors.length, 1, 'one successor row')
    t.equal(family.revoked_reason, null, 'the family is intact')
  })
})

t.test('the data folder persists across restarts and is locked to one process (#137)', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tessera-embedded-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const pgliteDir = join(dataDir, 'pglite')
  const lockFile = join(dataDir, 'tessera.lock')
  const childEnv = { DATA_DIR: dataDir, NODE_ENV: 'development' }

  // First run: create a user, close.
  const first = await openDatabase({ kind: 'pglite', dataDir: pgliteDir })
  let userId: string
  try {
    await migrateToLatest(first.db)
    t.equal(readFileSync(lockFile, 'utf8'), String(process.pid), 'the lock names this process')
    const hash = await new PasswordHasher({ memoryKib: 19_456, timeCost: 2, parallelism: 1 }).hash(PASSWORD)
    const user = await createUser(first.db, { username: 'alice', passwordHash: hash })
    userId = user!.id
  } finally {
    await first.close()
  }
  t.notOk(existsSync(lockFile), 'closing removes the lock')

  // A lock left by a process that is gone does not block opening.
  const dead = spawnSync(process.execPath, ['-e', '']).pid!
  writeFileSync(lockFile, String(dead))
  const second = await openDatabase({ kind: 'pglite', dataDir: pgliteDir })
  let secondOpen = true
  t.teardown(async () => {
    if (secondOpen) await second.close()
  })
  t.equal(readFileSync(lockFile, 'utf8'), String(process.pid), 'the stale lock was taken over')

  t.test('a reopened folder still has the user', async (t) => {
    const rows = await second.db.selectFrom('app_user').select(['id', 'username']).execute()
    t.same(rows, [{ id: userId, username: 'alice' }])
  })

  t.test('a second process on the same folder is refused while it is open', async (t) => {
    const res = await tessera(['users', 'list'], childEnv)
    t.not(res.code, 0)
    t.equal(res.stdout, '')
    t.match(res.stderr, `in use by process ${process.pid}`)
    t.equal(readFileSync(lockFile, 'utf8'), String(process.pid), 'the refused process left the lock alone')
  })

  t.test('once the first handle is closed, the other process opens it and sees the user', async (t) => {
    await second.close()
    secondOpen = false
    t.notOk(existsSync(lockFile))
    const res = await tessera(['users', 'list'], childEnv)
    t.equal(res.code, 0, res.stderr)
    const users = JSON.parse(res.stdout) as Record<string, unknown>[]
    t.equal(users.length, 1)
    t.same(Object.keys(users[0]!).sort(), ['created_at', 'disabled', 'email', 'email_verified', 'id', 'name', 'roles', 'username'], 'no password hash')
    t.match(users[0], { id: userId, username: 'alice', roles: [], disabled: false })
    t.notOk(existsSync(lockFile), 'the command released the lock when it ended')
  })
})
