import { sql, type Kysely } from 'kysely'

// Signing-key lifecycle: pending → active → retired → removed, or revoked at any time.
// Scheduled times live in the rows so that every instance agrees on them; `version`
// is bumped on every change so instances can notice a change with one tiny query.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table signing_key drop constraint if exists signing_key_state_check`.execute(db)
  await sql`alter table signing_key add constraint signing_key_state_check check (state in ('pending', 'active', 'retired', 'removed', 'revoked'))`.execute(db)
  await sql`create sequence signing_key_version_seq`.execute(db)
  await db.schema
    .alterTable('signing_key')
    // pending: when it starts signing (at least the JWKS cache lifetime after it was published).
    .addColumn('activate_at', 'timestamptz')
    // retired: when it leaves the JWKS (after the longest token it signed has expired).
    .addColumn('remove_at', 'timestamptz')
    .addColumn('removed_at', 'timestamptz')
    .addColumn('revoked_reason', 'text')
    .addColumn('version', 'bigint', (c) => c.notNull().defaultTo(sql`nextval('signing_key_version_seq')`))
    .execute()
  // Never two pending keys: several instances running the schedule at once make one.
  await sql`create unique index signing_key_one_pending on signing_key ((true)) where state = 'pending'`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists signing_key_one_pending`.execute(db)
  await db.schema.alterTable('signing_key').dropColumn('activate_at').dropColumn('remove_at').dropColumn('removed_at').dropColumn('revoked_reason').dropColumn('version').execute()
  await sql`drop sequence if exists signing_key_version_seq`.execute(db)
  await sql`alter table signing_key drop constraint if exists signing_key_state_check`.execute(db)
  await sql`alter table signing_key add constraint signing_key_state_check check (state in ('pending', 'active', 'retired', 'revoked'))`.execute(db)
}
