import type { Client } from '../clients/client.js'
import { ACCOUNT_SCOPE } from './scope.js'
import type { GrantDeps, TokenResponse } from './types.js'

/**
 * Audience of an access token: the client's configured resource servers, plus us for `openid`
 * (/userinfo) and `tessera:account` (the self-service API, docs/account.md).
 */
export function audienceFor(client: Client, scope: string[], issuer: string): string[] {
  const aud = client.audience.length > 0 ? [...client.audience] : [issuer]
  if ((scope.includes('openid') || scope.includes(ACCOUNT_SCOPE)) && !aud.includes(issuer)) aud.push(issuer)
  return aud
}

/** Builds the token response for a user (login, password, refresh) or for the client itself. */
export async function issueTokens(
  deps: GrantDeps,
  client: Client,
  scope: string[],
  subject: { userId: string; username?: string; roles?: string[]; authTime: Date; sessionId?: string; idToken?: { sid: string; nonce: string | undefined; claims: Record<string, unknown> } } | undefined,
  refresh?: { token: string; familyExpiresAt: Date },
): Promise<TokenResponse> {
  const { issuer } = deps
  const now = issuer.nowSeconds()
  const at = await issuer.signAccessToken({
    subject: subject?.userId ?? client.id,
    clientId: client.id,
    audience: audienceFor(client, scope, issuer.issuer),
    scope: scope.join(' '),
    roles: subject?.roles,
    sessionId: subject?.sessionId,
  }, now)
  const response: TokenResponse = { access_token: at.token, token_type: 'Bearer', expires_in: issuer.ttlSeconds, scope: scope.join(' ') }
  if (subject && scope.includes('openid')) {
    response.id_token = await issuer.signIdToken({
      subject: subject.userId,
      clientId: client.id,
      authTime: subject.authTime,
      // The authorization-code flow: the SSO session's sid, the nonce, at_hash and profile claims.
      sessionId: subject.idToken?.sid ?? subject.sessionId,
      username: subject.username,
      ...(subject.idToken ? { nonce: subject.idToken.nonce, accessToken: at.token, claims: subject.idToken.claims } : {}),
    }, now, client.idTokenSignedResponseAlg)
  }
  if (refresh) response.refresh = refresh
  return response
}
