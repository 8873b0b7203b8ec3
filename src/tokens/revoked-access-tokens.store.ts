import { sql } from 'kysely'
import type { Executor } from '../db/schema.js'

/** RFC 7009: denylists an access token's `jti` until it would expire anyway; false if it already was. */
export async function denylistAccessToken(db: Executor, jti: string, expiresAtSeconds: number): Promise<boolean> {
  const inserted = await db
    .insertInto('revoked_access_token')
    .values({ jti, expires_at: new Date(expiresAtSeconds * 1000) })
    .onConflict((oc) => oc.column('jti').doNothing())
    .returning('jti')
    .executeTakeFirst()
  return inserted !== undefined
}

/**
 * The condition "this token is still good": its `jti` is not denylisted and, when it belongs
 * to a family (session), that family is not revoked.
 */
function liveToken(db: Executor, jti: string, sessionId: string | undefined) {
  const denied = db.selectFrom('revoked_access_token').select(sql<number>`1`.as('x')).where('jti', '=', jti)
  if (sessionId === undefined) return sql<boolean>`not exists (${denied})`
  const family = db.selectFrom('refresh_token_family').select(sql<number>`1`.as('x')).where('id', '=', sessionId).where('revoked_at', 'is', null)
  return sql<boolean>`not exists (${denied}) and exists (${family})`
}

/**
 * One round trip: is this access token still good at Tessera's own endpoints? A user's token
 * (`userId`) also needs that user enabled: a token without a family (a password grant without
 * refresh tokens) has no family that the disable revoked.
 */
export async function isAccessTokenLive(db: Executor, jti: string, sessionId: string | undefined, userId?: string): Promise<boolean> {
  const user = userId === undefined ? sql<boolean>`true` : sql<boolean>`exists (${db.selectFrom('app_user').select(sql<number>`1`.as('x')).where('id', '=', userId).where('disabled_at', 'is', null)})`
  const { live } = await db.selectNoFrom(sql<boolean>`${liveToken(db, jti, sessionId)} and ${user}`.as('live')).executeTakeFirstOrThrow()
  return live === true
}

/** One round trip for /userinfo: the token's enabled user, only while the token is still good. */
export async function findLiveTokenUser(db: Executor, userId: string, jti: string, sessionId: string | undefined) {
  return db
    .selectFrom('app_user')
    .select(['id', 'username', 'roles', 'name', 'email', 'email_verified'])
    .where('id', '=', userId)
    .where('disabled_at', 'is', null)
    .where(liveToken(db, jti, sessionId))
    .executeTakeFirst()
}
