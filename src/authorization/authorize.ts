import { randomBytes } from 'node:crypto'
import type { RequestContext } from '../audit/context.js'
import type { Client } from '../clients/client.js'
import type { Clock } from '../clock.js'
import type { Db } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { grantedScopes, insertRequest } from './authorization.store.js'
import { issueCode } from './issue-code.js'
import type { AuthorizationParams } from './request.js'
import { hashSecret } from './sso-session.js'
import type { SsoSession } from './sso-sessions.store.js'

/** What an authorization needs next: the login page, the consent page, or nothing (a code). */
export type NextStep =
  | { kind: 'login' }
  | { kind: 'consent'; scopes: string[] }
  | { kind: 'code'; code: string }

export interface FlowDeps {
  db: Db
  clock: Clock
  codeTtlSeconds: number
}

/**
 * Decides the next step of an authorization (OIDC Core §3.1.2.3–3.1.2.4): a login when there is
 * no session, when `prompt=login` or `max_age` asks for a fresh one (unless it just happened);
 * consent when a third-party client asks for scopes not granted yet, or `prompt=consent`; else a
 * code. With `prompt=none` a needed page is `login_required` / `consent_required` instead.
 */
export async function nextStep(
  deps: FlowDeps,
  client: Client,
  params: AuthorizationParams,
  session: SsoSession | undefined,
  flow: { freshLogin: boolean; consented: boolean; pendingId: string | undefined },
  ctx: RequestContext,
): Promise<NextStep> {
  const tooOld = params.maxAge !== undefined && session !== undefined && deps.clock.nowMs() - session.authTime.getTime() > params.maxAge * 1000
  const needsLogin = session === undefined || (!flow.freshLogin && (params.prompt.includes('login') || tooOld))
  if (needsLogin) {
    if (params.prompt.includes('none')) throw new OAuthError('login_required', 'the user must sign in')
    return { kind: 'login' }
  }
  if (!client.firstParty && !flow.consented) {
    const granted = await grantedScopes(deps.db, session.userId, client.id)
    const missing = params.scope.filter((s) => !granted.includes(s))
    if (missing.length > 0 || params.prompt.includes('consent')) {
      if (params.prompt.includes('none')) throw new OAuthError('consent_required', 'the user must consent')
      // OIDC Core §3.1.2.4 / SECURITY #163: only what is new is asked for (all of it on prompt=consent).
      return { kind: 'consent', scopes: params.prompt.includes('consent') ? params.scope : missing }
    }
  }
  const code = await issueCode(deps.db, {
    clientId: client.id, userId: session.userId, sessionId: session.id, redirectUri: params.redirectUri, codeChallenge: params.codeChallenge,
    nonce: params.nonce, scope: params.scope.join(' '), authTime: session.authTime,
  }, flow.pendingId, deps.codeTtlSeconds, ctx)
  return { kind: 'code', code }
}

/** Stores an interactive pending request bound to the browser's cookie; returns its id and CSRF token. */
export async function startPendingRequest(db: Db, params: AuthorizationParams, browserCookie: string, ttlSeconds: number): Promise<{ id: string; csrfToken: string }> {
  const id = randomBytes(24).toString('base64url')
  const csrfToken = randomBytes(24).toString('base64url')
  await insertRequest(db, { id, clientId: params.clientId, params, pushed: false, browserHash: hashSecret(browserCookie), csrfToken, ttlSeconds })
  return { id, csrfToken }
}

/** Stores a pushed request (RFC 9126 §2.2); returns its `request_uri`. */
export async function pushRequest(db: Db, params: AuthorizationParams, ttlSeconds: number): Promise<string> {
  const id = randomBytes(32).toString('base64url')
  await insertRequest(db, { id, clientId: params.clientId, params, pushed: true, browserHash: null, csrfToken: null, ttlSeconds })
  return `${REQUEST_URI_PREFIX}${id}`
}

export const REQUEST_URI_PREFIX = 'urn:ietf:params:oauth:request_uri:'

/** Words for the scopes on the consent page. */
export function describeScope(scope: string): string {
  switch (scope) {
    case 'openid': return 'Sign you in with your account'
    case 'profile': return 'See your name and username'
    case 'email': return 'See your e-mail address'
    case 'offline_access': return 'Stay signed in when you are away'
    case 'tessera:account': return 'Manage your account: change your password, see and end your sessions'
    default: return `Use the "${scope}" permission`
  }
}
