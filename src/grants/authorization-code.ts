import { OAuthError } from '../errors.js'
import { issueTokens } from './issue.js'
import { profileClaims } from './profile-claims.js'
import type { Grant } from './types.js'
import { requireParam } from './types.js'

/**
 * RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5): the code, its client, its redirect URI and the
 * verifier are checked in one locked transaction (`deps.codes`); the tokens are issued inside it.
 */
export const authorizationCodeGrant: Grant = async (params, client, deps) => {
  const code = requireParam(params, 'code')
  deps.issuer.ensureCanSign(client.idTokenSignedResponseAlg)
  const outcome = await deps.codes.redeem(code, { clientId: client.id, redirectUri: params.redirect_uri || undefined, verifier: params.code_verifier || undefined }, async (grant, startFamily) => {
    let refresh: { token: string; familyExpiresAt: Date } | undefined
    let familyId: string | undefined
    if (client.grantTypes.includes('refresh_token')) {
      const started = await startFamily()
      refresh = { token: started.refreshToken, familyExpiresAt: started.family.expiresAt }
      familyId = started.family.id
    }
    return issueTokens(deps, client, grant.scope, {
      userId: grant.userId, username: grant.user.username, roles: grant.user.roles, authTime: grant.authTime,
      // Access tokens name their family (checked at Tessera's endpoints); the ID token the SSO session.
      ...(familyId ? { sessionId: familyId } : {}),
      idToken: { sid: grant.sessionId, nonce: grant.nonce, claims: profileClaims(grant.user.profile, grant.scope) },
    }, refresh)
  }, deps.ctx)
  if (outcome.kind === 'issued') {
    if (outcome.response.refresh) deps.metrics.refreshEvent('issued')
    return outcome.response
  }
  // RFC 6749 §5.2: one answer for every bad code; the reason goes to the log only.
  throw new OAuthError('invalid_grant', 'the authorization code is invalid', outcome.kind === 'reused' ? 'code reused: what it issued is revoked' : outcome.reason)
}
