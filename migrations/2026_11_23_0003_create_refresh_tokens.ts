import { sql, type Kysely } from 'kysely'

export async function up(db: Kysely<any>): Promise<void> {
  // A family is one login on one device; every rotation adds a token to it.
  await db.schema
    .createTable('refresh_token_family')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('client_id', 'text', (c) => c.notNull().references('client.id').onDelete('cascade'))
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('app_user.id').onDelete('cascade'))
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('auth_time', 'timestamptz', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    // Absolute limit: successors inherit it.
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('last_used_at', 'timestamptz')
    .addColumn('last_ip', 'text')
    .addColumn('last_user_agent', 'text')
    .addColumn('revoked_at', 'timestamptz')
    .addColumn('revoked_reason', 'text')
    .execute()
  await db.schema.createIndex('refresh_token_family_user_idx').on('refresh_token_family').columns(['user_id', 'created_at']).execute()

  await db.schema
    .createTable('refresh_token')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('family_id', 'uuid', (c) => c.notNull().references('refresh_token_family.id').onDelete('cascade'))
    // SHA-256 of the token; the token itself is never stored.
    .addColumn('token_hash', 'bytea', (c) => c.notNull().unique())
    .addColumn('parent_id', 'uuid', (c) => c.references('refresh_token.id').onDelete('set null'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    // Idle limit of this token.
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    .addColumn('successor_id', 'uuid')
    .execute()
  await db.schema.createIndex('refresh_token_family_idx').on('refresh_token').column('family_id').execute()
  // At most one successor per parent, whatever the application does.
  await db.schema.createIndex('refresh_token_parent_uniq').on('refresh_token').column('parent_id').unique().execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('refresh_token').execute()
  await db.schema.dropTable('refresh_token_family').execute()
}
