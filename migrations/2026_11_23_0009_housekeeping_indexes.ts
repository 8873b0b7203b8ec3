import { sql, type Kysely } from 'kysely'

// Housekeeping (src/housekeeping.ts) finds dead families by the instant they died: least()
// ignores nulls, so this is the revocation or the absolute expiry, whichever came first. The
// other tables it cleans are already indexed for it: revoked_access_token (expires_at, 0005),
// audit_event (at, 0006); deleting a family's tokens uses refresh_token (family_id) and the
// unique (parent_id) index of 0003.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index refresh_token_family_dead_idx on refresh_token_family ((least(expires_at, revoked_at)))`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('refresh_token_family_dead_idx').execute()
}
