import type { Client } from '../clients/client.js'
import { OAuthError } from '../errors.js'
import { issueTokens } from './issue.js'
import { grantScope, parseScope } from './scope.js'
import type { Grant, GrantDeps, TokenResponse } from './types.js'
import { requireParam } from './types.js'

/** Password login: a new family (one login on one device) every time, never an old one. */
export async function passwordLogin(deps: GrantDeps, client: Client, username: string, password: string, rawScope: string | undefined): Promise<TokenResponse> {
  if (!client.grantTypes.includes('password')) throw new OAuthError('unauthorized_client', 'this client may not log users in with a password')
  const scope = grantScope(parseScope(rawScope), client.scopes)
  const user = await deps.users.authenticate(client.id, username, password, deps.ctx)
  deps.issuer.ensureCanSign(scope.includes('openid') ? client.idTokenSignedResponseAlg : undefined) // 503 before any write if a line it needs cannot sign
  let refresh: { token: string; familyExpiresAt: Date } | undefined
  let sessionId: string | undefined
  let authTime = new Date(deps.clock.nowSeconds() * 1000)
  if (client.grantTypes.includes('refresh_token')) {
    // The family's creation audits the login in the same statement.
    const created = await deps.refreshTokens.startFamily({ clientId: client.id, userId: user.id, scope: scope.join(' ') }, deps.ctx)
    refresh = { token: created.refreshToken, familyExpiresAt: created.family.expiresAt }
    sessionId = created.family.id
    authTime = created.family.authTime
  } else {
    await deps.users.recordLogin(client.id, user.id, deps.ctx)
  }
  const tokens = await issueTokens(deps, client, scope, { userId: user.id, username: user.username, roles: user.roles, authTime, sessionId }, refresh)
  if (refresh) deps.metrics.refreshEvent('issued')
  return tokens
}

/** RFC 6749 §4.3, for first-party clients that enable it. */
export const passwordGrant: Grant = (params, client, deps) =>
  passwordLogin(deps, client, requireParam(params, 'username'), requireParam(params, 'password'), params.scope)
