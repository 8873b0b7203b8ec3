import { recordEvent } from '../audit/audit.store.js'
import type { RequestContext } from '../audit/context.js'
import type { Client } from '../clients/client.js'
import type { Db } from '../db/schema.js'
import { looksLikeRefreshToken } from './refresh-token.js'
import { findFamilyByToken, revokeFamilies } from './refresh-tokens.store.js'
import { denylistAccessToken } from './revoked-access-tokens.store.js'
import type { TokenIssuer } from './token-issuer.js'

/** What a revocation request changed: a family, an access token, or nothing. */
export type RevokeTokenResult = 'family' | 'access_token' | 'nothing'

/**
 * RFC 7009 revocation by `client`: a refresh token revokes its whole family; an access token is
 * denylisted by `jti` until it expires; each is audited in the transaction that makes it. Unknown,
 * invalid, expired and other clients' tokens change nothing (§2.2: the caller learns nothing).
 * The type hint is only an optimisation (§2.1): both kinds are recognised by their shape.
 */
export async function revokeToken(db: Db, tokens: TokenIssuer, client: Client, token: string, ctx: RequestContext): Promise<RevokeTokenResult> {
  if (looksLikeRefreshToken(token)) {
    const family = await findFamilyByToken(db, token)
    if (!family || family.clientId !== client.id) return 'nothing'
    const revoked = await db.transaction().execute((trx) => revokeFamilies(trx, { familyId: family.id }, 'revoked_by_client', ctx))
    return revoked.length > 0 ? 'family' : 'nothing'
  }
  if (token.split('.').length !== 3) return 'nothing'
  const claims = await tokens.verifyAccessToken(token, undefined).catch(() => undefined)
  if (!claims || claims.client_id !== client.id) return 'nothing'
  return db.transaction().execute(async (trx) => {
    if (!(await denylistAccessToken(trx, claims.jti, claims.exp))) return 'nothing'
    await recordEvent(trx, { type: 'access_token.revoked', clientId: client.id, familyId: claims.sid, ...ctx, detail: { jti: claims.jti } })
    return 'access_token'
  })
}
