// The key-schedule rules (src/keys/policy.ts) as pure functions, and the schedule's edge cases
// on a real database: a due pending key no KEK opens, bootstrap without an active key, old rows
// without scheduled dates, KEK sets.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { kekSet, openWith, parseKek, seal } from '../../src/keys/kek.js'
import { Job } from '../../src/jobs.js'
import { generateSigningKey } from '../../src/keys/key-material.js'
import { keySyncJob } from '../../src/keys/key-sync.js'
import { keyInfoJson } from '../../src/keys/key-view.js'
import { Keyring } from '../../src/keys/keyring.js'
import { listKeys } from '../../src/keys/keys.store.js'
import { runKeySchedule } from '../../src/keys/lifecycle.js'
import { activationTime, jwksMaxAge, keyPolicy, nextKeySetChange, nextScheduleStep, prepublished, publicationTime, removalTime, standbyActivation, type KeyPolicy, type ScheduledKey } from '../../src/keys/policy.js'
import { keyOptions, TEST_KEK, testApp } from '../helpers/app.js'
import { ManualClock } from '../helpers/clock.js'

const twoLines = keyPolicy(loadConfig({ KEY_ROTATION_INTERVAL_SECONDS: '3600', JWKS_MAX_AGE_SECONDS: '300', KEY_CLOCK_SKEW_SECONDS: '60', CACHE_REFRESH_SECONDS: '10' }))
// The rules of one line; the lines themselves are tested below.
const policy: KeyPolicy = { ...twoLines, lines: ['ES256'] }
const T0 = Date.parse('2026-12-01T00:00:00Z')
const key = (over: Partial<ScheduledKey>): ScheduledKey => ({ alg: 'ES256', state: 'active', created_at: new Date(T0), activated_at: new Date(T0), retired_at: null, activate_at: null, remove_at: null, ...over })

t.test('policy: lead and retention from the configuration; defaults', async (t) => {
  t.equal(policy.publishLeadSeconds, 370)
  t.equal(policy.retentionSeconds, 900 + 370)
  const defaults = keyPolicy(loadConfig({}))
  t.match(defaults, { alg: 'ES256', lines: ['ES256', 'RS256'], rotationIntervalSeconds: 30 * 86_400, publishLeadSeconds: 370, jwksMaxAgeSeconds: 300, skewSeconds: 60 })
})

t.test('policy: publication, activation and removal times; rows without dates get derived ones', async (t) => {
  t.equal(publicationTime([key({})], policy), T0, 'the standby is published right after a key became active')
  t.equal(publicationTime([key({}), key({ state: 'pending' })], policy), Infinity, 'one pending at a time')
  t.equal(publicationTime([key({ state: 'retired' })], policy), Infinity, 'no active key: nothing to schedule from')
  t.equal(publicationTime([key({})], { ...policy, rotationIntervalSeconds: 0 }), Infinity, 'rotation off')
  t.equal(publicationTime([key({ activated_at: null, created_at: new Date(T0 - 5000) })], policy), T0 - 5000, 'created_at when activated_at is missing')
  t.equal(standbyActivation(key({}), T0 + 1000, policy), T0 + 3600_000, 'the standby signs one interval after the active key started')
  t.equal(standbyActivation(key({}), T0 + 3500_000, policy), T0 + 3500_000 + 370_000, 'a standby published late still gets the full lead')
  t.ok(prepublished(key({ state: 'pending' }), T0 + 370_000, policy), 'published for the lead: in every honouring cache')
  t.notOk(prepublished(key({ state: 'pending' }), T0 + 369_999, policy))
  t.equal(activationTime(key({ state: 'pending', activate_at: new Date(T0 + 5000) }), policy), T0 + 5000)
  t.equal(activationTime(key({ state: 'pending' }), policy), T0 + 370_000, 'an undated pending key: created + lead')
  t.equal(removalTime(key({ state: 'retired', remove_at: new Date(T0 + 7000) }), policy), T0 + 7000)
  t.equal(removalTime(key({ state: 'retired', retired_at: new Date(T0 + 1000) }), policy), T0 + 1000 + 1_270_000, 'an undated retired key: retired + retention')
  t.equal(removalTime(key({ state: 'retired' }), policy), T0 + 1_270_000)
  const set = [key({}), key({ state: 'retired', remove_at: new Date(T0 + 60_000) }), key({ state: 'pending', activate_at: new Date(T0 + 30_000) })]
  t.equal(nextKeySetChange(set, policy), T0 + 30_000, 'with rotation on, an activation changes the set: the next standby is published right after it')
  t.equal(nextKeySetChange(set, { ...policy, rotationIntervalSeconds: 0 }), T0 + 60_000, 'with rotation off, an activation is not a change of the published set')
  t.equal(nextScheduleStep(set, { ...policy, rotationIntervalSeconds: 0 }), T0 + 30_000, 'but it is a step')
  t.equal(nextKeySetChange([key({})], policy), T0, 'no standby yet: due (max-age 0 until it is published)')
  t.equal(nextScheduleStep([key({ state: 'retired' })], policy), -Infinity, 'no active key: due at once')
  t.equal(nextScheduleStep([key({})], { ...policy, rotationIntervalSeconds: 0 }), Infinity)
})

t.test('policy: one schedule per key line; a configured line without an active key is due at once, another line only lives on', async (t) => {
  t.same(twoLines.lines, ['ES256', 'RS256'], 'the access-token line (SIGNING_ALG) and RS256 for ID tokens')
  t.same(keyPolicy(loadConfig({ SIGNING_ALG: 'RS256' })).lines, ['RS256'], 'one line when access tokens use RS256 too')
  const es = key({})
  const rs = key({ alg: 'RS256', activated_at: new Date(T0 + 10_000) })
  t.equal(nextScheduleStep([es], twoLines), -Infinity, 'the RS256 line has no key: due at once')
  t.equal(nextKeySetChange([es, rs], twoLines), T0, 'each line publishes its own standby: the earliest first')
  const standbys = [key({ state: 'pending', activate_at: new Date(T0 + 3600_000) }), key({ alg: 'RS256', state: 'pending', activate_at: new Date(T0 + 3610_000) })]
  t.equal(nextKeySetChange([es, rs, ...standbys], twoLines), T0 + 3600_000, 'a pending key of one line does not hide the other line')
  t.equal(nextKeySetChange([es, rs, standbys[1]!], twoLines), T0, 'the ES256 line still lacks its standby')
  const retiredLine = key({ alg: 'EdDSA', state: 'retired', remove_at: new Date(T0 + 5000) })
  t.equal(nextScheduleStep([es, rs, ...standbys, retiredLine], twoLines), T0 + 5000, 'an unconfigured line without an active key is only removed, never restarted')
})

t.test('policy: JWKS max-age = min(ceiling, until the next change − skew), never negative (#89)', async (t) => {
  t.equal(jwksMaxAge(Infinity, T0, policy), 300)
  t.equal(jwksMaxAge(T0 + 3600_000, T0, policy), 300)
  t.equal(jwksMaxAge(T0 + 360_000, T0, policy), 300)
  t.equal(jwksMaxAge(T0 + 359_000, T0, policy), 299)
  t.equal(jwksMaxAge(T0 + 100_500, T0, policy), 40, 'whole seconds, rounded down')
  t.equal(jwksMaxAge(T0 + 60_000, T0, policy), 0)
  t.equal(jwksMaxAge(T0 - 5000, T0, policy), 0, 'overdue')
  t.equal(jwksMaxAge(T0 + 10_000, T0, { ...policy, skewSeconds: 0, jwksMaxAgeSeconds: 0 }), 0, 'ceiling 0')
})

t.test('KEK sets: a row opens with the KEK it names, current or previous; an unknown id is an error without key material', async (t) => {
  const current = parseKek(`new:${randomBytes(32).toString('base64url')}`)
  const old = parseKek(TEST_KEK)
  const sealed = seal(old, Buffer.from('secret'), 'kid')
  t.same(openWith(kekSet(current, [old]), sealed, 'kid', 'test'), Buffer.from('secret'))
  t.same(openWith(old, sealed, 'kid', 'test'), Buffer.from('secret'), 'a single KEK works too')
  t.throws(() => openWith(kekSet(current), sealed, 'kid', 'test'), /no key-encryption key with id test/)
  t.throws(() => openWith(kekSet(current, [old]), sealed, 'kid', 'new'), 'the wrong KEK fails the GCM tag')
})

t.test('a due pending key that no configured KEK opens is not activated: the active key keeps signing; logged once (#93)', async (t) => {
  let now = Date.now()
  const app = await testApp(t, { now: () => now, env: { KEY_ROTATION_INTERVAL_SECONDS: '3600' } })
  const stranger = parseKek(`other:${randomBytes(32).toString('base64url')}`)
  const k = await generateSigningKey('ES256', stranger)
  // It takes the place of the standby (in one transaction: the schedule never sees neither).
  await app.database.db.transaction().execute(async (trx) => {
    await trx.updateTable('signing_key').set({ state: 'revoked' }).where('state', '=', 'pending').where('alg', '=', 'ES256').execute()
    await trx.insertInto('signing_key').values({ kid: k.kid, alg: k.alg, state: 'pending', public_jwk: JSON.stringify(k.publicJwk), private_key_enc: k.privateKeyEnc, kek_id: k.kekId, activate_at: new Date(now + 1000) }).execute()
  })
  const active = app.services.keyring.activeSigner().kid
  now += 5000
  await app.jobs.keySync.run()
  await app.jobs.keySync.run()
  const result = await runKeySchedule(app.database.db, keyOptions(app, now))
  t.same(result.blocked, [k.kid])
  t.equal(app.services.keyring.activeSigner().kid, active, 'the active key still signs')
  const errors = app.logs.filter((l) => l.includes('cannot decrypt a pending signing key'))
  t.equal(errors.length, 1, 'one error line, not one per tick')
  t.notOk(errors[0]!.includes(k.privateKeyEnc.toString('base64')), 'no ciphertext in the log')
  t.same((await listKeys(app.database.db)).map(keyInfoJson).map((x) => x.state).sort(), ['active', 'active', 'pending', 'pending', 'revoked'], 'the RS256 line (active and standby) is untouched')
  t.ok((await listKeys(app.database.db)).some((x) => x.kid === k.kid && x.state === 'pending'), 'still pending')
})

t.test('no active key at all (say, all revoked by hand): the schedule activates the pending key, or makes one', async (t) => {
  const app = await testApp(t)
  const keks = kekSet(parseKek(TEST_KEK))
  await app.database.db.updateTable('signing_key').set({ state: 'revoked' }).execute()
  const made = await runKeySchedule(app.database.db, keyOptions(app))
  t.equal(made.activated.length, 2, 'a new key on each line')
  t.same((await listKeys(app.database.db)).filter((k) => k.state === 'active').map((k) => k.alg).sort(), ['ES256', 'RS256'])
  const p = await generateSigningKey('ES256', parseKek(TEST_KEK))
  await app.database.db.updateTable('signing_key').set({ state: 'revoked' }).where('alg', '=', 'ES256').execute()
  await app.database.db.insertInto('signing_key').values({ kid: p.kid, alg: p.alg, state: 'pending', public_jwk: JSON.stringify(p.publicJwk), private_key_enc: p.privateKeyEnc, kek_id: p.kekId, activate_at: new Date(Date.now() + 3600_000) }).execute()
  const promoted = await runKeySchedule(app.database.db, keyOptions(app))
  t.same(promoted.activated, [p.kid], 'the pending key, early: better than no key at all; the RS256 line is untouched')
  t.same(await runKeySchedule(app.database.db, keyOptions(app)), { activated: [], retired: [], removed: [], published: [], blocked: [] }, 'then nothing is due')
})

t.test('a pending key that starts a new line waits for its activation time, even when another line makes the schedule run', async (t) => {
  const app = await testApp(t)
  const p = await generateSigningKey('PS256', parseKek(TEST_KEK))
  const now = Date.now()
  await app.database.db.insertInto('signing_key').values({ kid: p.kid, alg: p.alg, state: 'pending', public_jwk: JSON.stringify(p.publicJwk), private_key_enc: p.privateKeyEnc, kek_id: p.kekId, activate_at: new Date(now + 3600_000) }).execute()
  // The RS256 line loses its key: the schedule must run, and must not take the PS256 key early.
  await app.database.db.updateTable('signing_key').set({ state: 'revoked' }).where('alg', '=', 'RS256').execute()
  const step = await runKeySchedule(app.database.db, keyOptions(app, now))
  // This step, or the app's own schedule (it noticed the change), made the new RS256 key.
  t.equal((await listKeys(app.database.db)).filter((k) => k.alg === 'RS256' && k.state === 'active').length, 1, 'a new RS256 key')
  t.notOk(step.activated.includes(p.kid), 'the PS256 key is not activated before its time')
  t.equal((await listKeys(app.database.db)).find((k) => k.kid === p.kid)!.state, 'pending')
  t.same(await runKeySchedule(app.database.db, keyOptions(app, now + 3600_000)), { activated: [p.kid], retired: [], removed: [], published: [], blocked: [] }, 'at its time it starts the PS256 line')
})

t.test('an instance started with schedule: false never runs the schedule; tickMs drives the poll', async (t) => {
  const app = await testApp(t)
  const clock = new ManualClock(Date.now() + 3600_000)
  const logs: string[] = []
  const log = { info: (m: unknown) => logs.push(String(m)), warn: () => undefined, error: () => undefined }
  const ring = new Keyring(app.database.db, kekSet(parseKek(TEST_KEK)), { policy: { ...app.services.keyring.policy, rotationIntervalSeconds: 10 }, clock })
  const job = new Job(keySyncJob({ db: app.database.db, keyring: ring, clock, log, refreshSeconds: 1, tickMs: 20, schedule: false }), { clock, log, count: () => undefined })
  await ring.reload()
  job.start()
  t.teardown(() => job.stop())
  // Five polls of 20 ms, driven by the clock.
  for (let i = 0; i < 5; i++) {
    clock.advance(20)
    await job.idle()
  }
  t.equal((await listKeys(app.database.db)).length, 2, 'nothing published although it is due (one key per line)')
  t.ok(ring.canSign())
})
