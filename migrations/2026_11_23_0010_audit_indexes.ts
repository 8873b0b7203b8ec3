import type { Kysely } from 'kysely'

// The audit query (GET /admin/audit, `tessera audit list`) filters by user, client or type and
// pages newest first by id: each index serves one filter in that order. Family and time
// already have indexes (0006).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('audit_event_user_idx').on('audit_event').columns(['user_id', 'id']).execute()
  await db.schema.createIndex('audit_event_client_idx').on('audit_event').columns(['client_id', 'id']).execute()
  await db.schema.createIndex('audit_event_type_idx').on('audit_event').columns(['type', 'id']).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('audit_event_type_idx').execute()
  await db.schema.dropIndex('audit_event_client_idx').execute()
  await db.schema.dropIndex('audit_event_user_idx').execute()
}
