import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext, type RequestContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { deleteConsents, grantConsent } from './authorization.store.js'

/** Remembers the user's consent to `scopes` for a client (added to earlier grants), audited. */
export async function giveConsent(db: Db, userId: string, clientId: string, scopes: string[], ctx: RequestContext): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await grantConsent(trx, userId, clientId, scopes)
    await recordEvent(trx, { type: 'consent.granted', clientId, userId, ...ctx, detail: { scopes } })
  })
}

/** Forgets a user's consent for one client (or all); the next authorization asks again. */
export async function revokeConsents(db: Db, userId: string, clientId: string | undefined, ctx: AuditContext): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const n = await deleteConsents(trx, userId, clientId)
    if (n > 0) await recordEvent(trx, { type: 'consent.revoked', clientId: clientId ?? null, userId, ...ctx, detail: { count: n, ...actorDetail(ctx.actor) } })
    return n
  })
}
