import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { resolveKek } from '../../src/keys/kek.js'
import { CONFIG_VARIABLES, ConfigError, fixedDefault, loadConfig, type Config, type ConfigVariable, type Env } from '../../src/config.js'
import { parseKek } from '../../src/keys/kek.js'
import { TEST_KEK } from '../helpers/app.js'

const KEK = Buffer.alloc(32, 9).toString('base64url')

/** Everything production needs, so a test can take one piece away. */
const PROD: Env = {
  NODE_ENV: 'production',
  ISSUER: 'https://auth.example.com',
  KEY_ENCRYPTION_KEY: `k1:${KEK}`,
  DATABASE_URL: 'postgres://tessera@db.internal:5432/tessera',
}

/** The ConfigError `loadConfig(env)` throws (fails the test when it does not throw one). */
function configError(env: Env): ConfigError {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`)
}

t.test('defaults: development on 127.0.0.1:8080, ES256, 15 min / 14 d / 30 d, argon2id 19456/2/1, __Secure- cookie', async (t) => {
  const c = loadConfig({})
  t.equal(c.env, 'development')
  t.equal(c.port, 8080)
  t.equal(c.host, '127.0.0.1')
  t.equal(c.logLevel, 'info')
  t.equal(c.databaseUrl, undefined)
  t.equal(c.databasePoolSize, 10)
  t.equal(c.issuer, 'http://localhost:8080')
  t.equal(c.signingAlg, 'ES256')
  t.equal(c.accessTokenTtlSeconds, 900)
  t.equal(c.refreshTokenIdleTtlSeconds, 14 * 86_400)
  t.equal(c.refreshTokenAbsoluteTtlSeconds, 30 * 86_400)
  t.same(c.argon2, { memoryKib: 19_456, timeCost: 2, parallelism: 1 })
  t.equal(c.cookieName, '__Secure-tessera_rt')
  t.equal(c.cookieSecure, true)
  t.equal(c.cookieSameSite, 'strict')
  t.equal(c.keyEncryptionKey, undefined)
  t.equal(c.cacheRefreshSeconds, 10)
  t.equal(c.jwksMaxAgeSeconds, 300)
  t.equal(c.migrateOnStart, true)
  t.equal(c.trustProxy, false)
  t.equal(c.lockTimeoutMs, 5_000)
  t.equal(c.dbAcquireTimeoutMs, 5_000)
  t.ok(c.dataDir.endsWith('/data'), 'DATA_DIR defaults to ./data, made absolute')
  t.ok(Object.isFrozen(c), 'the result is frozen')
  t.ok(Object.isFrozen(c.argon2), 'nested objects too')
})

t.test('COOKIE_SECURE=false drops the __Secure- prefix (development only)', async (t) => {
  t.equal(loadConfig({ COOKIE_SECURE: 'false' }).cookieName, 'tessera_rt')
  t.equal(loadConfig({ COOKIE_NAME: 'app_rt' }).cookieName, '__Secure-app_rt')
})

const INVALID: Array<[string, Env, string]> = [
  ['PORT=abc', { PORT: 'abc' }, 'PORT'],
  ['PORT=70000', { PORT: '70000' }, 'PORT'],
  ['PORT=-1', { PORT: '-1' }, 'PORT'],
  ['LOG_LEVEL=loud', { LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
  ['SIGNING_ALG=HS256', { SIGNING_ALG: 'HS256' }, 'SIGNING_ALG'],
  ['SIGNING_ALG=none', { SIGNING_ALG: 'none' }, 'SIGNING_ALG'],
  ['DATABASE_URL=mysql://x', { DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
  ['COOKIE_SAMESITE=none', { COOKIE_SAMESITE: 'none' }, 'COOKIE_SAMESITE'],
  ['COOKIE_SECURE=maybe', { COOKIE_SECURE: 'maybe' }, 'COOKIE_SECURE'],
  ['COOKIE_NAME with a semicolon', { COOKIE_NAME: 'rt;Domain=evil' }, 'COOKIE_NAME'],
  ['NODE_ENV=staging', { NODE_ENV: 'staging' }, 'NODE_ENV'],
  ['ACCESS_TOKEN_TTL_SECONDS=1.5', { ACCESS_TOKEN_TTL_SECONDS: '1.5' }, 'ACCESS_TOKEN_TTL_SECONDS'],
  ['ARGON2_MEMORY_KIB=1024 (below the floor)', { ARGON2_MEMORY_KIB: '1024' }, 'ARGON2_MEMORY_KIB'],
  ['DB_LOCK_TIMEOUT_MS=0', { DB_LOCK_TIMEOUT_MS: '0' }, 'DB_LOCK_TIMEOUT_MS'],
  ['idle TTL above absolute TTL', { REFRESH_TOKEN_IDLE_TTL_SECONDS: '7200', REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS: '3600' }, 'REFRESH_TOKEN_IDLE_TTL_SECONDS'],
  ['ISSUER not a URL', { ISSUER: 'tessera.example.com' }, 'ISSUER'],
  ['ISSUER ftp://', { ISSUER: 'ftp://tessera.example.com' }, 'ISSUER'],
]
for (const [name, env, variable] of INVALID) {
  t.test(`invalid ${name}: ConfigError naming ${variable}`, async (t) => {
    const e = configError(env)
    t.equal(e.problems.length, 1, 'exactly one problem')
    t.match(e.problems[0], variable)
    t.match(e.message, variable)
  })
}

// #118: a KEK of the wrong length is refused, and the message never echoes the value.
const BAD_KEKS: Array<[string, string]> = [
  ['too short', 'abc'],
  ['42 characters', 'A'.repeat(42)],
  ['44 characters', 'A'.repeat(44)],
  ['16 bytes', Buffer.alloc(16, 1).toString('base64url')],
  ['64 bytes', Buffer.alloc(64, 1).toString('base64url')],
  ['standard base64 with + and /', '+/' + 'A'.repeat(41)],
  ['id: prefix with 31 bytes', 'k1:' + Buffer.alloc(31, 1).toString('base64url')],
  ['padded base64url', Buffer.alloc(32, 1).toString('base64url') + '='],
]
for (const [name, value] of BAD_KEKS) {
  t.test(`KEY_ENCRYPTION_KEY ${name} is refused without echoing it (#118)`, async (t) => {
    const e = configError({ KEY_ENCRYPTION_KEY: value })
    t.equal(e.problems.length, 1)
    t.match(e.problems[0], /^KEY_ENCRYPTION_KEY must be 32 random bytes/)
    t.notOk(e.message.includes(value), 'the rejected value is not in the message')
  })
}

t.test('a 43-character KEK with and without an id: prefix is accepted', async (t) => {
  t.equal(loadConfig({ KEY_ENCRYPTION_KEY: KEK }).keyEncryptionKey, KEK)
  t.equal(loadConfig({ KEY_ENCRYPTION_KEY: `k1:${KEK}` }).keyEncryptionKey, `k1:${KEK}`)
  t.equal(loadConfig({ KEY_ENCRYPTION_KEY: TEST_KEK }).keyEncryptionKey, TEST_KEK)
})

t.test('every problem is reported at once in one ConfigError', async (t) => {
  const e = configError({
    PORT: 'abc',
    LOG_LEVEL: 'loud',
    SIGNING_ALG: 'HS256',
    DATABASE_URL: 'mysql://x',
    COOKIE_SAMESITE: 'none',
    KEY_ENCRYPTION_KEY: 'short',
    ISSUER: 'https://a.example/?x=1',
  })
  t.equal(e.problems.length, 7)
  for (const v of ['PORT', 'LOG_LEVEL', 'SIGNING_ALG', 'DATABASE_URL', 'COOKIE_SAMESITE', 'KEY_ENCRYPTION_KEY', 'ISSUER']) {
    t.ok(e.problems.some((p) => p.startsWith(v)), `${v} is named`)
    t.match(e.message, v)
  }
  t.match(e.message, /^invalid configuration:\n {2}- /)
})

t.test('production with everything set is accepted and frozen', async (t) => {
  const c = loadConfig(PROD)
  t.equal(c.env, 'production')
  t.equal(c.issuer, 'https://auth.example.com')
  t.equal(c.keyEncryptionKey, `k1:${KEK}`)
  t.equal(c.cookieSecure, true)
  t.equal(c.cookieName, '__Secure-tessera_rt')
  t.equal(c.migrateOnStart, false, 'MIGRATE_ON_START defaults to false in production')
  t.ok(Object.isFrozen(c))
  t.ok(Object.isFrozen(c.argon2))
  t.throws(() => {
    ;(c as { port: number }).port = 1
  }, TypeError, 'a frozen config cannot be changed (ESM is strict mode)')
})

t.test('production refuses to start without ISSUER (#118, #120)', async (t) => {
  const e = configError({ ...PROD, ISSUER: undefined })
  t.equal(e.problems.length, 1)
  t.match(e.problems[0], /^ISSUER is required in production/)
})

t.test('production refuses an http ISSUER unless ALLOW_INSECURE_ISSUER=true (#120)', async (t) => {
  const e = configError({ ...PROD, ISSUER: 'http://auth.example.com' })
  t.equal(e.problems.length, 1)
  t.match(e.problems[0], /^ISSUER must use https in production/)
  const demo = loadConfig({ ...PROD, ISSUER: 'http://localhost:8080', ALLOW_INSECURE_ISSUER: 'true' })
  t.equal(demo.issuer, 'http://localhost:8080')
  t.equal(configError({ ...PROD, ISSUER: 'http://auth.example.com', ALLOW_INSECURE_ISSUER: 'false' }).problems.length, 1)
})

t.test('production refuses to start without KEY_ENCRYPTION_KEY (#118)', async (t) => {
  const e = configError({ ...PROD, KEY_ENCRYPTION_KEY: undefined })
  t.equal(e.problems.length, 1)
  t.match(e.problems[0], /^KEY_ENCRYPTION_KEY is required in production/)
  t.equal(configError({ ...PROD, KEY_ENCRYPTION_KEY: '   ' }).problems.length, 1, 'blank counts as missing')
})

t.test('production refuses COOKIE_SECURE=false', async (t) => {
  const e = configError({ ...PROD, COOKIE_SECURE: 'false' })
  t.equal(e.problems.length, 1)
  t.match(e.problems[0], /^COOKIE_SECURE=false is not allowed in production/)
})

t.test('production refuses ARGON2_MEMORY_KIB below 19456; development allows it', async (t) => {
  const e = configError({ ...PROD, ARGON2_MEMORY_KIB: '19455' })
  t.equal(e.problems.length, 1)
  t.match(e.problems[0], /^ARGON2_MEMORY_KIB below 19456/)
  t.equal(loadConfig({ ...PROD, ARGON2_MEMORY_KIB: '19456' }).argon2.memoryKib, 19_456)
  t.equal(loadConfig({ ARGON2_MEMORY_KIB: '8192' }).argon2.memoryKib, 8_192)
})

t.test('production with several gaps reports them all', async (t) => {
  const e = configError({ NODE_ENV: 'production', COOKIE_SECURE: 'false', ARGON2_MEMORY_KIB: '8192' })
  t.equal(e.problems.length, 5)
  for (const v of ['ISSUER', 'KEY_ENCRYPTION_KEY', 'DATABASE_URL', 'COOKIE_SECURE', 'ARGON2_MEMORY_KIB']) t.ok(e.problems.some((p) => p.startsWith(v)), v)
})

t.test('LOG_FORMAT: readable in development, JSON in production and test; pretty is refused in production', async (t) => {
  t.equal(loadConfig({ NODE_ENV: 'development' }).logFormat, 'pretty')
  t.equal(loadConfig({ NODE_ENV: 'development', LOG_FORMAT: 'json' }).logFormat, 'json')
  t.equal(loadConfig({ NODE_ENV: 'test' }).logFormat, 'json')
  t.equal(loadConfig({ NODE_ENV: 'test', LOG_FORMAT: 'pretty' }).logFormat, 'pretty')
  const prod = { NODE_ENV: 'production', ISSUER: 'https://auth.example.com', KEY_ENCRYPTION_KEY: 'A'.repeat(43), DATABASE_URL: 'postgres://x/y' }
  t.equal(loadConfig(prod).logFormat, 'json')
  t.equal(loadConfig({ ...prod, LOG_FORMAT: 'json' }).logFormat, 'json')
  t.same(configError({ ...prod, LOG_FORMAT: 'pretty' }).problems, ['LOG_FORMAT=pretty is for development: production logs JSON lines (LOG_FORMAT=json or auto)'])
  t.match(configError({ LOG_FORMAT: 'colour' }).problems[0], /^LOG_FORMAT must be one of/)
})

t.test('production refuses the embedded database unless ALLOW_EMBEDDED_DATABASE=true; development uses it by default', async (t) => {
  const { DATABASE_URL: _, ...embedded } = PROD
  const e = configError(embedded)
  t.same(e.problems.length, 1)
  t.match(e.problems[0], /^DATABASE_URL is required in production: the embedded database keeps its data in DATA_DIR of this one instance .*ALLOW_EMBEDDED_DATABASE=true/)
  t.equal(loadConfig({ ...embedded, ALLOW_EMBEDDED_DATABASE: 'true' }).databaseUrl, undefined, 'asked for explicitly: accepted')
  t.equal(loadConfig({}).databaseUrl, undefined, 'development: the embedded database, no setting needed')
  t.match(configError({ ...embedded, ALLOW_EMBEDDED_DATABASE: 'maybe' }).problems[0], /^ALLOW_EMBEDDED_DATABASE must be true or false/)
})

t.test('EMBEDDED_DATABASE_SOCKET: DATA_DIR/run by default in embedded mode, a directory (relative to DATA_DIR), or off; not with DATABASE_URL', async (t) => {
  t.equal(loadConfig({ DATA_DIR: '/srv/tessera' }).embeddedDatabaseSocket, '/srv/tessera/run', 'default: DATA_DIR/run')
  t.equal(loadConfig({ DATA_DIR: '/srv/tessera', EMBEDDED_DATABASE_SOCKET: 'sock' }).embeddedDatabaseSocket, '/srv/tessera/sock', 'relative to DATA_DIR')
  t.equal(loadConfig({ DATA_DIR: '/srv/tessera', EMBEDDED_DATABASE_SOCKET: '/run/tessera' }).embeddedDatabaseSocket, '/run/tessera')
  t.equal(loadConfig({ EMBEDDED_DATABASE_SOCKET: 'off' }).embeddedDatabaseSocket, undefined, 'off')
  const { DATABASE_URL: _, ...embedded } = PROD
  t.equal(loadConfig({ ...embedded, ALLOW_EMBEDDED_DATABASE: 'true', DATA_DIR: '/data' }).embeddedDatabaseSocket, '/data/run', 'production on the embedded database: the socket too')
  t.equal(loadConfig(PROD).embeddedDatabaseSocket, undefined, 'PostgreSQL: no socket')
  t.equal(loadConfig({ ...PROD, EMBEDDED_DATABASE_SOCKET: 'off' }).embeddedDatabaseSocket, undefined, 'off is accepted with DATABASE_URL')
  t.same(configError({ ...PROD, EMBEDDED_DATABASE_SOCKET: '/run/tessera' }).problems, [
    'EMBEDDED_DATABASE_SOCKET is for the embedded database: with DATABASE_URL, commands connect to PostgreSQL themselves (unset it, or set it to off)',
  ])
})

t.test('MIGRATE_ON_START defaults: false in production, true in development and test; explicit value wins', async (t) => {
  t.equal(loadConfig(PROD).migrateOnStart, false)
  t.equal(loadConfig({ NODE_ENV: 'development' }).migrateOnStart, true)
  t.equal(loadConfig({ NODE_ENV: 'test' }).migrateOnStart, true)
  t.equal(loadConfig({ ...PROD, MIGRATE_ON_START: 'true' }).migrateOnStart, true)
  t.equal(loadConfig({ MIGRATE_ON_START: 'off' }).migrateOnStart, false)
})

t.test('issuer: trailing slashes are trimmed, the path is kept', async (t) => {
  t.equal(loadConfig({ ISSUER: 'https://auth.example.com/' }).issuer, 'https://auth.example.com')
  t.equal(loadConfig({ ISSUER: 'https://auth.example.com/tenant//' }).issuer, 'https://auth.example.com/tenant')
  t.equal(loadConfig({ ISSUER: '  https://auth.example.com  ' }).issuer, 'https://auth.example.com', 'surrounding spaces trimmed')
})

t.test('issuer with a query or a fragment is refused (OIDC Discovery §3)', async (t) => {
  t.same(configError({ ISSUER: 'https://auth.example.com?tenant=a' }).problems, ['ISSUER must not have a query or fragment'])
  t.same(configError({ ISSUER: 'https://auth.example.com/#x' }).problems, ['ISSUER must not have a query or fragment'])
})

// `new URL` reports an empty search/hash for a bare `?` or `#`, but the issuer string keeps it,
// and every endpoint built from it (`${issuer}/token`) would be broken.
t.test('issuer ending in a bare ? or # is refused', async (t) => {
  t.same(configError({ ISSUER: 'https://auth.example.com/?' }).problems, ['ISSUER must not have a query or fragment'])
  t.same(configError({ ISSUER: 'https://auth.example.com#' }).problems, ['ISSUER must not have a query or fragment'])
})

t.test('resolveKek: production without a KEK throws (#118, #120)', async (t) => {
  const config: Config = { ...loadConfig(PROD), keyEncryptionKey: undefined }
  const warnings: string[] = []
  t.throws(() => resolveKek(config, (m) => warnings.push(m)), /KEY_ENCRYPTION_KEY is required in production/)
  t.same(warnings, [])
})

t.test('resolveKek: a configured KEK is parsed and no file is written', async (t) => {
  const dir = t.testdir({})
  const config: Config = { ...loadConfig({ DATA_DIR: dir, KEY_ENCRYPTION_KEY: TEST_KEK }) }
  const kek = resolveKek(config, () => t.fail('no warning'))
  t.same(kek, parseKek(TEST_KEK))
  t.throws(() => statSync(join(dir, 'dev-key-encryption-key')), { code: 'ENOENT' })
})

t.test('resolveKek: development without a KEK creates a 0600 key file once, warns, and reuses it (#120)', async (t) => {
  const dir = join(t.testdir({}), 'nested', 'data')
  const config = loadConfig({ NODE_ENV: 'development', DATA_DIR: dir })
  const warnings: string[] = []
  const first = resolveKek(config, (m) => warnings.push(m))
  const file = join(dir, 'dev-key-encryption-key')
  t.equal(statSync(file).mode & 0o777, 0o600, 'mode 0600')
  t.equal(first.key.length, 32)
  t.equal(warnings.length, 1)
  t.match(warnings[0], /DEVELOPMENT ONLY/)
  t.notOk(warnings[0]!.includes(first.key.toString('base64url')), 'the warning does not print the key')
  t.same(parseKek(readFileSync(file, 'utf8').trim()), first, 'the file holds the key')
  const second = resolveKek(config, (m) => warnings.push(m))
  t.same(second, first, 'the second call reuses the same key')
  t.equal(warnings.length, 1, 'no second warning')
})

t.test('KEY_ROTATION_INTERVAL_SECONDS: 0, or at least 2 × the publish lead + JWKS_MAX_AGE_SECONDS (docs/keys.md "Signing keys")', async (t) => {
  t.equal(loadConfig({ KEY_ROTATION_INTERVAL_SECONDS: '0' }).keyRotationIntervalSeconds, 0)
  t.equal(loadConfig({ KEY_ROTATION_INTERVAL_SECONDS: '1040' }).keyRotationIntervalSeconds, 1040, 'defaults: 2 × (300 + 10 + 60) + 300')
  const e = configError({ KEY_ROTATION_INTERVAL_SECONDS: '1039' })
  t.match(e.problems, [/^KEY_ROTATION_INTERVAL_SECONDS must be 0 \(no scheduled rotation\) or at least 1040 .*\(got 1039\)$/])
  const small = { JWKS_MAX_AGE_SECONDS: '0', CACHE_REFRESH_SECONDS: '1', KEY_CLOCK_SKEW_SECONDS: '0' }
  t.equal(loadConfig({ ...small, KEY_ROTATION_INTERVAL_SECONDS: '10' }).keyRotationIntervalSeconds, 10, 'short intervals with short caches')
  t.match(configError({ ...small, KEY_ROTATION_INTERVAL_SECONDS: '9' }).problems, [/or at least 10 /], 'never below 10')
})

const VARIABLES: readonly ConfigVariable[] = CONFIG_VARIABLES

t.test('CONFIG_VARIABLES: every fixed default is the value loadConfig uses when the variable is unset', async (t) => {
  const unset = loadConfig({})
  for (const v of VARIABLES) {
    const def = fixedDefault(v)
    if (def !== undefined) t.same(loadConfig({ [v.name]: def }), unset, `${v.name}=${def} changes nothing`)
  }
})

/** A value each kind of variable refuses, if any. */
function invalidValue(v: ConfigVariable): string | undefined {
  switch (v.kind) {
    case 'int': return String(v.max + 1)
    case 'bool': return 'maybe'
    case 'oneOf': return 'bogus'
    case 'string': case 'url': return v.check ? ';' : undefined
    case 'list': return undefined
  }
}

t.test('CONFIG_VARIABLES: loadConfig reads and checks every variable the table gives a rule', async (t) => {
  for (const v of VARIABLES) {
    const bad = invalidValue(v)
    if (bad === undefined) continue
    const e = configError({ [v.name]: bad })
    t.equal(e.problems.length, 1, `${v.name}=${bad}: one problem`)
    t.ok(e.problems[0]!.startsWith(v.name), `${v.name}=${bad}: the problem names it`)
  }
})

t.test('ALLOW_INSECURE_ISSUER must be a boolean, in development too', async (t) => {
  t.same(configError({ ALLOW_INSECURE_ISSUER: 'maybe' }).problems, ['ALLOW_INSECURE_ISSUER must be true or false (got "maybe")'])
})
