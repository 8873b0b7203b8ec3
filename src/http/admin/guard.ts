import type { FastifyRequest } from 'fastify'
import { OAuthError } from '../../errors.js'
import type { Services } from '../../services.js'
import type { AccessTokenClaims } from '../../tokens/access-token.js'
import { accessTokenIsLive } from '../../tokens/access-token-status.js'
import { bearerToken } from '../bearer.js'

/** The scope an access token needs for the admin API. */
export const ADMIN_SCOPE = 'tessera:admin'

/**
 * Authenticates an admin API call: a live access token of this server, for this server
 * (`aud` names the issuer), carrying the `tessera:admin` scope. Admin tokens come from the
 * client_credentials grant of a client that has that scope. 401 without a good token,
 * 403 with a good token that lacks the scope.
 */
export async function requireAdmin(s: Services, req: FastifyRequest): Promise<AccessTokenClaims> {
  const token = bearerToken(req)
  const claims = await s.tokens.verifyAccessToken(token, s.config.issuer).catch((e: OAuthError) => {
    throw e.withScheme('Bearer')
  })
  if (!(await accessTokenIsLive(s.db, s.clients, claims))) {
    throw new OAuthError('invalid_token', 'the access token is invalid', 'revoked or holder disabled').withScheme('Bearer')
  }
  // Only a client acting for itself (client_credentials) administers: a token issued to a user
  // carries the user as `sub`, so a client that also logs users in cannot hand its scope on.
  if (claims.sub !== claims.client_id || claims.sid !== undefined) {
    throw new OAuthError('insufficient_scope', 'admin calls need a client_credentials token', 'user token at the admin API').withScheme('Bearer')
  }
  if (!claims.scope?.split(' ').includes(ADMIN_SCOPE)) {
    throw new OAuthError('insufficient_scope', `the ${ADMIN_SCOPE} scope is required`).withScheme('Bearer')
  }
  return claims
}
