import { isAbsolute, resolve } from 'node:path'

/** Signing algorithms Tessera can create keys for. */
export const SIGNING_ALGS = ['ES256', 'RS256', 'PS256', 'EdDSA'] as const
export type SigningAlg = (typeof SIGNING_ALGS)[number]
/**
 * The ID-token algorithm of a client that names none (OIDC Dynamic Client Registration §2), which
 * every OP must support (OIDC Core §15.1): a key line of its own next to SIGNING_ALG's.
 */
export const ID_TOKEN_DEFAULT_ALG: SigningAlg = 'RS256'

/** Validated, frozen configuration. Only this module reads `process.env`. */
export interface Config {
  readonly env: 'development' | 'production' | 'test'
  readonly host: string
  readonly port: number
  readonly logLevel: string
  /** `pretty`: readable lines (development only, when pino-pretty is installed); `json` otherwise. */
  readonly logFormat: 'json' | 'pretty'
  readonly databaseUrl: string | undefined
  /** Where the LISTEN connection goes (a direct server URL); undefined = no LISTEN (poll only). */
  readonly databaseListenUrl: string | undefined
  readonly databasePoolSize: number
  readonly dataDir: string
  /**
   * Embedded mode: the directory in which a running server serves its database to the CLI
   * (`.s.PGSQL.5432`); undefined = no socket (off, or DATABASE_URL).
   */
  readonly embeddedDatabaseSocket: string | undefined
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
  /** How long a command that changes keys, clients or users waits for every live instance to confirm. */
  readonly propagationWaitSeconds: number
  /** An instance whose heartbeat is older than this is not waited for. */
  readonly instanceStaleSeconds: number
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
  // --- Brute force and abuse (README "Brute force and abuse") ---
  /** Password-check throttling: free failures per key, then exponential backoff. */
  readonly loginThrottle: LoginThrottlePolicy
  /** argon2id work at once (0 = one per CPU core, on threads of lower priority) and checks waiting beyond it (then 503). */
  readonly passwordHashing: { readonly concurrency: number; readonly queue: number }
  /** /token requests per second per client on each instance, unless the client has its own; 0 = no limit. */
  readonly clientRateLimitPerSecond: number
  /** How long a rotated-out client secret keeps authenticating (0 = it stops at once); a rotation may name its own. */
  readonly clientSecretOverlapSeconds: number
  // --- authorization-code flow (issue 13)
  readonly authorizationCodeTtlSeconds: number
  readonly authorizationRequestTtlSeconds: number
  readonly parTtlSeconds: number
  readonly ssoSessionIdleTtlSeconds: number
  readonly ssoSessionAbsoluteTtlSeconds: number
  /** The SSO cookie's name (`__Host-` prefixed when secure). */
  readonly ssoCookieName: string
  /** The cookie binding a pending authorization request to its browser. */
  readonly browserCookieName: string
  readonly backchannelLogoutTimeoutMs: number
  readonly backchannelLogoutRetries: number
  readonly productName: string
  readonly brandColor: string
  readonly brandBackground: string
  // ---
}

/** When password checks are refused (README "Brute force and abuse"). */
export interface LoginThrottlePolicy {
  /** Failures of one account (from anywhere) before backoff. */
  readonly accountFreeFailures: number
  /** Failures of one account from one address before backoff. */
  readonly addressAccountFreeFailures: number
  /** Failures from one address (any accounts: stuffing) before backoff. */
  readonly addressFreeFailures: number
  /** The first lock; each further failure doubles it. */
  readonly backoffBaseSeconds: number
  /** The longest lock. */
  readonly backoffMaxSeconds: number
  /** A counter without a failure for this long starts again from zero. */
  readonly memorySeconds: number
}

export type Env = Record<string, string | undefined>

/** Thrown when the environment is invalid; the message lists every problem. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`)
  }
}

/** What applies when a variable without one fixed default is unset (e.g. it depends on NODE_ENV). */
export interface DerivedDefault { readonly derived: string }

/** One environment variable Tessera reads: its kind and validation, documented default and meaning. */
export type ConfigVariable = { readonly name: string; readonly description: string } & (
  | { readonly kind: 'int'; readonly min: number; readonly max: number; readonly default: number }
  | { readonly kind: 'bool'; readonly default: boolean | DerivedDefault }
  | { readonly kind: 'oneOf'; readonly values: readonly string[]; readonly default: string }
  // `check` is the per-variable rule; rules involving other variables live in loadConfig.
  | { readonly kind: 'string' | 'url'; readonly default: string | DerivedDefault; readonly check?: { readonly pattern: RegExp; readonly problem: string } }
  // Comma-separated; blank entries are dropped.
  | { readonly kind: 'list'; readonly default: DerivedDefault }
)

const GENERATE_SECRET = 'node -e "console.log(require(\'crypto\').randomBytes(32).toString(\'base64url\'))"'

/**
 * Every environment variable Tessera reads, in README order: loadConfig parses them through this
 * table, and the README "Configuration" table and .env.example are checked against it.
 */
export const CONFIG_VARIABLES = [
  { name: 'NODE_ENV', kind: 'oneOf', values: ['development', 'production', 'test'], default: 'development', description: 'deployment mode; production refuses insecure settings' },
  { name: 'HOST', kind: 'string', default: '127.0.0.1', description: 'listen address' },
  { name: 'PORT', kind: 'int', min: 0, max: 65_535, default: 8080, description: 'listen port' },
  { name: 'LOG_LEVEL', kind: 'oneOf', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', description: 'pino log level' },
  { name: 'LOG_FORMAT', kind: 'oneOf', values: ['auto', 'json', 'pretty'], default: 'auto', description: 'log lines: auto = readable (pino-pretty) in development, JSON in production and test; pretty is refused in production' },
  {
    name: 'DATABASE_URL', kind: 'url', default: { derived: 'none: the embedded PGlite database in DATA_DIR' }, description: 'PostgreSQL connection URL',
    check: { pattern: /^postgres(ql)?:\/\//, problem: 'DATABASE_URL must be a postgres:// or postgresql:// URL' },
  },
  { name: 'DATABASE_POOL_SIZE', kind: 'int', min: 1, max: 200, default: 10, description: 'PostgreSQL connections per instance' },
  { name: 'DB_ACQUIRE_TIMEOUT_MS', kind: 'int', min: 100, max: 60_000, default: 5_000, description: 'wait for a pooled connection before answering 503' },
  { name: 'DB_LOCK_TIMEOUT_MS', kind: 'int', min: 100, max: 60_000, default: 5_000, description: 'PostgreSQL lock_timeout' },
  {
    name: 'DATABASE_LISTEN_URL', kind: 'url', default: { derived: 'DATABASE_URL' }, description: 'direct PostgreSQL URL for the LISTEN connection (not a transaction-mode pooler); off = poll only',
    check: { pattern: /^(postgres(ql)?:\/\/|off$)/, problem: 'DATABASE_LISTEN_URL must be a postgres:// or postgresql:// URL, or off' },
  },
  { name: 'DATA_DIR', kind: 'string', default: './data', description: 'embedded database, development KEK and demo credentials' },
  {
    name: 'EMBEDDED_DATABASE_SOCKET', kind: 'string', default: { derived: 'DATA_DIR/run (embedded mode only)' },
    description: 'directory where an embedded-mode server serves its database on a Unix socket (.s.PGSQL.5432, owner only) so that `tessera` commands work beside it; off = no socket',
  },
  { name: 'ALLOW_EMBEDDED_DATABASE', kind: 'bool', default: false, description: 'allow the embedded PGlite database in production (one instance only; data in DATA_DIR)' },
  { name: 'MIGRATE_ON_START', kind: 'bool', default: { derived: 'true in development and test, false in production' }, description: 'apply migrations at start' },
  { name: 'ISSUER', kind: 'url', default: { derived: 'http://localhost:$PORT in development; required (https) in production' }, description: 'public URL of this server, the iss of every token' },
  { name: 'ALLOW_INSECURE_ISSUER', kind: 'bool', default: false, description: 'allow an http ISSUER in production (local demo only)' },
  { name: 'KEY_ENCRYPTION_KEY', kind: 'string', default: { derived: 'none: development generates one into DATA_DIR; required in production' }, description: 'KEK sealing private signing keys: 32 bytes base64url, optionally "id:" prefixed' },
  { name: 'KEY_ENCRYPTION_KEYS_PREVIOUS', kind: 'list', default: { derived: 'none' }, description: 'earlier KEKs (id:base64url), still accepted for decryption until `tessera keys rewrap`' },
  { name: 'KEY_ROTATION_INTERVAL_SECONDS', kind: 'int', min: 0, max: 3 * 366 * 86_400, default: 30 * 86_400, description: 'how long a signing key signs before the next takes over; 0 = only by command' },
  { name: 'KEY_CLOCK_SKEW_SECONDS', kind: 'int', min: 0, max: 3600, default: 60, description: 'clock-difference allowance in the key schedule' },
  { name: 'SIGNING_ALG', kind: 'oneOf', values: SIGNING_ALGS, default: 'ES256', description: 'algorithm of newly generated signing keys' },
  { name: 'ACCESS_TOKEN_TTL_SECONDS', kind: 'int', min: 30, max: 86_400, default: 900, description: 'access and ID token lifetime' },
  { name: 'REFRESH_TOKEN_IDLE_TTL_SECONDS', kind: 'int', min: 60, max: 366 * 86_400, default: 14 * 86_400, description: 'a refresh token unused this long expires' },
  { name: 'REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS', kind: 'int', min: 60, max: 3 * 366 * 86_400, default: 30 * 86_400, description: 'a refresh-token family ends this long after login' },
  { name: 'REFRESH_GRACE_SECONDS', kind: 'int', min: 0, max: 120, default: 10, description: 'a refresh retried within this window gets the same successor; 0 = no retries' },
  { name: 'CACHE_REFRESH_SECONDS', kind: 'int', min: 1, max: 3600, default: 10, description: 'how often an instance re-reads signing keys and clients' },
  { name: 'JWKS_MAX_AGE_SECONDS', kind: 'int', min: 0, max: 86_400, default: 300, description: 'ceiling of the JWKS Cache-Control max-age' },
  { name: 'PROPAGATION_WAIT_SECONDS', kind: 'int', min: 0, max: 300, default: 5, description: 'how long a command that changes keys, clients or users waits for every live instance to confirm; 0 = no wait' },
  { name: 'INSTANCE_STALE_SECONDS', kind: 'int', min: 2, max: 3600, default: 5, description: 'an instance whose heartbeat is older than this is not waited for' },
  {
    name: 'COOKIE_NAME', kind: 'string', default: 'tessera_rt', description: 'refresh cookie name (prefixed __Secure- when secure)',
    check: { pattern: /^[A-Za-z0-9_-]{1,64}$/, problem: 'COOKIE_NAME may contain only letters, digits, "_" and "-"' },
  },
  { name: 'COOKIE_SECURE', kind: 'bool', default: true, description: 'Secure refresh cookie; false only outside production' },
  { name: 'COOKIE_SAMESITE', kind: 'oneOf', values: ['strict', 'lax'], default: 'strict', description: 'SameSite of the refresh cookie' },
  { name: 'ARGON2_MEMORY_KIB', kind: 'int', min: 8_192, max: 4_194_304, default: 19_456, description: 'argon2id memory (below 19456 refused in production)' },
  { name: 'ARGON2_TIME_COST', kind: 'int', min: 1, max: 20, default: 2, description: 'argon2id passes' },
  { name: 'ARGON2_PARALLELISM', kind: 'int', min: 1, max: 16, default: 1, description: 'argon2id lanes' },
  { name: 'BODY_LIMIT_BYTES', kind: 'int', min: 1_024, max: 10_485_760, default: 65_536, description: 'largest accepted request body' },
  { name: 'TRUST_PROXY', kind: 'bool', default: false, description: 'trust X-Forwarded-* from a reverse proxy' },
  // --- Brute force and abuse (README "Brute force and abuse") ---
  { name: 'LOGIN_ACCOUNT_FREE_FAILURES', kind: 'int', min: 1, max: 1_000_000, default: 10, description: 'failed password checks of one account (from any address) before its attempts are delayed' },
  { name: 'LOGIN_ADDRESS_ACCOUNT_FREE_FAILURES', kind: 'int', min: 1, max: 1_000_000, default: 5, description: 'failed password checks of one account from one address before they are delayed' },
  { name: 'LOGIN_ADDRESS_FREE_FAILURES', kind: 'int', min: 1, max: 1_000_000, default: 100, description: 'failed password checks from one address (IPv6: /64), any accounts, before its attempts are delayed' },
  { name: 'LOGIN_BACKOFF_BASE_SECONDS', kind: 'int', min: 1, max: 3600, default: 1, description: 'the first delay; it doubles with each further failure' },
  { name: 'LOGIN_BACKOFF_MAX_SECONDS', kind: 'int', min: 1, max: 86_400, default: 900, description: 'the longest delay (locks are never permanent)' },
  { name: 'LOGIN_FAILURE_MEMORY_SECONDS', kind: 'int', min: 60, max: 30 * 86_400, default: 43_200, description: 'a counter without a failure for this long starts again from zero' },
  { name: 'PASSWORD_HASH_CONCURRENCY', kind: 'int', min: 0, max: 256, default: 0, description: 'argon2id hashes at once, on worker threads of lower priority; 0 = one per CPU core' },
  { name: 'PASSWORD_HASH_QUEUE', kind: 'int', min: 0, max: 100_000, default: 64, description: 'password checks waiting for a hash slot; beyond it 503 at once' },
  { name: 'CLIENT_RATE_LIMIT_PER_SECOND', kind: 'int', min: 0, max: 1_000_000, default: 1000, description: 'default /token requests per second per client on each instance (burst: twice that); 0 = no limit' },
  { name: 'CLIENT_SECRET_OVERLAP_SECONDS', kind: 'int', min: 0, max: 30 * 86_400, default: 86_400, description: 'how long the old secret of a client keeps working after a rotation; 0 = it stops at once' },
  {
    name: 'METRICS_TOKEN', kind: 'string', default: { derived: 'none: GET /metrics is open' }, description: 'when set, GET /metrics needs Authorization: Bearer <this>',
    // RFC 6750 b64token characters, and long enough not to be guessed.
    check: { pattern: /^[A-Za-z0-9\-._~+/]{16,512}=*$/, problem: `METRICS_TOKEN must be 16 to 512 characters of A-Z a-z 0-9 - . _ ~ + / (generate one with: ${GENERATE_SECRET})` },
  },
  { name: 'HOUSEKEEPING_INTERVAL_SECONDS', kind: 'int', min: 0, max: 86_400, default: 300, description: 'how often each instance deletes dead rows; 0 = never' },
  { name: 'HOUSEKEEPING_BATCH_SIZE', kind: 'int', min: 1, max: 10_000, default: 500, description: 'rows per table one housekeeping batch deletes at most' },
  { name: 'HOUSEKEEPING_RETENTION_SECONDS', kind: 'int', min: 0, max: 366 * 86_400, default: 7 * 86_400, description: 'dead refresh-token families are kept this long, then deleted' },
  { name: 'AUDIT_RETENTION_DAYS', kind: 'int', min: 0, max: 36_500, default: 90, description: 'audit events older than this are deleted; 0 = kept forever' },
  // --- authorization-code flow (issue 13)
  { name: 'AUTHORIZATION_CODE_TTL_SECONDS', kind: 'int', min: 5, max: 60, default: 60, description: 'an authorization code is valid this long (at most 60)' },
  { name: 'AUTHORIZATION_REQUEST_TTL_SECONDS', kind: 'int', min: 60, max: 3600, default: 600, description: 'how long a pending authorization request (login or consent page) stays usable' },
  { name: 'PAR_TTL_SECONDS', kind: 'int', min: 10, max: 600, default: 60, description: 'lifetime of a pushed authorization request (request_uri)' },
  { name: 'SSO_SESSION_IDLE_TTL_SECONDS', kind: 'int', min: 60, max: 366 * 86_400, default: 86_400, description: 'an SSO session unused this long ends' },
  { name: 'SSO_SESSION_ABSOLUTE_TTL_SECONDS', kind: 'int', min: 60, max: 366 * 86_400, default: 14 * 86_400, description: 'an SSO session ends this long after its login' },
  { name: 'BACKCHANNEL_LOGOUT_TIMEOUT_MS', kind: 'int', min: 100, max: 30_000, default: 2_000, description: 'timeout of one back-channel logout POST' },
  { name: 'BACKCHANNEL_LOGOUT_RETRIES', kind: 'int', min: 0, max: 5, default: 2, description: 'retries of a failed back-channel logout POST' },
  {
    name: 'PRODUCT_NAME', kind: 'string', default: 'Tessera', description: 'product name on the hosted login, consent and logout pages',
    check: { pattern: /^[^<>;"\x00-\x1f]{1,64}$/, problem: 'PRODUCT_NAME must be 1 to 64 printable characters without < > ; or "' },
  },
  {
    name: 'BRAND_COLOR', kind: 'string', default: '#2f5d8a', description: 'accent colour of the hosted pages (#rrggbb)',
    check: { pattern: /^#[0-9a-fA-F]{6}$/, problem: 'BRAND_COLOR must be a #rrggbb colour' },
  },
  {
    name: 'BRAND_BACKGROUND', kind: 'string', default: '#f4f6f8', description: 'background colour of the hosted pages (#rrggbb)',
    check: { pattern: /^#[0-9a-fA-F]{6}$/, problem: 'BRAND_BACKGROUND must be a #rrggbb colour' },
  },
  // ---
] as const satisfies readonly ConfigVariable[]

/** The fixed default as the README and .env.example write it; undefined when the default is derived. */
export function fixedDefault(variable: ConfigVariable): string | undefined {
  return typeof variable.default === 'object' ? undefined : String(variable.default)
}

type ValueOf<V> =
  V extends { kind: 'int' } ? number
  : V extends { kind: 'bool'; default: boolean } ? boolean
  : V extends { kind: 'bool' } ? boolean | undefined // derived: loadConfig decides
  : V extends { kind: 'oneOf'; values: readonly (infer T)[] } ? T
  : V extends { kind: 'list' } ? readonly string[]
  : V extends { default: string } ? string
  : string | undefined
type Values = { readonly [V in (typeof CONFIG_VARIABLES)[number] as V['name']]: ValueOf<V> }

/** Parses one variable by its table entry; an invalid value is a problem, and the default stands in. */
function parseVariable(v: ConfigVariable, value: string | undefined, problems: string[]): unknown {
  const raw = value === undefined || value.trim() === '' ? undefined : value.trim()
  const def = typeof v.default === 'object' ? undefined : v.default
  switch (v.kind) {
    case 'int': {
      if (raw === undefined) return def
      const n = Number(raw)
      if (!/^\d+$/.test(raw) || n < v.min || n > v.max) {
        problems.push(`${v.name} must be an integer between ${v.min} and ${v.max} (got "${raw}")`)
        return def
      }
      return n
    }
    case 'bool':
      if (raw === undefined) return def
      if (/^(1|true|yes|on)$/i.test(raw)) return true
      if (/^(0|false|no|off)$/i.test(raw)) return false
      problems.push(`${v.name} must be true or false (got "${raw}")`)
      return def
    case 'oneOf':
      if (raw === undefined) return def
      if (!v.values.includes(raw)) {
        problems.push(`${v.name} must be one of ${v.values.join(', ')} (got "${raw}")`)
        return def
      }
      return raw
    case 'string':
    case 'url':
      if (raw !== undefined && v.check && !v.check.pattern.test(raw)) problems.push(v.check.problem)
      return raw ?? def
    case 'list':
      return Object.freeze((raw ?? '').split(',').map((k) => k.trim()).filter((k) => k !== ''))
  }
}

/** Reads and validates configuration; every problem is reported at once. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = []
  const values: Record<string, unknown> = {}
  for (const v of CONFIG_VARIABLES as readonly ConfigVariable[]) values[v.name] = parseVariable(v, env[v.name], problems)
  const v = values as Values

  // Rules that involve more than one variable, or NODE_ENV.
  const production = v.NODE_ENV === 'production'
  const dataDir = isAbsolute(v.DATA_DIR) ? v.DATA_DIR : resolve(v.DATA_DIR)

  let issuer = v.ISSUER ?? ''
  if (issuer === '') {
    if (production) problems.push('ISSUER is required in production (the public https URL of this server)')
    issuer = `http://localhost:${v.PORT}`
  } else {
    let url: URL | undefined
    try { url = new URL(issuer) } catch { problems.push(`ISSUER must be an absolute URL (got "${issuer}")`) }
    if (url) {
      // OIDC Discovery §3: https, no query or fragment; we keep it without a trailing slash.
      if (url.search || url.hash || /[?#]/.test(issuer)) problems.push('ISSUER must not have a query or fragment')
      if (url.protocol !== 'https:' && url.protocol !== 'http:') problems.push('ISSUER must be an http(s) URL')
      if (production && url.protocol !== 'https:' && !v.ALLOW_INSECURE_ISSUER) {
        problems.push('ISSUER must use https in production (set ALLOW_INSECURE_ISSUER=true only for a local demo)')
      }
      issuer = issuer.replace(/\/+$/, '')
    }
  }

  const keyEncryptionKey = v.KEY_ENCRYPTION_KEY
  if (keyEncryptionKey !== undefined) {
    const b64 = keyEncryptionKey.includes(':') ? keyEncryptionKey.slice(keyEncryptionKey.indexOf(':') + 1) : keyEncryptionKey
    if (!/^[A-Za-z0-9_-]{43}$/.test(b64) || Buffer.from(b64, 'base64url').length !== 32) {
      problems.push(`KEY_ENCRYPTION_KEY must be 32 random bytes in base64url (43 characters), optionally prefixed with "id:"; generate one with: ${GENERATE_SECRET}`)
    }
  } else if (production) {
    problems.push('KEY_ENCRYPTION_KEY is required in production: private signing keys are stored encrypted under it')
  }
  for (const [i, k] of v.KEY_ENCRYPTION_KEYS_PREVIOUS.entries()) {
    const m = /^([A-Za-z0-9._-]{1,64}):([A-Za-z0-9_-]{43})$/.exec(k)
    if (!m || Buffer.from(m[2]!, 'base64url').length !== 32) {
      problems.push(`KEY_ENCRYPTION_KEYS_PREVIOUS entry ${i + 1} must be "id:" followed by 32 bytes in base64url (43 characters)`)
    } else if (keyEncryptionKey?.startsWith(`${m[1]}:`)) {
      problems.push(`KEY_ENCRYPTION_KEYS_PREVIOUS entry ${i + 1} has the id of the current KEY_ENCRYPTION_KEY; give every KEK its own id`)
    }
  }
  // README "Signing keys": with the publish lead L, the interval must leave the standby key L to
  // reach every cache, then a full max-age ceiling in which it is promotable, then another L.
  const keyPublishLead = v.JWKS_MAX_AGE_SECONDS + v.CACHE_REFRESH_SECONDS + v.KEY_CLOCK_SKEW_SECONDS
  const minKeyRotationInterval = Math.max(10, 2 * keyPublishLead + v.JWKS_MAX_AGE_SECONDS)
  if (v.KEY_ROTATION_INTERVAL_SECONDS > 0 && v.KEY_ROTATION_INTERVAL_SECONDS < minKeyRotationInterval) {
    problems.push(
      `KEY_ROTATION_INTERVAL_SECONDS must be 0 (no scheduled rotation) or at least ${minKeyRotationInterval} (2 × (JWKS_MAX_AGE_SECONDS + CACHE_REFRESH_SECONDS + KEY_CLOCK_SKEW_SECONDS) + JWKS_MAX_AGE_SECONDS, and at least 10) (got ${v.KEY_ROTATION_INTERVAL_SECONDS})`,
    )
  }

  // README "Running on PostgreSQL": production without DATABASE_URL would quietly keep every user,
  // client and key in DATA_DIR of one container, and give each replica a database of its own.
  // Production logs are JSON lines for the log pipeline (and no development-only dependency).
  if (production && v.LOG_FORMAT === 'pretty') problems.push('LOG_FORMAT=pretty is for development: production logs JSON lines (LOG_FORMAT=json or auto)')
  if (production && v.DATABASE_URL === undefined && !v.ALLOW_EMBEDDED_DATABASE) {
    problems.push('DATABASE_URL is required in production: the embedded database keeps its data in DATA_DIR of this one instance (a recreated container loses it; replicas do not share it); set DATABASE_URL, or ALLOW_EMBEDDED_DATABASE=true to run one instance on the embedded database on purpose')
  }
  if (production && !v.COOKIE_SECURE) problems.push('COOKIE_SECURE=false is not allowed in production: refresh cookies must be Secure')
  if (v.REFRESH_TOKEN_IDLE_TTL_SECONDS > v.REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS) {
    problems.push('REFRESH_TOKEN_IDLE_TTL_SECONDS must not exceed REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS')
  }
  if (production && v.ARGON2_MEMORY_KIB < 19_456) problems.push('ARGON2_MEMORY_KIB below 19456 (OWASP minimum) is not allowed in production')
  // A family's access tokens are checked against its row: keep dead families at least as long as
  // their last access tokens can live, or those would be refused before they expire.
  if (v.HOUSEKEEPING_RETENTION_SECONDS < v.ACCESS_TOKEN_TTL_SECONDS) {
    problems.push(`HOUSEKEEPING_RETENTION_SECONDS must be at least ACCESS_TOKEN_TTL_SECONDS (${v.ACCESS_TOKEN_TTL_SECONDS}): a dead family's last access tokens are checked against its row until they expire`)
  }
  // One problem per variable: a malformed value is reported as such, not also as lacking DATABASE_URL.
  const listenUrlMalformed = problems.some((p) => p.startsWith('DATABASE_LISTEN_URL'))
  if (v.EMBEDDED_DATABASE_SOCKET !== undefined && v.EMBEDDED_DATABASE_SOCKET !== 'off' && v.DATABASE_URL !== undefined) {
    problems.push('EMBEDDED_DATABASE_SOCKET is for the embedded database: with DATABASE_URL, commands connect to PostgreSQL themselves (unset it, or set it to off)')
  }
  if (v.DATABASE_LISTEN_URL !== undefined && v.DATABASE_LISTEN_URL !== 'off' && v.DATABASE_URL === undefined && !listenUrlMalformed) {
    problems.push('DATABASE_LISTEN_URL needs DATABASE_URL (the embedded database is single-process and has no LISTEN connection)')
  }
  // A counter must outlive the longest lock, or a lock would end with its count forgotten.
  if (v.LOGIN_FAILURE_MEMORY_SECONDS < v.LOGIN_BACKOFF_MAX_SECONDS) problems.push(`LOGIN_FAILURE_MEMORY_SECONDS must be at least LOGIN_BACKOFF_MAX_SECONDS (${v.LOGIN_BACKOFF_MAX_SECONDS})`)
  if (v.LOGIN_BACKOFF_BASE_SECONDS > v.LOGIN_BACKOFF_MAX_SECONDS) problems.push(`LOGIN_BACKOFF_BASE_SECONDS must not exceed LOGIN_BACKOFF_MAX_SECONDS (${v.LOGIN_BACKOFF_MAX_SECONDS})`)
  if (v.SSO_SESSION_IDLE_TTL_SECONDS > v.SSO_SESSION_ABSOLUTE_TTL_SECONDS) problems.push('SSO_SESSION_IDLE_TTL_SECONDS must not exceed SSO_SESSION_ABSOLUTE_TTL_SECONDS')
  if (problems.length > 0) throw new ConfigError(problems)

  return Object.freeze({
    env: v.NODE_ENV,
    host: v.HOST,
    port: v.PORT,
    logLevel: v.LOG_LEVEL,
    logFormat: v.LOG_FORMAT === 'pretty' || (v.LOG_FORMAT === 'auto' && v.NODE_ENV === 'development') ? 'pretty' : 'json',
    databaseUrl: v.DATABASE_URL,
    databaseListenUrl: v.DATABASE_LISTEN_URL === 'off' ? undefined : (v.DATABASE_LISTEN_URL ?? v.DATABASE_URL),
    databasePoolSize: v.DATABASE_POOL_SIZE,
    dataDir,
    embeddedDatabaseSocket: v.DATABASE_URL !== undefined || v.EMBEDDED_DATABASE_SOCKET === 'off' ? undefined : resolve(dataDir, v.EMBEDDED_DATABASE_SOCKET ?? 'run'),
    issuer,
    accessTokenTtlSeconds: v.ACCESS_TOKEN_TTL_SECONDS,
    refreshTokenIdleTtlSeconds: v.REFRESH_TOKEN_IDLE_TTL_SECONDS,
    refreshTokenAbsoluteTtlSeconds: v.REFRESH_TOKEN_ABSOLUTE_TTL_SECONDS,
    refreshGraceSeconds: v.REFRESH_GRACE_SECONDS,
    signingAlg: v.SIGNING_ALG,
    keyEncryptionKey,
    keyEncryptionKeysPrevious: v.KEY_ENCRYPTION_KEYS_PREVIOUS,
    keyRotationIntervalSeconds: v.KEY_ROTATION_INTERVAL_SECONDS,
    keyClockSkewSeconds: v.KEY_CLOCK_SKEW_SECONDS,
    cacheRefreshSeconds: v.CACHE_REFRESH_SECONDS,
    propagationWaitSeconds: v.PROPAGATION_WAIT_SECONDS,
    instanceStaleSeconds: v.INSTANCE_STALE_SECONDS,
    jwksMaxAgeSeconds: v.JWKS_MAX_AGE_SECONDS,
    cookieName: (v.COOKIE_SECURE ? '__Secure-' : '') + v.COOKIE_NAME,
    cookieSecure: v.COOKIE_SECURE,
    cookieSameSite: v.COOKIE_SAMESITE,
    argon2: Object.freeze({ memoryKib: v.ARGON2_MEMORY_KIB, timeCost: v.ARGON2_TIME_COST, parallelism: v.ARGON2_PARALLELISM }),
    migrateOnStart: v.MIGRATE_ON_START ?? !production,
    bodyLimitBytes: v.BODY_LIMIT_BYTES,
    trustProxy: v.TRUST_PROXY,
    lockTimeoutMs: v.DB_LOCK_TIMEOUT_MS,
    dbAcquireTimeoutMs: v.DB_ACQUIRE_TIMEOUT_MS,
    metricsToken: v.METRICS_TOKEN,
    housekeepingIntervalSeconds: v.HOUSEKEEPING_INTERVAL_SECONDS,
    housekeepingBatchSize: v.HOUSEKEEPING_BATCH_SIZE,
    housekeepingRetentionSeconds: v.HOUSEKEEPING_RETENTION_SECONDS,
    auditRetentionDays: v.AUDIT_RETENTION_DAYS,
    loginThrottle: Object.freeze({
      accountFreeFailures: v.LOGIN_ACCOUNT_FREE_FAILURES,
      addressAccountFreeFailures: v.LOGIN_ADDRESS_ACCOUNT_FREE_FAILURES,
      addressFreeFailures: v.LOGIN_ADDRESS_FREE_FAILURES,
      backoffBaseSeconds: v.LOGIN_BACKOFF_BASE_SECONDS,
      backoffMaxSeconds: v.LOGIN_BACKOFF_MAX_SECONDS,
      memorySeconds: v.LOGIN_FAILURE_MEMORY_SECONDS,
    }),
    passwordHashing: Object.freeze({ concurrency: v.PASSWORD_HASH_CONCURRENCY, queue: v.PASSWORD_HASH_QUEUE }),
    clientRateLimitPerSecond: v.CLIENT_RATE_LIMIT_PER_SECOND,
    clientSecretOverlapSeconds: v.CLIENT_SECRET_OVERLAP_SECONDS,
    // --- authorization-code flow (issue 13)
    authorizationCodeTtlSeconds: v.AUTHORIZATION_CODE_TTL_SECONDS,
    authorizationRequestTtlSeconds: v.AUTHORIZATION_REQUEST_TTL_SECONDS,
    parTtlSeconds: v.PAR_TTL_SECONDS,
    ssoSessionIdleTtlSeconds: v.SSO_SESSION_IDLE_TTL_SECONDS,
    ssoSessionAbsoluteTtlSeconds: v.SSO_SESSION_ABSOLUTE_TTL_SECONDS,
    // `__Host-`: Secure, Path=/, no Domain (the cookie cannot be set by a sibling subdomain).
    ssoCookieName: (v.COOKIE_SECURE ? '__Host-' : '') + 'tessera_sso',
    browserCookieName: (v.COOKIE_SECURE ? '__Host-' : '') + 'tessera_authz',
    backchannelLogoutTimeoutMs: v.BACKCHANNEL_LOGOUT_TIMEOUT_MS,
    backchannelLogoutRetries: v.BACKCHANNEL_LOGOUT_RETRIES,
    productName: v.PRODUCT_NAME,
    brandColor: v.BRAND_COLOR,
    brandBackground: v.BRAND_BACKGROUND,
  } satisfies Config)
}
