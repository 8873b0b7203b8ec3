import { hash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { SigningAlg } from '../config.js'
import { OAuthError } from '../errors.js'
import type { GrantType } from '../grants/grant-types.js'

/** A registered OAuth client. */
export interface Client {
  id: string
  name: string
  /** True for public clients (no secret: browser and native apps). */
  isPublic: boolean
  secretHash: Buffer | null
  /** The secret the last rotation replaced (its SHA-256), still accepted until `previousSecretExpiresAt`. */
  previousSecretHash: Buffer | null
  previousSecretExpiresAt: Date | null
  grantTypes: GrantType[]
  scopes: string[]
  audience: string[]
  refreshDelivery: 'body' | 'cookie'
  allowedOrigins: string[]
  /** The key line its ID tokens are signed with (OIDC Dynamic Client Registration §2; RS256 by default). */
  idTokenSignedResponseAlg: SigningAlg
  /** Requests per second at /token on each instance; null = CLIENT_RATE_LIMIT_PER_SECOND, 0 = no limit. */
  rateLimitPerSecond: number | null
  /** Registered redirect URIs, compared as exact strings (RFC 9700 §2.1). */
  redirectUris: string[]
  /** Where RP-initiated logout may send the browser back to (exact strings). */
  postLogoutRedirectUris: string[]
  /** First-party clients skip the consent page. */
  firstParty: boolean
  /** OIDC Back-Channel Logout 1.0: where logout tokens are POSTed, if anywhere. */
  backchannelLogoutUri: string | null
  /** RFC 9126 §5: this client's authorization requests must be pushed (`/par`). */
  requirePushedAuthorizationRequests: boolean
  disabled: boolean
  createdAt: Date
  updatedAt: Date
  /** Bumped by every change made through the admin API or the CLI: the admin API's `ETag` `"v<N>"`. */
  version: number
}

/** What registering a client takes. */
export interface NewClient {
  name: string
  isPublic: boolean
  grantTypes: GrantType[]
  scopes: string[]
  audience?: string[]
  refreshDelivery?: 'body' | 'cookie'
  allowedOrigins?: string[]
  /** RS256 when absent. */
  idTokenSignedResponseAlg?: SigningAlg
  /** Its own /token rate (requests per second per instance); null or absent = the default, 0 = no limit. */
  rateLimitPerSecond?: number | null
  redirectUris?: string[]
  postLogoutRedirectUris?: string[]
  firstParty?: boolean
  backchannelLogoutUri?: string | null
  requirePushedAuthorizationRequests?: boolean
  id?: string
}

export const CLIENT_SECRET_PREFIX = 'tessera_cs_'
// One-shot digest: no Hash object per client authentication.
const sha256 = (s: string): Buffer => hash('sha256', s, 'buffer')
const DECOY_HASH = sha256('decoy')

/** A new client secret (256 bits from the CSPRNG, prefixed so secret scanners recognise leaked ones) and the hash stored for it. */
export function newClientSecret(): { secret: string; hash: Buffer } {
  const secret = `${CLIENT_SECRET_PREFIX}${randomBytes(32).toString('base64url')}`
  return { secret, hash: sha256(secret) }
}

/**
 * Constant-time check of a presented secret against the stored SHA-256 (or a decoy), and against
 * the secret the last rotation replaced while its overlap lasts (`nowMs`: the injected clock).
 * Both comparisons always run, so the answer takes as long whichever secret matches, if any.
 */
export function secretMatches(client: Client | undefined, presented: string, nowMs: number): boolean {
  const hash = sha256(presented)
  const current = timingSafeEqual(hash, client?.secretHash ?? DECOY_HASH)
  const previousLive = client?.previousSecretHash != null && client.previousSecretExpiresAt != null && nowMs < client.previousSecretExpiresAt.getTime()
  const previous = timingSafeEqual(hash, previousLive ? client.previousSecretHash! : DECOY_HASH)
  return client?.secretHash != null && (current || (previousLive && previous))
}

/** Where a browser request says it comes from: its `Origin` and `Sec-Fetch-Site` headers. */
export interface RequestOrigin {
  origin: string | undefined
  site: string | undefined
}

/**
 * CSRF guard for cookie-authenticated requests (OWASP CSRF cheat sheet, origin verification):
 * the Origin must be one the client lists; `null` and missing origins are refused.
 */
export function requireAllowedOrigin(client: Client, from: RequestOrigin): void {
  const { origin, site } = from
  if (origin === undefined || origin === 'null') throw new OAuthError('access_denied', 'this request must come from an allowed origin', `origin ${origin ?? 'missing'}; sec-fetch-site ${String(site)}`)
  if (!client.allowedOrigins.includes(origin)) throw new OAuthError('access_denied', 'this request must come from an allowed origin', `origin not allowed: ${origin.slice(0, 200)}`)
}
