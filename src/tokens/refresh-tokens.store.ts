import { sql } from 'kysely'
import type { Db, Executor } from '../db/schema.js'
import { auditInsert, recordEvent, trim } from '../audit/audit.store.js'
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
 * Rotates `presented` in one transaction of two statements: the first finds the token and
 * locks it and its family (`FOR UPDATE`), the second marks it used, inserts its successor,
 * updates the family and audits, all at once. Reuse of a used token revokes the whole family.
 * Every decision about one family is serialised by its row lock, across all instances; times
 * are the database's, so instances with skewed clocks agree.
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
    // Waiting on either lock re-reads both rows (READ COMMITTED re-check), so a rotation or a
    // revocation that committed while we waited is what we see.
    const row = await trx
      .selectFrom('refresh_token as t')
      .innerJoin('refresh_token_family as f', 'f.id', 't.family_id')
      .innerJoin('app_user as u', 'u.id', 'f.user_id')
      .select(['t.id as token_id', 't.used_at', 'f.id', 'f.client_id', 'f.user_id', 'f.scope', 'f.auth_time', 'f.expires_at', 'f.revoked_at'])
      .select(['u.disabled_at as user_disabled_at', 'u.username', 'u.roles'])
      .select([sql<boolean>`f.expires_at <= now()`.as('family_expired'), sql<boolean>`t.expires_at <= now()`.as('token_expired')])
      .where('t.token_hash', '=', hash)
      .forUpdate(['t', 'f'])
      .executeTakeFirst()
    if (!row) return { kind: 'not_found' }
    // RFC 6749 §10.4 / SECURITY #56: another client's token is refused but not revoked,
    // so nobody can kill a victim's session just by presenting its token.
    if (row.client_id !== request.clientId) return { kind: 'wrong_client' }
    if (row.revoked_at !== null) return { kind: 'revoked' }
    if (row.family_expired) return { kind: 'expired' }
    if (row.user_disabled_at !== null) return { kind: 'user_disabled' }
    const event = { familyId: row.id, clientId: row.client_id, userId: row.user_id, ...ctx }
    if (row.used_at !== null) {
      // RFC 9700 §4.14.2: a used token presented again means one copy was stolen.
      await trx
        .with('audit', (db) => auditInsert(db, { type: 'refresh_token.reuse_detected', ...event, detail: { token_id: row.token_id } }))
        .updateTable('refresh_token_family')
        .set({ revoked_at: sql`now()`, revoked_reason: 'reuse_detected' })
        .where('id', '=', row.id)
        .execute()
      return { kind: 'reused', familyId: row.id }
    }
    if (row.token_expired) return { kind: 'expired' }
    // RFC 6749 §6: a refresh may narrow the scope, never widen it. Checked before any write.
    const familyScope = row.scope.split(' ')
    if (request.scope?.some((s) => !familyScope.includes(s))) return { kind: 'invalid_scope' }

    const successor = newRefreshToken()
    await trx
      .with('audit', (db) => auditInsert(db, { type: 'refresh_token.rotated', ...event }))
      .with('successor', (db) =>
        db
          .insertInto('refresh_token')
          .values({
            family_id: row.id,
            token_hash: hashRefreshToken(successor),
            parent_id: row.token_id,
            // Successors inherit the family's absolute expiry.
            expires_at: sql`least(now() + make_interval(secs => ${lifetimes.idleSeconds}), ${row.expires_at})`,
          })
          .returning('id'),
      )
      .with('parent', (db) =>
        db.updateTable('refresh_token').set({ used_at: sql`now()`, successor_id: sql`(select id from successor)` }).where('id', '=', row.token_id),
      )
      .updateTable('refresh_token_family')
      .set({ last_used_at: sql`now()`, last_ip: trim(ctx.ip, 64), last_user_agent: trim(ctx.userAgent, 512) })
      .where('id', '=', row.id)
      .execute()
    return { kind: 'rotated', family: toFamily(row), user: { username: row.username, roles: row.roles }, refreshToken: successor }
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
