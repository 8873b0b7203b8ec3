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
  name: string | null
  email: string | null
  email_verified: Generated<boolean>
  /** Bumped by every admin-visible change (migration 0021): the `ETag` `"v<N>"` of the admin API. */
  version: Generated<number>
}

export interface ClientTable {
  id: string
  name: string
  secret_hash: Uint8Array | null
  /** The secret a rotation replaced (SHA-256), accepted until `previous_secret_expires_at` (migration 0022). */
  previous_secret_hash: ColumnType<Uint8Array | null, Uint8Array | null | undefined, Uint8Array | null>
  previous_secret_expires_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  grant_types: string[]
  scopes: string[]
  audience: ColumnType<string[], string[] | undefined, string[]>
  refresh_delivery: 'body' | 'cookie'
  allowed_origins: ColumnType<string[], string[] | undefined, string[]>
  id_token_signed_response_alg: ColumnType<string, string | undefined, string>
  /** /token requests per second per instance; null = the configured default, 0 = no limit (migration 0013). */
  rate_limit_per_second: ColumnType<number | null, number | null | undefined, number | null>
  redirect_uris: ColumnType<string[], string[] | undefined, string[]>
  post_logout_redirect_uris: ColumnType<string[], string[] | undefined, string[]>
  first_party: Generated<boolean>
  backchannel_logout_uri: string | null
  require_pushed_authorization_requests: Generated<boolean>
  disabled_at: Timestamp | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
  /** Bumped by every admin-visible change (migration 0021): the `ETag` `"v<N>"` of the admin API. */
  version: Generated<number>
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
  /** The SSO session the family was issued under (authorization-code flow), if any. */
  sso_session_id: string | null
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

/** Password-check failure counters (migration 0013; README "Brute force and abuse"). */
export interface LoginThrottleTable {
  kind: 'account' | 'address' | 'address_account'
  subject: string
  failures: number
  last_failure_at: Timestamp
  blocked_until: Timestamp | null
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

/** The single row whose version every change that instances cache bumps (migration 0012). */
export interface ChangeVersionTable {
  id: Generated<boolean>
  /** bigint, read as text */
  version: ColumnType<string, never, never>
  xact: ColumnType<string | null, never, never>
}

/** What one change touched: a signing key (`keys`, subject = kid), a client or a user. */
export interface ChangeEventTable {
  version: ColumnType<string, never, never>
  kind: 'keys' | 'client' | 'user'
  subject: string
  at: Generated<Date>
}

/** One running instance: who it is and what it has applied, refreshed about every second. */
export interface InstanceHeartbeatTable {
  instance_id: string
  host: string
  pid: number
  started_at: Generated<Date>
  heartbeat_at: Generated<Date>
  /** bigint: every change up to this version is applied. */
  change_version: ColumnType<string, string, string>
  key_set_version: string
  applied_at: Generated<Date>
}

/** An SSO session (migration 0020): the browser's cookie is stored as its SHA-256 only. */
export interface SsoSessionTable {
  id: Generated<string>
  token_hash: Uint8Array
  user_id: string
  auth_time: Timestamp
  created_at: Generated<Date>
  last_seen_at: Generated<Date>
  idle_expires_at: Timestamp
  expires_at: Timestamp
  ip: string | null
  user_agent: string | null
  revoked_at: Timestamp | null
  revoked_reason: string | null
}

export interface SsoSessionClientTable {
  session_id: string
  client_id: string
  first_at: Generated<Date>
}

export interface ConsentTable {
  user_id: string
  client_id: string
  scopes: string[]
  granted_at: Generated<Date>
}

export interface AuthorizationRequestTable {
  id: string
  client_id: string
  params: JsonObject
  pushed: Generated<boolean>
  browser_hash: Uint8Array | null
  csrf_token: string | null
  user_id: string | null
  session_id: string | null
  created_at: Generated<Date>
  expires_at: Timestamp
  used_at: Timestamp | null
}

export interface AuthorizationCodeTable {
  code_hash: Uint8Array
  client_id: string
  user_id: string
  session_id: string
  redirect_uri: string
  code_challenge: string
  nonce: string | null
  scope: string
  auth_time: Timestamp
  created_at: Generated<Date>
  expires_at: Timestamp
  used_at: Timestamp | null
  family_id: string | null
  access_token_jti: string | null
  access_token_expires_at: Timestamp | null
}

/**
 * A create done with an `Idempotency-Key` (migration 0021), per acting admin client: the request's
 * fingerprint and the response a retry gets. Never holds a secret; deleted after 24 h (housekeeping).
 */
export interface IdempotencyKeyTable {
  actor: string
  key: string
  /** Hex SHA-256 of method, path and canonical JSON body. */
  fingerprint: string
  response_status: number
  response_headers: ColumnType<Record<string, string>, string | undefined, string>
  response_body: ColumnType<unknown, string, string>
  created_at: Generated<Date>
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
  change_version: ChangeVersionTable
  change_event: ChangeEventTable
  instance_heartbeat: InstanceHeartbeatTable
  login_throttle: LoginThrottleTable
  sso_session: SsoSessionTable
  sso_session_client: SsoSessionClientTable
  consent: ConsentTable
  authorization_request: AuthorizationRequestTable
  authorization_code: AuthorizationCodeTable
  idempotency_key: IdempotencyKeyTable
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
