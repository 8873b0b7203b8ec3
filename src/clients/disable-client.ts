import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import type { Client } from './client.js'
import { lockClient, markClientDisabled, markClientEnabled } from './clients.store.js'

/** What a version-checked change of a client came to. */
export type ClientChange<T> = { kind: 'done'; value: T } | { kind: 'not_found' } | { kind: 'stale'; version: number }

/**
 * Disables a client and revokes every one of its refresh-token families, audited, in one
 * transaction; false when there is no such client. Its access tokens and client authentication
 * are refused by every instance as soon as it applies the change (README "Changes reach every
 * instance"; at the latest when its client cache entry expires, `CACHE_REFRESH_SECONDS`).
 * Disabling again writes no second `client.disabled` event.
 */
export async function disableClient(db: Db, clientId: string, ctx: AuditContext): Promise<boolean> {
  return (await disableClientIfVersion(db, clientId, ctx)).kind === 'done'
}

/**
 * `disableClient`, refused (`stale`) when `expectedVersions` is given and the client's version is
 * no longer that (the admin API's `If-Match`): whether this call disabled it (false: it was already).
 */
export async function disableClientIfVersion(db: Db, clientId: string, ctx: AuditContext, expectedVersions?: readonly number[]): Promise<ClientChange<{ changed: boolean; familiesRevoked: number }>> {
  return db.transaction().execute(async (trx) => {
    const current = await lockClient(trx, clientId)
    if (!current) return { kind: 'not_found' as const }
    if (expectedVersions !== undefined && !expectedVersions.includes(current.version)) return { kind: 'stale' as const, version: current.version }
    const client = await markClientDisabled(trx, clientId, current.version)
    if (!client) return { kind: 'stale' as const, version: current.version }
    // Families are revoked even when it was disabled already (none should be live; a sweep is cheap).
    const revoked = await revokeFamilies(trx, { clientId }, 'client_disabled', ctx)
    if (client.changed) await recordEvent(trx, { type: 'client.disabled', clientId, ...ctx, detail: { ...actorDetail(ctx.actor), families_revoked: revoked.length } })
    return { kind: 'done' as const, value: { changed: client.changed, familiesRevoked: revoked.length } }
  })
}

/**
 * Enables a disabled client again, audited (`client.enabled`); enabling an enabled client changes
 * nothing and records nothing. Its revoked families stay revoked: its users sign in again.
 */
export async function enableClient(db: Db, clientId: string, ctx: AuditContext, expectedVersions?: readonly number[]): Promise<ClientChange<{ changed: boolean; client: Client }>> {
  return db.transaction().execute(async (trx) => {
    const current = await lockClient(trx, clientId)
    if (!current) return { kind: 'not_found' as const }
    if (expectedVersions !== undefined && !expectedVersions.includes(current.version)) return { kind: 'stale' as const, version: current.version }
    if (!current.disabled) return { kind: 'done' as const, value: { changed: false, client: current } }
    const client = await markClientEnabled(trx, clientId, current.version)
    if (!client) return { kind: 'stale' as const, version: current.version }
    await recordEvent(trx, { type: 'client.enabled', clientId, ...ctx, detail: actorDetail(ctx.actor) })
    return { kind: 'done' as const, value: { changed: true, client } }
  })
}
