import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { markClientDisabled } from './clients.store.js'

/**
 * Disables a client and revokes every one of its refresh-token families, audited, in one
 * transaction; false when there is no such client. Its access tokens and client authentication
 * are refused by every instance as soon as it applies the change (README "Changes reach every
 * instance"; at the latest when its client cache entry expires, `CACHE_REFRESH_SECONDS`).
 * Disabling again writes no second `client.disabled` event.
 */
export async function disableClient(db: Db, clientId: string, ctx: AuditContext): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const client = await markClientDisabled(trx, clientId)
    if (!client) return false
    const revoked = await revokeFamilies(trx, { clientId }, 'client_disabled', ctx)
    if (client.changed) await recordEvent(trx, { type: 'client.disabled', clientId, ...ctx, detail: { ...actorDetail(ctx.actor), families_revoked: revoked.length } })
    return true
  })
}
