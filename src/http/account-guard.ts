import type { FastifyRequest } from 'fastify'
import { OAuthError } from '../errors.js'
import { ACCOUNT_SCOPE } from '../grants/scope.js'
import type { Services } from '../services.js'
import { UUID, type AccessTokenClaims } from '../tokens/access-token.js'
import { accessTokenIsLive } from '../tokens/access-token-status.js'
import { bearerToken } from './bearer.js'

/** Who calls the self-service account API: a user, through a client, in a session (maybe). */
export interface AccountCaller {
  userId: string
  /** The client the token was issued to. */
  clientId: string
  /** The token's refresh-token family (`sid`): the caller's own session; undefined without one. */
  familyId: string | undefined
  claims: AccessTokenClaims
}

/**
 * Authenticates a self-service call (docs/account.md): a live access token of this server, for
 * this server (`aud` names the issuer), issued to a user (not a client_credentials token),
 * carrying the `tessera:account` scope. 401 `invalid_token` without a good token (missing,
 * malformed, expired, revoked, its family revoked, its user or client disabled), 403
 * `insufficient_scope` for a client's own token or one without the scope.
 */
export async function requireAccount(s: Services, req: FastifyRequest): Promise<AccountCaller> {
  const token = bearerToken(req)
  const claims = await s.tokens.verifyAccessToken(token, s.config.issuer).catch((e: OAuthError) => {
    throw e.withScheme('Bearer')
  })
  // Also checks that the user (a user's token) is enabled.
  if (!(await accessTokenIsLive(s.db, s.clients, claims))) {
    throw new OAuthError('invalid_token', 'the access token is invalid', 'revoked or holder disabled').withScheme('Bearer')
  }
  if (claims.sub === claims.client_id || !UUID.test(claims.sub)) {
    throw new OAuthError('insufficient_scope', 'account calls need a token issued to a user', 'client token at the account API').withScheme('Bearer')
  }
  if (!claims.scope?.split(' ').includes(ACCOUNT_SCOPE)) {
    throw new OAuthError('insufficient_scope', `the ${ACCOUNT_SCOPE} scope is required`).withScheme('Bearer')
  }
  return { userId: claims.sub, clientId: claims.client_id, familyId: claims.sid, claims }
}

const callers = new WeakMap<FastifyRequest, AccountCaller>()

/**
 * The `onRequest` hook of every account route: authorisation runs before the body is parsed or
 * validated (no token: 401, never a 400 about the body).
 */
export function accountGuard(s: Services) {
  return async (req: FastifyRequest): Promise<void> => {
    callers.set(req, await requireAccount(s, req))
  }
}

/** The caller `accountGuard` authenticated for this request. */
export function accountCaller(req: FastifyRequest): AccountCaller {
  const caller = callers.get(req)
  if (!caller) throw new Error('the account guard did not run for this route')
  return caller
}
