import type { RequestContext } from '../audit/context.js'
import type { Client } from '../clients/client.js'
import type { Clock } from '../clock.js'
import { OAuthError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { RefreshTokens } from '../tokens/refresh-tokens.js'
import type { TokenIssuer } from '../tokens/token-issuer.js'
import type { UserLogin } from '../users/user-login.js'
import type { AuthorizationCodes } from '../authorization/authorization-codes.js'

/** Parameters of a token request, each present at most once (duplicates are refused earlier). */
export type TokenParams = Readonly<Record<string, string>>

/** RFC 6749 §5.1 successful response, plus the refresh token kept apart for its delivery. */
export interface TokenResponse {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  scope: string
  id_token?: string
  /** Delivered in the body or as a cookie, per the client's setting; never both. */
  refresh?: { token: string; familyExpiresAt: Date }
}

/** What a grant may use: narrow services, no database, no fastify. */
export interface GrantDeps {
  /** Signs access and ID tokens. */
  readonly issuer: TokenIssuer
  /** Refresh-token families: start one, rotate a token. */
  readonly refreshTokens: RefreshTokens
  /** Password checks. */
  readonly users: UserLogin
  /** Authorization codes: redeem one (RFC 6749 §4.1.3). */
  readonly codes: AuthorizationCodes
  /** Counters; call them only once the work committed. */
  readonly metrics: Pick<Metrics, 'refreshEvent'>
  /** Token timestamps (expiry decisions use the database clock). */
  readonly clock: Clock
  readonly ctx: RequestContext
}

export type Grant = (params: TokenParams, client: Client, deps: GrantDeps) => Promise<TokenResponse>

/** `params[name]`, or `invalid_request` when missing or empty. */
export function requireParam(params: TokenParams, name: string): string {
  const v = params[name]
  if (v === undefined || v === '') throw new OAuthError('invalid_request', `missing parameter: ${name}`)
  return v
}
