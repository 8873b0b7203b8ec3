import { sql, type Kysely } from 'kysely'

// Issue 14: the admin API. A version on users and clients (optimistic concurrency: ETag /
// If-Match), the Idempotency-Key store of admin creates, and usernames re-normalised to the rule
// of src/users/user.ts (NFKC, lower case).

/** The username rule as of this migration (a copy: a migration must not change with the code). */
const normalize = (username: string) => username.normalize('NFKC').toLowerCase().normalize('NFKC')

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('app_user').addColumn('version', 'integer', (c) => c.notNull().defaultTo(1)).execute()
  await db.schema.alterTable('client').addColumn('version', 'integer', (c) => c.notNull().defaultTo(1)).execute()

  // One row per (acting admin client, Idempotency-Key) of a create that succeeded: the request's
  // fingerprint (SHA-256 of method, path and canonical body) and the response it got, which a
  // retry is answered with. The stored body never holds a secret. Deleted by housekeeping after 24 h.
  await db.schema
    .createTable('idempotency_key')
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull().check(sql`char_length(key) between 1 and 255`))
    .addColumn('fingerprint', 'text', (c) => c.notNull())
    .addColumn('response_status', 'integer', (c) => c.notNull())
    .addColumn('response_headers', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('response_body', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('idempotency_key_pk', ['actor', 'key'])
    .execute()
  await db.schema.createIndex('idempotency_key_created_idx').on('idempotency_key').column('created_at').execute()

  // Usernames under the new rule (NFC before): refuse to guess when two users would become one.
  const { rows } = await sql<{ id: string; username: string }>`select id, username from app_user order by created_at, id`.execute(db)
  const byName = new Map<string, string[]>()
  for (const r of rows) {
    const n = normalize(r.username)
    byName.set(n, [...(byName.get(n) ?? []), r.username])
  }
  const collisions = [...byName.entries()].filter(([, names]) => names.length > 1)
  if (collisions.length > 0) {
    const list = collisions.map(([n, names]) => `${names.map((x) => JSON.stringify(x)).join(' and ')} (both ${JSON.stringify(n)})`).join('; ')
    throw new Error(`usernames collide under the new normalisation (Unicode NFKC, lower case): ${list}. Rename or delete one of each (tessera users), then migrate again`)
  }
  for (const r of rows) {
    const n = normalize(r.username)
    if (n !== r.username) await sql`update app_user set username = ${n}, updated_at = now(), version = version + 1 where id = ${r.id}`.execute(db)
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('idempotency_key').execute()
  await db.schema.alterTable('client').dropColumn('version').execute()
  await db.schema.alterTable('app_user').dropColumn('version').execute()
}
