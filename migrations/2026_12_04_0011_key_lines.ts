import { sql, type Kysely } from 'kysely'

// One key line per algorithm (docs/keys.md "Signing keys"): access tokens are signed by the SIGNING_ALG
// line, ID tokens by the line their client names (RS256 by default, OIDC Core §15.1). Each line
// has at most one active and one pending key, whichever instance runs the schedule.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists signing_key_one_active`.execute(db)
  await sql`drop index if exists signing_key_one_pending`.execute(db)
  await sql`create unique index signing_key_one_active on signing_key (alg) where state = 'active'`.execute(db)
  await sql`create unique index signing_key_one_pending on signing_key (alg) where state = 'pending'`.execute(db)
  // OIDC Dynamic Client Registration §2: RS256 when the client names no algorithm.
  await db.schema
    .alterTable('client')
    .addColumn('id_token_signed_response_alg', 'text', (c) => c.notNull().defaultTo('RS256').check(sql`id_token_signed_response_alg in ('ES256', 'RS256', 'PS256', 'EdDSA')`))
    .execute()
  // Clients registered before: their relying parties verify ID tokens signed by the one active key
  // of the single line there was; they keep its algorithm (RS256 is for new clients).
  await sql`update client set id_token_signed_response_alg = k.alg from (select alg from signing_key where state = 'active' order by activated_at desc nulls last limit 1) as k`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ n: number }>`select count(distinct alg)::int as n from signing_key where state in ('active', 'pending')`.execute(db)
  if ((rows[0]?.n ?? 0) > 1) throw new Error('cannot undo the key lines: keys of several algorithms are active or pending; revoke all but one line first')
  await db.schema.alterTable('client').dropColumn('id_token_signed_response_alg').execute()
  await sql`drop index if exists signing_key_one_active`.execute(db)
  await sql`drop index if exists signing_key_one_pending`.execute(db)
  await sql`create unique index signing_key_one_active on signing_key ((true)) where state = 'active'`.execute(db)
  await sql`create unique index signing_key_one_pending on signing_key ((true)) where state = 'pending'`.execute(db)
}
