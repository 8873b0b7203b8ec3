import type { RequestContext } from './audit/context.js'
import type { ClientCache } from './clients/client-cache.js'
import type { Clock } from './clock.js'
import type { Config } from './config.js'
import type { Db } from './db/schema.js'
import type { GrantDeps } from './grants/types.js'
import type { Keyring } from './keys/keyring.js'
import type { Metrics } from './metrics.js'
import type { ChangeSync } from './propagation/change-sync.js'
import type { RefreshTokens } from './tokens/refresh-tokens.js'
import type { TokenIssuer } from './tokens/token-issuer.js'
import type { ClientRateLimit } from './throttle/client-rate-limit.js'
import type { PasswordHasher } from './users/passwords.js'
import type { UserLogin } from './users/user-login.js'
import type { AuthorizationCodes } from './authorization/authorization-codes.js'
import type { BackchannelLogout } from './authorization/backchannel-logout.js'

/** What the HTTP layer works with; built once by `buildApp`. Routes hand `db` to use cases. */
export interface Services {
  readonly config: Config
  readonly clock: Clock
  readonly db: Db
  readonly keyring: Keyring
  readonly clients: ClientCache
  /** Applies changes made elsewhere, and reports this instance's heartbeat. */
  readonly changes: ChangeSync
  readonly metrics: Metrics
  /** Signs and verifies Tessera's JWTs. */
  readonly tokens: TokenIssuer
  readonly refreshTokens: RefreshTokens
  readonly users: UserLogin
  /** argon2id in a bounded queue (what `users` checks passwords with). */
  readonly passwords: PasswordHasher
  /** Per-client request rate at /token, on this instance. */
  readonly clientRateLimit: ClientRateLimit
  // --- authorization-code flow (issue 13)
  readonly codes: AuthorizationCodes
  /** Sends back-channel logout tokens after a session ends. */
  readonly backchannel: BackchannelLogout
}

/** Grant dependencies for one request. */
export function grantDeps(s: Services, ctx: RequestContext): GrantDeps {
  return { issuer: s.tokens, refreshTokens: s.refreshTokens, users: s.users, codes: s.codes, metrics: s.metrics, clock: s.clock, ctx }
}
