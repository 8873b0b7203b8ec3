import type { ClientCache } from '../clients/client-cache.js'
import type { Client } from '../clients/client.js'
import type { Executor } from '../db/schema.js'
import { accessTokenIsLive } from './access-token-status.js'
import { findRefreshTokenState } from './refresh-tokens.store.js'
import type { TokenIssuer } from './token-issuer.js'

/** RFC 7662 §2.2: anything Tessera will not vouch for is this, and nothing more. */
export const INACTIVE = Object.freeze({ active: false as const })

/** The answer for a live access token (RFC 7662 §2.2, with the JWT's claims). */
export interface ActiveAccessToken {
  active: true
  token_type: 'Bearer'
  scope: string | undefined
  client_id: string
  sub: string
  aud: string | string[]
  iss: string
  exp: number
  iat: number
  jti: string
  sid?: string
  roles?: string[]
}

/** The answer for a live refresh token, given to its holder only. */
export interface ActiveRefreshToken {
  active: true
  token_type: 'refresh_token'
  scope: string
  client_id: string
  sub: string
  exp: number
  iat: number
  /** The family, as access tokens of the family carry it in `sid`. */
  sid: string
}

/** What `/introspect` sends. */
export type Introspection = typeof INACTIVE | ActiveAccessToken | ActiveRefreshToken

/** What introspection reads: the database (never in a transaction of its own), Tessera's JWTs, the clients. */
export interface IntrospectDeps {
  db: Executor
  tokens: TokenIssuer
  clients: ClientCache
}

const seconds = (d: Date) => Math.floor(d.getTime() / 1000)

/**
 * RFC 7662 introspection by an authenticated `caller`. Reads only: it never spends, rotates or
 * locks anything. `token_type_hint` (§2.1) only says where to look first; an unknown hint is
 * ignored and both kinds are searched (they are told apart by shape, so that costs nothing).
 */
export async function introspectToken(deps: IntrospectDeps, caller: Client, token: string, hint: string | undefined): Promise<Introspection> {
  const lookups = hint === 'refresh_token' ? [refreshToken, accessToken] : [accessToken, refreshToken]
  for (const lookup of lookups) {
    const found = await lookup(deps, caller, token)
    if (found) return found
  }
  return INACTIVE
}

/**
 * A live access token of this server, held by the caller or naming the caller's client id in its
 * audience (a resource server registered as a client, RFC 7662 §1).
 */
async function accessToken(deps: IntrospectDeps, caller: Client, token: string): Promise<ActiveAccessToken | undefined> {
  if (token.split('.').length !== 3) return undefined
  const claims = await deps.tokens.verifyAccessToken(token, undefined).catch(() => undefined)
  if (!claims) return undefined
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
  if (claims.client_id !== caller.id && !aud.includes(caller.id)) return undefined
  if (!(await accessTokenIsLive(deps.db, deps.clients, claims))) return undefined
  return {
    active: true,
    token_type: 'Bearer',
    scope: claims.scope,
    client_id: claims.client_id,
    sub: claims.sub,
    aud: claims.aud,
    iss: claims.iss,
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    ...(claims.sid ? { sid: claims.sid } : {}),
    ...(claims.roles ? { roles: claims.roles } : {}),
  }
}

/**
 * A refresh token that would rotate now: the caller's own (only the holder may learn about it),
 * not used yet, its family not revoked, within its idle and absolute limits by the database's
 * clock (as rotation judges them), its user not disabled. A used token inside the grace window is
 * not active: it is no longer the family's token, even though a retry with it would still succeed.
 */
async function refreshToken(deps: IntrospectDeps, caller: Client, token: string): Promise<ActiveRefreshToken | undefined> {
  const state = await findRefreshTokenState(deps.db, token)
  if (!state || state.clientId !== caller.id) return undefined
  if (state.used || state.revoked || state.expired || state.userDisabled) return undefined
  return {
    active: true,
    token_type: 'refresh_token',
    scope: state.scope,
    client_id: state.clientId,
    sub: state.userId,
    exp: seconds(state.expiresAt),
    iat: seconds(state.issuedAt),
    sid: state.familyId,
  }
}
