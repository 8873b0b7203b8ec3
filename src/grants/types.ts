import type { Client } from '../clients/clients.store.js'
import type { Config } from '../config.js'
import type { Db } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import type { Keyring } from '../keys/keyring.js'
import type { Metrics } from '../metrics.js'
import type { RequestContext } from '../tokens/refresh-tokens.store.js'
import type { SuccessorDeriver } from '../tokens/successor.js'
import type { PasswordHasher } from '../users/passwords.js'

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

/** What a grant may use; no fastify, no HTTP. */
export interface GrantDeps {
  readonly db: Db
  readonly config: Config
  readonly keyring: Keyring
  readonly hasher: PasswordHasher
  /** Counters; call them only once the work committed. */
  readonly metrics: Metrics
  readonly successors: SuccessorDeriver
  /** Seconds since the epoch, for token timestamps (expiry decisions use the database clock). */
  now(): number
  readonly ctx: RequestContext
}

export type Grant = (params: TokenParams, client: Client, deps: GrantDeps) => Promise<TokenResponse>

/** `params[name]`, or `invalid_request` when missing or empty. */
export function requireParam(params: TokenParams, name: string): string {
  const v = params[name]
  if (v === undefined || v === '') throw new OAuthError('invalid_request', `missing parameter: ${name}`)
  return v
}
