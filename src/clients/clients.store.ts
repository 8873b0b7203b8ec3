import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import { ID_TOKEN_DEFAULT_ALG, type SigningAlg } from '../config.js'
import type { ClientRow, Executor, Trx } from '../db/schema.js'
import type { GrantType } from '../grants/grant-types.js'
import { newClientSecret, type Client, type NewClient } from './client.js'

function toClient(row: ClientRow): Client {
  return {
    id: row.id,
    name: row.name,
    isPublic: row.secret_hash === null,
    secretHash: row.secret_hash ? Buffer.from(row.secret_hash) : null,
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
  }
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
 * Marks a client disabled (its first disable time is kept): whether this call disabled it (false:
 * it was disabled already), or undefined when there is no such client.
 */
export async function markClientDisabled(trx: Trx, id: string): Promise<{ changed: boolean } | undefined> {
  return trx
    .updateTable('client')
    .set({ disabled_at: sql`coalesce(disabled_at, now())`, updated_at: sql`now()` })
    .where('id', '=', id)
    // now() is the transaction's start: equal only when this statement set it.
    .returning(sql<boolean>`disabled_at = now()`.as('changed'))
    .executeTakeFirst()
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
