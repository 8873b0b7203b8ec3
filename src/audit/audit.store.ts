import { sql } from 'kysely'
import type { AuditEventRow, Executor } from '../db/schema.js'

/** Audit event types; stored with who, what and when, never a secret. */
export type AuditType =
  | 'login.succeeded'
  | 'login.failed'
  | 'login.locked'
  | 'login_throttle.cleared'
  | 'refresh_token.issued'
  | 'refresh_token.rotated'
  | 'refresh_token.retried'
  | 'refresh_token.reuse_detected'
  | 'refresh_token.revoked'
  | 'access_token.revoked'
  | 'admin.sessions_revoked'
  | 'signing_key.revoked'
  | 'signing_key.line_retired'
  | 'user.disabled'
  | 'user.created'
  | 'user.updated'
  | 'user.password_set'
  | 'user.enabled'
  | 'user.deleted'
  | 'client.disabled'
  | 'sso_session.started'
  | 'sso_session.ended'
  | 'authorization_code.issued'
  | 'authorization_code.reuse_detected'
  | 'consent.granted'
  | 'consent.revoked'
  | 'account.password_changed'
  // Clients through the admin API or the CLI (docs/admin-clients.md); never a secret in `detail`.
  | 'client.created'
  | 'client.updated'
  | 'client.secret_rotated'
  | 'client.enabled'
  | 'client.deleted'

export interface AuditEvent {
  type: AuditType
  clientId?: string | null | undefined
  userId?: string | null | undefined
  familyId?: string | null | undefined
  ip?: string | undefined
  userAgent?: string | undefined
  detail?: Record<string, unknown>
}

/** Bounds a client-supplied string (IP, user agent) before it is stored. */
export const trim = (s: string | undefined, n: number) => (s === undefined ? null : s.slice(0, n))

/** Appends one event; pass a transaction to make it part of the change it records. */
export async function recordEvent(db: Executor, e: AuditEvent): Promise<void> {
  await db
    .insertInto('audit_event')
    .values({
      type: e.type,
      client_id: e.clientId ?? null,
      user_id: e.userId ?? null,
      family_id: e.familyId ?? null,
      ip: trim(e.ip, 64),
      user_agent: trim(e.userAgent, 512),
      detail: JSON.stringify(e.detail ?? {}),
    })
    .execute()
}

export interface AuditFilter {
  /** An exact type (`refresh_token.revoked`), or a prefix ending in a dot (`refresh_token.`). */
  type?: string | undefined
  userId?: string | undefined
  familyId?: string | undefined
  clientId?: string | undefined
  /** Events at or after this instant. */
  since?: Date | undefined
  /** Events strictly before this instant. */
  until?: Date | undefined
  /** Page size: default 100, at most 1000. */
  limit?: number | undefined
  /** The `next_cursor` of the previous page: events older than it (keyset, by id). */
  cursor?: string | undefined
}

export const AUDIT_DEFAULT_LIMIT = 100
export const AUDIT_MAX_LIMIT = 1000

/**
 * Events matching every given filter (`id` increases with insertion and is the page cursor), newest first (by id, which follows insertion), one page
 * at a time: `nextCursor` is set when more events match. Keyset pagination, so pages have
 * neither duplicates nor gaps while new events are being added.
 */
export async function listAuditEvents(db: Executor, filter: AuditFilter = {}): Promise<{ events: AuditEventRow[]; nextCursor: string | null }> {
  const limit = Math.min(Math.max(filter.limit ?? AUDIT_DEFAULT_LIMIT, 1), AUDIT_MAX_LIMIT)
  let q = db
    .selectFrom('audit_event')
    .select([sql<string>`id::text`.as('id'), 'at', 'type', 'client_id', 'user_id', 'family_id', 'ip', 'user_agent', 'detail'])
  if (filter.type !== undefined) {
    // A prefix is matched with LIKE; `_` and `%` in it are literal (`refresh_token.`).
    q = filter.type.endsWith('.')
      ? q.where('type', 'like', filter.type.replace(/[\\%_]/g, (c) => `\\${c}`) + '%')
      : q.where('type', '=', filter.type)
  }
  if (filter.userId !== undefined) q = q.where('user_id', '=', filter.userId)
  if (filter.familyId !== undefined) q = q.where('family_id', '=', filter.familyId)
  if (filter.clientId !== undefined) q = q.where('client_id', '=', filter.clientId)
  if (filter.since !== undefined) q = q.where('at', '>=', filter.since)
  if (filter.until !== undefined) q = q.where('at', '<', filter.until)
  if (filter.cursor !== undefined) q = q.where('id', '<', filter.cursor)
  // One row more than the page tells whether there is a next page.
  const rows = await q.orderBy('audit_event.id', 'desc').limit(limit + 1).execute()
  const events = rows.slice(0, limit)
  return { events, nextCursor: rows.length > limit ? events[events.length - 1]!.id : null }
}
