import { OAuthError } from '../errors.js'
import { issueTokens } from './issue.js'
import { grantScope, parseScope } from './scope.js'
import type { Grant } from './types.js'

/** RFC 6749 §4.4: the client acts for itself; no refresh token (§4.4.3). */
export const clientCredentialsGrant: Grant = async (params, client, deps) => {
  // RFC 6749 §4.4.2: only confidential clients.
  if (client.isPublic) throw new OAuthError('unauthorized_client', 'public clients cannot use client_credentials')
  const scope = grantScope(parseScope(params.scope), client.scopes.filter((s) => s !== 'openid'))
  return issueTokens(deps, client, scope, undefined)
}
