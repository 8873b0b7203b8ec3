import type { Client } from '../clients/clients.store.js'
import { recordEvent } from '../audit/audit.store.js'
import { OAuthError } from '../errors.js'
import { createFamily } from '../tokens/refresh-tokens.store.js'
import { MAX_PASSWORD_BYTES } from '../users/passwords.js'
import { findUserByUsername, updatePasswordHash } from '../users/users.store.js'
import { issueTokens } from './issue.js'
import { grantScope, parseScope } from './scope.js'
import type { Grant, GrantDeps, TokenResponse } from './types.js'
import { requireParam } from './types.js'

const MAX_USERNAME_LENGTH = 256

/**
 * Checks a username and password. Unknown, disabled and wrong-password users get the same
 * error after the same amount of argon2id work, so neither answer nor timing tells them apart.
 */
export async function authenticateUser(deps: GrantDeps, client: Client, username: string, password: string) {
  if (username.length > MAX_USERNAME_LENGTH) throw new OAuthError('invalid_request', 'username is too long')
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) throw new OAuthError('invalid_request', 'password is too long')
  const user = username.includes('\0') ? undefined : await findUserByUsername(deps.db, username)
  const ok = user && !user.disabled && password !== '' ? await deps.hasher.verify(user.passwordHash, password) : await deps.hasher.verifyDecoy(password)
  if (!user || !ok || user.disabled) {
    await recordEvent(deps.db, { type: 'login.failed', clientId: client.id, userId: user?.id, ...deps.ctx, detail: { reason: !user ? 'unknown_user' : user.disabled ? 'disabled' : 'bad_password' } })
    throw new OAuthError('invalid_grant', 'invalid username or password')
  }
  // Parameters changed since this hash was made: upgrade it now that we know the password.
  if (deps.hasher.needsRehash(user.passwordHash)) await updatePasswordHash(deps.db, user.id, await deps.hasher.hash(password))
  return user
}

/** Password login: a new family (one login on one device) every time, never an old one. */
export async function passwordLogin(deps: GrantDeps, client: Client, username: string, password: string, rawScope: string | undefined): Promise<TokenResponse> {
  if (!client.grantTypes.includes('password')) throw new OAuthError('unauthorized_client', 'this client may not log users in with a password')
  const scope = grantScope(parseScope(rawScope), client.scopes)
  const user = await authenticateUser(deps, client, username, password)
  deps.keyring.activeSigner() // 503 before any write if nothing can sign
  let refresh: { token: string; familyExpiresAt: Date } | undefined
  let sessionId: string | undefined
  let authTime = new Date(deps.now() * 1000)
  if (client.grantTypes.includes('refresh_token')) {
    const created = await createFamily(
      deps.db,
      { clientId: client.id, userId: user.id, scope: scope.join(' ') },
      { idleSeconds: deps.config.refreshTokenIdleTtlSeconds, absoluteSeconds: deps.config.refreshTokenAbsoluteTtlSeconds },
      deps.ctx,
    )
    refresh = { token: created.refreshToken, familyExpiresAt: created.family.expiresAt }
    sessionId = created.family.id
    authTime = created.family.authTime
  } else {
    // With a family, createFamily audits the login in the transaction that creates it.
    await recordEvent(deps.db, { type: 'login.succeeded', clientId: client.id, userId: user.id, ...deps.ctx })
  }
  const tokens = await issueTokens(deps, client, scope, { userId: user.id, username: user.username, roles: user.roles, authTime, sessionId }, refresh)
  if (refresh) deps.metrics.refreshEvent('issued')
  return tokens
}

/** RFC 6749 §4.3, for first-party clients that enable it. */
export const passwordGrant: Grant = (params, client, deps) =>
  passwordLogin(deps, client, requireParam(params, 'username'), requireParam(params, 'password'), params.scope)
