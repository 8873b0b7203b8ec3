import { createHash, randomBytes } from 'node:crypto'
import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext, type RequestContext } from '../audit/context.js'
import type { Db, Trx } from '../db/schema.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { insertSsoSession, markSsoSessionsRevoked, sessionClients, ssoSessionIdByHash, touchSsoSession, type SsoLifetimes, type SsoSession, type SsoSessionFilter } from './sso-sessions.store.js'

/** SHA-256 of a browser-held secret (SSO cookie, browser binding): the only form stored. */
export function hashSecret(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

/** A fresh 256-bit browser secret, base64url. */
export function newBrowserSecret(): string {
  return randomBytes(32).toString('base64url')
}

const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/

/** The live session a cookie value points at (idle expiry moved forward), or undefined. */
export async function ssoSessionFromCookie(db: Db, cookie: string | undefined, lifetimes: SsoLifetimes): Promise<SsoSession | undefined> {
  if (cookie === undefined || !COOKIE_VALUE.test(cookie)) return undefined
  return touchSsoSession(db, hashSecret(cookie), lifetimes.idleSeconds)
}

/**
 * Starts an SSO session after a successful login: always a new random id and cookie (no fixation,
 * ASVS 7.2.4). The session the browser held before, if any, ends (`replaced`) without logging its
 * apps out. Audited in the same transaction.
 */
export async function startSsoSession(db: Db, userId: string, previousCookie: string | undefined, lifetimes: SsoLifetimes, ctx: RequestContext): Promise<{ session: SsoSession; cookie: string }> {
  const cookie = newBrowserSecret()
  return db.transaction().execute(async (trx) => {
    if (previousCookie !== undefined && COOKIE_VALUE.test(previousCookie)) {
      const old = await ssoSessionIdByHash(trx, hashSecret(previousCookie))
      if (old) await markSsoSessionsRevoked(trx, { id: old }, 'replaced')
    }
    const session = await insertSsoSession(trx, hashSecret(cookie), userId, lifetimes, ctx)
    await recordEvent(trx, { type: 'sso_session.started', userId, ...ctx, detail: { sid: session.id } })
    return { session, cookie }
  })
}

/** A client to send a back-channel logout token to. */
export interface LogoutTarget {
  clientId: string
  uri: string
  alg: string
}

/** What ending a session did: the families it revoked and whom to tell. */
export interface EndedSession {
  sessionId: string
  userId: string
  revokedFamilies: number
  backchannel: LogoutTarget[]
}

/**
 * Ends SSO sessions (one, or all of a user's) and revokes every refresh-token family issued under
 * them, in one transaction with their audit events. Returns the ended sessions with the clients
 * that registered a back-channel logout URI (the caller notifies them after the commit).
 */
export async function endSsoSessions(db: Db, filter: SsoSessionFilter, reason: SsoEndReason, ctx: AuditContext): Promise<EndedSession[]> {
  return db.transaction().execute((trx) => endSsoSessionsIn(trx, filter, reason, ctx))
}

/** Why SSO sessions end (stored as `revoked_reason`, audited). */
export type SsoEndReason = 'logout' | 'admin' | 'user_disabled' | 'user_deleted' | 'password_changed' | 'password_set'

/** `endSsoSessions` inside the caller's transaction (a use case that commits more with it). */
export async function endSsoSessionsIn(trx: Trx, filter: SsoSessionFilter, reason: SsoEndReason, ctx: AuditContext): Promise<EndedSession[]> {
  const ended = await markSsoSessionsRevoked(trx, filter, reason)
  const out: EndedSession[] = []
  for (const s of ended) {
    const families = await revokeFamilies(trx, { ssoSessionId: s.id }, 'sso_logout', ctx)
    const clients = await sessionClients(trx, s.id)
    await recordEvent(trx, { type: 'sso_session.ended', userId: s.user_id, ...ctx, detail: { sid: s.id, reason, families: families.length, ...actorDetail(ctx.actor) } })
    out.push({
      sessionId: s.id, userId: s.user_id, revokedFamilies: families.length,
      backchannel: clients.filter((c) => c.backchannel_logout_uri !== null).map((c) => ({ clientId: c.client_id, uri: c.backchannel_logout_uri!, alg: c.id_token_signed_response_alg })),
    })
  }
  return out
}
