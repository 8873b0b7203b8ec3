import { sql } from 'kysely'
import { trim } from '../audit/audit.store.js'
import { actorDetail, type AuditContext, type RequestContext } from '../audit/context.js'
import type { Executor, Trx } from '../db/schema.js'
import { hashRefreshToken, looksLikeRefreshToken, newRefreshToken } from './refresh-token.js'
import type { Family, Lifetimes, RotateOutcome } from './refresh-tokens.js'

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
  db: Executor,
  input: { clientId: string; userId: string; scope: string; ssoSessionId?: string | undefined; authTime?: Date | undefined },
  lifetimes: Lifetimes,
  ctx: RequestContext,
): Promise<{ family: Family; refreshToken: string }> {
  const token = newRefreshToken()
  const ip = trim(ctx.ip, 64)
  const userAgent = trim(ctx.userAgent, 512)
  const { rows } = await sql<{ id: string; client_id: string; user_id: string; scope: string; auth_time: Date; expires_at: Date }>`
    with fam as (
      insert into refresh_token_family (client_id, user_id, scope, auth_time, expires_at, last_used_at, last_ip, last_user_agent, sso_session_id)
      values (${input.clientId}, ${input.userId}, ${input.scope}, coalesce(${input.authTime ?? null}::timestamptz, now()), now() + make_interval(secs => ${lifetimes.absoluteSeconds}), now(), ${ip}, ${userAgent}, ${input.ssoSessionId ?? null}::uuid)
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
  sso_session_id: string | null
}

/**
 * Rotates `presented` with one statement: `tessera_rotate_refresh_token` (migration 0007)
 * (with the family's SSO session joined in)
 * locks the token and its family, decides, and writes, in one transaction and one round trip.
 * Every decision about one family is serialised by its row lock, across all instances; times
 * are the database's. A used token is a retry (the same successor again) when it is the
 * immediate parent of the family's newest token and that successor is younger than the grace
 * window; otherwise it is reuse and the whole family is revoked.
 */
export async function rotate(db: Executor, presented: string, request: RotateRequest, lifetimes: Lifetimes, ctx: RequestContext): Promise<RotateOutcome> {
  if (!looksLikeRefreshToken(presented)) return { kind: 'not_found' }
  // The family's SSO session (a refreshed ID token keeps its `sid`, OIDC Core §12.2) is read in
  // the same statement: a primary-key lookup of the row the function just locked, not a second
  // round trip. It is set when the family starts and only ever cleared (the session deleted).
  // A scalar subquery, not a join: the planner takes a set-returning function for 1,000 rows and
  // could hash-join them against a scan of every family.
  const { rows } = await sql<RotateRow>`select r.*,
      case when r.outcome in ('rotated', 'retried') then (select f.sso_session_id from refresh_token_family as f where f.id = r.family_id) end as sso_session_id
    from tessera_rotate_refresh_token(
    ${hashRefreshToken(presented)}, ${request.clientId}, ${request.successors.map(hashRefreshToken)}::bytea[],
    ${request.scope ?? null}::text[], ${request.graceSeconds}::integer, ${lifetimes.idleSeconds}::integer,
    ${trim(ctx.ip, 64)}, ${trim(ctx.userAgent, 512)}) as r`.execute(db)
  const row = rows[0]
  if (!row) throw new Error('tessera_rotate_refresh_token returned no row')
  switch (row.outcome) {
    case 'rotated':
    case 'retried': {
      const family: Family = { id: row.family_id!, clientId: request.clientId, userId: row.user_id!, scope: row.scope!, authTime: row.auth_time!, expiresAt: row.expires_at!, ssoSessionId: row.sso_session_id }
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

/** What introspection needs to know about a refresh token; the times are judged by the database. */
export interface RefreshTokenState {
  familyId: string
  clientId: string
  userId: string
  scope: string
  issuedAt: Date
  /** The token's idle expiry, capped by its family's absolute one. */
  expiresAt: Date
  used: boolean
  revoked: boolean
  /** Past either limit at the database's `now()`, as `tessera_rotate_refresh_token` judges it. */
  expired: boolean
  userDisabled: boolean
}

/**
 * A refresh token and its family and user, whatever their state, for introspection: a plain read
 * (one statement, no row lock, nothing written), so it neither waits for a rotation nor delays one.
 */
export async function findRefreshTokenState(db: Executor, presented: string): Promise<RefreshTokenState | undefined> {
  if (!looksLikeRefreshToken(presented)) return undefined
  const row = await db
    .selectFrom('refresh_token as t')
    .innerJoin('refresh_token_family as f', 'f.id', 't.family_id')
    .innerJoin('app_user as u', 'u.id', 'f.user_id')
    .select([
      'f.id as family_id',
      'f.client_id',
      'f.user_id',
      'f.scope',
      't.created_at',
      sql<Date>`least(t.expires_at, f.expires_at)`.as('expires_at'),
      sql<boolean>`t.used_at is not null`.as('used'),
      sql<boolean>`f.revoked_at is not null`.as('revoked'),
      sql<boolean>`t.expires_at <= now() or f.expires_at <= now()`.as('expired'),
      sql<boolean>`u.disabled_at is not null`.as('user_disabled'),
    ])
    .where('t.token_hash', '=', hashRefreshToken(presented))
    .executeTakeFirst()
  return (
    row && {
      familyId: row.family_id,
      clientId: row.client_id,
      userId: row.user_id,
      scope: row.scope,
      issuedAt: row.created_at,
      expiresAt: row.expires_at,
      used: row.used,
      revoked: row.revoked,
      expired: row.expired,
      userDisabled: row.user_disabled,
    }
  )
}

/** Why families are revoked outside rotation (reuse is decided inside `tessera_rotate_refresh_token`). */
export type FamilyRevokeReason = 'revoked_by_client' | 'logout' | 'admin' | 'user_disabled' | 'client_disabled' | 'client_deleted' | 'code_reused' | 'sso_logout' | 'password_set' | 'user_deleted' | 'password_changed' | 'revoked_by_user'

/**
 * Which families to revoke: one, a user's (`liveOnly`: only those still within their absolute
 * limit, as logout everywhere counts them; `exceptFamilyId`: all but that one, as a password change
 * keeps the caller's own session), or a client's. Already revoked ones are never touched.
 */
export type FamilyFilter = { familyId: string } | { userId: string; liveOnly?: boolean; exceptFamilyId?: string | undefined } | { clientId: string } | { ssoSessionId: string }

/**
 * The one way a family is revoked outside rotation, and audited: one statement locks the matching
 * families in id order (no deadlock between two of these), revokes them, and writes one
 * `refresh_token.revoked` event per family (with the reason and the admin actor, if any). The row
 * locks are the ones rotation takes, so a rotation in progress finishes first and every later one
 * sees the revocation: once the caller's transaction commits, nothing of these families refreshes.
 * Takes a transaction: the use case commits it together with what else it changes.
 */
export async function revokeFamilies(trx: Trx, filter: FamilyFilter, reason: FamilyRevokeReason, ctx: AuditContext): Promise<{ id: string; client_id: string; user_id: string }[]> {
  const detail = JSON.stringify({ reason, ...actorDetail(ctx.actor) })
  const ip = trim(ctx.ip, 64)
  const userAgent = trim(ctx.userAgent, 512)
  let target = trx.selectFrom('refresh_token_family').select('id').where('revoked_at', 'is', null)
  if ('familyId' in filter) target = target.where('id', '=', filter.familyId)
  else if ('clientId' in filter) target = target.where('client_id', '=', filter.clientId)
  else if ('ssoSessionId' in filter) target = target.where('sso_session_id', '=', filter.ssoSessionId)
  else {
    target = target.where('user_id', '=', filter.userId)
    if (filter.liveOnly) target = target.where('expires_at', '>', sql<Date>`now()`)
    if (filter.exceptFamilyId !== undefined) target = target.where('id', '<>', filter.exceptFamilyId)
  }
  return trx
    .with('target', () => target.orderBy('id').forUpdate())
    .with('revoked', (q) =>
      q
        .updateTable('refresh_token_family')
        .set({ revoked_at: sql`now()`, revoked_reason: reason })
        .where('id', 'in', (s) => s.selectFrom('target').select('id'))
        .where('revoked_at', 'is', null)
        .returning(['id', 'client_id', 'user_id']),
    )
    .with('audit', (q) =>
      q
        .insertInto('audit_event')
        .columns(['type', 'client_id', 'user_id', 'family_id', 'ip', 'user_agent', 'detail'])
        .expression((e) =>
          e
            .selectFrom('revoked')
            .select([
              sql<string>`'refresh_token.revoked'`.as('type'),
              'client_id',
              'user_id',
              'id',
              sql<string | null>`${ip}::text`.as('ip'),
              sql<string | null>`${userAgent}::text`.as('user_agent'),
              sql<string>`${detail}::jsonb`.as('detail'),
            ])
            .orderBy('id'),
        ),
    )
    .selectFrom('revoked')
    .select(['id', 'client_id', 'user_id'])
    .execute()
}

function toFamily(f: { id: string; client_id: string; user_id: string; scope: string; auth_time: Date; expires_at: Date }): Family {
  return { id: f.id, clientId: f.client_id, userId: f.user_id, scope: f.scope, authTime: f.auth_time, expiresAt: f.expires_at }
}

/** The SSO session a family was issued under, if any. */
export async function familySsoSession(db: Executor, familyId: string): Promise<string | null> {
  const row = await db.selectFrom('refresh_token_family').select('sso_session_id').where('id', '=', familyId).executeTakeFirst()
  return row?.sso_session_id ?? null
}
