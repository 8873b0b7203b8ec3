import { sql, type RawBuilder } from 'kysely'
import type { Executor, Trx } from '../db/schema.js'

/**
 * A denylisted access token's `jti` is kept this long past the token's `exp`: Tessera accepts
 * a few seconds of clock tolerance, and an instance's clock may be behind the database's.
 */
export const DENYLIST_SKEW_SECONDS = 300

const affected = (r: { numAffectedRows?: bigint }) => Number(r.numAffectedRows ?? 0n)

/**
 * One batch of dead families, in the caller's transaction: up to `limit` families that expired or
 * were revoked more than `retentionSeconds` ago (database clock) are locked, skipping any that
 * another instance holds; up to `limit` of their refresh tokens are deleted, then those of them
 * that have no token left. A family with many tokens takes several batches, so no batch is ever
 * large. Tokens of live families are never touched: reuse detection needs used tokens until the
 * family itself is dead.
 */
export async function deleteDeadFamilies(trx: Trx, retentionSeconds: number, limit: number): Promise<{ families: number; tokens: number }> {
  // Housekeeping gives way: should it wait on a row lock (a refresh of a long-dead family's
  // token at that instant), it gives up and retries next run. Shorter than PostgreSQL's
  // deadlock_timeout (1 s), so in a lock cycle it is always housekeeping that yields.
  await sql`set local lock_timeout = '200ms'`.execute(trx)
  // least() ignores nulls: the instant the family died, whichever came first
  // (index refresh_token_family_dead_idx, migration 0009).
  const { rows } = await sql<{ id: string }>`
    select id from refresh_token_family
     where least(expires_at, revoked_at) < now() - make_interval(secs => ${retentionSeconds})
     order by least(expires_at, revoked_at)
     limit ${limit}
       for update skip locked`.execute(trx)
  if (rows.length === 0) return { families: 0, tokens: 0 }
  const ids = rows.map((r) => r.id)
  const tokens = await sql`
    delete from refresh_token
     where id in (select id from refresh_token where family_id = any(${ids}::uuid[]) limit ${limit})`.execute(trx)
  const families = await sql`
    delete from refresh_token_family f
     where f.id = any(${ids}::uuid[])
       and not exists (select 1 from refresh_token t where t.family_id = f.id)`.execute(trx)
  return { families: affected(families), tokens: affected(tokens) }
}

/**
 * One batch of a table whose rows die by age: up to `limit` rows matching `dead`, oldest first,
 * skipping rows another instance has locked (so instances never wait on each other).
 */
async function deleteOldest(db: Executor, table: 'revoked_access_token' | 'audit_event' | 'authorization_request' | 'authorization_code' | 'sso_session', key: 'jti' | 'id' | 'code_hash', age: 'expires_at' | 'at', dead: RawBuilder<boolean>, limit: number): Promise<number> {
  const r = await sql`
    delete from ${sql.table(table)}
     where ${sql.ref(key)} in (select ${sql.ref(key)} from ${sql.table(table)}
                    where ${dead}
                    order by ${sql.ref(age)} limit ${limit}
                      for update skip locked)`.execute(db)
  return affected(r)
}

/** One batch of denylisted access-token ids whose token expired (plus the skew margin). */
export function deleteExpiredDenylist(db: Executor, limit: number): Promise<number> {
  return deleteOldest(db, 'revoked_access_token', 'jti', 'expires_at', sql<boolean>`expires_at < now() - make_interval(secs => ${DENYLIST_SKEW_SECONDS})`, limit)
}

/** One batch of audit events older than `days` days. */
export function deleteOldAuditEvents(db: Executor, days: number, limit: number): Promise<number> {
  return deleteOldest(db, 'audit_event', 'id', 'at', sql<boolean>`at < now() - make_interval(days => ${days})`, limit)
}

/** One batch of pending and pushed authorization requests past their lifetime (used or not). */
export function deleteExpiredAuthorizationRequests(db: Executor, limit: number): Promise<number> {
  return deleteOldest(db, 'authorization_request', 'id', 'expires_at', sql<boolean>`expires_at < now()`, limit)
}

/** One batch of authorization codes past their lifetime; kept a while so a late replay is still recognised as reuse. */
export function deleteExpiredAuthorizationCodes(db: Executor, retentionSeconds: number, limit: number): Promise<number> {
  return deleteOldest(db, 'authorization_code', 'code_hash', 'expires_at', sql<boolean>`expires_at < now() - make_interval(secs => ${retentionSeconds})`, limit)
}

/** One batch of SSO sessions that ended (revoked, or past their absolute expiry) longer than `retentionSeconds` ago. */
export function deleteDeadSsoSessions(db: Executor, retentionSeconds: number, limit: number): Promise<number> {
  return deleteOldest(db, 'sso_session', 'id', 'expires_at', sql<boolean>`coalesce(least(revoked_at, expires_at, idle_expires_at), expires_at) < now() - make_interval(secs => ${retentionSeconds})`, limit)
}
