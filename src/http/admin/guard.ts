import type { FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { OAuthError } from '../../errors.js'
import type { Services } from '../../services.js'
import type { AccessTokenClaims } from '../../tokens/access-token.js'
import { accessTokenIsLive } from '../../tokens/access-token-status.js'
import { bearerToken } from '../bearer.js'

/** The scope that grants the whole admin API. */
export const ADMIN_SCOPE = 'tessera:admin'

/** An area of the admin API with scopes of its own. */
export type AdminArea = 'users' | 'clients'

/** What an admin call needs: an area (none: the full `tessera:admin` scope) and whether it writes. */
export interface AdminRequirement {
  area?: AdminArea | undefined
  /** Default: every method but GET and HEAD writes. */
  write?: boolean | undefined
}

/**
 * The scopes that allow a call (docs/admin-users.md "Admin API conventions"): `tessera:admin`
 * everything; `tessera:admin:<area>` the area; `tessera:admin:<area>:read` the area's reads only.
 */
export function scopesAllowing(req: AdminRequirement & { write: boolean }): string[] {
  if (!req.area) return [ADMIN_SCOPE]
  const area = `${ADMIN_SCOPE}:${req.area}`
  return req.write ? [ADMIN_SCOPE, area] : [ADMIN_SCOPE, area, `${area}:read`]
}

/**
 * Authenticates an admin API call: a live access token of this server, for this server
 * (`aud` names the issuer), issued to a client acting for itself (client_credentials), carrying a
 * scope that allows the call (`scopesAllowing`). Admin tokens come from the client_credentials
 * grant of a client that has that scope. 401 without a good token, 403 with a good token that
 * lacks the scope, or with a token issued to a user. Without options: the full `tessera:admin`.
 */
export async function requireAdmin(s: Services, req: FastifyRequest, need: AdminRequirement = {}): Promise<AccessTokenClaims> {
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
  const write = need.write ?? !(req.method === 'GET' || req.method === 'HEAD')
  const allowed = scopesAllowing({ area: need.area, write })
  const held = claims.scope?.split(' ') ?? []
  if (!allowed.some((a) => held.includes(a))) {
    const description = allowed.length === 1 ? `the ${ADMIN_SCOPE} scope is required` : `one of the scopes ${allowed.join(', ')} is required`
    throw new OAuthError('insufficient_scope', description).withScheme('Bearer')
  }
  return claims
}

const admins = new WeakMap<FastifyRequest, AccessTokenClaims>()

/**
 * `requireAdmin` as a route's `onRequest` hook: the guard runs before the body is parsed and
 * validated (no token → 401, not 400). The handler reads the caller with `adminOf(req)`.
 */
export function adminGuard(s: Services, need: AdminRequirement = {}): onRequestAsyncHookHandler {
  return async (req) => {
    admins.set(req, await requireAdmin(s, req, need))
  }
}

/** The admin token's claims of a request that passed `adminGuard`. */
export function adminOf(req: FastifyRequest): AccessTokenClaims {
  const claims = admins.get(req)
  if (!claims) throw new Error('adminOf: the route has no adminGuard')
  return claims
}
