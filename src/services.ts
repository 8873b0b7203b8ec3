import type { RequestContext } from './audit/context.js'
import type { ClientCache } from './clients/client-cache.js'
import type { Clock } from './clock.js'
import type { Config } from './config.js'
import type { Db } from './db/schema.js'
import type { GrantDeps } from './grants/types.js'
import type { Keyring } from './keys/keyring.js'
import type { Metrics } from './metrics.js'
import type { RefreshTokens } from './tokens/refresh-tokens.js'
import type { TokenIssuer } from './tokens/token-issuer.js'
import type { UserLogin } from './users/user-login.js'

/** What the HTTP layer works with; built once by `buildApp`. Routes hand `db` to use cases. */
export interface Services {
  readonly config: Config
  readonly clock: Clock
  readonly db: Db
  readonly keyring: Keyring
  readonly clients: ClientCache
  readonly metrics: Metrics
  /** Signs and verifies Tessera's JWTs. */
  readonly tokens: TokenIssuer
  readonly refreshTokens: RefreshTokens
  readonly users: UserLogin
}

/** Grant dependencies for one request. */
export function grantDeps(s: Services, ctx: RequestContext): GrantDeps {
  return { issuer: s.tokens, refreshTokens: s.refreshTokens, users: s.users, metrics: s.metrics, clock: s.clock, ctx }
}
