import { isAbsolute, resolve } from 'node:path'

/** Signing algorithms Tessera can create keys for. */
export const SIGNING_ALGS = ['ES256', 'RS256', 'PS256', 'EdDSA'] as const
export type SigningAlg = (typeof SIGNING_ALGS)[number]

/** Validated, frozen configuration. Only this module reads `process.env`. */
export interface Config {
  readonly env: 'development' | 'production' | 'test'
  readonly host: string
  readonly port: number
  readonly logLevel: string
  readonly databaseUrl: string | undefined
  readonly databasePoolSize: number
  readonly dataDir: string
  readonly issuer: string
  readonly accessTokenTtlSeconds: number
  readonly refreshTokenIdleTtlSeconds: number
  readonly refreshTokenAbsoluteTtlSeconds: number
  /** A retry of a refresh within this window gets the same successor; 0 = no retries. */
  readonly refreshGraceSeconds: number
  readonly signingAlg: SigningAlg
  /** base64url of 32 bytes, optionally prefixed with `id:`; undefined = development key file */
  readonly keyEncryptionKey: string | undefined
  /** Earlier KEKs (`id:base64url`), still accepted for decryption until `tessera keys rewrap`. */
  readonly keyEncryptionKeysPrevious: readonly string[]
  /** Scheduled signing-key rotation; 0 = only by command. */
  readonly keyRotationIntervalSeconds: number
  /** Allowance for clock differences (instances, resource servers) in the key schedule. */
  readonly keyClockSkewSeconds: number
  readonly cacheRefreshSeconds: number
  readonly jwksMaxAgeSeconds: number
  readonly cookieName: string
  readonly cookieSecure: boolean
  readonly cookieSameSite: 'strict' | 'lax'
  readonly argon2: { readonly memoryKib: number; readonly timeCost: number; readonly parallelism: number }
  readonly migrateOnStart: boolean
  readonly bodyLimitBytes: number
  readonly trustProxy: boolean
  readonly lockTimeoutMs: number
  readonly dbAcquireTimeoutMs: number
  /** When set, `GET /metrics` needs `Authorization: Bearer <this>`; unset = open (DESIGN). */
  readonly metricsToken: string | undefined
  /** How often each instance runs housekeeping (with jitter); 0 = never (run it by command). */
  readonly housekeepingIntervalSeconds: number
  /** Rows per table that one housekeeping batch deletes at most. */
  readonly housekeepingBatchSize: number
  /** Dead (expired or revoked) refresh-token families are kept this long, then deleted. */
  readonly housekeepingRetentionSeconds: number
  /** Audit events older than this are deleted; 0 = kept forever. */
  readonly auditRetentionDays: number
}

export type Env = Record<string, string | undefined>

/** Thrown when the environment is invalid; the message lists every problem. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`)
  }
}

/** Reads and validates configuration; every problem is reported at once. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = []
  const str = (name: string): string | undefined => {
    const v = env[name]
    return v === undefined || v.trim() === '' ? undefined : v.trim()
  }
  const int = (name: string, def: number, min: number, max: number): number => {
    const raw = str(name)
    if (raw === undefined) return def
    const n = Number(raw)
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      problems.push(`${name} must be an integer between ${min} and ${max} (got "${raw}")`)
      return def
    }
    return n
  }
  const bool = (name: string, def: boolean): boolean => {
    const raw = str(name)
    if (raw === undefined) return def
    if (/^(1|true|yes|on)$/i.test(raw)) return true
    if (/^(0|false|no|off)$/i.test(raw)) return false
    problems.push(`${name} must be true or false (got "${raw}")`)
    return def
  }
  const oneOf = <T extends string>(name: string, allowed: readonly T[], def: T): T => {
    const raw = str(name)
    if (raw === undefined) return def
    if (!(allowed as readonly string[]).includes(raw)) {
      problems.push(`${name} must be one of ${allowed.join(', ')} (got "${raw}")`)
      return def
    }
    return raw as T
  }

  const nodeEnv = oneOf('NODE_ENV', ['development', 'production', 'test'] as const, 'development')
  const production = nodeEnv === 'production'
  const port = int('PORT', 8080, 0, 65535)
  const host = str('HOST') ?? '127.0.0.1'
  const logLevel = oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info')

  const databaseUrl = str('DATABASE_URL')
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL')
  }
  const dataDirRaw = str('DATA_DIR') ?? './data'
  const dataDir = isAbsolute(dataDirRaw) ? dataDirRaw : resolve(dataDirRaw)

  let issuer = str('ISSUER') ?? ''
  if (issuer === '') {
    if (production) problems.push('ISSUER is required in production (the public https URL of this server)')
    issuer = `http://localhost:${port}`
  } else {
    let url: URL | undefined
    try { url = new URL(issuer) } catch { problems.push(`ISSUER must be an absolute URL (got "${issuer}")`) }
    if (url) {
      // OIDC Discovery §3: https, no query or fragment; we keep it without a trailing slash.
      if (url.search || url.hash || /[?#]/.test(issuer)) problems.push('ISSUER must not have a query or fragment')
      if (url.protocol !== 'https:' && url.protocol !== 'http:') problems.push('ISSUER must be an http(s) URL')
      if (production && url.protocol !== 'https:' && !bool('ALLOW_INSECURE_ISSUER', false)) {
        problems.push('ISSUER must use https in production (set ALLOW_INSECURE_ISSUER=true only for a local demo)')
      }
      issuer = issuer.replace(/\/+$/, '')
    }
  }

  const keyEncryptionKey = str('KEY_ENCRYPTION_KEY')
  if (keyEncryptionKey !== undefined) {
    const b64 = keyEncryptionKey.includes(':') ? keyEncryptionKey.slice(keyEncryptionKey.indexOf(':') + 1) : keyEncryptionKey
    if (!/^[A-Za-z0-9_-]{43}$/.test(b64) || Buffer.from(b64, 'base64url').length !== 32) {
      problems.push('KEY_ENCRYPTION_KEY must be 32 random bytes in base64url (43 characters), optionally prefixed with "id:"; generate one with: node -e "console.log(require(\'crypto\').randomBytes(32).toString(\'base64url\'))"')
    }
  } else if (production) {
    problems.push('KEY_ENCRYPTION_KEY is required in production: private signing keys are stored encrypted under it')
  }
  const keyEncryptionKeysPrevious = (str('KEY_ENCRYPTION_KEYS_PREVIOUS') ?? '').split(',').map((k) => k.trim()).filter((k) => k !== '')
  for (const [i, k] of keyEncryptionKeysPrevious.entries()) {
    const m = /^([A-Za-z0-9._-]{1,64}):([A-Za-z0-9_-]{43})$/.exec(k)
    if (!m || Buffer.from(m[2]!, 'base64url').length !== 32) {
      problems.push(`KEY_ENCRYPTION_KEYS_PREVIOUS entry ${i + 1} must be "id:" followed by 32 bytes in base64url (43 characters)`)
    } else if (keyEncryptionKey?.startsWith(`${m[1]}:`)) {
      problems.push(`KEY_ENCRYPTION_KEYS_PREVIOUS entry ${i + 1} has the id of the current KEY_ENCRYPTION_KEY; give every KEK its own id`)
    }
  }
  const keyRotationIntervalSeconds = int('KEY_ROTATION_INTERVAL_SECONDS', 30 * 86_400, 0, 3 * 366 * 86_400)
  const keyClockSkewSeconds = int('KEY_CLOCK_SKEW_SECONDS', 60, 0, 3600)
  const cacheRefreshSeconds = int('CACHE_REFRESH_SECONDS', 10, 1, 3600)
  const jwksMaxAgeSeconds = int('JWKS_MAX_AGE_SECONDS', 300, 0, 86_400)
  // README "Signing keys": with the publish lead L, the interval must leave the standby key L to
  // reach every cache, then a full max-age ceiling in which it is promotable, then another L.
  const keyPublishLead = jwksMaxAgeSeconds + cacheRefreshSeconds + keyClockSkewSeconds
  const minKeyRotationInterval = Math.max(10, 2 * keyPublishLead + jwksMaxAgeSeconds)
  if (keyRotationIntervalSeconds > 0 && keyRotationIntervalSeconds < minKeyRotationInterval) {
    problems.push(
      `KEY_ROTATION_INTERVAL_SECONDS must be 0 (no scheduled rotation) or at least ${minKeyRotationInterval} (2 × (JWKS_MAX_AGE_SECONDS + CACHE_REFRESH_SECONDS + KEY_CLOCK_SKEW_SECONDS) + JWKS_MAX_AGE_SECONDS, and at least 10) (got ${keyRotationIntervalSeconds})`,
    )
  }

  const cookieSecure = bool('COOKIE_SECURE', true)
  if (production && !cookieSecure) problems.push('COOKIE_SECURE=false is not allowed in production: refresh cookies must be Secure')
  const cookieNameBase = str('COOKIE_NAME') ?? 'tessera_rt'
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cookieNameBase)) problems.push('COOKIE_NAME may contain only letters, digits, "_" and "-"')

  const accessTokenTtlSeconds = int('ACCESS_TOKEN_TTL_SECONDS', 900, 30, 86_400)
  const refreshTokenIdleTtlSeconds = int('REFRESH_TOKEN_IDLE_TTL_SECONDS', 14 * 86_400, 60, 366 * 86_400)
  const refreshTokenAbsoluteTtlSeconds = int('REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS', 30 * 86_400, 60, 3 * 366 * 86_400)
  if (refreshTokenIdleTtlSeconds > refreshTokenAbsoluteTtlSeconds) {
    problems.push('REFRESH_TOKEN_IDLE_TTL_SECONDS must not exceed REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS')
  }

  const argon2 = Object.freeze({
    memoryKib: int('ARGON2_MEMORY_KIB', 19_456, 8_192, 4_194_304),
    timeCost: int('ARGON2_TIME_COST', 2, 1, 20),
    parallelism: int('ARGON2_PARALLELISM', 1, 1, 16),
  })
  if (production && argon2.memoryKib < 19_456) problems.push('ARGON2_MEMORY_KIB below 19456 (OWASP minimum) is not allowed in production')

  const metricsToken = str('METRICS_TOKEN')
  // RFC 6750 b64token characters, and long enough not to be guessed.
  if (metricsToken !== undefined && !/^[A-Za-z0-9\-._~+/]{16,512}=*$/.test(metricsToken)) {
    problems.push('METRICS_TOKEN must be 16 to 512 characters of A-Z a-z 0-9 - . _ ~ + / (generate one with: node -e "console.log(require(\'crypto\').randomBytes(32).toString(\'base64url\'))")')
  }

  // A family's access tokens are checked against its row: keep dead families at least as long as
  // their last access tokens can live, or those would be refused before they expire.
  const housekeepingRetentionSeconds = int('HOUSEKEEPING_RETENTION_SECONDS', 7 * 86_400, 0, 366 * 86_400)
  if (housekeepingRetentionSeconds < accessTokenTtlSeconds) {
    problems.push(`HOUSEKEEPING_RETENTION_SECONDS must be at least ACCESS_TOKEN_TTL_SECONDS (${accessTokenTtlSeconds}): a dead family's last access tokens are checked against its row until they expire`)
  }
  const config: Config = {
    env: nodeEnv,
    host,
    port,
    logLevel,
    databaseUrl,
    databasePoolSize: int('DATABASE_POOL_SIZE', 10, 1, 200),
    dataDir,
    issuer,
    accessTokenTtlSeconds,
    refreshTokenIdleTtlSeconds,
    refreshTokenAbsoluteTtlSeconds,
    refreshGraceSeconds: int('REFRESH_GRACE_SECONDS', 10, 0, 120),
    signingAlg: oneOf('SIGNING_ALG', SIGNING_ALGS, 'ES256'),
    keyEncryptionKey,
    keyEncryptionKeysPrevious: Object.freeze(keyEncryptionKeysPrevious),
    keyRotationIntervalSeconds,
    keyClockSkewSeconds,
    cacheRefreshSeconds,
    jwksMaxAgeSeconds,
    cookieName: (cookieSecure ? '__Secure-' : '') + cookieNameBase,
    cookieSecure,
    cookieSameSite: oneOf('COOKIE_SAMESITE', ['strict', 'lax'] as const, 'strict'),
    argon2,
    migrateOnStart: bool('MIGRATE_ON_START', !production),
    bodyLimitBytes: int('BODY_LIMIT_BYTES', 65_536, 1_024, 10_485_760),
    trustProxy: bool('TRUST_PROXY', false),
    lockTimeoutMs: int('DB_LOCK_TIMEOUT_MS', 5_000, 100, 60_000),
    dbAcquireTimeoutMs: int('DB_ACQUIRE_TIMEOUT_MS', 5_000, 100, 60_000),
    metricsToken,
    housekeepingIntervalSeconds: int('HOUSEKEEPING_INTERVAL_SECONDS', 300, 0, 86_400),
    housekeepingBatchSize: int('HOUSEKEEPING_BATCH_SIZE', 500, 1, 10_000),
    housekeepingRetentionSeconds,
    auditRetentionDays: int('AUDIT_RETENTION_DAYS', 90, 0, 36_500),
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return Object.freeze(config)
}
