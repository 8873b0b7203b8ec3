import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { deleteThrottle, type ThrottleTarget } from './login-throttle.store.js'

/**
 * Clears an account's or an address's password-check counters (their locks end at once), with
 * the `login_throttle.cleared` audit event in the same transaction. How many counters there were.
 */
export async function clearLoginThrottle(db: Db, target: ThrottleTarget, ctx: AuditContext): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const cleared = await deleteThrottle(trx, target)
    await recordEvent(trx, { type: 'login_throttle.cleared', ip: ctx.ip, userAgent: ctx.userAgent, clientId: ctx.actor?.clientId, detail: { ...target, cleared, ...actorDetail(ctx.actor) } })
    return cleared
  })
}
