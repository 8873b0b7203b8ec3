import type { ColumnType, Generated, Kysely, Selectable, Transaction } from 'kysely'

type Timestamp = ColumnType<Date, Date | string, Date | string>
type JsonObject = ColumnType<Record<string, unknown>, string, string>

export interface AppUserTable {
  id: Generated<string>
  username: string
  password_hash: string
  roles: ColumnType<string[], string[] | undefined, string[]>
  disabled_at: Timestamp | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface ClientTable {
  id: string
  name: string
  secret_hash: Uint8Array | null
  grant_types: string[]
  scopes: string[]
  audience: ColumnType<string[], string[] | undefined, string[]>
  refresh_delivery: 'body' | 'cookie'
  allowed_origins: ColumnType<string[], string[] | undefined, string[]>
  disabled_at: Timestamp | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface RefreshTokenFamilyTable {
  id: Generated<string>
  client_id: string
  user_id: string
  scope: string
  auth_time: Timestamp
  created_at: Generated<Date>
  expires_at: Timestamp
  last_used_at: Timestamp | null
  last_ip: string | null
  last_user_agent: string | null
  revoked_at: Timestamp | null
  revoked_reason: string | null
}

export interface RefreshTokenTable {
  id: Generated<string>
  family_id: string
  token_hash: Uint8Array
  parent_id: string | null
  created_at: Generated<Date>
  expires_at: Timestamp
  used_at: Timestamp | null
  successor_id: string | null
}

export type KeyState = 'pending' | 'active' | 'retired' | 'removed' | 'revoked'

export interface SigningKeyTable {
  kid: string
  alg: string
  state: KeyState
  public_jwk: JsonObject
  private_key_enc: Uint8Array
  kek_id: string
  created_at: Generated<Date>
  activated_at: Timestamp | null
  retired_at: Timestamp | null
  revoked_at: Timestamp | null
  /** pending: when it starts signing. */
  activate_at: Timestamp | null
  /** retired: when it leaves the JWKS. */
  remove_at: Timestamp | null
  removed_at: Timestamp | null
  revoked_reason: string | null
  /** Bumped on every change of the row (a sequence), so a change is one cheap query away. */
  version: ColumnType<string, string | undefined, string>
}

export interface RevokedAccessTokenTable {
  jti: string
  expires_at: Timestamp
  revoked_at: Generated<Date>
}

export interface AuditEventTable {
  id: Generated<string>
  at: Generated<Date>
  type: string
  client_id: string | null
  user_id: string | null
  family_id: string | null
  ip: string | null
  user_agent: string | null
  detail: JsonObject
}

/** The Kysely view of the schema that `migrations/` creates. */
export interface Database {
  app_user: AppUserTable
  client: ClientTable
  refresh_token_family: RefreshTokenFamilyTable
  refresh_token: RefreshTokenTable
  signing_key: SigningKeyTable
  revoked_access_token: RevokedAccessTokenTable
  audit_event: AuditEventTable
}

declare const database: unique symbol

/**
 * The database itself: the only handle that opens transactions. Use cases take it; a transaction
 * is not a Db (it lacks the brand), so a use case cannot be handed one by mistake.
 */
export type Db = Kysely<Database> & { readonly [database]: true }
/**
 * An open transaction. A store function that must run inside its caller's transaction (with the
 * other writes of a use case, or under a lock) takes a Trx: handing it a Db is a compile error.
 */
export type Trx = Transaction<Database>
/** What one statement runs on: the database or an open transaction. Stores take this first. */
export type Executor = Kysely<Database>

/** Brands a freshly opened Kysely instance as the database (connect.ts). */
export function asDb(kysely: Kysely<Database>): Db {
  return kysely as Db
}

export type AppUserRow = Selectable<AppUserTable>
export type ClientRow = Selectable<ClientTable>
export type SigningKeyRow = Selectable<SigningKeyTable>
export type AuditEventRow = Selectable<AuditEventTable>
