import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { familyUser } from './sessions.store.js'

/**
 * Revokes one session (family), never the user's others; false when it was already revoked.
 * Once this returns, nothing of the family refreshes (`revokeFamilies`). With an admin actor, the
 * request is audited as such too, also when it found the family already revoked.
 */
export async function revokeSession(db: Db, familyId: string, ctx: AuditContext): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const revoked = (await revokeFamilies(trx, { familyId }, 'admin', ctx)).length
    if (ctx.actor) {
      const userId = await familyUser(trx, familyId)
      await recordEvent(trx, { type: 'admin.sessions_revoked', clientId: ctx.actor.clientId, userId, familyId, ...ctx, detail: { ...actorDetail(ctx.actor), reason: 'admin', count: revoked } })
    }
    return revoked === 1
  })
}

/**
 * Logout everywhere: revokes every family of the user that is not revoked and not past its
 * absolute limit, each audited; with an admin actor, one `admin.sessions_revoked` event too, in
 * the same transaction. Returns how many families it revoked.
 */
export async function revokeAllSessions(db: Db, userId: string, ctx: AuditContext): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const revoked = (await revokeFamilies(trx, { userId, liveOnly: true }, 'admin', ctx)).length
    if (ctx.actor) {
      await recordEvent(trx, { type: 'admin.sessions_revoked', clientId: ctx.actor.clientId, userId, ...ctx, detail: { ...actorDetail(ctx.actor), reason: 'admin', count: revoked } })
    }
    return revoked
  })
}
