import type { ClientCache } from '../clients/client-cache.js'
import type { Executor } from '../db/schema.js'
import { UUID, type AccessTokenClaims } from './access-token.js'
import { findLiveTokenUser, isAccessTokenLive } from './revoked-access-tokens.store.js'

/**
 * Whether a verified access token is still good at Tessera's own endpoints: its client is
 * not disabled, its `jti` is not revoked, its family (when it has one) is not revoked, and its
 * user (when it has one: `sub` a user id, not the client's) is not disabled.
 */
export async function accessTokenIsLive(db: Executor, clients: ClientCache, claims: AccessTokenClaims): Promise<boolean> {
  if (!(await holderEnabled(clients, claims))) return false
  const userId = claims.sub !== claims.client_id && UUID.test(claims.sub) ? claims.sub : undefined
  return isAccessTokenLive(db, claims.jti, claims.sid, userId)
}

/** The user of a still-good access token (see above), or undefined; one round trip. */
export async function liveTokenUser(db: Executor, clients: ClientCache, claims: AccessTokenClaims) {
  if (!UUID.test(claims.sub) || !(await holderEnabled(clients, claims))) return undefined
  return findLiveTokenUser(db, claims.sub, claims.jti, claims.sid)
}

async function holderEnabled(clients: ClientCache, claims: AccessTokenClaims): Promise<boolean> {
  const holder = await clients.get(claims.client_id)
  return holder !== undefined && !holder.disabled
}
