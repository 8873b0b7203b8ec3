import { sql, type Kysely } from 'kysely'

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('signing_key')
    // RFC 7638 thumbprint of the public key.
    .addColumn('kid', 'text', (c) => c.primaryKey())
    .addColumn('alg', 'text', (c) => c.notNull().check(sql`alg in ('ES256', 'RS256', 'PS256', 'EdDSA')`))
    .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('pending', 'active', 'retired', 'revoked')`))
    .addColumn('public_jwk', 'jsonb', (c) => c.notNull())
    // AES-256-GCM ciphertext of the private JWK (nonce ‖ ciphertext ‖ tag), AAD = kid.
    .addColumn('private_key_enc', 'bytea', (c) => c.notNull())
    .addColumn('kek_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('activated_at', 'timestamptz')
    .addColumn('retired_at', 'timestamptz')
    .addColumn('revoked_at', 'timestamptz')
    .execute()
  // Never two active keys, whichever instance rotates.
  await sql`create unique index signing_key_one_active on signing_key ((true)) where state = 'active'`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('signing_key').execute()
}
