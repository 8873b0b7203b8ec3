import { sql, type Transaction } from 'kysely'
import type { Database, Db, Executor } from '../db/schema.js'
import { recordEvent, trim } from '../audit/audit.store.js'
import { hashRefreshToken, looksLikeRefreshToken, newRefreshToken } from './refresh-token.js'

/** What a live family lets the holder of its newest token do. */
export interface Family {
  id: string
  clientId: string
  userId: string
  scope: string
  authTime: Date
  expiresAt: Date
}

/** The family's user, read in the same statement that locks the family. */
export interface FamilyUser {
  username: string
  roles: string[]
}

/** Who is calling, stored on the family as "last used". */
export interface RequestContext {
  ip: string | undefined
  userAgent: string | undefined
}

export interface Lifetimes {
  idleSeconds: number
  absoluteSeconds: number
}

export type RotateOutcome =
  | { kind: 'rotated' | 'retried'; family: Family; user: FamilyUser; refreshToken: string }
  | { kind: 'not_found' | 'wrong_client' | 'revoked' | 'expired' | 'user_disabled' | 'invalid_scope' | 'retry_mismatch' }
  | { kind: 'reused'; familyId: string }

export interface RotateRequest {
  clientId: string
  /** The requested (narrower) scope, or undefined for the family's scope. */
  scope: string[] | undefined
  /** The presented token's possible successors (see SuccessorDeriver); the first is issued. */
  successors: string[]
  graceSeconds: number
}

/**
 * Starts a family (one login on one device) with its first refresh token, and audits the login
 * and the issue with it: one statement, so one round trip and all or nothing.
 */
export async function createFamily(
  db: Db,
  input: { clientId: string; userId: string; scope: string },
  lifetimes: Lifetimes,
  ctx: RequestContext,
): Promise<{ family: Family; refreshToken: string }> {
  const token = newRefreshToken()
  const ip = trim(ctx.ip, 64)
  const userAgent = trim(ctx.userAgent, 512)
  const { rows } = await sql<{ id: string; client_id: string; user_id: string; scope: string; auth_time: Date; expires_at: Date }>`
    with fam as (
      insert into refresh_token_family (client_id, user_id, scope, auth_time, expires_at, last_used_at, last_ip, last_user_agent)
      values (${input.clientId}, ${input.userId}, ${input.scope}, now(), now() + make_interval(secs => ${lifetimes.absoluteSeconds}), now(), ${ip}, ${userAgent})
      returning id, client_id, user_id, scope, auth_time, expires_at
    ), tok as (
      insert into refresh_token (family_id, token_hash, expires_at)
      select id, ${hashRefreshToken(token)}, least(now() + make_interval(secs => ${lifetimes.idleSeconds}), expires_at) from fam
    ), audit as (
      insert into audit_event (type, client_id, user_id, family_id, ip, user_agent)
      select e.type, fam.client_id, fam.user_id, fam.id, ${ip}, ${userAgent}
        from fam cross join (values (1, 'login.succeeded'), (2, 'refresh_token.issued')) as e(n, type) order by e.n
    )
    select * from fam`.execute(db)
  const fam = rows[0]
  if (!fam) throw new Error('createFamily inserted no family')
  return { family: toFamily(fam), refreshToken: token }
}

interface RotateRow {
  outcome: RotateOutcome['kind']
  family_id: string | null
  user_id: string | null
  scope: string | null
  auth_time: Date | null
  expires_at: Date | null
  username: string | null
  roles: string[] | null
  successor: number | null
}

/**
 * Rotates `presented` with one statement: `tessera_rotate_refresh_token` (migration 0007)
 * locks the token and its family, decides, and writes, in one transaction and one round trip.
 * Every decision about one family is serialised by its row lock, across all instances; times
 * are the database's. A used token is a retry (the same successor again) when it is the
 * immediate parent of the family's newest token and that successor is younger than the grace
 * window; otherwise it is reuse and the whole family is revoked.
 */
export async function rotate(db: Db, presented: string, request: RotateRequest, lifetimes: Lifetimes, ctx: RequestContext): Promise<RotateOutcome> {
  if (!looksLikeRefreshToken(presented)) return { kind: 'not_found' }
  const { rows } = await sql<RotateRow>`select * from tessera_rotate_refresh_token(
    ${hashRefreshToken(presented)}, ${request.clientId}, ${request.successors.map(hashRefreshToken)}::bytea[],
    ${request.scope ?? null}::text[], ${request.graceSeconds}::integer, ${lifetimes.idleSeconds}::integer,
    ${trim(ctx.ip, 64)}, ${trim(ctx.userAgent, 512)})`.execute(db)
  const row = rows[0]
  if (!row) throw new Error('tessera_rotate_refresh_token returned no row')
  switch (row.outcome) {
    case 'rotated':
    case 'retried': {
      const family: Family = { id: row.family_id!, clientId: request.clientId, userId: row.user_id!, scope: row.scope!, authTime: row.auth_time!, expiresAt: row.expires_at! }
      const refreshToken = request.successors[row.successor! - 1]
      if (refreshToken === undefined) throw new Error('tessera_rotate_refresh_token named an unknown successor')
      return { kind: row.outcome, family, user: { username: row.username!, roles: row.roles ?? [] }, refreshToken }
    }
    case 'reused':
      return { kind: 'reused', familyId: row.family_id! }
    default:
      return { kind: row.outcome }
  }
}

/** The family a refresh token belongs to, whatever its state. */
export async function findFamilyByToken(db: Executor, presented: string): Promise<{ id: string; clientId: string } | undefined> {
  if (!looksLikeRefreshToken(presented)) return undefined
  const row = await db
    .selectFrom('refresh_token as t')
    .innerJoin('refresh_token_family as f', 'f.id', 't.family_id')
    .select(['f.id', 'f.client_id'])
    .where('t.token_hash', '=', hashRefreshToken(presented))
    .executeTakeFirst()
  return row && { id: row.id, clientId: row.client_id }
}

/**
 * Revokes a family. The UPDATE takes the family's row lock, so it waits for a rotation in
 * progress and every later rotation sees `revoked_at`: once this returns, nothing refreshes.
 * `also` runs in the same transaction (an audit row of the caller's own, say), whatever the outcome.
 */
export async function revokeFamily(
  db: Db,
  familyId: string,
  reason: string,
  ctx: RequestContext,
  extra: { detail?: Record<string, unknown>; also?: (trx: Transaction<Database>, revoked: boolean) => Promise<void> } = {},
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('refresh_token_family')
      .set({ revoked_at: sql`now()`, revoked_reason: reason })
      .where('id', '=', familyId)
      .where('revoked_at', 'is', null)
      .returning(['id', 'client_id', 'user_id'])
      .executeTakeFirst()
    if (row) await recordEvent(trx, { type: 'refresh_token.revoked', familyId: row.id, clientId: row.client_id, userId: row.user_id, ...ctx, detail: { reason, ...extra.detail } })
    await extra.also?.(trx, row !== undefined)
    return row !== undefined
  })
}

function toFamily(f: { id: string; client_id: string; user_id: string; scope: string; auth_time: Date; expires_at: Date }): Family {
  return { id: f.id, clientId: f.client_id, userId: f.user_id, scope: f.scope, authTime: f.auth_time, expiresAt: f.expires_at }
}
