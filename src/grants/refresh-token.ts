import { OAuthError } from '../errors.js'
import { issueTokens } from './issue.js'
import { parseScope } from './scope.js'
import type { Grant } from './types.js'
import { requireParam } from './types.js'

/**
 * RFC 6749 §6 with rotation: every refresh returns a new refresh token. A retry within the
 * grace window (a client that lost the response) gets the same successor and a fresh access
 * token; any other second use of a token revokes its family.
 */
export const refreshTokenGrant: Grant = async (params, client, deps) => {
  const presented = requireParam(params, 'refresh_token')
  // Fail before the token is spent if a line the answer may need cannot sign (503, the token stays
  // good): the ID-token line only for a client that may hold `openid`.
  deps.issuer.ensureCanSign(client.scopes.includes('openid') ? client.idTokenSignedResponseAlg : undefined)
  const requested = parseScope(params.scope)
  const outcome = await deps.refreshTokens.rotate(presented, { clientId: client.id, scope: requested }, deps.ctx)
  if (outcome.kind === 'invalid_scope') throw new OAuthError('invalid_scope', 'the requested scope exceeds the granted scope')
  if (outcome.kind === 'reused') {
    // The rotation statement already revoked the family, and committed.
    deps.metrics.refreshEvent('reuse_detected')
    deps.metrics.refreshEvent('revoked', 'reuse_detected')
  }
  // A retry whose successor this instance cannot derive (it lacks the KEK another instance used,
  // mid-rollout): another instance can answer it, so it is not a dead token.
  if (outcome.kind === 'retry_mismatch') throw new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable, retry later', 'retry_mismatch: successor derived under an unknown KEK')
  if (outcome.kind !== 'rotated' && outcome.kind !== 'retried') throw new OAuthError('invalid_grant', 'refresh token is invalid', outcome.kind)
  deps.metrics.refreshEvent(outcome.kind)
  const { family, user } = outcome
  // The client may have lost scopes since the family was created (SECURITY #60).
  const scope = (requested ?? family.scope.split(' ').filter((s) => s !== '')).filter((s) => client.scopes.includes(s))
  return issueTokens(deps, client, scope, { userId: family.userId, username: user.username, roles: user.roles, authTime: family.authTime, sessionId: family.id, ...(family.ssoSessionId ? { idToken: { sid: family.ssoSessionId, nonce: undefined, claims: {} } } : {}) }, { token: outcome.refreshToken, familyExpiresAt: family.expiresAt })
}
