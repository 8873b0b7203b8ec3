// Throttling across real server processes (SECURITY.md #96 and #141, issue #12): three
// `tessera serve` processes on one PostgreSQL give a guesser no more attempts than one.
// Addresses come through TRUST_PROXY (X-Forwarded-For), as behind a load balancer.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { freshDatabase } from '../helpers/app.js'
import { ALICE_PASSWORD, API, freePort, runCli, sharedDatabaseEnv, sqlClient, startServer, waitReady, type Body } from '../helpers/processes.js'

const INSTANCES = 3
const GUESSES = 60
const FREE = 10

t.test(`#96 #141 (#12) ${INSTANCES} instances, ${GUESSES} wrong passwords for one account: throttled after the same number of failures as on one instance`, async (t) => {
  const url = await freshDatabase(t)
  const env = sharedDatabaseEnv(t, url, { TRUST_PROXY: 'true', LOGIN_ACCOUNT_FREE_FAILURES: String(FREE), LOGIN_BACKOFF_BASE_SECONDS: '8' })
  t.equal((await runCli(t, ['migrate'], env)).code, 0, 'migrate')
  for (const name of ['alice', 'bob', 'carol', 'dave']) {
    t.equal((await runCli(t, ['users', 'create', '--username', name, '--password-stdin'], env, ALICE_PASSWORD + '\n')).code, 0, `users create ${name}`)
  }
  const created = await runCli(t, ['clients', 'create', '--name', 'app', '--grant-types', 'password', '--scopes', 'read', '--audience', API], env)
  const client = JSON.parse(created.stdout) as Body
  const ports = new Set<number>()
  while (ports.size < INSTANCES) ports.add(await freePort())
  const servers = [...ports].map((port, i) => startServer(t, String.fromCharCode(65 + i), env, port))
  await Promise.all(servers.map((s) => waitReady(s, 60_000)))

  const login = async (base: string, username: string, password: string, ip: string) => {
    const res = await fetch(`${base}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
      body: JSON.stringify({ username, password, client_id: client.client_id, client_secret: client.client_secret }),
    })
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Body }
  }
  const judged = (statuses: number[]) => statuses.filter((s) => s === 400).length
  const expected = [...Array<number>(FREE + 1).fill(400), ...Array<number>(GUESSES - FREE - 1).fill(429)]

  // One instance: the reference.
  const one: number[] = []
  for (let i = 0; i < GUESSES; i++) one.push((await login(servers[0]!.url, 'bob', `guess ${i}`, `203.0.113.${i + 1}`)).status)
  t.same(one, expected, `one instance: ${FREE} free failures, the next one locks, the rest wait`)

  // Three instances, one guess after the other, each from another address.
  const three: number[] = []
  for (let i = 0; i < GUESSES; i++) three.push((await login(servers[i % INSTANCES]!.url, 'alice', `guess ${i}`, `198.51.100.${i + 1}`)).status)
  t.same(three, expected, `three instances: the same ${judged(three)} judged guesses`)

  // During alice's lock: refused everywhere, even with the right password; carol is untouched.
  for (const s of servers) {
    const res = await login(s.url, 'alice', ALICE_PASSWORD, '198.51.100.200')
    t.equal(res.status, 429, `instance ${s.name} refuses the right password during the lock`)
    t.same(res.body, { error: 'temporarily_unavailable', error_description: 'too many failed attempts; retry later' })
  }
  const retryAfter = Number((await login(servers[1]!.url, 'alice', ALICE_PASSWORD, '198.51.100.201')).retryAfter)
  const lockEnds = Date.now() + retryAfter * 1000
  t.ok(retryAfter >= 1 && retryAfter <= 8, `Retry-After ${retryAfter} s (the first lock: LOGIN_BACKOFF_BASE_SECONDS)`)
  t.equal((await login(servers[2]!.url, 'carol', ALICE_PASSWORD, '192.0.2.250')).status, 200, 'another account from another address logs in')

  // Three instances, all at once (another account): every attempt counts before its hash, so the race gains nothing.
  const parallel = await Promise.all(Array.from({ length: GUESSES }, (_, i) => login(servers[i % INSTANCES]!.url, 'dave', `guess ${i}`, `192.0.2.${i + 1}`)))
  const statuses = parallel.map((r) => r.status)
  t.equal(judged(statuses), FREE + 1, `${GUESSES} simultaneous guesses over ${INSTANCES} instances: ${FREE + 1} judged`)
  t.equal(statuses.filter((s) => s === 429).length, GUESSES - FREE - 1, 'the rest refused')
  t.equal(statuses.filter((s) => s >= 500).length, 0, 'no 5xx')

  // Real processes keep real time: wait the lock out.
  await sleep(Math.max(0, lockEnds - Date.now()) + 200)
  const after = await login(servers[2]!.url, 'alice', ALICE_PASSWORD, '198.51.100.202')
  t.equal(after.status, 200, 'after the lock, the right password is accepted')

  const sql = await sqlClient(t, url)
  const { rows } = await sql.query<{ kind: string; n: number }>(`select detail->>'kind' as kind, count(*)::int as n from audit_event where type = 'login.locked' group by 1 order by 1`)
  t.same(rows, [{ kind: 'account', n: 3 }], 'one account lock each for bob, alice and dave, audited once')
  const { rows: left } = await sql.query(`select * from login_throttle where kind = 'account' and subject = 'alice'`)
  t.same(left, [], "alice's success reset her account counter")
})
