// GET /metrics: Prometheus exposition, the counters after real requests, the METRICS_TOKEN
// guard and label cardinality. SECURITY.md #122 (counted in /metrics), #125 (no secrets or
// user data in labels).
import { randomBytes } from 'node:crypto'
import t from 'tap'
import type { Test } from 'tap'
import { ConfigError, loadConfig } from '../../src/config.js'
import { Metrics } from '../../src/metrics.js'
import { FORM, form, passwordLogin, testApp, testEnv, tokenRequest, type TestApp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'
const METRICS_TOKEN = randomBytes(32).toString('base64url')

/** One parsed scrape: sample lines by series (`name{labels}`), plus the raw text. */
interface Scrape {
  text: string
  series: Map<string, number>
  /** The value of `name` with exactly these labels (label order as written by prom-client), 0 when absent. */
  value(name: string, labels?: Record<string, string>): number
}

// Prometheus text format 0.0.4: `name{l="v",...} value`; comments are `# HELP` / `# TYPE`.
// prom-client writes NaN as "Nan" (an empty event-loop histogram): Prometheus parses floats with
// Go's ParseFloat, which takes any case.
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|Nan|\+Inf|-Inf)$/

function parse(t: Test, text: string): Scrape {
  const series = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('#')) {
      if (!/^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) t.fail(`bad comment line: ${line}`)
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) {
      t.fail(`bad sample line: ${line}`)
      continue
    }
    series.set(m[1]! + (m[2] ?? ''), Number(m[3]))
  }
  const key = (name: string, labels: Record<string, string> = {}) => {
    const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')
    return l === '' ? name : `${name}{${l}}`
  }
  return { text, series, value: (name, labels) => series.get(key(name, labels)) ?? 0 }
}

async function scrape(t: Test, app: TestApp, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await app.app.inject({ method: 'GET', url: '/metrics', headers })
  t.equal(res.statusCode, 200, 'GET /metrics: 200')
  return parse(t, res.body)
}

const issued = (s: Scrape, grant: string) => s.value('tessera_tokens_issued_total', { grant })
const refreshEvents = (s: Scrape, event: string, reason = '') => s.value('tessera_refresh_token_events_total', { event, reason })
const oauthErrors = (s: Scrape, code: string) => s.value('tessera_oauth_errors_total', { code })
const requests = (s: Scrape, method: string, route: string, status: number) =>
  s.value('tessera_http_request_duration_seconds_count', { method, route, status_code: String(status) })

t.test('the exposition: content type, no-store, parseable, our metrics and the process metrics', async (t) => {
  const app = await testApp(t)
  const res = await app.app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  t.equal(res.headers['cache-control'], 'no-store')
  const s = parse(t, res.body)
  for (const [name, type] of [
    ['tessera_tokens_issued_total', 'counter'],
    ['tessera_oauth_errors_total', 'counter'],
    ['tessera_refresh_token_events_total', 'counter'],
    ['tessera_housekeeping_deleted_rows_total', 'counter'],
    ['tessera_housekeeping_runs_total', 'counter'],
    ['tessera_http_request_duration_seconds', 'histogram'],
    ['process_cpu_seconds_total', 'counter'],
    ['nodejs_heap_size_used_bytes', 'gauge'],
  ]) {
    t.match(res.body, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), `${name} is a ${type}`)
  }
  // Known series exist at 0 from the start, so rate() works from the first scrape.
  for (const grant of ['client_credentials', 'password', 'refresh_token', 'login']) t.ok(s.series.has(`tessera_tokens_issued_total{grant="${grant}"}`), `${grant} at 0`)
  for (const event of ['issued', 'rotated', 'retried', 'reuse_detected']) t.equal(refreshEvents(s, event), 0, `${event} at 0`)
  t.equal(s.value('tessera_housekeeping_deleted_rows_total', { table: 'refresh_token_family' }), 0)

  t.test('other methods: 405', async (t) => {
    const post = await app.app.inject({ method: 'POST', url: '/metrics' })
    t.equal(post.statusCode, 405)
    t.equal(post.headers.allow, 'GET')
  })
  t.test('HEAD works like GET, without a body', async (t) => {
    const head = await app.app.inject({ method: 'HEAD', url: '/metrics' })
    t.equal(head.statusCode, 200)
    t.equal(head.body, '')
  })
})

t.test('#122 the counters move after real requests, and only for what succeeded', async (t) => {
  const app = await testApp(t)
  const user = await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const loginClient = await app.createClient({ isPublic: true, grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'read'] })
  const before = await scrape(t, app)

  t.equal((await tokenRequest(app, { grant_type: 'client_credentials' }, client)).statusCode, 200)
  const login = await passwordLogin(app, client, 'alice', PASSWORD)
  const refreshed = await tokenRequest(app, { grant_type: 'refresh_token', refresh_token: login.refresh_token }, client)
  t.equal(refreshed.statusCode, 200, 'refresh')
  const viaLogin = await app.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/json' }, payload: { username: 'alice', password: PASSWORD, client_id: loginClient.id } })
  t.equal(viaLogin.statusCode, 200, '/login')
  // Failures: a wrong password, an unknown grant type, a bad client secret, a 404.
  t.equal((await tokenRequest(app, { grant_type: 'password', username: 'alice', password: 'wrong' }, client)).statusCode, 400)
  t.equal((await tokenRequest(app, { grant_type: 'urn:nope' }, client)).statusCode, 400)
  t.equal((await tokenRequest(app, { grant_type: 'client_credentials' }, { id: client.id, secret: 'not-the-secret' })).statusCode, 401)
  t.equal((await app.app.inject({ method: 'GET', url: '/nowhere' })).statusCode, 404)

  const after = await scrape(t, app)
  const delta = (f: (s: Scrape) => number) => f(after) - f(before)
  t.equal(delta((s) => issued(s, 'client_credentials')), 1, 'client_credentials issued once')
  t.equal(delta((s) => issued(s, 'password')), 1, 'password issued once (the failed login is not counted)')
  t.equal(delta((s) => issued(s, 'refresh_token')), 1, 'refresh_token issued once')
  t.equal(delta((s) => issued(s, 'login')), 1, '/login issued once')
  t.equal(delta((s) => refreshEvents(s, 'issued')), 2, 'two new families: password grant and /login')
  t.equal(delta((s) => oauthErrors(s, 'invalid_grant')), 1, 'invalid_grant')
  t.equal(delta((s) => oauthErrors(s, 'unsupported_grant_type')), 1, 'unsupported_grant_type')
  t.equal(delta((s) => oauthErrors(s, 'invalid_client')), 1, 'invalid_client')
  t.equal(delta((s) => oauthErrors(s, 'invalid_request')), 1, 'invalid_request (the 404)')
  t.equal(delta((s) => requests(s, 'POST', '/token', 200)), 3, 'duration histogram: 3 successful POST /token')
  t.equal(delta((s) => requests(s, 'POST', '/token', 400)), 2, 'duration histogram: 2 POST /token 400')
  t.equal(delta((s) => requests(s, 'POST', '/login', 200)), 1, 'duration histogram: POST /login')
  t.equal(delta((s) => requests(s, 'GET', 'unmatched', 404)), 1, 'a 404 is route="unmatched"')
  t.ok(after.value('tessera_http_request_duration_seconds_sum', { method: 'POST', route: '/login', status_code: '200' }) > 0, 'durations are observed')

  t.test('#125 no token, secret, user or client identifier anywhere in the exposition', async (t) => {
    const text = after.text
    for (const [what, secret] of [
      ['access token', login.access_token],
      ['refresh token', login.refresh_token],
      ['rotated refresh token', refreshed.json().refresh_token],
      ['password', PASSWORD],
      ['client secret', client.secret!],
      ['client id', client.id],
      ['public client id', loginClient.id],
      ['user id', user.id],
      ['username', 'alice'],
    ] as const) {
      t.notOk(text.includes(secret), `no ${what}`)
    }
  })
})

t.test('#122 refresh-token events: rotated, retried, reuse_detected, revoked by reason', async (t) => {
  const app = await testApp(t)
  await app.createUser('alice', PASSWORD)
  const client = await app.createClient()
  const refresh = (token: string) => tokenRequest(app, { grant_type: 'refresh_token', refresh_token: token }, client)
  const before = await scrape(t, app)

  // A rotation, then the same token again at once: a retry within the grace window.
  const a = await passwordLogin(app, client, 'alice', PASSWORD)
  const a2 = await refresh(a.refresh_token)
  t.equal(a2.statusCode, 200, 'rotated')
  const retry = await refresh(a.refresh_token)
  t.equal(retry.statusCode, 200, 'retried')
  t.equal(retry.json().refresh_token, a2.json().refresh_token, 'the same successor')
  // RFC 7009 revocation of the family.
  const revoked = await app.app.inject({ method: 'POST', url: '/revoke', headers: { ...FORM, authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` }, payload: form({ token: a2.json().refresh_token }) })
  t.equal(revoked.statusCode, 200, 'revoked')
  // Two rotations, then the first token again: reuse, which revokes the family.
  const b = await passwordLogin(app, client, 'alice', PASSWORD)
  const b2 = (await refresh(b.refresh_token)).json()
  t.equal((await refresh(b2.refresh_token)).statusCode, 200)
  t.equal((await refresh(b.refresh_token)).statusCode, 400, 'reuse')

  const after = await scrape(t, app)
  const delta = (event: string, reason = '') => refreshEvents(after, event, reason) - refreshEvents(before, event, reason)
  t.equal(delta('issued'), 2, 'issued: two families')
  t.equal(delta('rotated'), 3, 'rotated: one in the first family, two in the second')
  t.equal(delta('retried'), 1, 'retried: one')
  t.equal(delta('reuse_detected'), 1, 'reuse_detected: one')
  t.equal(delta('revoked', 'revoke_endpoint'), 1, 'revoked by /revoke')
  t.equal(delta('revoked', 'reuse_detected'), 1, 'revoked by reuse detection')
  t.equal(issued(after, 'refresh_token') - issued(before, 'refresh_token'), 4, 'three rotations and a retry answered with tokens; the reuse is not')
})

t.test('#125 label cardinality: a storm of 404 probes adds no series', async (t) => {
  const app = await testApp(t)
  await app.app.inject({ method: 'GET', url: '/wp-login.php' }) // the first probe makes the one "unmatched" series
  await app.app.inject({ method: 'GET', url: '/metrics' })
  const before = await scrape(t, app)
  const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'PROPFIND', 'MKCOL']
  for (let i = 0; i < 200; i++) {
    const res = await app.app.inject({ method: methods[i % methods.length] as 'GET', url: `/probe/${randomBytes(8).toString('hex')}?q=${i}`, headers: { ...FORM }, payload: i % 2 ? form({ x: String(i) }) : undefined })
    t.equal(res.statusCode, 404, 'probe: 404')
    if (res.statusCode !== 404) break
  }
  const after = await scrape(t, app)
  const newSeries = [...after.series.keys()].filter((k) => k.startsWith('tessera_') && !before.series.has(k))
  // The other verbs are one "OTHER" series for each histogram line; the path never appears.
  const allowed = (k: string) => /method="(POST|PUT|DELETE|PATCH|OPTIONS|OTHER)",route="unmatched",status_code="404"/.test(k)
  t.same(newSeries.filter((k) => !allowed(k)), [], 'only the unmatched series of each method')
  t.ok(newSeries.length <= 7 * 14, `bounded: ${newSeries.length} new sample lines for 7 method values`)
  t.notMatch(after.text, /probe|wp-login/, 'no path is ever a label value')
  t.equal(requests(after, 'GET', 'unmatched', 404) - requests(before, 'GET', 'unmatched', 404), 25, 'every GET probe counted in the one series')
  t.equal(after.value('tessera_http_request_duration_seconds_count', { method: 'OTHER', route: 'unmatched', status_code: '404' }), 50, 'PROPFIND and MKCOL are OTHER')

  t.test('a route pattern, not the URL: /metrics?x= is route="/metrics"', async (t) => {
    const s1 = await scrape(t, app)
    await app.app.inject({ method: 'GET', url: `/metrics?cache-buster=${randomBytes(4).toString('hex')}` })
    const s2 = await scrape(t, app)
    t.equal(requests(s2, 'GET', '/metrics', 200) - requests(s1, 'GET', '/metrics', 200), 2)
    t.notMatch(s2.text, /cache-buster/)
  })
})

t.test('METRICS_TOKEN: a bearer token guards /metrics', async (t) => {
  const app = await testApp(t, { env: { METRICS_TOKEN } })
  const get = (authorization?: string) => app.app.inject({ method: 'GET', url: '/metrics', headers: authorization === undefined ? {} : { authorization } })

  t.test('without a token: 401 with a Bearer challenge', async (t) => {
    const res = await get()
    t.equal(res.statusCode, 401)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="tessera"')
    t.equal(res.headers['cache-control'], 'no-store')
    t.same(res.json(), { error: 'invalid_token', error_description: 'a bearer token is required' })
  })
  t.test('a wrong token, a prefix of it, a longer one, another scheme: 401', async (t) => {
    for (const authorization of [`Bearer ${METRICS_TOKEN.slice(0, -1)}x`, `Bearer ${METRICS_TOKEN.slice(0, 10)}`, `Bearer ${METRICS_TOKEN}A`, `Basic ${METRICS_TOKEN}`, 'Bearer']) {
      const res = await get(authorization)
      t.equal(res.statusCode, 401, authorization.slice(0, 12))
      t.match(res.headers['www-authenticate'], /^Bearer realm="tessera", error="invalid_token"/)
      t.notOk(res.body.includes(METRICS_TOKEN), 'the token is not echoed')
    }
  })
  t.test('the right token: 200 with the metrics', async (t) => {
    const res = await get(`Bearer ${METRICS_TOKEN}`)
    t.equal(res.statusCode, 200)
    t.match(res.body, /^# TYPE tessera_tokens_issued_total counter$/m)
    t.equal(parse(t, res.body).value('tessera_oauth_errors_total', { code: 'invalid_token' }), 6, 'the refused scrapes are counted')
  })
  t.test('the token is never logged', async (t) => {
    t.notOk(app.logs.some((l) => l.includes(METRICS_TOKEN)))
  })
})

t.test('configuration of the metrics and housekeeping variables', async (t) => {
  const bad = (env: Record<string, string>, message: RegExp) => {
    let error: unknown
    try {
      loadConfig(testEnv(env))
    } catch (e) {
      error = e
    }
    t.ok(error instanceof ConfigError, `${Object.keys(env)[0]} refused`)
    t.match((error as Error | undefined)?.message, message)
  }
  bad({ METRICS_TOKEN: 'short' }, /METRICS_TOKEN must be 16 to 512 characters/)
  bad({ METRICS_TOKEN: 'has spaces in the middle of it' }, /METRICS_TOKEN/)
  bad({ HOUSEKEEPING_INTERVAL_SECONDS: '-1' }, /HOUSEKEEPING_INTERVAL_SECONDS must be an integer between 0 and 86400/)
  bad({ HOUSEKEEPING_BATCH_SIZE: '0' }, /HOUSEKEEPING_BATCH_SIZE must be an integer between 1 and 10000/)
  bad({ HOUSEKEEPING_RETENTION_SECONDS: 'week' }, /HOUSEKEEPING_RETENTION_SECONDS/)
  bad({ HOUSEKEEPING_RETENTION_SECONDS: '600' }, /HOUSEKEEPING_RETENTION_SECONDS must be at least ACCESS_TOKEN_TTL_SECONDS \(900\)/)
  bad({ AUDIT_RETENTION_DAYS: '1.5' }, /AUDIT_RETENTION_DAYS/)
  const defaults = loadConfig(testEnv())
  t.equal(defaults.metricsToken, undefined)
  t.equal(defaults.housekeepingIntervalSeconds, 300)
  t.equal(defaults.housekeepingBatchSize, 500)
  t.equal(defaults.housekeepingRetentionSeconds, 7 * 86_400)
  t.equal(defaults.auditRetentionDays, 90)
  t.equal(loadConfig(testEnv({ METRICS_TOKEN })).metricsToken, METRICS_TOKEN)
})

t.test('Metrics instances do not share counters (several apps in one process)', async (t) => {
  const a = new Metrics()
  const b = new Metrics()
  a.tokenIssued('login')
  a.refreshEvent('revoked', 'logout')
  a.refreshEvent('reuse_detected')
  a.refreshEvent('revoked', 'reuse_detected')
  a.refreshEvent('revoked', 'admin', 3)
  a.refreshEvent('revoked', 'admin', 0)
  a.housekeepingDeletedRows('audit_event', 0)
  const pa = parse(t, await a.render())
  const pb = parse(t, await b.render())
  t.equal(issued(pa, 'login'), 1)
  t.equal(issued(pb, 'login'), 0)
  t.equal(refreshEvents(pa, 'revoked', 'logout'), 1)
  t.equal(refreshEvents(pa, 'reuse_detected'), 1)
  t.equal(refreshEvents(pa, 'revoked', 'reuse_detected'), 1)
  t.equal(refreshEvents(pa, 'revoked', 'admin'), 3, 'logout everywhere counts every family')
  t.ok(pb.series.has('process_cpu_seconds_total'), 'both render the process metrics')
})
