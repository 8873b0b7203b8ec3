import { sql } from 'kysely'
import type { Executor } from '../db/schema.js'
import { normalizeUsername } from '../users/user.js'
import { sessionCursor, type UserRef } from './params.js'

/** `active`: can refresh; `expired`: past its absolute limit or its newest token idle too long; `revoked`. */
export type SessionState = 'active' | 'expired' | 'revoked'

/** A refresh-token family (one login on one device) as the sessions API and CLI show it. */
export interface Session {
  id: string
  client_id: string
  client_name: string
  created_at: Date
  auth_time: Date
  expires_at: Date
  last_used_at: Date | null
  last_ip: string | null
  last_user_agent: string | null
  scope: string
  state: SessionState
  revoked_at: Date | null
  revoked_reason: string | null
}

export const SESSIONS_DEFAULT_LIMIT = 100
export const SESSIONS_MAX_LIMIT = 1000

export interface ListSessionsOptions {
  /** Also revoked and expired families (default: live ones only). */
  includeDead?: boolean
  /** Page size: default 100, at most 1000. */
  limit?: number
  /** The `nextCursor` of the previous page. */
  cursor?: { createdAt: string; id: string } | undefined
}

// Live means: not revoked, within the absolute limit, and its newest token not idle-expired
// (every live family has exactly one unused token). Times are the database's.
const revokedExpr = sql<boolean>`f.revoked_at is not null`
const expiredExpr = sql<boolean>`(f.expires_at <= now() or not exists (select 1 from refresh_token t where t.family_id = f.id and t.used_at is null and t.expires_at > now()))`

/** The user a reference names, or undefined. */
export async function findUserRef(db: Executor, ref: UserRef): Promise<{ id: string; username: string } | undefined> {
  const q = db.selectFrom('app_user').select(['id', 'username'])
  return ('id' in ref ? q.where('id', '=', ref.id) : q.where('username', '=', normalizeUsername(ref.username))).executeTakeFirst()
}

function sessionsQuery(db: Executor) {
  return db
    .selectFrom('refresh_token_family as f')
    .innerJoin('client as c', 'c.id', 'f.client_id')
    .select(['f.id', 'f.client_id', 'c.name as client_name', 'f.user_id', 'f.created_at', 'f.auth_time', 'f.expires_at', 'f.last_used_at', 'f.last_ip', 'f.last_user_agent', 'f.scope', 'f.revoked_at', 'f.revoked_reason'])
    .select(sql<SessionState>`case when ${revokedExpr} then 'revoked' when ${expiredExpr} then 'expired' else 'active' end`.as('state'))
    // The exact creation time (microseconds) for the cursor; a JS Date would round it.
    .select(sql<string>`to_char(f.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('created_key'))
}

type SessionRow = Awaited<ReturnType<ReturnType<typeof sessionsQuery>['executeTakeFirstOrThrow']>>

function toSession(r: SessionRow): Session {
  return {
    id: r.id,
    client_id: r.client_id,
    client_name: r.client_name,
    created_at: r.created_at,
    auth_time: r.auth_time,
    expires_at: r.expires_at,
    last_used_at: r.last_used_at,
    last_ip: r.last_ip,
    last_user_agent: r.last_user_agent,
    scope: r.scope,
    state: r.state,
    revoked_at: r.revoked_at,
    revoked_reason: r.revoked_reason,
  }
}

/** A user's families, newest first, one page at a time (keyset on creation time and id). */
export async function listSessions(db: Executor, userId: string, opts: ListSessionsOptions = {}): Promise<{ sessions: Session[]; nextCursor: string | null }> {
  const limit = Math.min(Math.max(opts.limit ?? SESSIONS_DEFAULT_LIMIT, 1), SESSIONS_MAX_LIMIT)
  let q = sessionsQuery(db).where('f.user_id', '=', userId)
  if (!opts.includeDead) q = q.where(sql<boolean>`not ${revokedExpr} and not ${expiredExpr}`)
  if (opts.cursor) q = q.where(sql<boolean>`(f.created_at, f.id) < (${opts.cursor.createdAt}::timestamptz, ${opts.cursor.id}::uuid)`)
  const rows = await q.orderBy('f.created_at', 'desc').orderBy('f.id', 'desc').limit(limit + 1).execute()
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return { sessions: page.map(toSession), nextCursor: rows.length > limit && last ? sessionCursor(last.created_key, last.id) : null }
}

/** The user a family belongs to, whatever its state; undefined when there is no such family. */
export async function familyUser(db: Executor, familyId: string): Promise<string | undefined> {
  const row = await db.selectFrom('refresh_token_family').select('user_id').where('id', '=', familyId).executeTakeFirst()
  return row?.user_id
}

/** One family with its user, whatever its state; undefined when there is no such family. */
export async function findSession(db: Executor, familyId: string): Promise<(Session & { user_id: string }) | undefined> {
  const row = await sessionsQuery(db).where('f.id', '=', familyId).executeTakeFirst()
  return row && { ...toSession(row), user_id: row.user_id }
}
