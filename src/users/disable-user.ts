import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { markUserDisabled } from './users.store.js'

/**
 * Disables a user and revokes every one of their refresh-token families, audited, in one
 * transaction; false when there is no such user. Disabling again revokes what is left (nothing,
 * normally) and writes no second `user.disabled` event.
 */
export async function disableUser(db: Db, username: string, ctx: AuditContext): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const user = await markUserDisabled(trx, username)
    if (!user) return false
    const revoked = await revokeFamilies(trx, { userId: user.id }, 'user_disabled', ctx)
    if (user.changed) await recordEvent(trx, { type: 'user.disabled', userId: user.id, ...ctx, detail: { ...actorDetail(ctx.actor), families_revoked: revoked.length } })
    return true
  })
}
