import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { markClientDisabled } from './clients.store.js'

/**
 * Disables a client and revokes every one of its refresh-token families, audited, in one
 * transaction; false when there is no such client. Its access tokens are refused at Tessera's own
 * endpoints from then on (the holder is disabled).
 */
export async function disableClient(db: Db, clientId: string, ctx: AuditContext): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    if (!(await markClientDisabled(trx, clientId))) return false
    const revoked = await revokeFamilies(trx, { clientId }, 'client_disabled', ctx)
    await recordEvent(trx, { type: 'client.disabled', clientId, ...ctx, detail: { ...actorDetail(ctx.actor), families_revoked: revoked.length } })
    return true
  })
}
