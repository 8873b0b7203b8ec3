import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import { ID_TOKEN_DEFAULT_ALG, type SigningAlg } from '../config.js'
import type { ClientRow, Executor, Trx } from '../db/schema.js'
import type { GrantType } from '../grants/grant-types.js'
import { newClientSecret, type Client, type NewClient } from './client.js'
import type { ClientSettings } from './client-settings.js'

function toClient(row: ClientRow): Client {
  return {
    id: row.id,
    name: row.name,
    isPublic: row.secret_hash === null,
    secretHash: row.secret_hash ? Buffer.from(row.secret_hash) : null,
    previousSecretHash: row.previous_secret_hash ? Buffer.from(row.previous_secret_hash) : null,
    previousSecretExpiresAt: row.previous_secret_expires_at,
    grantTypes: row.grant_types as GrantType[],
    scopes: row.scopes,
    audience: row.audience,
    refreshDelivery: row.refresh_delivery,
    allowedOrigins: row.allowed_origins,
    idTokenSignedResponseAlg: row.id_token_signed_response_alg as SigningAlg,
    rateLimitPerSecond: row.rate_limit_per_second,
    redirectUris: row.redirect_uris,
    postLogoutRedirectUris: row.post_logout_redirect_uris,
    firstParty: row.first_party,
    backchannelLogoutUri: row.backchannel_logout_uri,
    requirePushedAuthorizationRequests: row.require_pushed_authorization_requests,
    disabled: row.disabled_at !== null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    version: row.version,
  }
}

/** The columns of a client's settings. */
function settingsColumns(s: ClientSettings) {
  return {
    name: s.name,
    grant_types: s.grantTypes,
    scopes: s.scopes,
    audience: s.audience,
    refresh_delivery: s.refreshDelivery,
    allowed_origins: s.allowedOrigins,
    id_token_signed_response_alg: s.idTokenSignedResponseAlg,
    rate_limit_per_second: s.rateLimitPerSecond,
    redirect_uris: s.redirectUris,
    post_logout_redirect_uris: s.postLogoutRedirectUris,
    first_party: s.firstParty,
    backchannel_logout_uri: s.backchannelLogoutUri,
    require_pushed_authorization_requests: s.requirePushedAuthorizationRequests,
  }
}

/** Inserts a client with checked settings; `secretHash` null for a public client. */
export async function insertClient(db: Executor, id: string, settings: ClientSettings, secretHash: Buffer | null): Promise<Client> {
  const row = await db
    .insertInto('client')
    .values({ id, secret_hash: secretHash, ...settingsColumns(settings) })
    .returningAll()
    .executeTakeFirstOrThrow()
  return toClient(row)
}

/** A client, its row locked until the transaction ends (the admin API's read-check-write). */
export async function lockClient(trx: Trx, id: string): Promise<Client | undefined> {
  const row = await trx.selectFrom('client').selectAll().where('id', '=', id).forUpdate().executeTakeFirst()
  return row && toClient(row)
}

/**
 * Writes a client's settings and bumps its version, only while its version is still `version`
 * (the check and the write are one statement): undefined when it is not (or there is no client).
 */
export async function updateClientSettings(trx: Trx, id: string, settings: ClientSettings, version: number): Promise<Client | undefined> {
  const row = await trx
    .updateTable('client')
    .set({ ...settingsColumns(settings), version: sql`version + 1`, updated_at: sql`now()` })
    .where('id', '=', id)
    .where('version', '=', version)
    .returningAll()
    .executeTakeFirst()
  return row && toClient(row)
}

/**
 * Replaces a confidential client's secret (hash) and bumps its version, only while its version is
 * still `version`. With `previousExpiresAt` the replaced secret stays valid until then (a second
 * rotation within the overlap forgets the first one's); null: it stops at once.
 */
export async function replaceClientSecret(trx: Trx, id: string, hash: Buffer, previousExpiresAt: Date | null, version: number): Promise<Client | undefined> {
  const row = await trx
    .updateTable('client')
    .set({
      secret_hash: hash,
      // The right-hand sides see the row before the update: the previous hash is the replaced one.
      previous_secret_hash: previousExpiresAt === null ? null : sql`secret_hash`,
      previous_secret_expires_at: previousExpiresAt,
      version: sql`version + 1`,
      updated_at: sql`now()`,
    })
    .where('id', '=', id)
    .where('version', '=', version)
    .where('secret_hash', 'is not', null)
    .returningAll()
    .executeTakeFirst()
  return row && toClient(row)
}

/** Marks a disabled client enabled and bumps its version, while its version is still `version`. */
export async function markClientEnabled(trx: Trx, id: string, version: number): Promise<Client | undefined> {
  const row = await trx
    .updateTable('client')
    .set({ disabled_at: null, version: sql`version + 1`, updated_at: sql`now()` })
    .where('id', '=', id)
    .where('version', '=', version)
    .where('disabled_at', 'is not', null)
    .returningAll()
    .executeTakeFirst()
  return row && toClient(row)
}

/** Deletes a client while its version is still `version` (its families, codes and consents go with it; audit rows stay). */
export async function deleteClientRow(trx: Trx, id: string, version: number): Promise<boolean> {
  const rows = await trx.deleteFrom('client').where('id', '=', id).where('version', '=', version).returning('id').execute()
  return rows.length === 1
}

export const CLIENTS_DEFAULT_LIMIT = 50
export const CLIENTS_MAX_LIMIT = 200

export interface ClientFilter {
  /** Only disabled (true) or only enabled (false) clients. */
  disabled?: boolean | undefined
  /** Names starting with this (case-sensitive). */
  namePrefix?: string | undefined
  type?: 'public' | 'confidential' | undefined
  /** Clients allowed this grant type. */
  grantType?: GrantType | undefined
  limit?: number | undefined
  /** The position after the previous page's last client: its creation time (PostgreSQL text, microseconds) and id. */
  after?: { createdAt: string; id: string } | undefined
}

/**
 * One page of clients, oldest first (keyset on creation time and id: no duplicates or gaps while
 * clients are added or deleted); `next` is the position of the last one when more match.
 */
export async function listClientsPage(db: Executor, f: ClientFilter): Promise<{ clients: Client[]; next: { createdAt: string; id: string } | null }> {
  const limit = Math.min(Math.max(f.limit ?? CLIENTS_DEFAULT_LIMIT, 1), CLIENTS_MAX_LIMIT)
  let q = db.selectFrom('client').selectAll().select(sql<string>`created_at::text`.as('created_at_text'))
  if (f.disabled !== undefined) q = q.where('disabled_at', f.disabled ? 'is not' : 'is', null)
  if (f.namePrefix !== undefined) q = q.where(sql<boolean>`starts_with(name, ${f.namePrefix})`)
  if (f.type !== undefined) q = q.where('secret_hash', f.type === 'public' ? 'is' : 'is not', null)
  if (f.grantType !== undefined) q = q.where(sql<boolean>`${f.grantType} = any(grant_types)`)
  if (f.after !== undefined) q = q.where(sql<boolean>`(created_at, id) > (${f.after.createdAt}::timestamptz, ${f.after.id})`)
  const rows = await q.orderBy('created_at').orderBy('id').limit(limit + 1).execute()
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return { clients: page.map(toClient), next: rows.length > limit && last ? { createdAt: last.created_at_text, id: last.id } : null }
}

/** Creates a client; the secret is returned once and only its hash is stored. */
export async function createClient(db: Executor, input: NewClient): Promise<{ client: Client; secret: string | undefined }> {
  const id = input.id ?? `c_${randomBytes(12).toString('base64url')}`
  const credential = input.isPublic ? undefined : newClientSecret()
  const row = await db
    .insertInto('client')
    .values({
      id,
      name: input.name,
      secret_hash: credential?.hash ?? null,
      grant_types: input.grantTypes,
      scopes: input.scopes,
      audience: input.audience ?? [],
      refresh_delivery: input.refreshDelivery ?? (input.isPublic && (input.allowedOrigins?.length ?? 0) > 0 ? 'cookie' : 'body'),
      allowed_origins: input.allowedOrigins ?? [],
      id_token_signed_response_alg: input.idTokenSignedResponseAlg ?? ID_TOKEN_DEFAULT_ALG,
      rate_limit_per_second: input.rateLimitPerSecond ?? null,
      redirect_uris: input.redirectUris ?? [],
      post_logout_redirect_uris: input.postLogoutRedirectUris ?? [],
      first_party: input.firstParty ?? false,
      backchannel_logout_uri: input.backchannelLogoutUri ?? null,
      require_pushed_authorization_requests: input.requirePushedAuthorizationRequests ?? false,
    })
    .returningAll()
    .executeTakeFirstOrThrow()
  return { client: toClient(row), secret: credential?.secret }
}

export async function findClient(db: Executor, id: string): Promise<Client | undefined> {
  const row = await db.selectFrom('client').selectAll().where('id', '=', id).executeTakeFirst()
  return row && toClient(row)
}

export async function listClients(db: Executor): Promise<Client[]> {
  const rows = await db.selectFrom('client').selectAll().orderBy('created_at').execute()
  return rows.map(toClient)
}

/**
 * Marks a client disabled (its first disable time is kept; the version moves only when this call
 * disabled it): whether this call disabled it (false: it was disabled already), or undefined when
 * there is no such client, or (with `version`) its version is no longer that.
 */
export async function markClientDisabled(trx: Trx, id: string, version?: number): Promise<{ changed: boolean } | undefined> {
  let q = trx
    .updateTable('client')
    .set({ disabled_at: sql`coalesce(disabled_at, now())`, version: sql`case when disabled_at is null then version + 1 else version end`, updated_at: sql`now()` })
    .where('id', '=', id)
  if (version !== undefined) q = q.where('version', '=', version)
  // now() is the transaction's start: equal only when this statement set it.
  return q.returning(sql<boolean>`disabled_at = now()`.as('changed')).executeTakeFirst()
}

/** How many enabled clients sign their ID tokens with `alg`. */
export async function clientsWithIdTokenAlg(db: Executor, alg: string): Promise<number> {
  const row = await db.selectFrom('client').select((eb) => eb.fn.countAll<string>().as('n')).where('id_token_signed_response_alg', '=', alg).where('disabled_at', 'is', null).executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Every origin any enabled client allows, for CORS preflights. */
export async function allAllowedOrigins(db: Executor): Promise<string[]> {
  const rows = await db.selectFrom('client').select(sql<string>`unnest(allowed_origins)`.as('origin')).where('disabled_at', 'is', null).execute()
  return [...new Set(rows.map((r) => r.origin))]
}
