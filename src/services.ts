import type { ClientCache } from './clients/client-cache.js'
import type { Config } from './config.js'
import type { Db } from './db/schema.js'
import type { GrantDeps } from './grants/types.js'
import type { Keyring } from './keys/keyring.js'
import type { Metrics } from './metrics.js'
import type { RequestContext } from './tokens/refresh-tokens.store.js'
import type { SuccessorDeriver } from './tokens/successor.js'
import type { PasswordHasher } from './users/passwords.js'

/** What the HTTP layer works with; built once by `buildApp`. */
export interface Services {
  readonly config: Config
  readonly db: Db
  readonly keyring: Keyring
  readonly clients: ClientCache
  readonly hasher: PasswordHasher
  readonly metrics: Metrics
  readonly successors: SuccessorDeriver
  /** Milliseconds since the epoch; replaceable in tests. */
  readonly now: () => number
}

/** Grant dependencies for one request. */
export function grantDeps(s: Services, ctx: RequestContext): GrantDeps {
  return { db: s.db, config: s.config, keyring: s.keyring, hasher: s.hasher, metrics: s.metrics, successors: s.successors, ctx, now: () => Math.floor(s.now() / 1000) }
}
