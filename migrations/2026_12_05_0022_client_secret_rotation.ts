import { sql, type Kysely } from 'kysely'

// Client secret rotation with an overlap (docs/admin-clients.md "Rotating a secret"): the secret a
// rotation replaced keeps authenticating until `previous_secret_expires_at` (judged by the
// instances' clock), then only the new one does. Like the current secret, only its SHA-256 is
// stored. A public client has neither.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('client')
    .addColumn('previous_secret_hash', 'bytea')
    .addColumn('previous_secret_expires_at', 'timestamptz')
    .execute()
  // Both or neither; and a previous secret only beside a current one.
  await sql`alter table client add constraint client_previous_secret_check check (
    (previous_secret_hash is null) = (previous_secret_expires_at is null)
    and (previous_secret_hash is null or secret_hash is not null))`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table client drop constraint if exists client_previous_secret_check`.execute(db)
  await db.schema.alterTable('client').dropColumn('previous_secret_expires_at').dropColumn('previous_secret_hash').execute()
}
