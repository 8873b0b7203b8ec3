import { createHash, randomUUID } from 'node:crypto'
import { CompactSign, errors, jwtVerify, type JWTPayload } from 'jose'
import { SIGNING_ALGS } from '../config.js'
import { OAuthError } from '../errors.js'
import type { Keyring } from '../keys/keyring.js'

/** Claims of an RFC 9068 access token. */
export interface AccessTokenClaims extends JWTPayload {
  iss: string
  sub: string
  aud: string | string[]
  exp: number
  iat: number
  jti: string
  client_id: string
  scope?: string
  roles?: string[]
  /** The refresh-token family (session) the token belongs to, when there is one. */
  sid?: string
}

export interface IssueInput {
  subject: string
  clientId: string
  audience: string[]
  scope: string
  roles?: string[] | undefined
  sessionId?: string | undefined
}

const utf8 = new TextEncoder()

/**
 * A compact JWS of a JWT claims set (RFC 7519 §7.1: the UTF-8 of its JSON as the payload), signed
 * by jose. `SignJWT` does the same plus a deep copy of the claims and a setter per claim (≈2 µs of
 * a ≈60 µs ES256 signature here) that buy nothing: every claim is built by the callers below
 * (integer `iat`/`exp`, string `iss`/`sub`/`jti`).
 */
function signJwt(claims: Record<string, unknown>, header: { alg: string; kid: string; typ: string }, key: Parameters<CompactSign['sign']>[0]): Promise<string> {
  return new CompactSign(utf8.encode(JSON.stringify(claims))).setProtectedHeader(header).sign(key)
}

/** Signs an RFC 9068 JWT access token with the access-token line's active key (`kid` in the header). */
export async function issueAccessToken(keyring: Keyring, issuer: string, ttlSeconds: number, nowSeconds: number, input: IssueInput) {
  const signer = keyring.activeSigner()
  const payload: Record<string, unknown> = { client_id: input.clientId }
  if (input.scope) payload.scope = input.scope
  if (input.roles && input.roles.length > 0) payload.roles = input.roles
  if (input.sessionId) payload.sid = input.sessionId
  const jti = randomUUID()
  const token = await signJwt(
    { ...payload, iss: issuer, sub: input.subject, aud: input.audience.length === 1 ? input.audience[0]! : input.audience, iat: nowSeconds, exp: nowSeconds + ttlSeconds, jti },
    { alg: signer.alg, kid: signer.kid, typ: 'at+jwt' },
    signer.key,
  )
  return { token, jti, expiresAt: nowSeconds + ttlSeconds }
}

export interface IdTokenInput {
  subject: string
  clientId: string
  authTime: Date
  sessionId?: string | undefined
  username?: string | undefined
  /** OIDC Core §3.1.2.1: the authorization request's nonce, echoed. */
  nonce?: string | undefined
  /** The access token issued with it: `at_hash` (OIDC Core §3.3.2.11). */
  accessToken?: string | undefined
  /** Profile claims released by scope (`name`, `email`, `email_verified`). */
  claims?: Record<string, unknown> | undefined
}

/** OIDC Core §3.3.2.11: the left half of the hash of the access token, base64url (SHA-512 for EdDSA/Ed25519). */
export function atHash(accessToken: string, alg: string): string {
  const digest = createHash(alg === 'EdDSA' ? 'sha512' : 'sha256').update(accessToken, 'ascii').digest()
  return digest.subarray(0, digest.length / 2).toString('base64url')
}

/** Signs an OIDC ID token (OIDC Core §2) for `openid` requests, with the active key of line `alg`. */
export async function issueIdToken(keyring: Keyring, issuer: string, ttlSeconds: number, nowSeconds: number, alg: string, input: IdTokenInput) {
  const signer = keyring.activeSigner(alg)
  const claims: Record<string, unknown> = { ...input.claims, auth_time: Math.floor(input.authTime.getTime() / 1000), azp: input.clientId }
  if (input.sessionId) claims.sid = input.sessionId
  if (input.username) claims.preferred_username = input.username
  if (input.nonce !== undefined) claims.nonce = input.nonce
  if (input.accessToken !== undefined) claims.at_hash = atHash(input.accessToken, signer.alg)
  return signJwt(
    { ...claims, iss: issuer, sub: input.subject, aud: input.clientId, iat: nowSeconds, exp: nowSeconds + ttlSeconds },
    { alg: signer.alg, kid: signer.kid, typ: 'JWT' },
    signer.key,
  )
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const MAX_LIFETIME_SECONDS = 86_400

// Generous upper bound on a compact JWS we would ever issue; anything longer is garbage.
const MAX_TOKEN_LENGTH = 8192

/**
 * Verifies an access token for Tessera's own endpoints: signature by a published key
 * with its pinned algorithm, `typ: at+jwt`, exact issuer, our audience, time claims.
 * Every failure is `invalid_token`; the reason goes to `detail` only.
 */
export async function verifyAccessToken(keyring: Keyring, issuer: string, audience: string | undefined, token: string, nowSeconds: number): Promise<AccessTokenClaims> {
  if (token.length > MAX_TOKEN_LENGTH) throw new OAuthError('invalid_token', 'the access token is invalid', 'token too long')
  try {
    const { payload, protectedHeader } = await jwtVerify(token, keyring.verificationKey, {
      issuer,
      ...(audience !== undefined ? { audience } : {}),
      typ: 'at+jwt',
      algorithms: [...SIGNING_ALGS],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id'],
      currentDate: new Date(nowSeconds * 1000),
      clockTolerance: 5,
      maxTokenAge: MAX_LIFETIME_SECONDS,
    })
    // RFC 7797 unencoded payloads have no place in a JWT, with or without `crit`.
    if ('b64' in protectedHeader) throw new Error('b64 header')
    // NumericDates we issue are whole seconds, and no token of ours lives longer than a day.
    const { exp, iat } = payload
    if (!Number.isSafeInteger(exp) || !Number.isSafeInteger(iat) || exp! - iat! <= 0 || exp! - iat! > MAX_LIFETIME_SECONDS) throw new Error('implausible exp/iat')
    if (typeof payload.client_id !== 'string' || typeof payload.sub !== 'string' || typeof payload.jti !== 'string') {
      throw new Error('claims of the wrong type')
    }
    if (payload.sid !== undefined && (typeof payload.sid !== 'string' || !UUID.test(payload.sid))) throw new Error('sid of the wrong type')
    return payload as AccessTokenClaims
  } catch (err) {
    const reason = err instanceof errors.JOSEError ? err.code : err instanceof Error ? err.message : 'unknown'
    throw new OAuthError('invalid_token', 'the access token is invalid', reason)
  }
}

/** What an `id_token_hint` says (OIDC RP-Initiated Logout 1.0 §2). */
export interface IdTokenHint {
  sub: string
  aud: string
  sid: string | undefined
}

/**
 * Verifies one of our ID tokens presented as `id_token_hint`: our signature with the key's pinned
 * algorithm, exact issuer, `typ: JWT` (an access token, `at+jwt`, is refused: RFC 8725 §3.12), one
 * audience. An expired hint is accepted (the logout spec allows it), one from the future is not.
 */
export async function verifyIdTokenHint(keyring: Keyring, issuer: string, token: string, nowSeconds: number): Promise<IdTokenHint> {
  if (token.length > MAX_TOKEN_LENGTH) throw new OAuthError('invalid_request', 'the id_token_hint is invalid', 'token too long')
  try {
    const { payload, protectedHeader } = await jwtVerify(token, keyring.verificationKey, {
      issuer,
      typ: 'JWT',
      algorithms: [...SIGNING_ALGS],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
      // Expired hints are fine; `iat` must still not lie in the future.
      currentDate: new Date(nowSeconds * 1000),
      clockTolerance: 366 * 86_400,
    })
    if ('b64' in protectedHeader) throw new Error('b64 header')
    if (typeof payload.iat !== 'number' || payload.iat > nowSeconds + 5) throw new Error('iat in the future')
    const aud = Array.isArray(payload.aud) ? (payload.aud.length === 1 ? payload.aud[0] : undefined) : payload.aud
    if (typeof aud !== 'string' || typeof payload.sub !== 'string') throw new Error('claims of the wrong type')
    if ('client_id' in payload || 'scope' in payload) throw new Error('an access token, not an ID token')
    const sid = typeof payload.sid === 'string' ? payload.sid : undefined
    return { sub: payload.sub, aud, sid }
  } catch (err) {
    const reason = err instanceof errors.JOSEError ? err.code : err instanceof Error ? err.message : 'unknown'
    throw new OAuthError('invalid_request', 'the id_token_hint is invalid', reason)
  }
}

/** OIDC Back-Channel Logout 1.0 §2.4: a logout token for one client, signed on its ID-token line. */
export async function issueLogoutToken(keyring: Keyring, issuer: string, nowSeconds: number, alg: string, input: { clientId: string; subject: string; sessionId: string }): Promise<string> {
  const signer = keyring.activeSigner(alg)
  return signJwt(
    {
      sid: input.sessionId,
      events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
      iss: issuer,
      sub: input.subject,
      aud: input.clientId,
      iat: nowSeconds,
      exp: nowSeconds + 120,
      jti: randomUUID(),
    },
    { alg: signer.alg, kid: signer.kid, typ: 'logout+jwt' },
    signer.key,
  )
}
