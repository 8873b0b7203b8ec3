import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { markUserDisabled } from './users.store.js'

/**
 * Disables a user and revokes every one of their refresh-token families, audited, in one
 * transaction; false when there is no such user.
 */
export async function disableUser(db: Db, username: string, ctx: AuditContext): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const userId = await markUserDisabled(trx, username)
    if (userId === undefined) return false
    const revoked = await revokeFamilies(trx, { userId }, 'user_disabled', ctx)
    await recordEvent(trx, { type: 'user.disabled', userId, ...ctx, detail: { ...actorDetail(ctx.actor), families_revoked: revoked.length } })
    return true
  })
}
