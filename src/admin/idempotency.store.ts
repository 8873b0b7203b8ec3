import { sql } from 'kysely'
import type { Executor, Trx } from '../db/schema.js'

/** How long a key is remembered: a retry later than this creates again. */
export const IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 3600

/** A stored response. */
export interface StoredResponse {
  status: number
  headers: Record<string, string>
  body: unknown
}

/**
 * Claims `(actor, key)` for this transaction: true when this request holds it now (a new key, or one
 * older than the TTL, which is forgotten first). A concurrent claim of the same key waits for this
 * transaction on the primary key and then finds its row (or, after a rollback, claims it itself).
 * The placeholder row is completed by `completeKey` before the commit; nobody ever sees it.
 */
export async function claimKey(trx: Trx, actor: string, key: string, fingerprint: string): Promise<boolean> {
  await trx.deleteFrom('idempotency_key').where('actor', '=', actor).where('key', '=', key)
    .where('created_at', '<', sql<Date>`now() - make_interval(secs => ${IDEMPOTENCY_KEY_TTL_SECONDS})`).execute()
  const row = await trx.insertInto('idempotency_key')
    .values({ actor, key, fingerprint, response_status: 0, response_body: 'null' })
    .onConflict((oc) => oc.columns(['actor', 'key']).doNothing())
    .returning('key')
    .executeTakeFirst()
  return row !== undefined
}

/** The stored fingerprint and response of a claimed key. */
export async function findKey(db: Executor, actor: string, key: string): Promise<{ fingerprint: string; response: StoredResponse } | undefined> {
  const row = await db.selectFrom('idempotency_key').select(['fingerprint', 'response_status', 'response_headers', 'response_body'])
    .where('actor', '=', actor).where('key', '=', key).executeTakeFirst()
  return row && { fingerprint: row.fingerprint, response: { status: row.response_status, headers: row.response_headers, body: row.response_body } }
}

/** Stores the response of the request that claimed the key (in the claim's transaction). */
export async function completeKey(trx: Trx, actor: string, key: string, response: StoredResponse): Promise<void> {
  await trx.updateTable('idempotency_key')
    .set({ response_status: response.status, response_headers: JSON.stringify(response.headers), response_body: JSON.stringify(response.body) })
    .where('actor', '=', actor).where('key', '=', key).execute()
}

/** One batch of keys older than the TTL (housekeeping), skipping rows another instance holds. */
export async function deleteExpiredIdempotencyKeys(db: Executor, limit: number): Promise<number> {
  const r = await sql`
    delete from idempotency_key
     where (actor, key) in (select actor, key from idempotency_key
                             where created_at < now() - make_interval(secs => ${IDEMPOTENCY_KEY_TTL_SECONDS})
                             order by created_at limit ${limit}
                               for update skip locked)`.execute(db)
  return Number(r.numAffectedRows ?? 0n)
}
