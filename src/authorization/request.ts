import type { Client } from '../clients/client.js'
import { OAuthError } from '../errors.js'
import { grantScope, parseScope } from '../grants/scope.js'
import { CODE_CHALLENGE } from './pkce.js'

export type ResponseMode = 'query' | 'form_post'
export type Prompt = 'none' | 'login' | 'consent'

/** Where an authorization response goes: known only once the redirect URI is trusted. */
export interface ResponseTarget {
  redirectUri: string
  responseMode: ResponseMode
  state: string | undefined
}

/** A validated authorization request (OIDC Core §3.1.2.1), as stored while it is pending. */
export interface AuthorizationParams extends ResponseTarget {
  clientId: string
  scope: string[]
  codeChallenge: string
  nonce: string | undefined
  prompt: Prompt[]
  maxAge: number | undefined
  loginHint: string | undefined
}

/** An error to send back to the client's (trusted) redirect URI, with `state` and `iss`. */
export class RedirectError extends Error {
  constructor(readonly error: OAuthError, readonly target: ResponseTarget) {
    super(error.message)
    this.name = 'RedirectError'
  }
}

export const MAX_STATE_LENGTH = 4096
const MAX_NONCE_LENGTH = 512
const MAX_LOGIN_HINT_LENGTH = 256

/**
 * The redirect URI of a request: an exact string match with one the client registered (RFC 9700
 * §2.1, §4.1.3), or the only one registered when the request names none (OAuth 2.1 §2.3.2).
 * Throws an `invalid_request` that is shown on an error page, never redirected (RFC 6749 §4.1.2.1).
 */
export function trustedRedirectUri(raw: Readonly<Record<string, string>>, client: Client): string {
  const asked = raw.redirect_uri
  if (asked === undefined || asked === '') {
    if (client.redirectUris.length === 1) return client.redirectUris[0]!
    throw new OAuthError('invalid_request', 'the redirect_uri parameter is missing')
  }
  if (!client.redirectUris.includes(asked)) throw new OAuthError('invalid_request', 'the redirect_uri is not registered for this client', `unregistered redirect_uri: ${asked.slice(0, 200)}`)
  return asked
}

/** The response target of a request whose redirect URI is trusted: mode and state (state may be bad; it is echoed only if sane). */
export function responseTarget(raw: Readonly<Record<string, string>>, redirectUri: string): ResponseTarget {
  const mode = raw.response_mode === 'form_post' ? 'form_post' : 'query'
  const state = raw.state === undefined || raw.state === '' || raw.state.length > MAX_STATE_LENGTH ? undefined : raw.state
  return { redirectUri, responseMode: mode, state }
}

/**
 * Validates the rest of an authorization request once its target is trusted. Every failure is
 * an OAuthError sent back to the client (RFC 6749 §4.1.2.1): `unsupported_response_type`,
 * `invalid_request` (PKCE, malformed values), `invalid_scope`, `unauthorized_client`.
 */
export function validateAuthorization(raw: Readonly<Record<string, string>>, client: Client, target: ResponseTarget): AuthorizationParams {
  if (raw.state !== undefined && raw.state.length > MAX_STATE_LENGTH) throw new OAuthError('invalid_request', `state is longer than ${MAX_STATE_LENGTH} characters`)
  const responseType = raw.response_type
  if (responseType === undefined || responseType === '') throw new OAuthError('invalid_request', 'missing parameter: response_type')
  // OAuth 2.1 §10.1, RFC 9700 §2.1.2: the code flow only; no implicit or hybrid responses.
  if (responseType !== 'code') throw new OAuthError('unsupported_response_type', 'only response_type=code is supported')
  if (raw.response_mode !== undefined && raw.response_mode !== 'query' && raw.response_mode !== 'form_post') throw new OAuthError('invalid_request', 'response_mode must be query or form_post')
  if (!client.grantTypes.includes('authorization_code')) throw new OAuthError('unauthorized_client', 'this client may not use the authorization code flow')
  // RFC 7636, OAuth 2.1 §4.1.1: PKCE for every client, S256 only ("plain" is refused).
  const challenge = raw.code_challenge
  if (challenge === undefined || challenge === '') throw new OAuthError('invalid_request', 'code_challenge is required (PKCE, S256)')
  if (raw.code_challenge_method !== 'S256') throw new OAuthError('invalid_request', 'code_challenge_method must be S256')
  if (!CODE_CHALLENGE.test(challenge)) throw new OAuthError('invalid_request', 'code_challenge must be 43 base64url characters (S256)')
  const scope = grantScope(parseScope(raw.scope), client.scopes)
  const nonce = raw.nonce === '' ? undefined : raw.nonce
  if (nonce !== undefined && nonce.length > MAX_NONCE_LENGTH) throw new OAuthError('invalid_request', 'nonce is too long')
  const prompt = parsePrompt(raw.prompt)
  let maxAge: number | undefined
  if (raw.max_age !== undefined && raw.max_age !== '') {
    if (!/^\d{1,9}$/.test(raw.max_age)) throw new OAuthError('invalid_request', 'max_age must be a non-negative integer')
    maxAge = Number(raw.max_age)
  }
  const loginHint = raw.login_hint === '' ? undefined : raw.login_hint
  if (loginHint !== undefined && loginHint.length > MAX_LOGIN_HINT_LENGTH) throw new OAuthError('invalid_request', 'login_hint is too long')
  return { ...target, clientId: client.id, scope, codeChallenge: challenge, nonce, prompt, maxAge, loginHint }
}

/** OIDC Core §3.1.2.1: space-separated; `none` never with another value. */
function parsePrompt(raw: string | undefined): Prompt[] {
  if (raw === undefined || raw === '') return []
  const values = [...new Set(raw.split(' ').filter((p) => p !== ''))]
  for (const v of values) if (v !== 'none' && v !== 'login' && v !== 'consent') throw new OAuthError('invalid_request', 'prompt may hold none, login and consent')
  if (values.includes('none') && values.length > 1) throw new OAuthError('invalid_request', 'prompt=none cannot be combined with another value')
  return values as Prompt[]
}

/** The response parameters in order: the result, then `state` (when sent) and `iss`. */
export function responseParams(target: ResponseTarget, params: Record<string, string>): Record<string, string> {
  return { ...params, ...(target.state !== undefined ? { state: target.state } : {}) }
}
