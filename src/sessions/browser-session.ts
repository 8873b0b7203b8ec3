import type { AuditContext } from '../audit/context.js'
import type { ClientCache } from '../clients/client-cache.js'
import { requireAllowedOrigin, type Client, type RequestOrigin } from '../clients/client.js'
import type { Db } from '../db/schema.js'
import { findFamilyByToken, revokeFamilies } from '../tokens/refresh-tokens.store.js'

/** The family a refresh cookie's token belongs to (whatever its state), and its client. */
export async function findCookieSession(db: Db, clients: ClientCache, token: string): Promise<{ familyId: string; client: Client } | undefined> {
  const family = await findFamilyByToken(db, token)
  const client = family && (await clients.get(family.clientId))
  return family && client ? { familyId: family.id, client } : undefined
}

/**
 * Browser logout (`POST /logout`): revokes the family of the cookie's token, audited. Only the
 * app's own origin may end its session (forced-logout CSRF: `access_denied`). `known: false`
 * when the cookie names no family; `revoked: false` when the family was revoked already.
 */
export async function logout(db: Db, clients: ClientCache, token: string, from: RequestOrigin, ctx: AuditContext): Promise<{ known: false } | { known: true; revoked: boolean }> {
  const session = await findCookieSession(db, clients, token)
  if (!session) return { known: false }
  requireAllowedOrigin(session.client, from)
  const revoked = await db.transaction().execute((trx) => revokeFamilies(trx, { familyId: session.familyId }, 'logout', ctx))
  return { known: true, revoked: revoked.length > 0 }
}
