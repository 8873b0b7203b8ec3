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
 * One round trip for Tessera's own endpoints: is this token still good, that is,
 * not denylisted and (when it has a session) its family not revoked?
 */
export async function isAccessTokenLive(db: Executor, jti: string, sessionId: string | undefined): Promise<boolean> {
  const denied = db.selectFrom('revoked_access_token').select(sql<number>`1`.as('x')).where('jti', '=', jti)
  const { live } = await db
    .selectNoFrom((eb) => [
      eb.and([
        eb.not(eb.exists(denied)),
        sessionId === undefined
          ? eb.lit(true)
          : eb.exists(
              eb.selectFrom('refresh_token_family').select(sql<number>`1`.as('x')).where('id', '=', sessionId).where('revoked_at', 'is', null),
            ),
      ]).as('live'),
    ])
    .executeTakeFirstOrThrow()
  return live === true
}
