import { sql } from 'kysely'
import type { Db, Executor } from '../db/schema.js'
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
  | { kind: 'rotated'; family: Family; user: FamilyUser; refreshToken: string }
  | { kind: 'not_found' | 'wrong_client' | 'revoked' | 'expired' | 'user_disabled' | 'invalid_scope' }
  | { kind: 'reused'; familyId: string }

/** Starts a family (one login on one device) with its first refresh token; audits the login with it. */
export async function createFamily(
  db: Db,
  input: { clientId: string; userId: string; scope: string },
  lifetimes: Lifetimes,
  ctx: RequestContext,
): Promise<{ family: Family; refreshToken: string }> {
  const token = newRefreshToken()
  return db.transaction().execute(async (trx) => {
    const fam = await trx
      .insertInto('refresh_token_family')
      .values({
        client_id: input.clientId,
        user_id: input.userId,
        scope: input.scope,
        auth_time: sql`now()`,
        expires_at: sql`now() + make_interval(secs => ${lifetimes.absoluteSeconds})`,
        last_used_at: sql`now()`,
        last_ip: trim(ctx.ip, 64),
        last_user_agent: trim(ctx.userAgent, 512),
      })
      .returning(['id', 'client_id', 'user_id', 'scope', 'auth_time', 'expires_at'])
      .executeTakeFirstOrThrow()
    await trx
      .insertInto('refresh_token')
      .values({
        family_id: fam.id,
        token_hash: hashRefreshToken(token),
        expires_at: sql`least(now() + make_interval(secs => ${lifetimes.idleSeconds}), ${fam.expires_at})`,
      })
      .execute()
    await recordEvent(trx, { type: 'login.succeeded', familyId: fam.id, clientId: fam.client_id, userId: fam.user_id, ...ctx })
    await recordEvent(trx, { type: 'refresh_token.issued', familyId: fam.id, clientId: fam.client_id, userId: fam.user_id, ...ctx })
    return { family: toFamily(fam), refreshToken: token }
  })
}

/**
 * Rotates `presented`: in one transaction that holds the family's row lock, marks it
 * used and inserts its successor, or detects reuse and revokes the whole family.
 * The family lock serialises every decision about one family across all instances;
 * times are the database's, so instances with skewed clocks agree.
 */
export async function rotate(
  db: Db,
  presented: string,
  request: { clientId: string; scope: string[] | undefined },
  lifetimes: Lifetimes,
  ctx: RequestContext,
): Promise<RotateOutcome> {
  if (!looksLikeRefreshToken(presented)) return { kind: 'not_found' }
  const hash = hashRefreshToken(presented)
  return db.transaction().execute(async (trx): Promise<RotateOutcome> => {
    const found = await trx.selectFrom('refresh_token').select(['id', 'family_id']).where('token_hash', '=', hash).executeTakeFirst()
    if (!found) return { kind: 'not_found' }
    const fam = await trx
      .selectFrom('refresh_token_family as f')
      .innerJoin('app_user as u', 'u.id', 'f.user_id')
      .select(['f.id', 'f.client_id', 'f.user_id', 'f.scope', 'f.auth_time', 'f.expires_at', 'f.revoked_at', 'u.disabled_at as user_disabled_at', 'u.username', 'u.roles'])
      .select(sql<boolean>`f.expires_at <= now()`.as('family_expired'))
      .where('f.id', '=', found.family_id)
      .forUpdate('f')
      .executeTakeFirst()
    if (!fam) return { kind: 'not_found' }
    // RFC 6749 §10.4 / SECURITY #56: another client's token is refused but not revoked,
    // so nobody can kill a victim's session just by presenting its token.
    if (fam.client_id !== request.clientId) return { kind: 'wrong_client' }
    if (fam.revoked_at !== null) return { kind: 'revoked' }
    if (fam.family_expired) return { kind: 'expired' }
    if (fam.user_disabled_at !== null) return { kind: 'user_disabled' }
    // Re-read under the family lock: a rotation that committed while we waited is visible now.
    const token = await trx
      .selectFrom('refresh_token')
      .select(['id', 'used_at'])
      .select(sql<boolean>`expires_at <= now()`.as('expired'))
      .where('id', '=', found.id)
      .executeTakeFirstOrThrow()
    if (token.used_at !== null) {
      // RFC 9700 §4.14.2: a used token presented again means one copy was stolen.
      await trx.updateTable('refresh_token_family').set({ revoked_at: sql`now()`, revoked_reason: 'reuse_detected' }).where('id', '=', fam.id).execute()
      await recordEvent(trx, { type: 'refresh_token.reuse_detected', familyId: fam.id, clientId: fam.client_id, userId: fam.user_id, ...ctx, detail: { token_id: token.id } })
      return { kind: 'reused', familyId: fam.id }
    }
    if (token.expired) return { kind: 'expired' }
    // RFC 6749 §6: a refresh may narrow the scope, never widen it. Checked before any write.
    const familyScope = fam.scope.split(' ')
    if (request.scope?.some((s) => !familyScope.includes(s))) return { kind: 'invalid_scope' }

    const successor = newRefreshToken()
    const inserted = await trx
      .insertInto('refresh_token')
      .values({
        family_id: fam.id,
        token_hash: hashRefreshToken(successor),
        parent_id: token.id,
        // Successors inherit the family's absolute expiry.
        expires_at: sql`least(now() + make_interval(secs => ${lifetimes.idleSeconds}), ${fam.expires_at})`,
      })
      .returning('id')
      .executeTakeFirstOrThrow()
    await trx.updateTable('refresh_token').set({ used_at: sql`now()`, successor_id: inserted.id }).where('id', '=', token.id).execute()
    await trx
      .updateTable('refresh_token_family')
      .set({ last_used_at: sql`now()`, last_ip: trim(ctx.ip, 64), last_user_agent: trim(ctx.userAgent, 512) })
      .where('id', '=', fam.id)
      .execute()
    await recordEvent(trx, { type: 'refresh_token.rotated', familyId: fam.id, clientId: fam.client_id, userId: fam.user_id, ...ctx })
    return { kind: 'rotated', family: toFamily(fam), user: { username: fam.username, roles: fam.roles }, refreshToken: successor }
  })
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
 */
export async function revokeFamily(db: Db, familyId: string, reason: string, ctx: RequestContext): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('refresh_token_family')
      .set({ revoked_at: sql`now()`, revoked_reason: reason })
      .where('id', '=', familyId)
      .where('revoked_at', 'is', null)
      .returning(['id', 'client_id', 'user_id'])
      .executeTakeFirst()
    if (row) await recordEvent(trx, { type: 'refresh_token.revoked', familyId: row.id, clientId: row.client_id, userId: row.user_id, ...ctx, detail: { reason } })
    return row !== undefined
  })
}

function toFamily(f: { id: string; client_id: string; user_id: string; scope: string; auth_time: Date; expires_at: Date }): Family {
  return { id: f.id, clientId: f.client_id, userId: f.user_id, scope: f.scope, authTime: f.auth_time, expiresAt: f.expires_at }
}
