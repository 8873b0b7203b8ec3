import { sql, type Kysely } from 'kysely'

// Issue 13: the authorization-code flow. Client settings, user profile attributes, the SSO
// session, remembered consent, pending (and pushed) authorization requests and the codes.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('client')
    // Compared as exact strings (RFC 9700 §2.1); the client change triggers of 0012 cover them.
    .addColumn('redirect_uris', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn('post_logout_redirect_uris', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn('first_party', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('backchannel_logout_uri', 'text')
    .addColumn('require_pushed_authorization_requests', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute()

  await db.schema
    .alterTable('app_user')
    .addColumn('name', 'text')
    .addColumn('email', 'text')
    .addColumn('email_verified', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute()

  // The SSO session: the browser holds a random 256-bit value, the row only its SHA-256.
  await db.schema
    .createTable('sso_session')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('token_hash', 'bytea', (c) => c.notNull().unique())
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('app_user.id').onDelete('cascade'))
    .addColumn('auth_time', 'timestamptz', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_seen_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('idle_expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('ip', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('revoked_at', 'timestamptz')
    .addColumn('revoked_reason', 'text')
    .execute()
  await db.schema.createIndex('sso_session_user_idx').on('sso_session').columns(['user_id', 'created_at']).execute()
  await db.schema.createIndex('sso_session_expires_idx').on('sso_session').column('expires_at').execute()

  // Which clients a session signed in to (back-channel logout goes to these).
  await db.schema
    .createTable('sso_session_client')
    .addColumn('session_id', 'uuid', (c) => c.notNull().references('sso_session.id').onDelete('cascade'))
    .addColumn('client_id', 'text', (c) => c.notNull().references('client.id').onDelete('cascade'))
    .addColumn('first_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('sso_session_client_pk', ['session_id', 'client_id'])
    .execute()

  await db.schema
    .alterTable('refresh_token_family')
    .addColumn('sso_session_id', 'uuid', (c) => c.references('sso_session.id').onDelete('set null'))
    .execute()
  await db.schema.createIndex('refresh_token_family_sso_idx').on('refresh_token_family').column('sso_session_id').where(sql.ref('sso_session_id'), 'is not', null).execute()

  await db.schema
    .createTable('consent')
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('app_user.id').onDelete('cascade'))
    .addColumn('client_id', 'text', (c) => c.notNull().references('client.id').onDelete('cascade'))
    .addColumn('scopes', sql`text[]`, (c) => c.notNull())
    .addColumn('granted_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('consent_pk', ['user_id', 'client_id'])
    .execute()

  // A pending authorization request (or a pushed one, RFC 9126): any instance continues it.
  await db.schema
    .createTable('authorization_request')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('client_id', 'text', (c) => c.notNull().references('client.id').onDelete('cascade'))
    .addColumn('params', 'jsonb', (c) => c.notNull())
    .addColumn('pushed', 'boolean', (c) => c.notNull().defaultTo(false))
    // SHA-256 of the browser-binding cookie; null for a pushed request not yet used.
    .addColumn('browser_hash', 'bytea')
    .addColumn('csrf_token', 'text')
    .addColumn('user_id', 'uuid', (c) => c.references('app_user.id').onDelete('cascade'))
    .addColumn('session_id', 'uuid', (c) => c.references('sso_session.id').onDelete('cascade'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    .execute()
  await db.schema.createIndex('authorization_request_expires_idx').on('authorization_request').column('expires_at').execute()

  await db.schema
    .createTable('authorization_code')
    .addColumn('code_hash', 'bytea', (c) => c.primaryKey())
    .addColumn('client_id', 'text', (c) => c.notNull().references('client.id').onDelete('cascade'))
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('app_user.id').onDelete('cascade'))
    .addColumn('session_id', 'uuid', (c) => c.notNull().references('sso_session.id').onDelete('cascade'))
    .addColumn('redirect_uri', 'text', (c) => c.notNull())
    .addColumn('code_challenge', 'text', (c) => c.notNull())
    .addColumn('nonce', 'text')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('auth_time', 'timestamptz', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    // What the redemption issued, revoked when the code is presented again (RFC 6749 §4.1.2).
    .addColumn('family_id', 'uuid', (c) => c.references('refresh_token_family.id').onDelete('set null'))
    .addColumn('access_token_jti', 'text')
    .addColumn('access_token_expires_at', 'timestamptz')
    .execute()
  await db.schema.createIndex('authorization_code_expires_idx').on('authorization_code').column('expires_at').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('authorization_code').execute()
  await db.schema.dropTable('authorization_request').execute()
  await db.schema.dropTable('consent').execute()
  await db.schema.alterTable('refresh_token_family').dropColumn('sso_session_id').execute()
  await db.schema.dropTable('sso_session_client').execute()
  await db.schema.dropTable('sso_session').execute()
  await db.schema.alterTable('app_user').dropColumn('name').dropColumn('email').dropColumn('email_verified').execute()
  await db.schema
    .alterTable('client')
    .dropColumn('redirect_uris').dropColumn('post_logout_redirect_uris').dropColumn('first_party')
    .dropColumn('backchannel_logout_uri').dropColumn('require_pushed_authorization_requests')
    .execute()
}
