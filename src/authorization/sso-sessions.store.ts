import { sql } from 'kysely'
import { trim } from '../audit/audit.store.js'
import type { RequestContext } from '../audit/context.js'
import type { Executor, Trx } from '../db/schema.js'

/** An SSO session as the flow sees it; `id` is the OIDC `sid`. */
export interface SsoSession {
  id: string
  userId: string
  authTime: Date
  createdAt: Date
  expiresAt: Date
}

export interface SsoLifetimes {
  idleSeconds: number
  absoluteSeconds: number
}

/** Starts a session for a login that just happened (auth_time = now). */
export async function insertSsoSession(trx: Trx, hash: Buffer, userId: string, lifetimes: SsoLifetimes, ctx: RequestContext): Promise<SsoSession> {
  const row = await trx
    .insertInto('sso_session')
    .values({
      token_hash: hash, user_id: userId, auth_time: sql<Date>`now()`,
      idle_expires_at: sql<Date>`least(now() + make_interval(secs => ${lifetimes.idleSeconds}), now() + make_interval(secs => ${lifetimes.absoluteSeconds}))`,
      expires_at: sql<Date>`now() + make_interval(secs => ${lifetimes.absoluteSeconds})`,
      ip: trim(ctx.ip, 64), user_agent: trim(ctx.userAgent, 512),
    })
    .returning(['id', 'user_id', 'auth_time', 'created_at', 'expires_at'])
    .executeTakeFirstOrThrow()
  return { id: row.id, userId: row.user_id, authTime: row.auth_time, createdAt: row.created_at, expiresAt: row.expires_at }
}

/**
 * The live session of a cookie's hash, its idle expiry pushed forward (never past the absolute
 * one), or undefined: revoked, idle or absolutely expired (database clock), or its user disabled.
 */
export async function touchSsoSession(db: Executor, hash: Buffer, idleSeconds: number): Promise<SsoSession | undefined> {
  const row = await db
    .updateTable('sso_session as s')
    .set({ last_seen_at: sql`now()`, idle_expires_at: sql`least(now() + make_interval(secs => ${idleSeconds}), s.expires_at)` })
    .from('app_user as u')
    .whereRef('u.id', '=', 's.user_id')
    .where('u.disabled_at', 'is', null)
    .where('s.token_hash', '=', hash)
    .where('s.revoked_at', 'is', null)
    .where('s.idle_expires_at', '>', sql<Date>`now()`)
    .where('s.expires_at', '>', sql<Date>`now()`)
    .returning(['s.id', 's.user_id', 's.auth_time', 's.created_at', 's.expires_at'])
    .executeTakeFirst()
  return row && { id: row.id, userId: row.user_id, authTime: row.auth_time, createdAt: row.created_at, expiresAt: row.expires_at }
}

/** The id of the (possibly dead) session of a cookie's hash. */
export async function ssoSessionIdByHash(db: Executor, hash: Buffer): Promise<string | undefined> {
  const row = await db.selectFrom('sso_session').select('id').where('token_hash', '=', hash).executeTakeFirst()
  return row?.id
}

/** Notes that `clientId` received a code under the session (back-channel logout goes there). */
export async function addSessionClient(trx: Trx, sessionId: string, clientId: string): Promise<void> {
  await trx.insertInto('sso_session_client').values({ session_id: sessionId, client_id: clientId }).onConflict((oc) => oc.columns(['session_id', 'client_id']).doNothing()).execute()
}

/** Which SSO sessions to end: one, or all of a user's (`exceptId`: all but that one). */
export type SsoSessionFilter = { id: string } | { userId: string; exceptId?: string | undefined }

/** Ends sessions (see `SsoSessionFilter`), returning the ended ones with their user. */
export async function markSsoSessionsRevoked(trx: Trx, filter: SsoSessionFilter, reason: string): Promise<{ id: string; user_id: string }[]> {
  let q = trx.updateTable('sso_session').set({ revoked_at: sql`now()`, revoked_reason: reason }).where('revoked_at', 'is', null)
  q = 'id' in filter ? q.where('id', '=', filter.id) : q.where('user_id', '=', filter.userId)
  if ('exceptId' in filter && filter.exceptId !== undefined) q = q.where('id', '<>', filter.exceptId)
  return q.returning(['id', 'user_id']).execute()
}

/** The families issued under a session. */
export async function sessionFamilyIds(db: Executor, sessionId: string): Promise<string[]> {
  const rows = await db.selectFrom('refresh_token_family').select('id').where('sso_session_id', '=', sessionId).where('revoked_at', 'is', null).execute()
  return rows.map((r) => r.id)
}

/** The clients a session signed in to, with their back-channel logout URIs and ID-token algorithm. */
export async function sessionClients(db: Executor, sessionId: string): Promise<{ client_id: string; backchannel_logout_uri: string | null; id_token_signed_response_alg: string }[]> {
  return db
    .selectFrom('sso_session_client as sc')
    .innerJoin('client as c', 'c.id', 'sc.client_id')
    .select(['sc.client_id', 'c.backchannel_logout_uri', 'c.id_token_signed_response_alg'])
    .where('sc.session_id', '=', sessionId)
    .orderBy('sc.client_id')
    .execute()
}

/** A user's SSO sessions, newest first (live only unless `all`). */
export async function listSsoSessions(db: Executor, userId: string, all: boolean) {
  let q = db
    .selectFrom('sso_session')
    .select(['id', 'auth_time', 'created_at', 'last_seen_at', 'idle_expires_at', 'expires_at', 'ip', 'user_agent', 'revoked_at', 'revoked_reason'])
    .select(sql<string>`case when revoked_at is not null then 'revoked' when expires_at <= now() or idle_expires_at <= now() then 'expired' else 'active' end`.as('state'))
    .where('user_id', '=', userId)
  if (!all) q = q.where('revoked_at', 'is', null).where('expires_at', '>', sql<Date>`now()`).where('idle_expires_at', '>', sql<Date>`now()`)
  return q.orderBy('created_at', 'desc').orderBy('id').limit(1000).execute()
}

/** The user of a session, whatever its state. */
export async function ssoSessionUser(db: Executor, id: string): Promise<string | undefined> {
  const row = await db.selectFrom('sso_session').select('user_id').where('id', '=', id).executeTakeFirst()
  return row?.user_id
}
