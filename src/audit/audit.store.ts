import type { QueryCreator } from 'kysely'
import type { Database, Executor } from '../db/schema.js'

/** Audit event types; stored with who, what and when, never a secret. */
export type AuditType =
  | 'login.succeeded'
  | 'login.failed'
  | 'refresh_token.issued'
  | 'refresh_token.rotated'
  | 'refresh_token.reuse_detected'
  | 'refresh_token.revoked'
  | 'access_token.revoked'

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
  await auditInsert(db, e).execute()
}

/** The INSERT of one event, for use inside a larger statement (a CTE). */
export function auditInsert(db: QueryCreator<Database>, e: AuditEvent) {
  return db
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
}

