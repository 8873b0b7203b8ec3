import type { ClientCache } from '../clients/client-cache.js'
import type { Db } from '../db/schema.js'
import type { AccessTokenClaims } from './access-token.js'
import { isAccessTokenLive } from './revoked-access-tokens.store.js'

/**
 * Whether a verified access token is still good at Tessera's own endpoints: its client is
 * not disabled, its `jti` is not revoked, and its family (when it has one) is not revoked.
 */
export async function accessTokenIsLive(db: Db, clients: ClientCache, claims: AccessTokenClaims): Promise<boolean> {
  const holder = await clients.get(claims.client_id)
  if (!holder || holder.disabled) return false
  return isAccessTokenLive(db, claims.jti, claims.sid)
}
